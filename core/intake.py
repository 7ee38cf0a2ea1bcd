"""Phone drafts: the ticket a hotline call writes step by step, before anyone reviews it.

A draft is saved as soon as anything is known and updated on every step, so a caller who
hangs up at any moment leaves what was understood. Only the front desk's review (待审核 ->
受理) turns it into a ticket engineering works on.

Once anybody else has touched the draft (the desk corrected or reviewed it, wrote a note, the
emergency call-out gave it to an engineer), the call no longer writes its fields: what it learns
after that is added as an event of suggestions, and whatever the desk set stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core import desk
from core.callback_list import Abandoned, record_abandoned
from core.callouts import CallOutState, latest_callout
from core.claims import Conflict, claim
from core.desk import HOTLINE, NewTicket
from core.incident_service import IncidentCalls
from core.settings import Settings
from core.store import Resident, Ticket
from core.ticket_call_service import TicketCallService
from core.tickets import Channel, Status, Urgency, current_due_at
from core.triage import Draft

PENDING_DESCRIPTION = "（电话报修，内容请听录音）"
# Categories fixed in a public place or that need no home visit: no visit time is asked.
NO_VISIT_CATEGORIES = frozenset({"elevator", "public_facility"})
DRAFT_FIELDS = {"description", "phone", "reporter_name", "building", "unit", "room", "area", "category",
                "urgency", "appointment_start", "appointment_end"}


@dataclass
class DraftFacts(NewTicket):
    """What the call has established so far; ``confirmed`` names the facts the caller confirmed."""

    channel: Channel = Channel.PHONE
    confirmed: set[str] = field(default_factory=set)
    saved: dict[str, Any] = field(default_factory=dict)  # the fields as this call last wrote them
    saved_version: int | None = None  # the ticket's version right after that write

    def ticket_fields(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in DRAFT_FIELDS}
        values["description"] = self.description or PENDING_DESCRIPTION
        return values

    @property
    def address_said(self) -> bool:
        return bool(self.room or self.area)

    def set_address(self, building: str | None, unit: str | None, room: str | None, area: str | None) -> None:
        self.building, self.unit, self.room, self.area = building or "", unit or "", room or "", area or ""

    def merge(self, draft: Draft) -> None:
        """What the triage of the caller's description adds: its category; its urgency only if that
        is an emergency (a later calm sentence does not undo one); its appointment if it names one;
        its address only if none was said yet (an address given or confirmed on its own step wins)."""
        self.category = draft.category
        if draft.urgency == Urgency.EMERGENCY:
            self.urgency = Urgency.EMERGENCY
        if draft.appointment:  # core.triage.Appointment: aware datetimes already
            self.appointment_start, self.appointment_end = draft.appointment.start, draft.appointment.end
        if not self.address_said:
            self.set_address(draft.address.building, draft.address.unit, draft.address.room, draft.address.area)

    def needs_visit_time(self) -> bool:
        """Whether the caller is asked when the engineer may come: not in an emergency (they come
        at once), not for a public area or a category that needs no home visit, nor when a time
        was said already."""
        return not (self.urgency == Urgency.EMERGENCY or self.area or self.appointment_start
                    or self.category in NO_VISIT_CATEGORIES)


class PhoneDrafts:
    """Saves a call's draft ticket in short transactions from the call's own thread."""

    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings
        # The same call's other questions of the database: an outage open where the caller lives
        # (incident_notice.py), and who is coming to an emergency (HotlineCall.who_is_coming).
        self.incidents = IncidentCalls(sessions, settings)
        self.tickets = TicketCallService(sessions, settings)

    def save(self, ticket_id: int | None, facts: DraftFacts, now: datetime, step: str) -> tuple[int, str]:
        """Create the draft (first call) or bring it up to date; returns (id, number). A change by
        somebody else in the very moment of the save is seen on the next try, as a touch."""
        for _ in range(5):
            try:
                with self.sessions() as session, session.begin():
                    ticket_id, number, version = self._save(session, ticket_id, facts, now, step)
            except Conflict:
                continue
            facts.saved, facts.saved_version = facts.ticket_fields(), version
            return ticket_id, number
        raise RuntimeError(f"draft {ticket_id} kept changing while the call saved it")

    def _save(self, session, ticket_id: int | None, facts: DraftFacts, now: datetime, step: str
              ) -> tuple[int, str, int | None]:
        values = facts.ticket_fields()
        if ticket_id is None:
            ticket = desk.create_ticket(session, NewTicket(channel=Channel.PHONE, reported_at=now, **values),
                                        HOTLINE, now, self.settings)
            return ticket.id, ticket.number, ticket.version
        ticket = desk.get_ticket(session, ticket_id)
        learned = {key: value for key, value in values.items()
                   if key not in facts.saved or facts.saved[key] != value}  # new since the call's last save
        touched = ticket.status != Status.DRAFT or ticket.version != facts.saved_version
        differs = {key: value for key, value in learned.items() if getattr(ticket, key) != value}
        if touched:
            if differs:
                desk.record_event(ticket, HOTLINE, now, "call", note=f"{step}（前台已处理此单，来电内容仅作参考）",
                                  data={"suggestions": {key: {"ticket": _plain(getattr(ticket, key)), "call": _plain(value)}
                                                        for key, value in differs.items()},
                                        "confirmed": sorted(facts.confirmed)})
            return ticket.id, ticket.number, facts.saved_version
        if differs:
            claim(session, ticket, facts.saved_version)  # raises Conflict if touched just now
            changes = {key: {"from": _plain(getattr(ticket, key)), "to": _plain(value)} for key, value in differs.items()}
            for key, value in differs.items():
                setattr(ticket, key, value)
            ticket.updated_at = now
            ticket.due_at = current_due_at(ticket, self.settings.sla)
            desk.record_event(ticket, HOTLINE, now, "call", note=step,
                              data={"changes": changes, "confirmed": sorted(facts.confirmed)})
            session.flush()
        return ticket.id, ticket.number, ticket.version

    def resident(self, phone: str) -> Resident | None:
        """The directory's entry for a caller's number (``desk.resident_by_phone``), if any."""
        with self.sessions() as session:
            resident = desk.resident_by_phone(session, phone)
            if resident is not None:
                session.expunge(resident)
            return resident

    def callout_state(self, ticket_id: int) -> CallOutState | None:
        """How the draft's emergency call-out stands (its running one, else its latest); None: none."""
        with self.sessions() as session:
            callout = latest_callout(session, ticket_id)
            return CallOutState(callout.state) if callout is not None else None

    def gave_up(self, call: Abandoned) -> int:
        """A caller who hung up before anything was understood goes on the call-back list (回拨)."""
        return record_abandoned(self.sessions, call)

    def status_of(self, number: str) -> Status | None:
        """A caller asking about their ticket by its number."""
        with self.sessions() as session:
            status = session.scalar(select(Ticket.status).where(Ticket.number == number))
            return Status(status) if status else None


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
