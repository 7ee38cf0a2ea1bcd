"""/api/tickets/{id}/callout: the front desk's 紧急派单, as the ticket page calls it, on a real database."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from callcenter.web.app import create_app
from callcenter.web.context import WAKE_CALLOUTS
from core import callouts, roster_store
from core.accounts import add_user
from core.dispatch import Outcome
from core.settings import CalloutSettings
from core.store import Engineer
from tests.conftest import console_client

PASSWORD = "correct horse"
DAY_SHIFT = [{"name": "日班", "weekdays": "1-7", "start": "08:00", "end": "20:00", "skill": "", "chain": "张工>李工"}]
EMERGENCY = {"description": "地下室水管爆了", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101",
             "category": "plumbing", "urgency": "emergency", "channel": "desk"}


@pytest.fixture
def site(sessions, settings):
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")])
        session.flush()
        roster_store.replace_shifts(session, DAY_SHIFT)
        for name, role, engineer in (("desk", "frontdesk", ""), ("zhang", "engineer", "张工"), ("boss", "manager", "")):
            add_user(session, name, PASSWORD, role, now, engineer_name=engineer)
    with sessions() as session:
        people = {e.name: e.id for e in session.scalars(select(Engineer))}
    return replace(settings, callout=CalloutSettings(line="outbound", ring_seconds=20, rounds=1)), people


@pytest.fixture
async def console(site, sessions, clock, aiohttp_client):
    settings, people = site
    app = create_app(settings, sessions, clock)
    wakes = []
    app[WAKE_CALLOUTS] = lambda: wakes.append(clock())
    clients = {}

    async def as_user(name):
        if name not in clients:
            client = await console_client(aiohttp_client, app)
            assert (await client.post("/api/login", json={"username": name, "password": PASSWORD})).status == 200
            clients[name] = client
        return clients[name]

    as_user.wakes, as_user.people, as_user.settings = wakes, people, settings
    return as_user


async def new_ticket(client) -> int:
    response = await client.post("/api/tickets", json=EMERGENCY)
    assert response.status == 201
    return (await response.json())["id"]


async def test_the_desk_starts_a_call_out_down_the_chain_on_duty_and_wakes_the_dialler(console):
    desk = await console("desk")
    ticket_id = await new_ticket(desk)
    response = await desk.post(f"/api/tickets/{ticket_id}/callout")
    assert response.status == 202
    started = await response.json()
    assert (started["state"], started["state_name"], started["engineer_id"]) == ("ringing", "呼叫中", None)
    assert [link["name"] for link in started["chain"]] == ["张工", "李工"]
    assert started["attempts"] == [] and started["started_by"] == "desk"
    assert started["line_configured"] is False  # no [[lines]] named "outbound": the page warns
    assert len(console.wakes) == 1

    again = await desk.post(f"/api/tickets/{ticket_id}/callout")
    assert again.status == 409 and "正在进行" in (await again.json())["error"]


async def test_the_desk_watches_every_ring_as_the_dialler_records_it(console, sessions, clock):
    desk, settings, people = await console("desk"), console.settings, console.people
    ticket_id = await new_ticket(desk)
    callout_id = (await (await desk.post(f"/api/tickets/{ticket_id}/callout")).json())["id"]
    with sessions() as session, session.begin():  # what the dialler does for the first two steps
        first = callouts.next_call(session, callout_id, clock(), settings)
        callouts.record_outcome(session, first.attempt_id, Outcome.NO_ANSWER, 20.0, clock(), settings)
        second = callouts.next_call(session, callout_id, clock(), settings)

    shown = await (await desk.get(f"/api/tickets/{ticket_id}/callout")).json()
    assert shown["state"] == "ringing"
    assert [(a["engineer_id"], a["contact"], a["round"], a["outcome"], a["rang_seconds"]) for a in shown["attempts"]] == [
        (people["张工"], "13800000001", 1, "no_answer", 20.0), (people["李工"], "13800000002", 1, None, None)]
    assert shown["attempts"][0]["started_at"] == "2026-11-23T10:00:00+08:00"
    assert [a["outcome_name"] for a in shown["attempts"]] == ["无人接听", "振铃中"]

    with sessions() as session, session.begin():
        callouts.record_outcome(session, second.attempt_id, Outcome.ACCEPTED, 6.0, clock(), settings)
    shown = await (await desk.get(f"/api/tickets/{ticket_id}/callout")).json()
    assert (shown["state"], shown["engineer_id"], shown["engineer_name"]) == ("accepted", people["李工"], "李工")
    ticket = await (await desk.get(f"/api/tickets/{ticket_id}")).json()
    assert (ticket["status"], ticket["engineer_name"]) == ("accepted", "李工")


async def test_the_desk_stops_a_call_out_and_may_start_another(console):
    desk = await console("desk")
    ticket_id = await new_ticket(desk)
    await desk.post(f"/api/tickets/{ticket_id}/callout")
    response = await desk.delete(f"/api/tickets/{ticket_id}/callout?reason=已电话联系到张工")
    assert response.status == 200
    stopped = await response.json()
    assert (stopped["state"], stopped["stopped_by"], stopped["note"]) == ("stopped", "desk", "已电话联系到张工")
    assert len(console.wakes) == 2  # the dialler hangs up on whoever rings now
    assert (await desk.delete(f"/api/tickets/{ticket_id}/callout")).status == 409
    assert (await desk.post(f"/api/tickets/{ticket_id}/callout")).status == 202
    assert (await (await desk.get(f"/api/tickets/{ticket_id}/callout")).json())["state"] == "ringing"
    history = [e["note"] for e in (await (await desk.get(f"/api/tickets/{ticket_id}")).json())["events"]]
    assert history.count("停止紧急呼叫") == 1 and sum(n.startswith("发起紧急呼叫") for n in history) == 2


async def test_only_staff_at_the_desk_reach_it_and_unknown_tickets_are_404(console):
    desk, engineer = await console("desk"), await console("zhang")
    ticket_id = await new_ticket(desk)
    assert (await desk.get(f"/api/tickets/{ticket_id}/callout")).status == 404  # none yet
    assert (await engineer.post(f"/api/tickets/{ticket_id}/callout")).status == 403
    assert (await engineer.get(f"/api/tickets/{ticket_id}/callout")).status == 403
    assert (await desk.post("/api/tickets/99999/callout")).status == 404
    assert (await desk.get("/api/tickets/abc/callout")).status == 404
    manager = await console("boss")
    assert (await manager.post(f"/api/tickets/{ticket_id}/callout")).status == 202


async def test_a_ticket_already_taken_needs_no_call_out(console):
    desk, people = await console("desk"), console.people
    ticket_id = await new_ticket(desk)
    moved = await desk.post(f"/api/tickets/{ticket_id}/transitions", json={"to": "dispatched", "engineer_id": people["张工"]})
    assert moved.status == 200
    engineer = await console("zhang")
    assert (await engineer.post(f"/api/tickets/{ticket_id}/transitions", json={"to": "accepted"})).status == 200
    response = await desk.post(f"/api/tickets/{ticket_id}/callout")
    assert response.status == 409 and "无需紧急呼叫" in (await response.json())["error"]
