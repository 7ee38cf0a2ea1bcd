"""The complaint and arrival-slip API as the console uses it: the ticket's ``complaint`` and
``eta_slip``, the manager's list, marking a complaint handled, the desk stopping a slip call."""

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core import eta
from tests.test_complaints import unhappy

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # the clock fixture's start
COMPLAINT_FIELDS = {"opened_at", "reason", "due_at", "handled_at", "handled_by", "escalate_at", "escalation", "open"}


async def test_an_unhappy_resident_is_a_complaint_on_the_ticket_until_a_manager_handles_it(
        api, sessions, settings, engineer, clock):
    ticket_id, _ = unhappy(sessions, settings, engineer, when=MONDAY_10)
    desk, boss, zhang = await api("desk"), await api("boss"), await api("zhang")
    ticket = await (await desk.get(f"/api/tickets/{ticket_id}")).json()
    complaint = ticket["complaint"]
    assert COMPLAINT_FIELDS <= set(complaint)
    assert {key: complaint[key] for key in ("opened_at", "due_at", "escalate_at", "handled_at", "open", "escalation")} == {
        "opened_at": "2026-11-23T10:03:00+08:00", "due_at": "2026-11-24T10:03:00+08:00",
        "escalate_at": "2026-11-23T11:03:00+08:00", "handled_at": None, "open": True, "escalation": "waiting"}
    assert complaint["reason"].startswith("回访不满意")

    listed = await (await boss.get("/api/complaints")).json()
    assert [(c["ticket_id"], c["open"], c["ticket_number"]) for c in listed] == [(ticket_id, True, ticket["number"])]
    assert (await zhang.get("/api/complaints")).status == 403
    assert (await api.anonymous.get("/api/complaints")).status == 401

    url = f"/api/tickets/{ticket_id}/complaint/handled"
    assert (await desk.post(url, json={"note": "x"})).status == 403  # a manager's decision
    assert (await boss.post(url, json={"note": 5})).status == 422
    clock.advance(minutes=20)
    response = await boss.post(url, json={"note": "已致电住户道歉，明早返修"})
    assert response.status == 200
    handled = (await response.json())["complaint"]
    assert (handled["open"], handled["handled_by"], handled["handled_at"], handled["escalation"]) == (
        False, "boss", "2026-11-23T10:20:00+08:00", "not_needed")
    again = await boss.post(url, json={})
    assert again.status == 409 and "没有未处理的投诉" in (await again.json())["error"]
    assert (await boss.post("/api/tickets/999999/complaint/handled", json={})).status == 404


async def test_a_late_engineer_is_highlighted_and_the_desk_stops_the_apology_call(api, sessions, settings, people, clock):
    desk, zhang = await api("desk"), await api("zhang")
    created = await (await desk.post("/api/tickets", json={
        "description": "厨房水管爆了", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101",
        "urgency": "emergency"})).json()
    url = f"/api/tickets/{created['id']}"
    await desk.post(f"{url}/transitions", json={"to": "dispatched", "engineer_id": people["张工"]})
    assert (await zhang.post(f"{url}/transitions", json={"to": "accepted"})).status == 200
    stop = f"{url}/eta-call/stop"
    refused = await desk.post(stop)
    assert refused.status == 409 and "没有待拨" in (await refused.json())["error"]

    clock.now = MONDAY_10 + timedelta(minutes=50)  # promised 10:30, 20 minutes late
    with sessions() as session, session.begin():
        assert [s.ticket_id for s in eta.detect(session, clock(), replace(settings, followup=replace(
            settings.followup, line="pbx")))] == [created["id"]]
    queue = await (await desk.get("/api/tickets?status=accepted")).json()
    [row] = queue["tickets"]
    assert row["eta_late"] is True
    assert {k: row["eta_slip"][k] for k in ("promised_at", "call_at", "status", "can_stop")} == {
        "promised_at": "2026-11-23T10:30:00+08:00", "call_at": "2026-11-23T10:53:00+08:00", "status": "pending",
        "can_stop": True}

    assert (await zhang.post(stop)).status == 403  # the desk's call
    response = await desk.post(stop)
    assert response.status == 200
    ticket = await response.json()
    assert (ticket["eta_slip"]["status"], ticket["eta_slip"]["stopped_by"], ticket["eta_slip"]["can_stop"]) == (
        "stopped", "desk", False)
    assert ticket["events"][-1]["note"] == "前台取消了到场超时致歉电话"
    assert (await desk.post(stop)).status == 409
    assert (await desk.post("/api/tickets/999999/eta-call/stop")).status == 404
