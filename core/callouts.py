"""Emergency call-outs as stored records: start one for a ticket, claim the next step, record each
ring's outcome, accept, stop. The decisions are ``core.dispatch``'s; this module keeps them.

The phone side runs a call-out as a loop of short transactions, so a crash loses nothing::

    call = next_call(...)            # claims the step (stored before dialling) or says wait / done
    outcome = dial(call.decision.step.contact, call.decision.step.ring_seconds)
    record_outcome(call.attempt_id, outcome, ...)

A call-out is ``ringing`` until an engineer (or the last resort) accepts, nobody does
(``exhausted``), or the front desk stops it (``stopped``). When an engineer accepts, the ticket
is moved by the call-out actor along its ordinary rules, each move an event: a phone draft is
received (受理) without waiting for the desk's review, because at night nobody may review it
for hours and the engineer has just heard the caller's own words; then 派单 to the engineer,
then 接单 at that moment. Every ring is an event on the ticket as well.

Several people and processes act on one call-out at once (the engineer pressing 1, the desk
pressing 停止, the desk cancelling the ticket, another process's runner), so every change of
state is conditional on the state it was read in (``UPDATE … WHERE state = 'ringing'``, a ring's
outcome ``WHERE outcome IS NULL``, the ticket through ``core.claims``): exactly one of two
concurrent acts wins; the desk's loser gets a 409 saying what happened, the engineer's loser is
recorded as an acceptance that came too late.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import alerts, desk, dispatch, incidents, moves
from core.base import Actor, NotFound
from core.claims import Conflict, claim
from core.db import affected_rows
from core.desk import CALLOUT
from core.dispatch import Action, Attempt, Decision, Outcome, Step
from core.roster import ChainLink, on_duty
from core.roster_store import load_roster
from core.settings import Settings
from core.store import CallOut, CallOutAttempt, Ticket
from core.tickets import DESK, STATUS_NAMES, Status, TransitionError, TransitionRequest

log = logging.getLogger(__name__)

class CallOutState(StrEnum):
    RINGING = "ringing"  # the chain is being rung
    ACCEPTED = "accepted"  # an engineer (or the last resort) took the job
    EXHAUSTED = "exhausted"  # nobody did: the managers were alerted
    STOPPED = "stopped"  # the front desk stopped it, or the ticket no longer waits for an engineer


RINGING, ACCEPTED, EXHAUSTED, STOPPED = (CallOutState.RINGING, CallOutState.ACCEPTED, CallOutState.EXHAUSTED,
                                         CallOutState.STOPPED)
STATE_NAMES: dict[str, str] = {RINGING: "呼叫中", ACCEPTED: "已接单", EXHAUSTED: "无人接单", STOPPED: "已停止"}
# A call-out only makes sense while nobody has taken the ticket yet.
WAITING_FOR_ENGINEER = frozenset({Status.DRAFT, Status.RECEIVED, Status.DISPATCHED})


class EmergencyReply(StrEnum):
    """What the call-out did about a hotline caller's emergency (what the caller is told)."""

    CALLING = "calling"  # a call-out started: the engineer on duty is being rung
    ATTACHED = "attached"  # the same incident's call-out is under way: nobody is paged again


class CallOutError(TransitionError):
    """A call-out action that cannot be done now (the API answers 409); the message is Chinese."""


@dataclass(frozen=True)
class NextCall:
    decision: Decision
    attempt_id: int | None = None  # RING and LAST_RESORT: the stored attempt to record the outcome on


def running_callout(session: Session, ticket_id: int) -> CallOut | None:
    return session.scalar(select(CallOut).where(CallOut.running_ticket_id == ticket_id))


def start_callout(session: Session, ticket_id: int, actor: Actor, now: datetime, settings: Settings) -> CallOut:
    """Start ringing the chain on duty now for the skill the ticket's category needs."""
    ticket = desk.get_ticket(session, ticket_id)
    if actor.role not in DESK:
        raise CallOutError("只有前台或主管可以发起紧急呼叫")
    if Status(ticket.status) not in WAITING_FOR_ENGINEER:
        raise CallOutError(f"维修单状态为「{STATUS_NAMES[Status(ticket.status)]}」，无需紧急呼叫")
    if running_callout(session, ticket.id) is not None:
        raise CallOutError("该维修单已有紧急呼叫正在进行")
    skill = dispatch.needed_skill(ticket.category, settings.callout)
    duty = on_duty(load_roster(session, settings, since=now), now, skill)
    callout = CallOut(ticket_id=ticket.id, running_ticket_id=ticket.id, state=RINGING, skill=skill,
                      shift_name=duty.shift, chain=[_link_json(link) for link in duty.chain],
                      started_at=now, started_by=actor.name)
    try:
        with session.begin_nested():
            session.add(callout)
    except IntegrityError:  # another process started one a moment ago
        raise CallOutError("该维修单已有紧急呼叫正在进行") from None
    chain_text = " → ".join(link.name for link in duty.chain) or "（无人值班）"
    desk.record_event(ticket, actor, now, "callout", data={"callout_id": callout.id, "chain": callout.chain},
                      note=f"发起紧急呼叫（{skill or '不限技能'}，班次：{duty.shift or '无'}）：{chain_text}")
    log.info("callout %d ticket %s started by %s: %s", callout.id, ticket.number, actor.name, chain_text)
    return callout


def next_call(session: Session, callout_id: int, now: datetime, settings: Settings) -> NextCall:
    """Decide the next step from what is stored and, if it is a ring, claim it before anyone dials."""
    callout = _get(session, callout_id)
    ticket = desk.get_ticket(session, callout.ticket_id)
    if callout.state == RINGING and Status(ticket.status) not in WAITING_FOR_ENGINEER:
        _stop_for_ticket(session, ticket, callout, now)
    if callout.state != RINGING:
        return NextCall(Decision(Action(callout.state)))  # accepted, exhausted or stopped
    chain = [ChainLink(**link) for link in callout.chain]
    steps = dispatch.plan(chain, settings.callout)
    for attempt in callout.attempts:
        if attempt.outcome is None and dispatch.cut_off_after(_attempt(attempt), steps, settings.callout) <= now:
            try:
                _record_ring(session, attempt, Outcome.FAILED, None, now)
            except CallOutError:
                continue  # its real outcome arrived a moment ago
            _note_ring(ticket, callout, attempt, now, "呼叫中断，未得到结果")
    if callout.state != RINGING:  # ended by somebody else while we looked
        return NextCall(Decision(Action(callout.state)))
    decision = dispatch.decide(chain, settings.callout, [_attempt(a) for a in callout.attempts], now)
    if decision.action in (Action.RING, Action.LAST_RESORT):
        step = decision.step
        if step is None:  # dispatch.decide names the step for every ring
            raise RuntimeError(f"callout {callout.id}: decided {decision.action} without a step to ring")
        attempt = CallOutAttempt(round=step.round, position=step.position,
                                 engineer_id=step.engineer_id, contact=step.contact,
                                 started_at=now)
        try:
            with session.begin_nested():
                callout.attempts.append(attempt)
        except IntegrityError:  # another process claimed this very step: it is ringing there
            session.expire(callout, ["attempts"])
            return NextCall(Decision(Action.WAIT, wait_until=now + timedelta(seconds=step.ring_seconds)))
        log.info("callout %d ticket %s: ring %s for %ds", callout.id, ticket.number,
                 step.describe(), step.ring_seconds)
        return NextCall(decision, attempt.id)
    if decision.action == Action.EXHAUSTED:
        if not _end(session, callout, EXHAUSTED, now):
            return NextCall(Decision(Action(callout.state)))
        told = "、".join(decision.alert_contacts) or "（未配置 callout.alert_contacts）"
        desk.record_event(ticket, CALLOUT, now, "callout", note=f"紧急呼叫无人接单，需通知主管：{told}",
                          data={"callout_id": callout.id, "alert_contacts": list(decision.alert_contacts)})
        alerts.callout_exhausted(session, callout, ticket, now, settings)  # the managers' group chat
        log.warning("callout %d ticket %s exhausted: nobody accepted; alerting %s", callout.id, ticket.number, told)
    return NextCall(decision)


def record_outcome(session: Session, attempt_id: int, outcome: Outcome | str, rang_seconds: float | None,
                   now: datetime, settings: Settings) -> CallOut:
    """How a ring ended; an acceptance ends the call-out and gives the ticket to that engineer.

    An acceptance that arrives after the front desk stopped the call-out, or after somebody took or
    cancelled the ticket (even in the same instant), is recorded but changes nothing (check the
    returned call-out's state and engineer_id before thanking them).
    """
    attempt = session.get(CallOutAttempt, attempt_id)
    if attempt is None:
        raise NotFound(f"呼叫记录 {attempt_id} 不存在")
    if attempt.outcome is not None:
        raise CallOutError("这次呼叫的结果已经记录过")
    outcome = Outcome(outcome)
    callout = _get(session, attempt.callout_id)
    ticket = desk.get_ticket(session, callout.ticket_id)
    _record_ring(session, attempt, outcome, rang_seconds, now)
    took_it = outcome == Outcome.ACCEPTED and _take(session, callout, ticket, attempt, now)
    late = outcome == Outcome.ACCEPTED and not took_it
    _note_ring(ticket, callout, attempt, now, "紧急呼叫已结束，此次接单未生效" if late else "")
    if callout.state == RINGING and Status(ticket.status) not in WAITING_FOR_ENGINEER:
        _stop_for_ticket(session, ticket, callout, now)
    if took_it:
        if attempt.engineer_id is not None:
            _give_ticket_to(session, ticket, attempt.engineer_id, now, settings)  # claimed: nobody can interleave
        log.info("callout %d ticket %s accepted by %s", callout.id, ticket.number,
                 attempt.engineer_id or attempt.contact)
    return callout


def _take(session: Session, callout: CallOut, ticket: Ticket, attempt: CallOutAttempt, now: datetime) -> bool:
    """The engineer on ``attempt`` pressed 1: the call-out becomes theirs if it still rings, and the
    ticket is claimed for them if nobody took or cancelled it meanwhile (as stored now, not as read).
    False: too late; nothing is given."""
    if callout.state != RINGING or Status(ticket.status) not in WAITING_FOR_ENGINEER:
        return False
    if not _end(session, callout, ACCEPTED, now, engineer_id=attempt.engineer_id):
        return False  # the desk stopped it a moment ago
    for _ in range(10):
        try:
            claim(session, ticket)
            return True
        except Conflict:  # changed a moment ago (claim re-read it): still waiting for an engineer?
            if Status(ticket.status) not in WAITING_FOR_ENGINEER:
                _set(callout, STOPPED, now, stopped_by=CALLOUT.name)  # the call-out row is ours since _end
                desk.record_event(ticket, CALLOUT, now, "callout", data={"callout_id": callout.id},
                                  note=f"维修单已「{STATUS_NAMES[Status(ticket.status)]}」，停止紧急呼叫")
                return False
    raise CallOutError("维修单一直在变化，接单未能记录")


def stop_callout(session: Session, callout_id: int, actor: Actor, now: datetime, reason: str = "") -> CallOut:
    """The front desk stops a running call-out (it reached someone another way, say)."""
    if actor.role not in DESK:
        raise CallOutError("只有前台或主管可以停止紧急呼叫")
    callout = _get(session, callout_id)
    if callout.state != RINGING or not _end(session, callout, STOPPED, now, stopped_by=actor.name, note=reason.strip()):
        raise CallOutError(f"紧急呼叫已结束（{STATE_NAMES[callout.state]}）")
    ticket = desk.get_ticket(session, callout.ticket_id)
    desk.record_event(ticket, actor, now, "callout", note="停止紧急呼叫", reason=reason.strip(),
                      data={"callout_id": callout.id})
    log.info("callout %d ticket %s stopped by %s", callout.id, ticket.number, actor.name)
    return callout


def same_incident(session: Session, ticket: Ticket, now: datetime, settings: Settings) -> CallOut | None:
    """A call-out for the same kind of fault at the same place within ``callout.incident_window_minutes``:
    ten residents reporting one burst main need one engineer, so the phone side can tell the
    caller that help is on its way instead of ringing the chain again."""
    if not (ticket.building or ticket.area):
        return None  # an unknown place matches nothing
    since = now - timedelta(minutes=settings.callout.incident_window_minutes)
    return session.scalar(
        select(CallOut).join(Ticket, CallOut.ticket_id == Ticket.id)
        .where(Ticket.id != ticket.id, Ticket.category == ticket.category, Ticket.building == ticket.building,
               Ticket.area == ticket.area, CallOut.started_at >= since, CallOut.state.in_((RINGING, ACCEPTED)))
        .order_by(CallOut.started_at.desc()).limit(1))


def start_or_attach(session: Session, ticket_id: int, actor: Actor, now: datetime,
                    settings: Settings) -> tuple[CallOut | None, bool]:
    """An emergency reported on the phone: one call-out per incident. A building's outage (停水, 停电,
    电梯停运, 停气) belongs to an incident by ``core.incidents.incident_for``, the one rule the
    hotline's callers are counted by too: the ticket is attached to it and nobody is paged (no
    call-out: None). Another fault at the same place as a call-out under way (``same_incident``: a
    burst main) is attached to that call-out, an event on the new ticket naming the other; otherwise
    a call-out starts for it. Returns the call-out and whether the ticket was attached."""
    ticket = desk.get_ticket(session, ticket_id)
    kind = incidents.kind_of_text(ticket.description, now, settings)
    place = incidents.Place(ticket.building, ticket.unit, ticket.room, ticket.area)
    outage = incidents.incident_for(session, place, kind, now, settings, exclude_ticket_id=ticket.id)
    if outage is not None:
        incidents.attach_ticket(session, outage, ticket, now)
        log.info("ticket %s attached to incident %d: nobody paged", ticket.number, outage.id)
        return None, True
    incident = same_incident(session, ticket, now, settings)
    if incident is None:
        return start_callout(session, ticket_id, actor, now, settings), False
    first = desk.get_ticket(session, incident.ticket_id)
    desk.record_event(ticket, actor, now, "callout", note=f"同一事件已有紧急呼叫（维修单 {first.number}），不再重复呼叫",
                      data={"callout_id": incident.id, "incident_ticket_id": first.id})
    log.info("ticket %s attached to call-out %d of ticket %s", ticket.number, incident.id, first.number)
    return incident, True


def latest_callout(session: Session, ticket_id: int) -> CallOut | None:
    """The ticket's running call-out, else its most recent one."""
    return session.scalar(select(CallOut).where(CallOut.ticket_id == ticket_id)
                          .order_by(CallOut.started_at.desc(), CallOut.id.desc()).limit(1))


# --- inside ---------------------------------------------------------------------------------


def _get(session: Session, callout_id: int) -> CallOut:
    callout = session.get(CallOut, callout_id)
    if callout is None:
        raise NotFound(f"紧急呼叫 {callout_id} 不存在")
    return callout


def _link_json(link: ChainLink) -> dict:
    return {"engineer_id": link.engineer_id, "name": link.name, "contact": link.contact,
            "ring_seconds": link.ring_seconds}


def _attempt(row: CallOutAttempt) -> Attempt:
    return Attempt(row.round, row.position, row.contact, row.started_at,
                   Outcome(row.outcome) if row.outcome else None, row.engineer_id, row.rang_seconds)


def _step_of(callout: CallOut, attempt: CallOutAttempt) -> Step:
    """The step an attempt rang, to describe it (its ring time does not matter any more)."""
    if attempt.round == dispatch.LAST_RESORT_ROUND:
        return Step(attempt.round, attempt.position, attempt.contact, 0)
    link = callout.chain[attempt.position]
    return Step(attempt.round, attempt.position, attempt.contact, link["ring_seconds"], link["engineer_id"],
                link["name"])


def _record_ring(session: Session, attempt: CallOutAttempt, outcome: Outcome, rang_seconds: float | None,
                 now: datetime) -> None:
    """A ring's outcome, once: two processes recording the same ring (a cut-off and the real end) cannot
    both; the second gets CallOutError."""
    values = {"outcome": outcome.value, "ended_at": now, "rang_seconds": rang_seconds}
    recorded = affected_rows(session.execute(
        update(CallOutAttempt).where(CallOutAttempt.id == attempt.id, CallOutAttempt.outcome.is_(None))
        .values(**values).execution_options(synchronize_session=False)))
    if recorded != 1:
        session.refresh(attempt)
        raise CallOutError("这次呼叫的结果已经记录过")
    for key, value in values.items():
        set_committed_value(attempt, key, value)


def _note_ring(ticket: Ticket, callout: CallOut, attempt: CallOutAttempt, now: datetime, remark: str = "") -> None:
    if attempt.outcome is None:  # noted only once its outcome is recorded
        raise ValueError(f"callout attempt {attempt.id} has no outcome to note")
    outcome, rang_seconds = Outcome(attempt.outcome), attempt.rang_seconds
    step = _step_of(callout, attempt)
    rang = f"，振铃 {rang_seconds:.0f} 秒" if rang_seconds is not None else ""
    remark = f"（{remark}）" if remark else ""
    desk.record_event(ticket, CALLOUT, now, "callout",
                      note=f"呼叫 {step.describe()}：{dispatch.OUTCOME_NAMES[outcome]}{rang}{remark}",
                      data={"callout_id": callout.id, "round": attempt.round, "position": attempt.position,
                            "engineer_id": attempt.engineer_id, "name": step.name, "contact": attempt.contact,
                            "started_at": attempt.started_at.isoformat(), "outcome": outcome.value,
                            "rang_seconds": rang_seconds})
    log.info("callout %d ticket %s: %s -> %s", callout.id, ticket.number, step.describe(), outcome.value)


def _stop_for_ticket(session: Session, ticket: Ticket, callout: CallOut, now: datetime) -> None:
    """Someone took (or cancelled) the ticket another way: ringing on would only wake people."""
    if not _end(session, callout, STOPPED, now, stopped_by=CALLOUT.name):
        return  # ended another way meanwhile
    desk.record_event(ticket, CALLOUT, now, "callout", data={"callout_id": callout.id},
                      note=f"维修单已「{STATUS_NAMES[Status(ticket.status)]}」，停止紧急呼叫")


def _end(session: Session, callout: CallOut, state: str, now: datetime, engineer_id: int | None = None,
         stopped_by: str | None = None, note: str = "") -> bool:
    """Ring no more, if it still rings (as stored now, not as read); False: it had ended already
    (``callout`` then shows how). The row stays ours until the commit."""
    values = _end_values(state, now, engineer_id, stopped_by, note)
    ended = affected_rows(session.execute(update(CallOut).where(CallOut.id == callout.id, CallOut.state == RINGING)
                            .values(**values).execution_options(synchronize_session=False)))
    if ended != 1:
        session.refresh(callout)
        return False
    for key, value in values.items():
        set_committed_value(callout, key, value)
    return True


def _set(callout: CallOut, state: str, now: datetime, engineer_id: int | None = None,
         stopped_by: str | None = None, note: str = "") -> None:
    """Change how a call-out ended, on a row this unit already holds (``_end`` succeeded)."""
    for key, value in _end_values(state, now, engineer_id, stopped_by, note).items():
        setattr(callout, key, value)


def _end_values(state: str, now: datetime, engineer_id: int | None, stopped_by: str | None, note: str) -> dict:
    return {"state": state, "ended_at": now, "running_ticket_id": None, "engineer_id": engineer_id,
            "stopped_by": stopped_by, "note": note}


def _give_ticket_to(session: Session, ticket: Ticket, engineer_id: int, now: datetime, settings: Settings) -> None:
    """draft → received → dispatched → accepted, each an ordinary transition by the call-out."""
    def move(to: Status, **request) -> None:
        moves.move_ticket(session, ticket, TransitionRequest(to, **request), CALLOUT, now, settings)

    if ticket.status == Status.DRAFT:
        move(Status.RECEIVED, note="紧急呼叫：维修人员已电话接单，电话报修自动受理")
    if ticket.status == Status.RECEIVED:
        move(Status.DISPATCHED, engineer_id=engineer_id, note="紧急呼叫派单")
    elif ticket.engineer_id != engineer_id:  # dispatched to someone who has not taken it: 改派
        move(Status.DISPATCHED, engineer_id=engineer_id, reason="紧急呼叫：另一位维修人员电话接单")
    move(Status.ACCEPTED, note="维修人员电话按键接单")
