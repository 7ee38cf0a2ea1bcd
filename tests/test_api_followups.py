"""The follow-up API as the console and a script use it: the list, asking for a call, the month's figures."""

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core import followup
from core.followup import SurveyAnswers
from core.store import CallRecord
from tests.support.tickets import completed_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # the clock fixture's start
TUESDAY_10 = MONDAY_10 + timedelta(days=1)
FIELDS = {"id", "ticket_id", "phone", "due_at", "status", "attempts", "resolved", "rating", "comment", "recording_url"}


def followup_id_of(sessions, ticket_id):
    with sessions() as session:
        return followup.open_followup(session, ticket_id).id


def call(sessions, settings, ticket_id, outcome, recording=""):
    """The telephony side's part: claim the ticket's follow-up, then record how the call went."""
    followup_id = followup_id_of(sessions, ticket_id)
    with sessions() as session, session.begin():
        assert followup.claim(session, followup_id, TUESDAY_10) is not None
        if isinstance(outcome, SurveyAnswers):
            record = CallRecord(direction="outbound", line="pbx", called="13800138000", started_at=TUESDAY_10,
                                outcome="completed", recording_path=recording)
            session.add(record)
            session.flush()
            followup.record_answers(session, followup_id, outcome, record.id, TUESDAY_10, settings)
        else:
            followup.record_no_contact(session, followup_id, outcome, TUESDAY_10, settings)
    return followup_id


async def test_completing_a_ticket_puts_its_follow_up_on_the_list(api, people, clock):
    desk, zhang = await api("desk"), await api("zhang")
    ticket = await (await desk.post("/api/tickets", json={
        "description": "厨房水管漏水", "phone": "138 0013 8000", "building": "3", "unit": "2", "room": "1101"})).json()
    url = f"/api/tickets/{ticket['id']}/transitions"
    await desk.post(url, json={"to": "dispatched", "engineer_id": people["张工"]})
    for body in ({"to": "accepted"}, {"to": "on_site"}, {"to": "completed", "actual_item": "更换软管"}):
        assert (await zhang.post(url, json=body)).status == 200
    listed = await (await desk.get("/api/followups?status=scheduled")).json()
    assert len(listed) == 1 and FIELDS <= set(listed[0])
    assert {key: listed[0][key] for key in FIELDS - {"id"}} == {
        "ticket_id": ticket["id"], "phone": "13800138000", "due_at": "2026-11-24T10:00:00+08:00",
        "status": "scheduled", "attempts": 0, "resolved": None, "rating": None, "comment": "", "recording_url": None}
    assert listed[0]["ticket_number"] == ticket["number"] and listed[0]["status_name"] == "待回访"
    assert (await zhang.get("/api/followups")).status == 403
    assert (await api.anonymous.get("/api/followups")).status == 401


async def test_the_desk_asks_for_a_call_at_a_time_agreed_with_the_resident(api, sessions, settings, people):
    desk = await api("desk")
    ticket_id = completed_ticket(sessions, settings, people["张工"], MONDAY_10 - timedelta(minutes=5))
    url = f"/api/tickets/{ticket_id}/followup"
    moved = await desk.post(url, json={"at": "2026-11-28T15:30"})  # a Saturday, agreed: fine
    assert moved.status == 201
    body = await moved.json()
    assert (body["due_at"], body["status"]) == ("2026-11-28T15:30:00+08:00", "scheduled")
    again = await (await desk.post(url, json={})).json()  # no time: the one already scheduled
    assert (again["id"], again["due_at"]) == (body["id"], body["due_at"])
    assert len(await (await desk.get("/api/followups")).json()) == 1


@pytest.mark.parametrize(("body", "message"), [
    ({"at": "next tuesday"}, "ISO 8601"),
    ({"at": "2026-11-20T10:00"}, "不能早于现在"),
    ({"at": "2026-11-24T12:30"}, "请选择回访时段内的时间：09:00-12:00、14:00-20:00"),
])
async def test_a_bad_time_is_refused_in_chinese(api, sessions, settings, people, body, message):
    ticket_id = completed_ticket(sessions, settings, people["张工"], MONDAY_10)
    response = await (await api("desk")).post(f"/api/tickets/{ticket_id}/followup", json=body)
    assert response.status == 422
    assert message in (await response.json())["fields"]["at"]


async def test_no_call_for_an_unknown_an_unfinished_or_an_opted_out_ticket(api, sessions, settings, people):
    desk = await api("desk")
    assert (await desk.post("/api/tickets/999/followup", json={})).status == 404
    open_ticket = await (await desk.post("/api/tickets", json={"description": "门锁坏了", "room": "1101",
                                                                "phone": "13800138001"})).json()
    refused = await desk.post(f"/api/tickets/{open_ticket['id']}/followup", json={})
    assert refused.status == 409
    assert (await refused.json())["error"] == "维修单状态为「受理」，只有已完成的维修单可以回访"
    ticket_id = completed_ticket(sessions, settings, people["张工"], MONDAY_10)
    with sessions() as session, session.begin():
        followup.opt_out(session, "13800138000", MONDAY_10, "住户致电前台")
    refused = await desk.post(f"/api/tickets/{ticket_id}/followup", json={})
    assert refused.status == 409 and "已要求不再回访" in (await refused.json())["error"]


async def test_the_list_filters_by_status_and_time_and_shows_the_answers_and_recording(api, sessions, settings, people):
    happy = completed_ticket(sessions, settings, people["张工"], MONDAY_10, phone="13800000011")
    unhappy = completed_ticket(sessions, settings, people["李工"], MONDAY_10, phone="13800000012")
    call(sessions, settings, happy, SurveyAnswers(resolved=True, rating="满意"), recording="2026/11/24/7.wav")
    unhappy_id = call(sessions, settings, unhappy, SurveyAnswers(resolved=False, rating="不满意", comment="还在滴水"))
    desk = await api("desk")
    done = await (await desk.get("/api/followups?status=done&from=2026-11-24T00:00&to=2026-11-25T00:00")).json()
    assert {(f["ticket_id"], f["rating"], f["resolved"]) for f in done} == {(happy, "满意", True),
                                                                           (unhappy, "不满意", False)}
    assert {f["ticket_id"]: f["recording_url"] for f in done}[happy].startswith("/api/calls/")
    assert await (await desk.get("/api/followups?status=done&from=2026-11-25T00:00")).json() == []
    person = await (await desk.get("/api/followups?needs_person=true")).json()
    assert [(f["id"], f["comment"], f["ticket_status"], f["engineer_name"]) for f in person] == [
        (unhappy_id, "还在滴水", "dispatched", "李工")]  # 返修 under way, assigned
    bad = await desk.get("/api/followups?status=lost&from=yesterday")
    assert bad.status == 422 and set((await bad.json())["fields"]) == {"status", "from"}


@pytest.fixture
def month_of_followups(sessions, settings, people):
    """November: 张工 fixed two plumbing leaks (one resident happy, one not: 返修), 李工 two
    electrical faults (nobody answered the first three times; the other not called yet)."""
    zhang, li = people["张工"], people["李工"]
    happy = completed_ticket(sessions, settings, zhang, MONDAY_10, phone="13800000021")
    unhappy = completed_ticket(sessions, settings, zhang, MONDAY_10, phone="13800000022")
    unanswered = completed_ticket(sessions, settings, li, MONDAY_10, phone="13800000023", category="electrical")
    completed_ticket(sessions, settings, li, MONDAY_10, phone="13800000024", category="electrical")
    call(sessions, settings, happy, SurveyAnswers(resolved=True, rating="基本满意"))
    call(sessions, settings, unhappy, SurveyAnswers(resolved=True, rating="不满意"))
    for attempt in range(settings.followup.max_attempts):
        if attempt:
            with sessions() as session, session.begin():  # the retry is due: make it now
                followup.open_followup(session, unanswered).due_at = TUESDAY_10
        call(sessions, settings, unanswered, "no_answer")


async def test_the_months_follow_up_rates_with_the_counts_behind_them(api, month_of_followups):
    boss = await api("boss")
    report = await (await boss.get("/api/reports/followups?month=2026-11")).json()
    assert {key: report[key] for key in ("month", "回访率", "满意率", "返修率", "完成数", "回访数", "满意数", "返修数")} == {
        "month": "2026-11", "回访率": 0.5, "满意率": 0.5, "返修率": 0.25,
        "完成数": 4, "回访数": 2, "满意数": 1, "返修数": 1}
    rows = lambda key: {e["name"]: (e["完成数"], e["回访数"], e["满意数"], e["返修数"], e["回访率"])  # noqa: E731
                        for e in report[key]}
    assert rows("by_engineer") == {"张工": (2, 2, 1, 1, 1.0), "李工": (2, 0, 0, 0, 0.0)}
    assert rows("by_category") == {"给排水": (2, 2, 1, 1, 1.0), "电路": (2, 0, 0, 0, 0.0)}
    assert (await (await boss.get("/api/reports/followups?month=2026-10")).json())["完成数"] == 0
    assert (await boss.get("/api/reports/followups?month=11/2026")).status == 422
    assert (await (await api("desk")).get("/api/reports/followups")).status == 403


async def test_the_months_figures_as_csv_for_excel(api, month_of_followups):
    response = await (await api("boss")).get("/api/reports/followups?month=2026-11", headers={"Accept": "text/csv"})
    assert response.status == 200 and response.content_type == "text/csv"
    assert 'filename="followups-2026-11.csv"' in response.headers["Content-Disposition"]
    raw = await response.read()
    assert raw.startswith("\ufeff".encode())  # the BOM: Excel then reads UTF-8
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0] == ["范围", "名称", "完成数", "回访数", "回访率", "满意数", "满意率", "返修数", "返修率"]
    assert table[1] == ["合计", "2026-11", "4", "2", "50.0%", "1", "50.0%", "1", "25.0%"]
    assert ["维修人员", "李工", "2", "0", "0.0%", "0", "", "0", "0.0%"] in table
    assert ["类别", "给排水", "2", "2", "100.0%", "1", "50.0%", "1", "50.0%"] in table


async def test_the_dashboard_shows_the_same_satisfaction_as_the_months_report(api, month_of_followups):
    """满意率 has one definition (core.reports): the dashboard over the month gives the month's figure,
    not a second one computed from the tickets' last rating (the unhappy 返修 would vanish there)."""
    boss = await api("boss")
    month = await (await boss.get("/api/reports/followups?month=2026-11")).json()
    dashboard = await (await boss.get("/api/reports/tickets?from=2026-11-01&to=2026-11-30")).json()
    assert (dashboard["satisfaction_rate"], dashboard["satisfied"], dashboard["followed_up"]) == (
        month["满意率"], month["满意数"], month["回访数"]) == (0.5, 1, 2)
    assert (dashboard["followup_rate"], dashboard["visits"]) == (month["回访率"], month["完成数"]) == (0.5, 4)
