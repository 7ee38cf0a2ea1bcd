"""What the telephone side asks of a ticket on an outbound call: whom to phone, who is coming and
when, and the resident's answer to a paid repair's price. Each method is its own short transaction
and returns plain facts, so the call flows hold no database session of their own; the rules are
``core.tickets``' (the minutes promised) and ``core.consent``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import consent, desk
from core.consent import Method
from core.settings import Settings
from core.tickets import expected_arrival_minutes


@dataclass(frozen=True)
class TicketContact:
    number: str  # the ticket's
    phone: str  # the resident's ("" none)


@dataclass(frozen=True)
class Coming:
    """「维修人员张师傅已接单，预计二十分钟内到达」 as the ticket stands."""

    engineer: str | None  # the engineer's name, None before one took the job
    minutes: int  # core.tickets.expected_arrival_minutes


class TicketCallService:
    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def contact(self, ticket_id: int) -> TicketContact:
        """The ticket's number and the resident's phone (``desk.NotFound`` if there is no such ticket)."""
        with self.sessions() as session:
            ticket = desk.get_ticket(session, ticket_id)
            return TicketContact(ticket.number, ticket.phone)

    def coming(self, ticket_id: int, now: datetime) -> Coming:
        """Who has the job and in how many minutes they are expected (``now`` in the site's time)."""
        with self.sessions() as session:
            ticket = desk.get_ticket(session, ticket_id)
            name = ticket.engineer.name if ticket.engineer is not None else None
            return Coming(name, expected_arrival_minutes(ticket, self.settings.sla, now))

    def record_consent(self, ticket_id: int, *, agreed: bool, amount_fen: int, phone: str, recorded_by: str,
                       call_record_id: int, now: datetime) -> int:
        """A resident's answer by phone to the quoted price (``consent.record``, method phone); the
        consent's id. Raises ``consent.ConsentError`` when the ticket can no longer take one."""
        with self.sessions() as session, session.begin():
            stored = consent.record(session, desk.get_ticket(session, ticket_id), agreed=agreed, amount_fen=amount_fen,
                                    method=Method.PHONE, consented_by=phone, recorded_by=recorded_by, now=now,
                                    call_record_id=call_record_id)
            return stored.id
