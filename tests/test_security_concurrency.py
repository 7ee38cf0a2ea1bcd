"""No lost updates (issue 14, item 6): two sessions on the same ticket, interleaved, on SQLite and on
PostgreSQL. Whoever writes second, having read before the first one's commit, gets a Conflict (the
API: 409 with what changed) or, on the phone side, finds out and changes nothing it should not.

Each test reads in both sessions first, then lets one write and commit, then the other try: the
interleaving that let a cancel and an acceptance both succeed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import callouts, desk, followup, moves, roster_store
from core.base import Actor
from core.claims import Conflict
from core.desk import HOTLINE, NewTicket
from core.dispatch import Outcome
from core.intake import DraftFacts, PhoneDrafts
from core.settings import CalloutSettings
from core.store import CallOut, CallOutAttempt, Engineer, FollowUp, Ticket, TicketEvent
from core.tickets import Channel, Role, Status, TransitionRequest, Urgency
from tests.support.tickets import completed_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI)
CLERK = Actor("desk1", Role.FRONTDESK)


@pytest.fixture
def site(sessions, settings):
    """Two engineers, one of them (张工) first on a night shift every night."""
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")])
        session.flush()
        roster_store.replace_shifts(session, [{"name": "夜班", "weekdays": "1-7", "start": "20:00", "end": "08:00",
                                               "skill": "", "chain": "张工>李工"}])
    with sessions() as session:
        people = {e.name: e.id for e in session.scalars(select(Engineer))}
    return replace(settings, callout=CalloutSettings(rounds=1)), people


def dispatched_ticket(sessions, settings, engineer_id) -> int:
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, NewTicket(description="厨房水管爆了", building="3", unit="2", room="1101",
                                                       category="plumbing", urgency=Urgency.EMERGENCY), CLERK, NOW,
                                    settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineer_id), CLERK, NOW,
                        settings)
        return ticket.id


def state(sessions, ticket_id):
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        return ticket.status, ticket.version, [(e.kind, e.actor, e.to_status) for e in ticket.events]


def test_a_cancel_and_an_acceptance_read_together_only_one_wins(sessions, site):
    settings, people = site
    ticket_id = dispatched_ticket(sessions, settings, people["张工"])
    zhang = Actor("zhang", Role.ENGINEER, people["张工"])
    with sessions() as desk_side, sessions() as engineer_side:
        desk_side.begin(), engineer_side.begin()
        for_desk, for_engineer = desk_side.get(Ticket, ticket_id), engineer_side.get(Ticket, ticket_id)
        assert for_desk.status == for_engineer.status == Status.DISPATCHED  # both read it waiting
        moves.move_ticket(desk_side, for_desk, TransitionRequest(Status.CANCELLED, reason="duplicate"), CLERK, NOW,
                        settings)
        desk_side.commit()
        with pytest.raises(Conflict) as refused:
            moves.move_ticket(engineer_side, for_engineer, TransitionRequest(Status.ACCEPTED), zhang,
                            NOW + timedelta(seconds=1), settings)
        engineer_side.rollback()
    assert refused.value.status == Status.CANCELLED and refused.value.last_change["actor"] == "desk1"
    status, _, events = state(sessions, ticket_id)
    assert status == Status.CANCELLED
    assert [e for e in events if e[0] == "transition"][-1] == ("transition", "desk1", "cancelled")
    assert ("transition", "zhang", "accepted") not in events


def test_the_other_order_the_desk_loses_to_the_engineer(sessions, site):
    settings, people = site
    ticket_id = dispatched_ticket(sessions, settings, people["张工"])
    zhang = Actor("zhang", Role.ENGINEER, people["张工"])
    with sessions() as desk_side, sessions() as engineer_side:
        desk_side.begin(), engineer_side.begin()
        for_desk, for_engineer = desk_side.get(Ticket, ticket_id), engineer_side.get(Ticket, ticket_id)
        moves.move_ticket(engineer_side, for_engineer, TransitionRequest(Status.ACCEPTED), zhang, NOW, settings)
        engineer_side.commit()
        # 改派 from 接单 is allowed too, so only the version tells the desk it moved on meanwhile.
        with pytest.raises(Conflict):
            moves.move_ticket(desk_side, for_desk, TransitionRequest(
                Status.DISPATCHED, engineer_id=people["李工"], reason="就近"), CLERK, NOW, settings)
    status, _, events = state(sessions, ticket_id)
    assert status == Status.ACCEPTED and events[-1] == ("transition", "zhang", "accepted")


def ringing(sessions, settings, people):
    """A phone draft whose call-out is ringing 张工 now: (ticket id, call-out id, attempt id)."""
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, NewTicket(description="厨房水管爆了", building="3", unit="2", room="1101",
                                                       category="plumbing", urgency=Urgency.EMERGENCY,
                                                       channel=Channel.PHONE), HOTLINE, NOW, settings)
        callout = callouts.start_callout(session, ticket.id, CLERK, NOW, settings)
        session.flush()
        ticket_id, callout_id = ticket.id, callout.id
    with sessions() as session, session.begin():
        call = callouts.next_call(session, callout_id, NOW, settings)
    assert call.decision.step.engineer_id == people["张工"]
    return ticket_id, callout_id, call.attempt_id


def test_the_desk_stops_the_call_out_while_the_engineer_presses_1(sessions, site):
    settings, people = site
    ticket_id, callout_id, attempt_id = ringing(sessions, settings, people)
    with sessions() as desk_side, sessions() as phone_side:
        desk_side.begin(), phone_side.begin()
        # The phone side has read the call-out (ringing), the attempt and the ticket before the stop.
        assert phone_side.get(CallOut, callout_id).state == "ringing"
        phone_side.get(CallOutAttempt, attempt_id), phone_side.get(Ticket, ticket_id)
        callouts.stop_callout(desk_side, callout_id, CLERK, NOW + timedelta(seconds=5), "已电话联系到维修人员")
        desk_side.commit()
        callout = callouts.record_outcome(phone_side, attempt_id, Outcome.ACCEPTED, 6.0, NOW + timedelta(seconds=6),
                                          settings)
        assert (callout.state, callout.engineer_id) == ("stopped", None)  # the engineer is not thanked
        phone_side.commit()
    with sessions() as session:
        callout, ticket = session.get(CallOut, callout_id), session.get(Ticket, ticket_id)
        assert (callout.state, callout.stopped_by) == ("stopped", "desk1")
        assert (ticket.status, ticket.engineer_id) == (Status.DRAFT, None)
        assert any("此次接单未生效" in e.note for e in ticket.events)


def test_the_engineer_presses_1_while_the_desk_stops_the_call_out(sessions, site):
    settings, people = site
    ticket_id, callout_id, attempt_id = ringing(sessions, settings, people)
    with sessions() as desk_side, sessions() as phone_side:
        desk_side.begin(), phone_side.begin()
        assert desk_side.get(CallOut, callout_id).state == "ringing"  # the desk read it ringing
        callouts.record_outcome(phone_side, attempt_id, Outcome.ACCEPTED, 6.0, NOW + timedelta(seconds=6), settings)
        phone_side.commit()
        with pytest.raises(callouts.CallOutError, match="已结束（已接单）"):
            callouts.stop_callout(desk_side, callout_id, CLERK, NOW + timedelta(seconds=7), "")
    with sessions() as session:
        callout, ticket = session.get(CallOut, callout_id), session.get(Ticket, ticket_id)
        assert (callout.state, callout.engineer_id) == ("accepted", people["张工"])
        assert (ticket.status, ticket.engineer_id) == (Status.ACCEPTED, people["张工"])


def test_the_desk_cancels_the_ticket_while_the_engineer_presses_1(sessions, site):
    settings, people = site
    ticket_id, callout_id, attempt_id = ringing(sessions, settings, people)
    with sessions() as desk_side, sessions() as phone_side:
        desk_side.begin(), phone_side.begin()
        phone_side.get(CallOut, callout_id), phone_side.get(CallOutAttempt, attempt_id)
        assert phone_side.get(Ticket, ticket_id).status == Status.DRAFT
        ticket = desk_side.get(Ticket, ticket_id)
        moves.move_ticket(desk_side, ticket, TransitionRequest(Status.CANCELLED, reason="duplicate"), CLERK, NOW, settings)
        desk_side.commit()
        callout = callouts.record_outcome(phone_side, attempt_id, Outcome.ACCEPTED, 6.0, NOW + timedelta(seconds=6),
                                          settings)
        phone_side.commit()
    assert (callout.state, callout.engineer_id) == ("stopped", None)
    status, _, events = state(sessions, ticket_id)
    assert status == Status.CANCELLED
    assert not [e for e in events if e[0] == "transition" and e[1] == "callout"]


def test_a_follow_up_result_after_the_desk_reopened_the_ticket_changes_nothing_but_a_note(sessions, settings, engineer):
    completed = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
    ticket_id = completed_ticket(sessions, settings, engineer, completed)
    call_at = completed + timedelta(days=1)
    with sessions() as session, session.begin():
        followup_id = followup.open_followup(session, ticket_id).id
        assert followup.claim(session, followup_id, call_at) is not None
    with sessions() as desk_side, sessions() as call_side:
        desk_side.begin(), call_side.begin()
        call_side.get(FollowUp, followup_id), call_side.get(Ticket, ticket_id)  # read: 完成, calling
        ticket = desk_side.get(Ticket, ticket_id)
        moves.move_ticket(desk_side, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineer, reason="还在漏"),
                        CLERK, call_at, settings)
        desk_side.commit()
        followup.record_answers(call_side, followup_id, followup.SurveyAnswers(resolved=True, rating="满意"), None,
                                call_at + timedelta(minutes=2), settings)
        call_side.commit()
    status, _, events = state(sessions, ticket_id)
    assert status == Status.DISPATCHED  # the 返修 stands; no 回访 on top of it
    assert ("transition", "followup", "followed_up") not in events
    with sessions() as session:
        notes = [e.note for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id))]
    assert any("状态未变" in note for note in notes)


def test_a_call_never_overwrites_what_the_desk_set_on_its_draft(sessions, settings):
    drafts = PhoneDrafts(sessions, settings)
    facts = DraftFacts(description="卫生间漏水", building="3", unit="2", room="1101", phone="13800138000")
    ticket_id, _ = drafts.save(None, facts, NOW, "描述问题")
    with sessions() as session, session.begin():  # the desk corrects the room while the caller still talks
        desk.edit_ticket(session, desk.get_ticket(session, ticket_id), {"room": "1102"}, CLERK, NOW, settings)
    facts.room, facts.category = "1103", "plumbing"  # the call then hears something else
    drafts.save(ticket_id, facts, NOW + timedelta(seconds=5), "语音地址")
    facts.description += "；水流到楼下了"
    drafts.save(ticket_id, facts, NOW + timedelta(seconds=9), "描述问题")
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        assert (ticket.room, ticket.category, ticket.description) == ("1102", "other", "卫生间漏水")
        calls = [e.data for e in ticket.events if e.kind == "call"]
    assert calls[0]["suggestions"] == {"room": {"ticket": "1102", "call": "1103"},
                                       "category": {"ticket": "other", "call": "plumbing"}}
    assert calls[1]["suggestions"] == {"description": {"ticket": "卫生间漏水", "call": "卫生间漏水；水流到楼下了"}}


def test_a_draft_save_in_the_very_moment_of_the_desks_correction_waits_and_then_only_suggests(sessions, settings):
    """Interleaved for real: the desk has claimed the draft (not yet committed) when the call saves;
    the call's save waits for the desk's commit, finds the ticket changed, and adds suggestions."""
    drafts = PhoneDrafts(sessions, settings)
    facts = DraftFacts(description="卫生间漏水", building="3", unit="2", room="1101", phone="13800138000")
    ticket_id, _ = drafts.save(None, facts, NOW, "描述问题")
    desk_side = sessions()
    desk_side.begin()
    desk.edit_ticket(desk_side, desk_side.get(Ticket, ticket_id), {"room": "1102"}, CLERK, NOW, settings)
    desk_side.flush()  # the correction is written (and the row held), not committed
    facts.room = "1103"
    saving = threading.Thread(target=drafts.save, args=(ticket_id, facts, NOW + timedelta(seconds=1), "语音地址"))
    saving.start()
    time.sleep(0.5)
    assert saving.is_alive()  # waiting for the desk's transaction
    desk_side.commit()
    desk_side.close()
    saving.join(10)
    assert not saving.is_alive()
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket.room == "1102"
        assert [e.data.get("suggestions") for e in ticket.events if e.kind == "call"] == [
            {"room": {"ticket": "1102", "call": "1103"}}]


async def test_a_stale_page_gets_409_with_what_changed(api, people):
    desk_client, zhang = await api("desk"), await api("zhang")
    created = await (await desk_client.post("/api/tickets", json={
        "description": "厨房水管漏水", "building": "3", "unit": "2", "room": "1101"})).json()
    url = f"/api/tickets/{created['id']}"
    dispatched = await (await desk_client.post(f"{url}/transitions", json={
        "to": "dispatched", "engineer_id": people["张工"], "version": created["version"]})).json()
    assert dispatched["version"] > created["version"]
    # 张工 accepts; the desk's page still shows the ticket as dispatched, at that version.
    assert (await zhang.post(f"{url}/transitions", json={"to": "accepted", "version": dispatched["version"]})).status == 200
    stale = await desk_client.post(f"{url}/transitions", json={
        "to": "dispatched", "engineer_id": people["李工"], "reason": "就近", "version": dispatched["version"]})
    assert stale.status == 409
    body = await stale.json()
    assert body["current"]["status"] == "accepted" and body["current"]["status_name"] == "接单"
    assert body["current"]["last_change"]["actor"] == "zhang" and "接单" in body["error"]
    edit = await desk_client.patch(url, json={"room": "1102", "version": dispatched["version"]})
    assert edit.status == 409
    fresh = await (await desk_client.get(url)).json()
    assert (fresh["status"], fresh["room"], fresh["engineer_name"]) == ("accepted", "1101", "张工")
    assert (await desk_client.patch(url, json={"room": "1102", "version": fresh["version"]})).status == 200
    assert (await desk_client.patch(url, json={"room": "1103", "version": "x"})).status == 422
