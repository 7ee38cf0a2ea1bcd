"""Follow-ups as people read them: the lists on the console (the month's 回访率, 满意率, 返修率
are in ``core.reports``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from core.followup import DONE, FAILED
from core.store import FollowUp, Ticket
from core.tickets import Status


@dataclass
class FollowupFilter:
    statuses: list[str] = field(default_factory=list)
    due_from: datetime | None = None
    due_to: datetime | None = None
    needs_person: bool = False  # unhappy or failed, and nobody has dealt with it yet
    limit: int = 500


def needs_person():
    """Unhappy answers until the re-repair is completed (or a clerk records a 回访 by hand), and
    回访失败 while the ticket still waits for its 回访 and no new call is scheduled."""
    same_completion = or_(Ticket.completed_at.is_(None), Ticket.completed_at == FollowUp.completed_at)
    unhappy = and_(FollowUp.status == DONE, or_(FollowUp.resolved.is_(False), FollowUp.rating == "不满意"),
                   Ticket.status.not_in((Status.FOLLOWED_UP, Status.ARCHIVED)), same_completion)
    newer = aliased(FollowUp)
    failed = and_(FollowUp.status == FAILED, Ticket.status == Status.COMPLETED, same_completion,
                  ~exists().where(newer.open_ticket_id == FollowUp.ticket_id))
    return or_(unhappy, failed)


def find_followups(session: Session, wanted: FollowupFilter) -> list[FollowUp]:
    """Newest due first."""
    query = select(FollowUp).join(Ticket, FollowUp.ticket_id == Ticket.id)
    if wanted.statuses:
        query = query.where(FollowUp.status.in_(wanted.statuses))
    if wanted.due_from:
        query = query.where(FollowUp.due_at >= wanted.due_from)
    if wanted.due_to:
        query = query.where(FollowUp.due_at < wanted.due_to)
    if wanted.needs_person:
        query = query.where(needs_person())
    return list(session.scalars(query.order_by(FollowUp.due_at.desc(), FollowUp.id.desc()).limit(wanted.limit)))
