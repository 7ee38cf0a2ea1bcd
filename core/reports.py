"""The service's figures, each defined once.

The follow-up figures count repair visits: every completion (完成) in the period is one, so a
ticket that went 返修 and was completed again counts twice, as both visits needed their 回访.

- 回访率 = visits whose follow-up got the resident's answer (by the call, or by a clerk) ÷ visits
- 满意率 = of those, answered 满意 or 基本满意 without saying it is not fixed ÷ followed-up visits
- 返修率 = visits followed by a 返修 (from the follow-up or a resident's complaint) ÷ visits
- 零修及时率 = tickets completed within their time limits ÷ completed tickets (``core.tickets.on_time``)

The month's report gives them per category (the ticket's) and per engineer (who had the ticket
when it was completed); the manager's dashboard for any period, with the tickets' counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.followup import DONE, SATISFIED_RATINGS
from core.settings import Settings, SlaSettings
from core.store import Engineer, FollowUp, Ticket, TicketEvent
from core.tickets import CATEGORY_NAMES, Status, on_time

REWORK_FROM = (Status.COMPLETED, Status.FOLLOWED_UP)


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
            self.satisfied += is_satisfied(answer)

    def as_dict(self) -> dict[str, Any]:
        return {"回访率": self.followup_rate, "满意率": self.satisfaction_rate,
                "返修率": self.rework_rate, "完成数": self.visits, "回访数": self.followed_up,
                "满意数": self.satisfied, "返修数": self.reworked}

    @property
    def followup_rate(self) -> float | None:
        """回访率"""
        return rate(self.followed_up, self.visits)

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率: the one definition (module docstring)."""
        return rate(self.satisfied, self.followed_up)

    @property
    def rework_rate(self) -> float | None:
        """返修率"""
        return rate(self.reworked, self.visits)


def is_satisfied(answer: FollowUp) -> bool:
    """A satisfied answer: 满意 or 基本满意, and the resident did not say the fault is still there."""
    return answer.rating in SATISFIED_RATINGS and answer.resolved is not False


def rate(part: int, whole: int) -> float | None:
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


def answered_visits(session: Session, start: datetime, end: datetime) -> list[tuple[Visit, FollowUp | None]]:
    """Every visit completed in [start, end), with its follow-up's answer if it got one."""
    visits = visits_between(session, start, end)
    ids = {visit.ticket_id for visit in visits}
    answers = {(f.ticket_id, f.completed_at): f for f in session.scalars(
        select(FollowUp).where(FollowUp.ticket_id.in_(ids), FollowUp.status == DONE))}
    return [(visit, answers.get((visit.ticket_id, visit.completed_at))) for visit in visits]


def visit_figures(session: Session, start: datetime, end: datetime) -> Figures:
    """回访率, 满意率, 返修率 of the visits completed in [start, end)."""
    total = Figures()
    for visit, answer in answered_visits(session, start, end):
        total.count(visit, answer)
    return total


def monthly_report(session: Session, month: date, settings: Settings) -> dict[str, Any]:
    start, end = month_bounds(month, settings)
    visits = answered_visits(session, start, end)
    ids = {visit.ticket_id for visit, _ in visits}
    categories = dict(session.execute(select(Ticket.id, Ticket.category).where(Ticket.id.in_(ids))).all())
    names: dict[int | None, str] = dict(session.execute(select(Engineer.id, Engineer.name)).all())
    total = Figures()
    by_category: dict[str, Figures] = {}
    by_engineer: dict[int | None, Figures] = {}
    for visit, answer in visits:
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


def ticket_report(session: Session, start: datetime, end: datetime, sla: SlaSettings) -> dict[str, Any]:
    """The manager's dashboard for [start, end): the tickets reported in it (counts, 零修及时率 of
    those completed) and the follow-up figures of the visits completed in it (the same 回访率 and
    满意率 as the month's report, so one period never shows two different 满意率)."""
    in_range = (Ticket.reported_at >= start) & (Ticket.reported_at < end)
    by_status = dict(session.execute(
        select(Ticket.status, func.count()).where(in_range).group_by(Ticket.status)).all())
    by_category = dict(session.execute(
        select(Ticket.category, func.count()).where(in_range).group_by(Ticket.category)).all())
    by_urgency = dict(session.execute(
        select(Ticket.urgency, func.count()).where(in_range).group_by(Ticket.urgency)).all())
    completed = session.scalars(select(Ticket).where(in_range, Ticket.completed_at.is_not(None))).all()
    on_time_count = sum(1 for t in completed if on_time(t, sla))
    visits = visit_figures(session, start, end)
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "total": sum(by_status.values()),
        "by_status": by_status, "by_category": by_category, "by_urgency": by_urgency,
        "completed": len(completed), "on_time": on_time_count,
        "on_time_rate": rate(on_time_count, len(completed)),
        "visits": visits.visits, "followed_up": visits.followed_up, "followup_rate": visits.followup_rate,
        "satisfied": visits.satisfied, "satisfaction_rate": visits.satisfaction_rate,
    }
