"""How many tickets are open now, and how many of them are past their deadline, by urgency: read
from the database each time (several nodes share it; nothing is kept in memory)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.store import Ticket
from core.tickets import CLOSED, Urgency


@dataclass(frozen=True)
class OpenCount:
    open: int
    overdue: int  # open, and past the deadline of their present state (Ticket.due_at)


def open_tickets(session: Session, now: datetime) -> dict[str, OpenCount]:
    """Every urgency (also those with none open) -> its open and overdue counts."""
    overdue = func.sum(case((Ticket.due_at < now, 1), else_=0))
    rows = session.execute(select(Ticket.urgency, func.count(), overdue)
                           .where(Ticket.status.not_in([str(status) for status in CLOSED]))
                           .group_by(Ticket.urgency))
    counts = {str(urgency): OpenCount(0, 0) for urgency in Urgency}
    for urgency, total, late in rows:
        counts[str(urgency)] = OpenCount(int(total), int(late or 0))
    return counts
