"""The storage of the watch's two short calls (``callcenter/ivr/notice_calls.py``) as the telephone
side uses it: claim a call (committed before anybody dials, so no two nodes make it), then store how
it went. Each method is its own short transaction and returns plain facts; the rules are
``core.complaints``' and ``core.eta``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import complaints, eta
from core.settings import Settings


@dataclass(frozen=True)
class Escalation:
    """A complaint nobody acted on, now this process's to ring the managers about: which home it is."""

    ticket_id: int
    number: str  # the ticket's
    building: str
    unit: str
    room: str
    area: str


@dataclass(frozen=True)
class SlipCall:
    """A late engineer's resident, now this process's to phone with the apology."""

    ticket_id: int
    number: str  # the ticket's
    phone: str


class NoticeCallService:
    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def claim_escalation(self, complaint_id: int, now: datetime) -> Escalation | None:
        """Take the complaint's one call to the managers; None: handled, taken or not due."""
        with self.sessions() as session, session.begin():
            complaint = complaints.claim_escalation(session, complaint_id, now)
            if complaint is None:
                return None
            ticket = complaint.ticket
            return Escalation(ticket.id, ticket.number, ticket.building, ticket.unit, ticket.room, ticket.area)

    def record_escalation(self, complaint_id: int, rung: list[tuple[str, bool]], now: datetime) -> None:
        """How ringing each manager went: (contact, answered)."""
        with self.sessions() as session, session.begin():
            complaints.record_escalation(session, complaint_id, [complaints.Ring(c, a) for c, a in rung], now)

    def claim_slip(self, slip_id: int, now: datetime) -> SlipCall | None:
        """Take the slip's one apology call; None: stopped, taken or no longer needed."""
        with self.sessions() as session, session.begin():
            slip = eta.claim(session, slip_id, now, self.settings)
            if slip is None:
                return None
            return SlipCall(slip.ticket_id, slip.ticket.number, slip.phone)

    def record_slip_call(self, slip_id: int, outcome: str, call_record_id: int | None, now: datetime) -> None:
        with self.sessions() as session, session.begin():
            eta.record_call(session, slip_id, outcome, call_record_id, now)
