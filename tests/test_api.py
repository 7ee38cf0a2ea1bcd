"""The JSON API against the real app and a real database, as a script or a page would call it."""

import pytest
from sqlalchemy import select

from core.store import WebSession

TICKET = {"description": "厨房水管漏水", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101",
          "reporter_name": "王女士", "category": "plumbing", "urgency": "normal", "channel": "desk"}


async def test_login_logout_and_401_without_a_session(api):
    anonymous = api.anonymous
    assert (await anonymous.get("/api/tickets")).status == 401
    assert (await anonymous.post("/api/tickets", json=TICKET)).status == 401
    wrong = await anonymous.post("/api/login", json={"username": "desk", "password": "nope"})
    assert wrong.status == 401 and (await wrong.json())["error"] == "用户名或密码错误"
    assert (await anonymous.post("/api/login", data="x")).status == 422
    desk = await api("desk")
    assert (await (await desk.get("/api/me")).json())["role"] == "frontdesk"
    assert (await desk.post("/api/logout")).status == 200
    assert (await desk.get("/api/tickets")).status == 401


async def test_pages_redirect_to_login_and_check_roles(api):
    response = await api.anonymous.get("/desk", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login?next=/desk"
    engineer = await api("zhang")
    assert (await engineer.get("/manager", allow_redirects=False)).status == 403
    assert (await engineer.get("/", allow_redirects=False)).headers["Location"] == "/engineer"
    assert (await (await api("boss")).get("/manager")).status == 200


async def test_create_ticket_returns_all_fields_and_number(api, clock):
    desk = await api("desk")
    response = await desk.post("/api/tickets", json=TICKET | {"appointment_start": "2026-11-24T14:00"})
    assert response.status == 201
    ticket = await response.json()
    assert ticket["number"] == "20261123001"
    assert ticket["status"] == "received" and ticket["status_name"] == "受理"
    assert ticket["address"] == "3号楼2单元1101"
    assert ticket["appointment_start"] == "2026-11-24T14:00:00+08:00"
    assert ticket["received_by"] == "desk"
    assert {a["to"] for a in ticket["actions"]} == {"dispatched", "price_review", "cancelled"}
    fetched = await (await desk.get(f"/api/tickets/{ticket['id']}")).json()
    assert fetched["events"][0]["kind"] == "created"


@pytest.mark.parametrize(("body", "field"), [
    ({"description": ""}, "description"),
    ({"room": "", "area": ""}, "room"),
    ({"phone": "call me"}, "phone"),
    ({"urgency": "panic"}, "urgency"),
    ({"category": "magic"}, "category"),
    ({"appointment_start": "tomorrow"}, "appointment_start"),
    ({"is_paid": "yes"}, "is_paid"),
    ({"description": 5}, "description"),
])
async def test_bad_new_tickets_get_422_with_the_field(api, body, field):
    response = await (await api("desk")).post("/api/tickets", json=TICKET | body)
    assert response.status == 422
    assert field in (await response.json())["fields"]


async def test_malformed_bodies_are_422_not_500(api):
    desk = await api("desk")
    for data, headers in (("{not json", {"Content-Type": "application/json"}), ("[1,2]", {"Content-Type": "application/json"}),
                          ("description=x", {"Content-Type": "application/x-www-form-urlencoded"})):
        assert (await desk.post("/api/tickets", data=data, headers=headers)).status == 422
    assert (await desk.get("/api/tickets?status=nonsense")).status == 422
    assert (await desk.get("/api/tickets/abc")).status == 404
    assert (await desk.get("/api/tickets/999")).status == 404


async def test_transitions_200_409_and_the_whole_life(api, people, clock):
    desk, zhang = await api("desk"), await api("zhang")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    url = f"/api/tickets/{ticket['id']}/transitions"
    refused = await desk.post(url, json={"to": "completed", "actual_item": "x"})
    assert refused.status == 409
    assert (await refused.json())["error"] == "当前状态「受理」不能转为「完成」"
    assert (await desk.post(url, json={"to": "dispatched"})).status == 409
    assert (await desk.post(url, json={"to": "flying"})).status == 422
    steps = [(desk, {"to": "dispatched", "engineer_id": people["张工"], "note": "尽快"}),
             (zhang, {"to": "accepted"}), (zhang, {"to": "on_site"}),
             (zhang, {"to": "completed", "actual_item": "更换软管", "material_fee": "12.5", "labour_fee": 20,
                      "material_check": "none", "customer_confirmed": True}),
             (desk, {"to": "followed_up", "rating": "基本满意"}), (desk, {"to": "archived"})]
    for client, body in steps:
        clock.advance(minutes=5)
        response = await client.post(url, json=body)
        assert response.status == 200, await response.text()
        assert (await response.json())["status"] == body["to"]
    final = await (await desk.get(f"/api/tickets/{ticket['id']}")).json()
    moves = [e["to_name"] for e in final["events"] if e["kind"] in ("created", "transition")]
    assert moves == ["受理", "派单", "接单", "到场", "完成", "回访", "归档"]
    assert [e["kind"] for e in final["events"]].count("followup") == 1  # completing scheduled the 回访 call
    assert final["material_fee"] == 12.5 and final["engineer_name"] == "张工"
    assert final["actions"] == []


async def test_engineers_see_and_move_only_their_own_tickets(api, people):
    desk, zhang, li = await api("desk"), await api("zhang"), await api("li")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    await desk.post(f"/api/tickets/{ticket['id']}/transitions", json={"to": "dispatched", "engineer_id": people["张工"]})
    assert (await (await zhang.get("/api/tickets")).json())["total"] == 1
    assert (await (await li.get("/api/tickets")).json())["total"] == 0
    assert (await li.get(f"/api/tickets/{ticket['id']}")).status == 404
    assert (await li.post(f"/api/tickets/{ticket['id']}/transitions", json={"to": "accepted"})).status == 404
    assert (await zhang.post("/api/tickets", json=TICKET)).status == 403
    assert (await zhang.patch(f"/api/tickets/{ticket['id']}", json={"room": "1"})).status == 403


async def test_cancel_needs_a_listed_reason(api):
    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    url = f"/api/tickets/{ticket['id']}/transitions"
    assert (await desk.post(url, json={"to": "cancelled", "reason": "随便"})).status == 409
    done = await (await desk.post(url, json={"to": "cancelled", "reason": "unreachable"})).json()
    assert done["status_name"] == "撤单" and done["cancel_reason_name"] == "连续5天以上联系不上业主"


async def test_filters_and_overdue_follow_the_clock(api, clock):
    desk = await api("desk")
    await desk.post("/api/tickets", json=TICKET | {"urgency": "emergency"})
    await desk.post("/api/tickets", json=TICKET | {"building": "7"})
    assert (await (await desk.get("/api/tickets?overdue=true")).json())["total"] == 0
    clock.advance(minutes=4)  # engineering must be told within 3 minutes
    overdue = await (await desk.get("/api/tickets?overdue=true")).json()
    assert overdue["total"] == 2 and all(t["overdue"] for t in overdue["tickets"])
    assert (await (await desk.get("/api/tickets?urgency=emergency")).json())["total"] == 1
    assert (await (await desk.get("/api/tickets?building=7")).json())["total"] == 1
    assert (await (await desk.get("/api/tickets?status=received,dispatched")).json())["total"] == 2


async def test_corrections_and_notes_are_in_the_history(api):
    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    fixed = await desk.patch(f"/api/tickets/{ticket['id']}", json={"room": "1102"})
    assert fixed.status == 200
    noted = await desk.post(f"/api/tickets/{ticket['id']}/notes", json={"note": "业主下午在家"})
    events = (await noted.json())["events"]
    assert events[1]["data"]["changes"]["room"] == {"from": "1101", "to": "1102"}
    assert events[2]["note"] == "业主下午在家"
    assert (await desk.patch(f"/api/tickets/{ticket['id']}", json={"status": "archived"})).status == 422


async def test_admin_only_users_and_manager_only_fees_and_reports(api):
    desk, boss, root = await api("desk"), await api("boss"), await api("root")
    assert (await desk.get("/api/users")).status == 403
    assert (await boss.get("/api/users")).status == 403
    created = await root.post("/api/users", json={"username": "desk2", "password": "longenough", "role": "frontdesk"})
    assert created.status == 201
    assert (await root.post("/api/users", json={"username": "x", "password": "short", "role": "frontdesk"})).status == 422
    assert (await root.post("/api/users", json={"username": "y", "password": "longenough", "role": "king"})).status == 422
    users = await (await root.get("/api/users")).json()
    assert "password_hash" not in users[0] and {u["username"] for u in users} >= {"desk2", "root"}
    fee = {"code": "P01", "name": "更换水龙头", "material_fee": 45, "labour_fee": 20, "category": "plumbing"}
    assert (await desk.post("/api/fees", json=fee)).status == 403
    item = await (await boss.post("/api/fees", json=fee)).json()
    assert (await boss.post("/api/fees", json=fee)).status == 422  # same code twice
    assert (await boss.put(f"/api/fees/{item['id']}", json=fee | {"labour_fee": -1})).status == 422
    assert (await boss.delete(f"/api/fees/{item['id']}")).status == 204
    assert await (await desk.get("/api/fees")).json() == []
    assert (await desk.get("/api/reports/tickets")).status == 403
    report = await (await boss.get("/api/reports/tickets?from=2026-11-01&to=2026-11-30")).json()
    assert report["total"] == 0 and report["on_time_rate"] is None
    assert (await boss.get("/api/reports/tickets?from=November")).status == 422


async def test_deactivated_users_lose_their_session(api, sessions):
    root, desk = await api("root"), await api("desk")
    users = {u["username"]: u["id"] for u in await (await root.get("/api/users")).json()}
    assert (await root.patch(f"/api/users/{users['desk']}", json={"active": False})).status == 200
    assert (await desk.get("/api/tickets")).status == 401
    with sessions() as session:  # only hashes of tokens are stored
        assert all(len(s.token_hash) == 64 for s in session.scalars(select(WebSession)))


async def test_health_needs_no_login_and_tells_staff_more(api):
    response = await api.anonymous.get("/api/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}
    staff = await (await api("desk")).get("/api/health")
    assert staff.status == 200 and (await staff.json())["database"] == "ok"


async def test_resident_lookup_by_phone(api, sessions):
    from core.store import Resident
    with sessions() as session, session.begin():
        session.add(Resident(phone="13800138000", name="王女士", building="3", unit="2", room="1101"))
    desk = await api("desk")
    found = await (await desk.get("/api/residents?phone=138-0013-8000")).json()
    assert found["room"] == "1101"
    assert (await desk.get("/api/residents?phone=1")).status == 404
    assert (await (await api("zhang")).get("/api/residents?phone=13800138000")).status == 403


async def test_managers_keep_the_engineer_list(api):
    boss, desk = await api("boss"), await api("desk")
    assert (await desk.post("/api/engineers", json={"name": "王工", "phone": "13900000000"})).status == 403
    added = await boss.post("/api/engineers", json={"name": "王工", "phone": "sip:wang@127.0.0.1", "skills": ["电梯"]})
    assert added.status == 201 and (await added.json())["sip_uri"] == "sip:wang@127.0.0.1"
    assert (await boss.post("/api/engineers", json={"name": "王工", "phone": "not a phone"})).status == 422
    assert (await boss.post("/api/engineers", json={"name": "王工", "phone": "13900000000", "active": False})).status == 201
    names = {e["name"]: e for e in await (await desk.get("/api/engineers")).json()}
    assert names["王工"]["active"] is False and names["王工"]["phone"] == "13900000000"


async def test_the_stream_announces_new_and_changed_tickets(api):
    import asyncio
    import json as jsonlib

    watcher, desk = await api("boss"), await api("desk")
    stream = await watcher.get("/api/stream")
    assert stream.headers["Content-Type"].startswith("text/event-stream")

    async def next_event():
        while True:
            line = (await stream.content.readline()).decode()
            if line.startswith("data:"):
                return jsonlib.loads(line[5:])

    await asyncio.sleep(0.2)  # let the feed take its starting cursor
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    assert ticket["id"] in (await asyncio.wait_for(next_event(), 5))["ids"]
    await desk.post(f"/api/tickets/{ticket['id']}/notes", json={"note": "又来电催"})
    assert (await asyncio.wait_for(next_event(), 5))["ids"] == [ticket["id"]]
    stream.close()


async def test_call_records_and_recordings_are_for_staff_only(api, sessions, settings):
    from core.calls import CallLog

    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    log = CallLog(sessions)
    call_id = log.open(sip_call_id="abc@127.0.0.1", direction="inbound", line="hotline",
                       caller="13800138000", called="12345")
    recording = settings.recordings_dir / "2026" / "call.wav"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"RIFF....WAVE")
    log.update(call_id, ticket_id=ticket["id"], recording_path="2026/call.wav",
               transcript={"utterances": [{"text": "水管漏水"}]})
    log.close(call_id, "completed")
    escaped = log.open(sip_call_id="x", direction="inbound", line="hotline", caller="1", called="2")
    log.update(escaped, recording_path="../../../etc/passwd")

    assert (await api.anonymous.get("/api/calls")).status == 401
    assert (await api.anonymous.get(f"/api/calls/{call_id}/recording")).status == 401
    assert (await (await api("zhang")).get("/api/calls")).status == 403
    calls = (await (await desk.get("/api/calls")).json())["calls"]
    listed = {c["id"]: c for c in calls}[call_id]
    assert listed["outcome_name"] == "完成" and listed["ticket_id"] == ticket["id"]
    assert listed["recording_url"] == f"/api/calls/{call_id}/recording"
    response = await desk.get(listed["recording_url"])
    assert response.status == 200 and await response.read() == b"RIFF....WAVE"
    assert (await desk.get(f"/api/calls/{escaped}/recording")).status == 404
    shown = await (await desk.get(f"/api/tickets/{ticket['id']}")).json()
    assert shown["calls"][0]["transcript"]["utterances"][0]["text"] == "水管漏水"


# --- the duty roster ---------------------------------------------------------------------------------

ROSTER = [{"name": "白班", "weekdays": "1-5", "start": "08:00", "end": "20:00", "skill": "", "chain": "张工>李工"},
          {"name": "夜班", "weekdays": "1-7", "start": "20:00", "end": "08:00", "skill": "", "chain": "李工"}]


@pytest.fixture
def roster(sessions, people):
    from core.roster_store import replace_shifts

    with sessions() as session, session.begin():
        replace_shifts(session, ROSTER)
    return people


async def test_on_call_needs_a_login_and_answers_in_the_contract_shape(api, roster):
    assert (await api.anonymous.get("/api/oncall")).status == 401
    engineer = await api("zhang")  # every member of staff may ask who is on duty

    async def on_call(query=""):
        response = await engineer.get(f"/api/oncall{query}")
        assert response.status == 200
        return await response.json()

    assert await on_call() == {"shift": "白班", "chain": [  # the clock says Monday 10:00
        {"engineer_id": roster["张工"], "name": "张工", "contact": "13800000001"},
        {"engineer_id": roster["李工"], "name": "李工", "contact": "13800000002"}]}
    saturday_night = await on_call("?at=2026-11-28T03:00")  # Friday's night shift, in the site's time
    assert saturday_night == {"shift": "夜班", "chain": [
        {"engineer_id": roster["李工"], "name": "李工", "contact": "13800000002"}]}
    assert await on_call("?at=2026-11-28T12:00:00%2B08:00&skill=水电") == {"shift": None, "chain": []}
    assert (await on_call("?skill=电梯"))["shift"] == "白班"  # no lift shift: the general one
    response = await engineer.get("/api/oncall?at=tonight")
    assert response.status == 422 and "at" in (await response.json())["fields"]


async def test_the_roster_page_overrides_and_gaps(api, roster):
    assert (await api.anonymous.get("/api/roster")).status == 401
    assert (await (await api("zhang")).get("/api/roster")).status == 403
    desk, boss = await api("desk"), await api("boss")
    page = await (await desk.get("/api/roster")).json()
    assert [(s["name"], s["weekdays_text"], s["start"], s["end"], s["crosses_midnight"]) for s in page["shifts"]] == [
        ("白班", "周一至周五", "08:00", "20:00", False), ("夜班", "每天", "20:00", "08:00", True)]
    assert [(link["name"], link["ring_seconds"]) for link in page["shifts"][0]["chain"]] == [("张工", 25), ("李工", 25)]
    weekend_days = [{"skill": "", "from": f"2026-11-{day}T08:00:00+08:00", "to": f"2026-11-{day}T20:00:00+08:00",
                     "shift": None} for day in (28, 29)]
    assert page["gaps"] == weekend_days and page["overrides"] == []

    swap = {"from": "2026-11-27T20:00", "to": "2026-11-28T08:00", "replace_id": roster["李工"],
            "with_id": roster["张工"], "note": "李工调休"}
    assert (await desk.post("/api/roster/overrides", json=swap)).status == 403
    response = await boss.post("/api/roster/overrides", json=swap)
    assert response.status == 201
    created = await response.json()
    assert (created["replaced_name"], created["with_name"], created["from"], created["created_by"]) == (
        "李工", "张工", "2026-11-27T20:00:00+08:00", "boss")
    friday_night = await (await desk.get("/api/oncall?at=2026-11-27T23:00")).json()
    assert [link["name"] for link in friday_night["chain"]] == ["张工"]

    leave = {"from": "2026-11-24T20:00", "to": "2026-11-25T08:00", "replace_id": roster["李工"], "with_id": None}
    assert (await boss.post("/api/roster/overrides", json=leave)).status == 201
    page = await (await desk.get("/api/roster")).json()
    assert [o["note"] for o in page["overrides"]] == ["", "李工调休"]  # soonest first
    assert page["gaps"][0] == {"skill": "", "from": "2026-11-24T20:00:00+08:00",
                               "to": "2026-11-25T08:00:00+08:00", "shift": "夜班"}

    for body, field in ((swap | {"to": "2026-11-27T19:00"}, "_"), (swap | {"replace_id": None}, "replace_id"),
                        (swap | {"from": "soon"}, "from"), (swap | {"with_id": 999}, "with_id")):
        response = await boss.post("/api/roster/overrides", json=body)
        assert response.status == 422 and field in (await response.json())["fields"], body
    assert (await boss.delete(f"/api/roster/overrides/{created['id']}")).status == 204
    assert (await boss.delete(f"/api/roster/overrides/{created['id']}")).status == 404
    assert len((await (await desk.get("/api/roster")).json())["overrides"]) == 1


async def test_the_17_00_list_and_the_copy_kept_at_the_cut_off(api, sessions, settings):
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from core.daily_list import keep_daily_list

    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    url = "/api/reports/daily?day=2026-11-23"
    listed = await (await desk.get(url)).json()
    assert [t["number"] for t in listed["tickets"]] == [ticket["number"]] and listed["kept"] is None
    with sessions() as session, session.begin():
        keep_daily_list(session, date(2026, 11, 23), datetime(2026, 11, 23, 17, 0, 2, tzinfo=ZoneInfo("Asia/Shanghai")),
                        settings)
    kept = (await (await desk.get(url)).json())["kept"]
    assert kept == {"made_at": "2026-11-23T17:00:02+08:00", "numbers": [ticket["number"]]}
