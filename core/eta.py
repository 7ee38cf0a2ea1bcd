"""Arrival slips (到场超时): a late engineer is told, not discovered.

docs/process.md "Time limits": when an ETA slips past ``sla.eta_slip_minutes`` (20) the resident is
called with an apology. An accepted ticket (接单, not yet 到场) has a promised arrival: its
appointment, or else the SLA's arrival time (``core.tickets.deadlines``: an emergency 30 min after
the report, a public facility 15 min, a paid item wanted now 10 min after acceptance); a general
repair without an appointment promises no time and never slips.

Once the promise is missed by ``sla.eta_slip_minutes`` the scheduled job (``core.watch_jobs``,
on the scheduler lease's holder) records one slip per ticket per promised time, in one
transaction with a note on the ticket and a group-chat alert; the desk's queue shows the ticket
as late. ``sla.eta_slip_hold_minutes`` later the resident is phoned on ``followup.line``
(「维修人员预计晚到约二十分钟，给您带来不便，敬请谅解」) unless the desk stopped the call meanwhile
(``stop``) or the engineer arrived. The call's outcome is on the ticket; nobody is called twice
for one promise (``claim`` takes the one call, a call cut off by a crash is not redialled).

Statuses: ``pending`` -> ``calling`` -> ``called`` | ``unreached``; ``stopped`` by the desk;
``skipped`` (arrived or moved on before the call, no phone number, no line to call on).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import alerts, desk
from core.db import affected_rows
from core.desk import FOLLOWUP, Actor, normalise_phone
from core.settings import Settings
from core.store import CallRecord, Ticket
from core.store_watch import EtaSlip
from core.tickets import Status, TransitionError, deadlines

log = logging.getLogger(__name__)

PENDING, CALLING, CALLED, UNREACHED, STOPPED, SKIPPED = "pending", "calling", "called", "unreached", "stopped", "skipped"
STATUS_NAMES = {PENDING: "待致电住户", CALLING: "正在致电住户", CALLED: "已致电住户", UNREACHED: "致电未接通",
                STOPPED: "前台已取消致电", SKIPPED: "不致电"}
# How a call that reached nobody ended (as core.followup.NO_CONTACT), and "answered".
OUTCOMES = {"answered": "已接听", "no_answer": "无人接听", "busy": "占线", "voicemail": "语音信箱", "failed": "呼叫失败"}
STALE_CALL_MINUTES = 10  # the apology is a few seconds long; a claim this old never reported back
WATCHED = (Status.ACCEPTED,)
# A promise missed this long ago is not apologised for by phone: the engineer most likely forgot to
# press 到场 (or the service was off), and the ticket is overdue on the desk's queue anyway.
MAX_LATE_HOURS = 12


class SlipError(TransitionError):
    """A slip call that cannot be stopped now (the API answers 409); Chinese message."""


def promised_arrival(ticket: Ticket, settings: Settings) -> datetime | None:
    """When the resident was told to expect the engineer: the appointment, else the SLA's arrival."""
    if ticket.appointment_start is not None:
        return ticket.appointment_start
    return deadlines(ticket, settings.sla).arrival_due_at


def slip_time(ticket: Ticket, settings: Settings) -> datetime | None:
    """When the ticket counts as slipped if nobody has arrived (None: it promises no time)."""
    promised = promised_arrival(ticket, settings)
    return promised + timedelta(minutes=settings.sla.eta_slip_minutes) if promised is not None else None


def is_late(ticket: Ticket) -> bool:
    """The queue's highlight: accepted, not arrived, and a slip noticed since it was accepted."""
    if ticket.status not in WATCHED or not ticket.eta_slips:
        return False
    return ticket.eta_slips[0].detected_at >= ticket.status_changed_at


# --- noticing (the scheduled job's) ------------------------------------------------------------------


def detect(session: Session, now: datetime, settings: Settings) -> list[EtaSlip]:
    """Slips that happened since the last look: each recorded once, with its note and alert."""
    found = []
    for ticket in session.scalars(select(Ticket).where(Ticket.status.in_(WATCHED), Ticket.arrived_at.is_(None))):
        promised, slipped = promised_arrival(ticket, settings), slip_time(ticket, settings)
        if promised is None or slipped is None or now < slipped or now - promised > timedelta(hours=MAX_LATE_HOURS):
            continue
        if any(s.promised_at == promised for s in ticket.eta_slips):
            continue
        slip = _record(session, ticket, promised, now, settings)
        if slip is not None:
            found.append(slip)
    return found


def _record(session: Session, ticket: Ticket, promised: datetime, now: datetime, settings: Settings) -> EtaSlip | None:
    phone = normalise_phone(ticket.phone)
    why_not = ("维修单没有联系电话" if not phone else
               "未配置回访线路（followup.line）" if not settings.followup.line else "")
    slip = EtaSlip(ticket_id=ticket.id, promised_at=promised, detected_at=now, phone=phone,
                   call_at=now + timedelta(minutes=settings.sla.eta_slip_hold_minutes),
                   status=SKIPPED if why_not else PENDING, updated_at=now)
    try:
        with session.begin_nested():
            session.add(slip)
    except IntegrityError:  # the same promise, recorded a moment ago (a second scheduler)
        return None
    session.refresh(slip)
    late = int((now - promised).total_seconds() // 60)
    plan = (f"不自动致电住户（{why_not}），请前台联系住户" if why_not else
            f"将于 {_hhmm(slip.call_at, settings)} 自动致电住户致歉，前台可取消")
    desk.record_event(ticket, FOLLOWUP, now, "eta_slip",
                      note=f"维修人员超过承诺到场时间 {_hhmm(promised, settings)} 已 {late} 分钟仍未到场；{plan}",
                      data={"eta_slip_id": slip.id, "promised_at": promised.isoformat()})
    alerts.eta_slip(session, slip, now, settings)
    log.warning("ticket %s: arrival promised for %s slipped by %d min (slip %d, %s)", ticket.number,
                promised.isoformat(), late, slip.id, slip.status)
    return slip


def due_calls(session: Session, now: datetime, limit: int) -> list[int]:
    return list(session.scalars(select(EtaSlip.id).where(EtaSlip.status == PENDING, EtaSlip.call_at <= now)
                                .order_by(EtaSlip.call_at, EtaSlip.id).limit(limit)))


# --- the call ------------------------------------------------------------------------------------------


def claim(session: Session, slip_id: int, now: datetime, settings: Settings) -> EtaSlip | None:
    """Take the slip's one call (pending -> calling; commit before dialling). None when it was
    stopped, taken by another node, or is not needed any more (the engineer arrived meanwhile)."""
    if not _move(session, slip_id, PENDING, CALLING, due_by=now, claimed_at=now, updated_at=now):
        return None
    slip = session.get(EtaSlip, slip_id, populate_existing=True)
    if slip is None:  # just claimed in this transaction, so it cannot be gone
        raise LookupError(f"arrival slip {slip_id} vanished after it was claimed")
    ticket = slip.ticket
    if ticket.status not in WATCHED or promised_arrival(ticket, settings) != slip.promised_at:
        slip.status = SKIPPED
        desk.record_event(ticket, FOLLOWUP, now, "eta_slip", note="维修单已有进展（到场或改约），不再致电住户致歉",
                          data={"eta_slip_id": slip.id})
        return None
    return slip


def record_call(session: Session, slip_id: int, outcome: str, call_record_id: int | None, now: datetime) -> EtaSlip:
    """How the apology call went, on the slip and the ticket (whose page then plays the call)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}: {outcome!r}")
    slip = session.get(EtaSlip, slip_id, populate_existing=True)
    if slip is None or slip.status != CALLING:
        raise SlipError("这次致电不在进行中，无法记录结果")
    slip.status = CALLED if outcome == "answered" else UNREACHED
    slip.outcome, slip.call_record_id, slip.updated_at = outcome, call_record_id, now
    record = session.get(CallRecord, call_record_id) if call_record_id is not None else None
    if record is not None and record.ticket_id is None:
        record.ticket_id = slip.ticket_id
    said = "已告知住户维修人员将晚到并致歉" if outcome == "answered" else "请前台电话联系住户"
    desk.record_event(slip.ticket, FOLLOWUP, now, "eta_slip",
                      note=f"到场超时致歉电话（{slip.phone}）：{OUTCOMES[outcome]}，{said}",
                      data={"eta_slip_id": slip.id, "outcome": outcome, "call_record_id": call_record_id})
    log.info("ticket %s: slip call to %s: %s", slip.ticket.number, slip.phone, outcome)
    return slip


def stop(session: Session, ticket_id: int, actor: Actor, now: datetime) -> EtaSlip:
    """The desk stops the apology call before it goes out (it called the resident itself, say)."""
    ticket = desk.get_ticket(session, ticket_id)
    slip = next((s for s in ticket.eta_slips if s.status == PENDING), None)
    if slip is None or not _move(session, slip.id, PENDING, STOPPED, stopped_by=actor.name[:64], updated_at=now):
        calling = any(s.status == CALLING for s in ticket.eta_slips)
        raise SlipError("致歉电话已经拨出，无法取消" if calling or slip is not None else "这张维修单没有待拨的致歉电话")
    session.refresh(slip)
    desk.record_event(ticket, actor, now, "eta_slip", note="前台取消了到场超时致歉电话", data={"eta_slip_id": slip.id})
    session.flush()  # the event's id for the answer
    log.info("ticket %s: slip call stopped by %s", ticket.number, actor.name)
    return slip


def recover_stale_calls(session: Session, now: datetime) -> list[int]:
    """Calls claimed long ago that never reported back (a crash mid-call): unreached, not redialled."""
    cut_off = now - timedelta(minutes=STALE_CALL_MINUTES)
    stale = session.scalars(select(EtaSlip).where(EtaSlip.status == CALLING, EtaSlip.claimed_at < cut_off)).all()
    recovered = []
    for slip in stale:
        if _move(session, slip.id, CALLING, UNREACHED, outcome="failed", updated_at=now):
            desk.record_event(slip.ticket, FOLLOWUP, now, "eta_slip", note="到场超时致歉电话中断，结果未知，请前台联系住户",
                              data={"eta_slip_id": slip.id})
            recovered.append(slip.id)
    return recovered


def _move(session: Session, slip_id: int, frm: str, to: str, due_by: datetime | None = None, **values) -> bool:
    query = update(EtaSlip).where(EtaSlip.id == slip_id, EtaSlip.status == frm)
    if due_by is not None:
        query = query.where(EtaSlip.call_at <= due_by)
    return affected_rows(session.execute(query.values(status=to, **values).execution_options(synchronize_session=False))) == 1


def _hhmm(moment: datetime, settings: Settings) -> str:
    return f"{moment.astimezone(settings.tz):%H:%M}"
