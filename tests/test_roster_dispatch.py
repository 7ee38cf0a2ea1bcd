"""The emergency call-out: the pure decisions of core.dispatch, and call-outs stored on tickets."""

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import callouts, desk, moves, roster_store
from core.base import Actor
from core.callouts import CallOutError
from core.desk import NewTicket
from core.dispatch import (
    ANSWERED_CALL_SECONDS,
    LAST_RESORT_ROUND,
    Action,
    Attempt,
    Outcome,
    decide,
    needed_skill,
)
from core.roster import ChainLink
from core.settings import CalloutSettings, SettingsError, load_settings
from core.store import CallOut, CallOutAttempt, Engineer
from core.tickets import Channel, Role, Status, TransitionRequest, Urgency

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 28, 3, 0, tzinfo=SHANGHAI)  # Saturday, the small hours
CHAIN = [ChainLink(1, "张工", "13800000001", 25), ChainLink(2, "李工", "13800000002", 30),
         ChainLink(3, "王主管", "sip:wang@pbx.local", 25), ChainLink(4, "赵经理", "13800000004", 40)]
POLICY = CalloutSettings(rounds=2, last_resort="sip:control@pbx.local", alert_contacts=("13900000000",))


def run_out(chain, policy, outcomes=lambda step: Outcome.NO_ANSWER, restart_each_time=False):
    """Play a call-out to its end: every ring gets ``outcomes(step)``; returns what was rung and the end.

    With ``restart_each_time`` every decision is made from a fresh copy of the stored attempts,
    as a restarted process would (the attempt is stored before dialling, without an outcome).
    """
    stored: list[Attempt] = []
    now, rung = START, []
    while True:
        attempts = [replace(a) for a in stored] if restart_each_time else stored
        decision = decide(chain, policy, attempts, now)
        if decision.action not in (Action.RING, Action.LAST_RESORT):
            return rung, decision
        step = decision.step
        stored.append(Attempt(step.round, step.position, step.contact, now, None, step.engineer_id))
        rung.append((step.round, step.position, step.name or step.contact, step.ring_seconds))
        if restart_each_time:
            assert decide(chain, policy, stored, now).action == Action.WAIT  # crashed while ringing: not again
        now += timedelta(seconds=step.ring_seconds)
        stored[-1] = replace(stored[-1], outcome=outcomes(step), rang_seconds=step.ring_seconds)


def test_the_chain_in_order_for_every_round_then_the_last_resort_then_exhausted():
    rung, end = run_out(CHAIN, POLICY)
    people = [(1, 0, "张工", 25), (1, 1, "李工", 30), (1, 2, "王主管", 25), (1, 3, "赵经理", 40)]
    assert rung == people + [(2, p, name, ring) for _, p, name, ring in people] + [
        (LAST_RESORT_ROUND, 0, "sip:control@pbx.local", 25)]
    assert end.action == Action.EXHAUSTED and end.alert_contacts == ("13900000000",)


@pytest.mark.parametrize("rounds", [1, 3])
def test_the_number_of_rounds_is_the_setting(rounds):
    rung, end = run_out(CHAIN, replace(POLICY, rounds=rounds, last_resort=""))
    assert len(rung) == 4 * rounds and rung[-1][:2] == (rounds, 3)
    assert end.action == Action.EXHAUSTED


def test_nobody_on_duty_goes_straight_to_the_last_resort_or_gives_up():
    assert run_out([], POLICY)[0] == [(LAST_RESORT_ROUND, 0, "sip:control@pbx.local", 25)]
    rung, end = run_out([], replace(POLICY, last_resort=""))
    assert rung == [] and end.action == Action.EXHAUSTED


@pytest.mark.parametrize("outcome", [Outcome.DECLINED, Outcome.BUSY, Outcome.FAILED, Outcome.NO_ANSWER])
def test_every_refusal_moves_on_to_the_next(outcome):
    tried = [Attempt(1, 0, "13800000001", START, outcome, 1, 10)]
    decision = decide(CHAIN, POLICY, tried, START + timedelta(seconds=10))
    assert (decision.action, decision.step.name, decision.step.key) == (Action.RING, "李工", (1, 1))


def test_whoever_declined_is_not_asked_again_in_a_later_round():
    rung, _ = run_out(CHAIN, POLICY, lambda step: Outcome.DECLINED if step.name == "李工" else Outcome.BUSY)
    assert [name for r, _, name, _ in rung if r == 2] == ["张工", "王主管", "赵经理"]


def test_an_acceptance_stops_the_chain():
    rung, end = run_out(CHAIN, POLICY, lambda step: Outcome.ACCEPTED if step.key == (2, 1) else Outcome.NO_ANSWER)
    assert rung[-1][:3] == (2, 1, "李工") and len(rung) == 6
    assert end.action == Action.ACCEPTED and end.step.engineer_id == 2


def test_deciding_again_from_stored_attempts_never_rings_a_step_twice():
    rung, end = run_out(CHAIN, POLICY, restart_each_time=True)
    assert len(rung) == len({(r, p) for r, p, *_ in rung}) == 9
    assert rung == run_out(CHAIN, POLICY)[0] and end.action == Action.EXHAUSTED


def test_a_ring_without_an_outcome_is_waited_for_then_counted_as_failed():
    ringing = [Attempt(1, 0, "13800000001", START, None, 1)]
    cut_off = START + timedelta(seconds=25 + ANSWERED_CALL_SECONDS)
    waiting = decide(CHAIN, POLICY, ringing, START + timedelta(seconds=60))
    assert waiting.action == Action.WAIT and waiting.wait_until == cut_off
    moved_on = decide(CHAIN, POLICY, ringing, cut_off)
    assert (moved_on.action, moved_on.step.key) == (Action.RING, (1, 1))


@pytest.mark.parametrize(("category", "skill"), [
    ("plumbing", "水电"), ("electrical", "水电"), ("elevator", "电梯"), ("gas", "燃气"), ("other", ""),
])
def test_the_skill_an_emergency_needs(category, skill):
    assert needed_skill(category, CalloutSettings()) == skill


def test_the_skill_mapping_is_a_setting():
    policy = CalloutSettings(category_skills=("public_facility=综合", "gas=燃气"))
    assert needed_skill("public_facility", policy) == "综合" and needed_skill("plumbing", policy) == ""


def test_call_out_settings_from_the_file_and_the_environment(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[callout]\nline = "out"\nrounds = 3\nlast_resort = "sip:control@pbx.local"\n'
                      'alert_contacts = ["13900000000"]\n', encoding="utf-8")
    callout = load_settings(config, environ={"CALLCENTER_CALLOUT_RING_SECONDS": "30",
                                             "CALLCENTER_CALLOUT_INCIDENT_WINDOW_MINUTES": "90"}).callout
    assert (callout.line, callout.rounds, callout.ring_seconds, callout.incident_window_minutes) == ("out", 3, 30, 90)
    assert callout.last_resort == "sip:control@pbx.local" and callout.alert_contacts == ("13900000000",)
    contacts = load_settings(environ={"CALLCENTER_CALLOUT_ALERT_CONTACTS": "13900000000, sip:boss@pbx"}).callout
    assert contacts.alert_contacts == ("13900000000", "sip:boss@pbx")
    assert CalloutSettings() == load_settings(environ={}).callout  # the documented defaults: 25 s, 2 rounds
    assert (CalloutSettings().ring_seconds, CalloutSettings().rounds, CalloutSettings().line) == (25, 2, "")
    for environ in ({"CALLCENTER_CALLOUT_ROUNDS": "0"}, {"CALLCENTER_CALLOUT_CATEGORY_SKILLS": "gas"}):
        with pytest.raises(SettingsError, match="callout"):
            load_settings(environ=environ)


# --- call-outs stored on tickets -------------------------------------------------------------------

CLERK = Actor("desk1", Role.FRONTDESK)
SHIFTS = [{"name": "夜班", "weekdays": "1-7", "start": "20:00", "end": "08:00", "skill": "",
           "chain": "张工>李工:30>王主管"}]


@pytest.fixture
def site(sessions, settings):
    """Three engineers on a night shift every night, and the call-out policy of the tests above."""
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002"),
                         Engineer(name="王主管", sip_uri="sip:wang@pbx.local")])
        session.flush()
        roster_store.replace_shifts(session, SHIFTS)
    with sessions() as session:
        people = {e.name: e.id for e in session.scalars(select(Engineer))}
    return replace(settings, callout=POLICY), people


def phone_emergency(sessions, settings, **fields) -> int:
    """A phone draft (待审核), as the hotline leaves it before anyone reviews it."""
    facts = {"description": "厨房水管爆了", "building": "3", "unit": "2", "room": "1101", "category": "plumbing",
             "urgency": Urgency.EMERGENCY, "channel": Channel.PHONE, "reported_at": START} | fields
    with sessions() as session, session.begin():
        return desk.create_ticket(session, NewTicket(**facts), desk.HOTLINE, START, settings).id


def ring_next(sessions, settings, callout_id, now, outcome=None, rang=None):
    """One turn of the phone side's loop: claim the next step, then (maybe) store its outcome."""
    with sessions() as session, session.begin():
        call = callouts.next_call(session, callout_id, now, settings)
    if outcome is not None and call.attempt_id is not None:
        with sessions() as session, session.begin():
            callouts.record_outcome(session, call.attempt_id, outcome, rang, now, settings)
    return call


def start(sessions, settings, ticket_id, now=START, actor=CLERK) -> int:
    with sessions() as session, session.begin():
        return callouts.start_callout(session, ticket_id, actor, now, settings).id


def test_an_accepted_call_out_dispatches_the_ticket_with_an_event_for_every_ring(sessions, site):
    settings, people = site
    ticket_id = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, ticket_id)
    first = ring_next(sessions, settings, callout_id, START, Outcome.NO_ANSWER, 25)
    assert (first.decision.action, first.decision.step.name, first.decision.step.ring_seconds) == (Action.RING, "张工", 25)
    second = ring_next(sessions, settings, callout_id, START + timedelta(seconds=30), Outcome.BUSY, 2)
    assert (second.decision.step.name, second.decision.step.ring_seconds) == ("李工", 30)
    accepted_at = START + timedelta(minutes=1)
    third = ring_next(sessions, settings, callout_id, accepted_at, Outcome.ACCEPTED, 8)
    assert third.decision.step.contact == "sip:wang@pbx.local"
    with sessions() as session:
        callout = session.get(CallOut, callout_id)
        assert (callout.state, callout.engineer_id, callout.ended_at) == ("accepted", people["王主管"], accepted_at)
        assert callouts.next_call(session, callout_id, accepted_at, settings).decision.action == Action.ACCEPTED
        ticket = desk.get_ticket(session, ticket_id)
        assert (ticket.status, ticket.engineer_id, ticket.accepted_at) == (Status.ACCEPTED, people["王主管"], accepted_at)
        events = [(e.kind, e.actor, e.from_status, e.to_status) for e in ticket.events]
        rings = [e.data for e in ticket.events if e.kind == "callout" and "outcome" in (e.data or {})]
    assert events == [
        ("created", "hotline", None, "draft"),
        ("callout", "desk1", None, None),
        ("callout", "callout", None, None), ("callout", "callout", None, None), ("callout", "callout", None, None),
        ("transition", "callout", "draft", "received"),
        ("transition", "callout", "received", "dispatched"),
        ("transition", "callout", "dispatched", "accepted"),
    ]
    assert [(r["name"], r["contact"], r["outcome"], r["rang_seconds"]) for r in rings] == [
        ("张工", "13800000001", "no_answer", 25), ("李工", "13800000002", "busy", 2),
        ("王主管", "sip:wang@pbx.local", "accepted", 8)]


def test_a_second_call_out_is_refused_while_one_runs(sessions, site):
    settings, _ = site
    ticket_id = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, ticket_id)
    with pytest.raises(CallOutError, match="已有紧急呼叫正在进行"):
        start(sessions, settings, ticket_id)
    with sessions() as session, session.begin():
        callouts.stop_callout(session, callout_id, CLERK, START, "已电话联系到张工")
    assert start(sessions, settings, ticket_id) != callout_id  # once it is over, another may start


def test_a_restarted_call_out_carries_on_without_ringing_anyone_twice(sessions, site):
    settings, _ = site
    callout_id = start(sessions, settings, phone_emergency(sessions, settings))
    ring_next(sessions, settings, callout_id, START, Outcome.NO_ANSWER, 25)
    crashed = ring_next(sessions, settings, callout_id, START + timedelta(seconds=30))  # claimed; then the process died
    assert crashed.decision.step.name == "李工"
    # After the restart: while 李工's ring may still be under way, wait; after its cut-off, move on.
    assert ring_next(sessions, settings, callout_id, START + timedelta(seconds=60)).decision.action == Action.WAIT
    later = START + timedelta(seconds=30 + 30 + ANSWERED_CALL_SECONDS)
    resumed = ring_next(sessions, settings, callout_id, later)
    assert (resumed.decision.action, resumed.decision.step.name) == (Action.RING, "王主管")
    with sessions() as session:
        attempts = session.scalars(select(CallOutAttempt).order_by(CallOutAttempt.id)).all()
        assert [(a.round, a.position, a.outcome) for a in attempts] == [(1, 0, "no_answer"), (1, 1, "failed"),
                                                                         (1, 2, None)]


def test_a_step_claimed_by_another_process_is_not_rung_here(sessions, site):
    settings, _ = site
    callout_id = start(sessions, settings, phone_emergency(sessions, settings))
    with sessions() as here, here.begin():
        read_here = here.get(CallOut, callout_id)  # this process has read the call-out ...
        assert read_here.attempts == []
        with sessions() as there, there.begin():
            callouts.next_call(there, callout_id, START, settings)  # ... and another claims the first step
        assert callouts.next_call(here, callout_id, START, settings).decision.action == Action.WAIT
    with sessions() as session:
        assert len(session.scalars(select(CallOutAttempt)).all()) == 1


def test_nobody_answering_exhausts_the_call_out_and_names_whom_to_alert(sessions, site):
    settings, _ = site
    ticket_id = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, ticket_id)
    now, rung = START, []
    while (call := ring_next(sessions, settings, callout_id, now, Outcome.NO_ANSWER, 25)).attempt_id:
        rung.append(call.decision.step.contact)
        now += timedelta(seconds=30)
    assert rung == ["13800000001", "13800000002", "sip:wang@pbx.local"] * 2 + ["sip:control@pbx.local"]
    assert call.decision.action == Action.EXHAUSTED and call.decision.alert_contacts == ("13900000000",)
    with sessions() as session:
        callout = session.get(CallOut, callout_id)
        assert (callout.state, callout.running_ticket_id, callout.engineer_id) == ("exhausted", None, None)
        ticket = desk.get_ticket(session, ticket_id)
        assert ticket.status == Status.DRAFT and "需通知主管：13900000000" in ticket.events[-1].note
        assert sum(1 for e in ticket.events if e.kind == "callout") == 1 + 7 + 1


def test_the_last_resort_taking_it_ends_the_call_out_without_dispatching(sessions, site):
    settings, _ = site
    settings = replace(settings, callout=replace(POLICY, rounds=1))
    ticket_id = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, ticket_id)
    for _ in range(3):
        ring_next(sessions, settings, callout_id, START, Outcome.NO_ANSWER, 25)
    last = ring_next(sessions, settings, callout_id, START, Outcome.ACCEPTED, 5)
    assert last.decision.action == Action.LAST_RESORT
    with sessions() as session:
        assert session.get(CallOut, callout_id).state == "accepted"
        assert desk.get_ticket(session, ticket_id).status == Status.DRAFT  # the control room dispatches


def test_the_front_desk_stops_a_call_out_and_a_late_acceptance_changes_nothing(sessions, site):
    settings, _ = site
    ticket_id = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, ticket_id)
    ringing = ring_next(sessions, settings, callout_id, START)
    with sessions() as session, session.begin():
        with pytest.raises(CallOutError, match="只有前台或主管"):
            callouts.stop_callout(session, callout_id, Actor("zhang", Role.ENGINEER, 1), START)
        callouts.stop_callout(session, callout_id, CLERK, START + timedelta(seconds=5), "业主已关总阀")
    with sessions() as session, session.begin():
        callout = callouts.record_outcome(session, ringing.attempt_id, Outcome.ACCEPTED, 10,
                                          START + timedelta(seconds=10), settings)
        assert (callout.state, callout.stopped_by, callout.engineer_id) == ("stopped", "desk1", None)
        assert "此次接单未生效" in desk.get_ticket(session, ticket_id).events[-1].note
        with pytest.raises(CallOutError, match="已结束"):
            callouts.stop_callout(session, callout_id, CLERK, START)
        with pytest.raises(CallOutError, match="已经记录过"):
            callouts.record_outcome(session, ringing.attempt_id, Outcome.NO_ANSWER, 1, START, settings)
    assert ring_next(sessions, settings, callout_id, START).decision.action == Action.STOPPED
    with sessions() as session:
        assert desk.get_ticket(session, ticket_id).status == Status.DRAFT


def test_a_ticket_taken_another_way_stops_the_ringing(sessions, site):
    settings, people = site
    ticket_id = phone_emergency(sessions, settings, channel=Channel.DESK)
    callout_id = start(sessions, settings, ticket_id)
    ringing = ring_next(sessions, settings, callout_id, START)
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        for step in (TransitionRequest(Status.DISPATCHED, engineer_id=people["李工"]), TransitionRequest(Status.ACCEPTED)):
            moves.move_ticket(session, ticket, step, CLERK, START, settings)
    with sessions() as session, session.begin():
        callout = callouts.record_outcome(session, ringing.attempt_id, Outcome.ACCEPTED, 9, START, settings)
        assert callout.state == "stopped"
        assert desk.get_ticket(session, ticket_id).engineer_id == people["李工"]  # not taken from 李工
    with sessions() as session, session.begin():
        with pytest.raises(CallOutError, match="无需紧急呼叫"):
            callouts.start_callout(session, ticket_id, CLERK, START, settings)


def test_a_ticket_dispatched_to_someone_else_goes_to_whoever_accepts(sessions, site):
    settings, people = site
    ticket_id = phone_emergency(sessions, settings, channel=Channel.DESK)
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=people["王主管"]),
                        CLERK, START, settings)
    callout_id = start(sessions, settings, ticket_id)
    ring_next(sessions, settings, callout_id, START, Outcome.ACCEPTED, 6)
    with sessions() as session:
        ticket = desk.get_ticket(session, ticket_id)
        assert (ticket.status, ticket.engineer_id) == (Status.ACCEPTED, people["张工"])
        assert ticket.events[-2].reason == "紧急呼叫：另一位维修人员电话接单"


def test_the_chain_is_the_one_on_duty_when_the_call_out_started(sessions, site):
    settings, _ = site
    morning = START.replace(hour=7, minute=59)
    callout_id = start(sessions, settings, phone_emergency(sessions, settings), now=morning)
    with sessions() as session:
        assert [link["name"] for link in session.get(CallOut, callout_id).chain] == ["张工", "李工", "王主管"]
    # At 08:00 the night shift is over and nobody else is on the roster: the call-out rings on regardless.
    assert ring_next(sessions, settings, callout_id, morning + timedelta(minutes=1)).decision.step.name == "张工"


def test_a_second_report_of_the_same_fault_is_the_same_incident(sessions, site):
    settings, _ = site
    first = phone_emergency(sessions, settings)
    callout_id = start(sessions, settings, first)
    neighbour = phone_emergency(sessions, settings, room="1201")
    elsewhere = phone_emergency(sessions, settings, building="5")
    with sessions() as session:
        same = lambda ticket_id, minutes: callouts.same_incident(  # noqa: E731
            session, desk.get_ticket(session, ticket_id), START + timedelta(minutes=minutes), settings)
        assert same(neighbour, 10).id == callout_id
        assert same(neighbour, 61) is None  # outside callout.incident_window_minutes
        assert same(elsewhere, 10) is None
        assert same(first, 10) is None


def test_the_hotline_attaches_a_second_report_of_the_same_fault_instead_of_paging_again(sessions, site):
    settings, _ = site
    first, neighbour = phone_emergency(sessions, settings), phone_emergency(sessions, settings, room="1201")
    with sessions() as session, session.begin():
        callout, attached = callouts.start_or_attach(session, first, desk.HOTLINE, START, settings)
        started = (callout.id, callout.ticket_id, attached)
    assert started[1:] == (first, False)
    with sessions() as session, session.begin():
        callout, attached = callouts.start_or_attach(session, neighbour, desk.HOTLINE, START + timedelta(minutes=5),
                                                     settings)
        assert (callout.id, attached) == (started[0], True)
        note = desk.get_ticket(session, neighbour).events[-1]
        number = desk.get_ticket(session, first).number
    assert (note.kind, note.actor, note.data["incident_ticket_id"]) == ("callout", "hotline", first)
    assert note.note == f"同一事件已有紧急呼叫（维修单 {number}），不再重复呼叫"
    with sessions() as session:
        assert len(session.scalars(select(CallOut)).all()) == 1  # nobody paged twice
