"""The call-out's storage as the phone side uses it: one named method per question, each its own
short transaction, so the call flows and the runner hold no database sessions of their own.

The rules are ``core.callouts``' (and ``core.dispatch``'s); this is only where the telephone
threads reach them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from core import callouts, desk
from core.callouts import CallOutState, NextCall
from core.desk import CALLOUT, HOTLINE
from core.dispatch import Outcome
from core.settings import Settings
from core.store import CallOut, CallOutAttempt, CallRecord
from core.transcript import Transcript


@dataclass(frozen=True)
class JobFacts:
    """What an engineer rung for a ticket is told, as stored now (the caller may still be talking)."""

    building: str
    unit: str
    room: str
    area: str
    category: str
    phone: str
    recording_path: str  # the hotline call's recording, relative to settings.recordings_dir ("" none)
    transcript: Transcript  # ... and its transcript so far


@dataclass(frozen=True)
class RingResult:
    state: CallOutState  # the call-out's state after the ring was recorded
    engineer_id: int | None  # who has the job, if anybody


class CallOutService:
    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def start_or_attach(self, ticket_id: int, now: datetime) -> tuple[int | None, bool]:
        """A hotline caller's emergency: (the call-out's id, True if it joined one under way); the id
        is None when the ticket joined an outage's incident instead (core.incidents: nobody is paged).
        Raises ``callouts.CallOutError`` when the ticket cannot have one."""
        with self.sessions() as session, session.begin():
            callout, attached = callouts.start_or_attach(session, ticket_id, HOTLINE, now, self.settings)
            return (callout.id if callout is not None else None), attached

    def ringing(self) -> set[int]:
        """The ids of every call-out still ringing (in any process)."""
        with self.sessions() as session:
            return set(session.scalars(select(CallOut.id).where(CallOut.state == CallOutState.RINGING)))

    def ticket_of(self, callout_id: int) -> tuple[int, str]:
        """The call-out's ticket: (id, number)."""
        with self.sessions() as session:
            ticket = desk.get_ticket(session, session.get(CallOut, callout_id).ticket_id)
            return ticket.id, ticket.number

    def next_call(self, callout_id: int, now: datetime) -> NextCall:
        with self.sessions() as session, session.begin():
            return callouts.next_call(session, callout_id, now, self.settings)

    def state(self, callout_id: int) -> CallOutState | None:
        with self.sessions() as session:
            state = session.scalar(select(CallOut.state).where(CallOut.id == callout_id))
            return CallOutState(state) if state else None

    def first_ring_started(self, callout_id: int, attempt_id: int | None) -> datetime | None:
        """When the call-out started, if ``attempt_id`` is its first ring (else None): the time to first ring."""
        if attempt_id is None:
            return None
        with self.sessions() as session:
            first = session.scalar(select(func.min(CallOutAttempt.id)).where(CallOutAttempt.callout_id == callout_id))
            if first != attempt_id:
                return None
            return session.scalar(select(CallOut.started_at).where(CallOut.id == callout_id))

    def record_ring(self, attempt_id: int, outcome: Outcome, rang_seconds: float, now: datetime) -> RingResult:
        """How a ring ended (``callouts.record_outcome``; its CallOutError and NotFound pass through)."""
        with self.sessions() as session, session.begin():
            callout = callouts.record_outcome(session, attempt_id, outcome, rang_seconds, now, self.settings)
            return RingResult(CallOutState(callout.state), callout.engineer_id)

    def state_for_ticket(self, ticket_id: int) -> CallOutState | None:
        """How the ticket's call-out stands (its running one, else its latest); None: it has none."""
        with self.sessions() as session:
            callout = callouts.latest_callout(session, ticket_id)
            return CallOutState(callout.state) if callout is not None else None

    def job(self, ticket_id: int) -> JobFacts:
        """The ticket's address, category and phone, and the hotline call that reported it."""
        with self.sessions() as session:
            ticket = desk.get_ticket(session, ticket_id)
            record = session.scalar(select(CallRecord).where(CallRecord.ticket_id == ticket_id,
                                                             CallRecord.direction == "inbound")
                                    .order_by(CallRecord.id).limit(1))
            return JobFacts(ticket.building, ticket.unit, ticket.room, ticket.area, ticket.category, ticket.phone,
                            (record.recording_path or "") if record is not None else "",
                            Transcript.from_json(record.transcript if record is not None else None))

    def note_alert(self, ticket_id: int, contact: str, answered: bool, now: datetime) -> None:
        """Nobody took the job and a manager was rung with the alert: noted on the ticket."""
        result = "已接听" if answered else "未接通"
        with self.sessions() as session, session.begin():
            desk.record_event(desk.get_ticket(session, ticket_id), CALLOUT, now, "callout",
                              note=f"紧急呼叫无人接单，已电话提醒 {contact}：{result}",
                              data={"alert_contact": contact, "answered": answered})
