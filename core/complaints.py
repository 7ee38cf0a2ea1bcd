"""Complaints (投诉): a resident unhappy after a repair reaches a person the same day.

A 不满意 or "not fixed" follow-up (``core.followup``) reopens the repair and opens a complaint here,
in the same transaction: the ticket's JSON carries it, the managers' group chat is told at once
(``core.alerts.followup_unhappy``, with what the resident said and the recording's page), and the
manager page lists open complaints first. Time limits (docs/process.md "Follow-up (回访) and
complaints"; PROCESS.md names no number, the sources do):

    due_at       opened + ``followup.complaint_due_hours`` (24 h: 003 §3.3 「24小时内进行初步处理」)
    escalate_at  ``followup.complaint_minutes`` (60) of calling hours after it was opened: if nobody
                 has marked it handled by then, the managers on ``callout.alert_contacts`` are phoned

The phoning is a scheduled job (``core.watch_jobs``, on the scheduler lease's holder only) and
the call-out runner's alert ring (``callcenter.ivr.callout_runner``); ``claim_escalation`` takes a
complaint's one call, so nobody is phoned twice for it, whatever nodes or restarts do.

Escalation states: ``waiting`` -> ``calling`` -> ``called``; ``not_needed`` when handled first;
``no_contacts`` when no manager's number is configured (said on the ticket).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import desk
from core.calling_hours import CallingHours
from core.db import affected_rows
from core.desk import FOLLOWUP, Actor, NotFound, ValidationError
from core.settings import Settings
from core.store import FollowUp
from core.store_watch import Complaint
from core.tickets import TransitionError

log = logging.getLogger(__name__)

WAITING, CALLING, CALLED, NOT_NEEDED, NO_CONTACTS = "waiting", "calling", "called", "not_needed", "no_contacts"
ESCALATION_NAMES = {WAITING: "等待处理", CALLING: "正在致电主管", CALLED: "已致电主管", NOT_NEEDED: "已处理，无需致电",
                    NO_CONTACTS: "未配置主管电话"}
# A manager's alert call takes well under a minute per contact; a claim this old never reported back.
STALE_CALL_MINUTES = 15
NOTE_LIMIT = 500


class ComplaintError(TransitionError):
    """A complaint that cannot be handled now (the API answers 409); Chinese message."""


@dataclass(frozen=True)
class Ring:
    """How ringing one manager went."""

    contact: str
    answered: bool


# --- time limits (pure) ---------------------------------------------------------------------------


def due_time(opened_at: datetime, settings: Settings) -> datetime:
    """When the complaint must have been handled."""
    return opened_at + timedelta(hours=settings.followup.complaint_due_hours)


def escalation_time(opened_at: datetime, settings: Settings) -> datetime:
    """When the manager is phoned if nobody acted: ``followup.complaint_minutes`` counted inside
    calling hours (a complaint opened at 19:30 with 60 minutes rings at 09:30 the next working day)."""
    return CallingHours.of(settings).after_open_minutes(opened_at, settings.followup.complaint_minutes)


# --- opening and handling ---------------------------------------------------------------------------


def open_for_followup(session: Session, followup: FollowUp, reason: str, now: datetime,
                      settings: Settings) -> Complaint:
    """The complaint an unhappy follow-up opens (or the ticket's open one, told of this answer too)."""
    ticket = followup.ticket
    existing = open_complaint(session, ticket.id)
    if existing is None:
        complaint = Complaint(ticket_id=ticket.id, open_ticket_id=ticket.id, followup_id=followup.id,
                              call_record_id=followup.call_record_id, opened_at=now, reason=reason[:2000],
                              due_at=due_time(now, settings), escalate_at=escalation_time(now, settings),
                              escalation=WAITING)
        try:
            with session.begin_nested():
                session.add(complaint)
        except IntegrityError:  # another node recorded one for this ticket a moment ago
            existing = open_complaint(session, ticket.id)
            if existing is None:  # and it was closed again before we could read it
                raise LookupError(f"ticket {ticket.number}: the complaint that blocked ours is no longer open") from None
        else:
            desk.record_event(ticket, FOLLOWUP, now, "complaint",
                              note=f"登记为投诉：{reason}。处理时限 {_when(complaint.due_at, settings)}；"
                                   f"{_when(complaint.escalate_at, settings)} 前无人处理将电话通知主管",
                              data={"complaint_id": complaint.id, "due_at": complaint.due_at.isoformat()})
            log.warning("ticket %s: complaint %d opened (%s)", ticket.number, complaint.id, reason)
            return complaint
    existing.reason = f"{existing.reason}；{reason}"[:2000]
    desk.record_event(ticket, FOLLOWUP, now, "complaint", note=f"投诉未处理期间住户再次表示：{reason}",
                      data={"complaint_id": existing.id})
    return existing


def open_complaint(session: Session, ticket_id: int) -> Complaint | None:
    return session.scalar(select(Complaint).where(Complaint.open_ticket_id == ticket_id))


def handle(session: Session, ticket_id: int, actor: Actor, note: str, now: datetime) -> Complaint:
    """A manager took the complaint in hand: it leaves the open list, and nobody is phoned about it."""
    note = (note or "").strip()
    if len(note) > NOTE_LIMIT:
        raise ValidationError({"note": f"不能超过 {NOTE_LIMIT} 个字"})
    complaint = open_complaint(session, ticket_id)
    if complaint is None:
        desk.get_ticket(session, ticket_id)  # NotFound for a ticket that does not exist
        raise ComplaintError("这张维修单没有未处理的投诉")
    taken = affected_rows(session.execute(
        update(Complaint).where(Complaint.id == complaint.id, Complaint.handled_at.is_(None))
        .values(handled_at=now, handled_by=actor.name[:64], handled_note=note, open_ticket_id=None,
                escalation=_after_handling(complaint.escalation))
        .execution_options(synchronize_session=False)))
    if taken != 1:
        raise ComplaintError("这条投诉刚刚已被他人处理")
    session.refresh(complaint)
    desk.record_event(complaint.ticket, actor, now, "complaint", note="投诉已处理" + (f"：{note}" if note else ""),
                      data={"complaint_id": complaint.id, "handled": True})
    session.flush()  # the event's id for the answer
    log.info("ticket %s: complaint %d handled by %s", complaint.ticket.number, complaint.id, actor.name)
    return complaint


def _after_handling(escalation: str) -> str:
    return NOT_NEEDED if escalation == WAITING else escalation


def find(session: Session, limit: int = 50) -> list[Complaint]:
    """Open complaints first (the earliest due on top), then the latest handled ones."""
    open_ = session.scalars(select(Complaint).where(Complaint.handled_at.is_(None))
                            .order_by(Complaint.due_at, Complaint.id)).all()
    handled = session.scalars(select(Complaint).where(Complaint.handled_at.is_not(None))
                              .order_by(Complaint.handled_at.desc(), Complaint.id.desc()).limit(limit)).all()
    return [*open_, *handled]


# --- escalation (the scheduled job's) ---------------------------------------------------------------


def due_escalations(session: Session, now: datetime, settings: Settings, limit: int = 10) -> list[int]:
    """Open complaints nobody acted on in time, to phone the managers about now (none outside
    calling hours: a tick run late at night waits for the morning). With no manager's number
    configured they are marked so, with a note on the ticket, and none is returned."""
    if not CallingHours.of(settings).is_open(now):
        return []
    due = session.scalars(select(Complaint).where(Complaint.escalation == WAITING, Complaint.handled_at.is_(None),
                                                  Complaint.escalate_at <= now)
                          .order_by(Complaint.escalate_at, Complaint.id).limit(limit)).all()
    if settings.callout.alert_contacts:
        return [complaint.id for complaint in due]
    for complaint in due:
        if _move(session, complaint.id, WAITING, NO_CONTACTS, escalated_at=now):
            desk.record_event(complaint.ticket, FOLLOWUP, now, "complaint",
                              note="投诉超时无人处理，但未配置主管电话（callout.alert_contacts），无法电话通知",
                              data={"complaint_id": complaint.id})
    return []


def claim_escalation(session: Session, complaint_id: int, now: datetime) -> Complaint | None:
    """Take the complaint's one call to the managers (commit before dialling); None when it is not
    due, was handled meanwhile, or another node took it."""
    if not _move(session, complaint_id, WAITING, CALLING, escalated_at=now, due_by=now):
        return None
    return session.get(Complaint, complaint_id, populate_existing=True)


def record_escalation(session: Session, complaint_id: int, rings: list[Ring], now: datetime) -> Complaint:
    """How the calls to the managers went, on the complaint and the ticket."""
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise NotFound(f"投诉 {complaint_id} 不存在")
    result = "、".join(f"{ring.contact}（{'已接听' if ring.answered else '未接通'}）" for ring in rings) or "无人可拨"
    complaint.escalation_result = result[:1000]
    if complaint.escalation == CALLING:
        complaint.escalation = CALLED
    desk.record_event(complaint.ticket, FOLLOWUP, now, "complaint",
                      note=f"投诉超时无人处理，已电话通知主管：{result}",
                      data={"complaint_id": complaint.id, "calls": [ring.__dict__ for ring in rings]})
    log.warning("ticket %s: complaint %d escalated by phone: %s", complaint.ticket.number, complaint.id, result)
    return complaint


def recover_stale_calls(session: Session, now: datetime) -> list[int]:
    """Escalation calls claimed long ago that never reported back (a crash mid-call): counted as
    made, never dialled again (once per complaint), and said on the ticket."""
    cut_off = now - timedelta(minutes=STALE_CALL_MINUTES)
    stale = session.scalars(select(Complaint).where(Complaint.escalation == CALLING,
                                                    Complaint.escalated_at < cut_off)).all()
    recovered = []
    for complaint in stale:
        if _move(session, complaint.id, CALLING, CALLED, escalation_result="通话中断，结果未知"):
            desk.record_event(complaint.ticket, FOLLOWUP, now, "complaint",
                              note="电话通知主管时通话中断，结果未知，请主管查看投诉", data={"complaint_id": complaint.id})
            recovered.append(complaint.id)
    return recovered


def _move(session: Session, complaint_id: int, frm: str, to: str, due_by: datetime | None = None, **values) -> bool:
    """Change the escalation state only if it is still ``frm`` (one node wins)."""
    query = update(Complaint).where(Complaint.id == complaint_id, Complaint.escalation == frm)
    if due_by is not None:
        query = query.where(Complaint.escalate_at <= due_by, Complaint.handled_at.is_(None))
    return affected_rows(session.execute(query.values(escalation=to, **values)
                           .execution_options(synchronize_session=False))) == 1


def _when(moment: datetime, settings: Settings) -> str:
    local = moment.astimezone(settings.tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}"
