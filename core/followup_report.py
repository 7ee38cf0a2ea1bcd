"""Follow-ups as people read them: the lists on the console and the month's 回访率, 满意率, 返修率.

The figures count repair visits: every completion (完成) in the month is one, so a ticket that
went 返修 and was completed again counts twice, as both visits needed their 回访.

- 回访率 = visits whose follow-up got the resident's answer (by the call, or by a clerk) ÷ visits
- 满意率 = of those, answered 满意 or 基本满意 without saying it is not fixed ÷ followed-up visits
- 返修率 = visits followed by a 返修 (from the follow-up or a resident's complaint) ÷ visits

Per category (the ticket's) and per engineer (who had the ticket when it was completed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from core.followup import DONE, FAILED, SATISFIED_RATINGS
from core.settings import Settings
from core.store import Engineer, FollowUp, Ticket, TicketEvent
from core.tickets import CATEGORY_NAMES, Status

REWORK_FROM = (Status.COMPLETED, Status.FOLLOWED_UP)


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


# --- the month's figures -------------------------------------------------------------------------


@dataclass
class Visit:
    """One completion of a ticket and what came after it."""

    ticket_id: int
    completed_at: datetime
    engineer_id: int | None
    reworked: bool = False


@dataclass
class Figures:
    visits: int = 0
    followed_up: int = 0
    satisfied: int = 0
    reworked: int = 0

    def count(self, visit: Visit, answer: FollowUp | None) -> None:
        self.visits += 1
        self.reworked += visit.reworked
        if answer is not None:
            self.followed_up += 1
            self.satisfied += answer.rating in SATISFIED_RATINGS and answer.resolved is not False

    def as_dict(self) -> dict[str, Any]:
        return {"回访率": _rate(self.followed_up, self.visits), "满意率": _rate(self.satisfied, self.followed_up),
                "返修率": _rate(self.reworked, self.visits), "完成数": self.visits, "回访数": self.followed_up,
                "满意数": self.satisfied, "返修数": self.reworked}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def month_bounds(month: date, settings: Settings) -> tuple[datetime, datetime]:
    first = month.replace(day=1)
    following = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return (datetime.combine(first, time(0), tzinfo=settings.tz),
            datetime.combine(following, time(0), tzinfo=settings.tz))


def visits_between(session: Session, start: datetime, end: datetime) -> list[Visit]:
    """Every completion in [start, end), from the tickets' history: who had the ticket at that
    moment, and whether a 返修 followed before the next completion."""
    completions = (TicketEvent.kind == "transition") & (TicketEvent.to_status == Status.COMPLETED)
    completed_then = select(TicketEvent.ticket_id).where(completions, TicketEvent.at >= start, TicketEvent.at < end)
    history = session.execute(
        select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.from_status, TicketEvent.to_status, TicketEvent.data)
        .where(TicketEvent.ticket_id.in_(completed_then), TicketEvent.kind == "transition")
        .order_by(TicketEvent.ticket_id, TicketEvent.id))
    visits: list[Visit] = []
    engineer: dict[int, int | None] = {}
    latest: dict[int, Visit] = {}
    for ticket_id, at, before, after, data in history:
        if data and data.get("engineer"):
            engineer[ticket_id] = data["engineer"]["id"]
        if after == Status.COMPLETED:
            latest[ticket_id] = Visit(ticket_id, at, engineer.get(ticket_id))
            if start <= at < end:
                visits.append(latest[ticket_id])
        elif before in REWORK_FROM and after == Status.DISPATCHED and ticket_id in latest:
            latest[ticket_id].reworked = True
    return visits


def monthly_report(session: Session, month: date, settings: Settings) -> dict[str, Any]:
    start, end = month_bounds(month, settings)
    visits = visits_between(session, start, end)
    ids = {visit.ticket_id for visit in visits}
    answers = {(f.ticket_id, f.completed_at): f for f in session.scalars(
        select(FollowUp).where(FollowUp.ticket_id.in_(ids), FollowUp.status == DONE))}
    categories = dict(session.execute(select(Ticket.id, Ticket.category).where(Ticket.id.in_(ids))).all())
    names = dict(session.execute(select(Engineer.id, Engineer.name)).all())
    total, by_category, by_engineer = Figures(), {}, {}
    for visit in visits:
        answer = answers.get((visit.ticket_id, visit.completed_at))
        total.count(visit, answer)
        by_category.setdefault(categories[visit.ticket_id], Figures()).count(visit, answer)
        by_engineer.setdefault(visit.engineer_id, Figures()).count(visit, answer)
    order = list(CATEGORY_NAMES)
    return {
        "month": f"{month:%Y-%m}", **total.as_dict(),
        "by_category": [{"category": code, "name": CATEGORY_NAMES.get(code, code), **figures.as_dict()}
                        for code, figures in sorted(by_category.items(),
                                                    key=lambda item: order.index(item[0]) if item[0] in order else 99)],
        "by_engineer": [{"engineer_id": engineer_id, "name": names.get(engineer_id, "（未派单）"), **figures.as_dict()}
                        for engineer_id, figures in sorted(by_engineer.items(),
                                                           key=lambda item: names.get(item[0], ""))],
    }
