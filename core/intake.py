"""Phone drafts: the ticket a hotline call writes step by step, before anyone reviews it.

A draft is saved as soon as anything is known and updated on every step, so a caller who
hangs up at any moment leaves what was understood. Only the front desk's review (待审核 ->
受理) turns it into a ticket engineering works on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core import desk
from core.desk import HOTLINE, NewTicket
from core.settings import Settings
from core.store import Ticket
from core.tickets import Channel, Status, current_due_at

PENDING_DESCRIPTION = "（电话报修，内容请听录音）"
DRAFT_FIELDS = {"description", "phone", "reporter_name", "building", "unit", "room", "area", "category",
                "urgency", "appointment_start", "appointment_end"}


@dataclass
class DraftFacts(NewTicket):
    """What the call has established so far; ``confirmed`` names the facts the caller confirmed."""

    channel: Channel = Channel.PHONE
    confirmed: set[str] = field(default_factory=set)

    def ticket_fields(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in DRAFT_FIELDS}
        values["description"] = self.description or PENDING_DESCRIPTION
        return values


class PhoneDrafts:
    """Saves a call's draft ticket in short transactions from the call's own thread."""

    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def save(self, ticket_id: int | None, facts: DraftFacts, now: datetime, step: str) -> tuple[int, str]:
        """Create the draft (first call) or bring it up to date; returns (id, number)."""
        with self.sessions() as session, session.begin():
            if ticket_id is None:
                ticket = desk.create_ticket(session, NewTicket(channel=Channel.PHONE, reported_at=now,
                                                               **facts.ticket_fields()),
                                            HOTLINE, now, self.settings)
                return ticket.id, ticket.number
            ticket = desk.get_ticket(session, ticket_id)
            changes = {}
            for key, value in facts.ticket_fields().items():
                if getattr(ticket, key) != value:
                    changes[key] = {"from": _plain(getattr(ticket, key)), "to": _plain(value)}
                    setattr(ticket, key, value)
            if changes and ticket.status == Status.DRAFT:
                ticket.updated_at = now
                ticket.due_at = current_due_at(ticket, self.settings.sla)
                desk.record_event(ticket, HOTLINE, now, "call", note=step,
                                  data={"changes": changes, "confirmed": sorted(facts.confirmed)})
            return ticket.id, ticket.number

    def status_of(self, number: str) -> Status | None:
        """A caller asking about their ticket by its number."""
        with self.sessions() as session:
            status = session.scalar(select(Ticket.status).where(Ticket.number == number))
            return Status(status) if status else None


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
