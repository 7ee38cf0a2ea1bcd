"""Incidents' storage as the telephone side uses it: the hotline's notice (is an outage open here,
count this caller) and the call-back when one is over. Each method is its own short transaction and
returns plain facts, so the call flows hold no database session of their own. The rules are
``core.incidents``'; this is only where the telephone threads reach them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import incidents
from core.incident_store import Incident
from core.incidents import Place
from core.settings import Settings


@dataclass(frozen=True)
class IncidentFacts:
    """What a caller is told of an incident: 「三号楼目前停水，正在抢修，预计下午三点恢复」."""

    id: int
    kind: str  # core.incidents.KINDS
    action: str  # core.incidents.ACTIONS
    expected_end: datetime | None

    @classmethod
    def of(cls, incident: Incident) -> IncidentFacts:
        return cls(incident.id, incident.kind, incident.action, incident.expected_end)


@dataclass(frozen=True)
class CallBackFacts:
    """A counted caller this process now rings with 「三号楼已恢复供水」."""

    phone: str
    kind: str
    building: str  # the caller's, if known
    area: str  # the incident's


class IncidentCalls:
    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def open_kinds(self) -> set[str]:
        """The kinds of every incident open now (any node's)."""
        with self.sessions() as session:
            return {incident.kind for incident in incidents.open_incidents(session)}

    def open_for_place(self, place: Place) -> IncidentFacts | None:
        """The open incident at the caller's building, announced right after the greeting."""
        with self.sessions() as session:
            incident = incidents.open_for_place(session, place)
            return IncidentFacts.of(incident) if incident is not None else None

    def incident_for(self, place: Place, kind: str, now: datetime) -> IncidentFacts | None:
        """The incident a caller reporting ``kind`` at ``place`` belongs to (``incidents.incident_for``),
        one formed just now from an earlier ticket included (then committed); None: their own report."""
        with self.sessions() as session, session.begin():
            incident = incidents.incident_for(session, place, kind, now, self.settings)
            return IncidentFacts.of(incident) if incident is not None else None

    def attach_call(self, incident_id: int, *, at: datetime, phone: str, call_record_id: int | None, place: Place,
                    words: str, how: str) -> int:
        """Count a caller on the incident, with no ticket; the IncidentCaller's id."""
        with self.sessions() as session, session.begin():
            caller = incidents.attach_call(session, incidents.get(session, incident_id), at=at, phone=phone,
                                           call_record_id=call_record_id, place=place, words=words, how=how)
            return caller.id

    def claim_call_back(self, caller_id: int) -> CallBackFacts | None:
        """Take a pending call-back (committed before dialling); None: taken or done."""
        with self.sessions() as session, session.begin():
            caller = incidents.claim_call_back(session, caller_id)
            if caller is None:
                return None
            return CallBackFacts(caller.phone, caller.incident.kind, caller.building, caller.incident.area)

    def record_call_back(self, caller_id: int, state: str, record_id: int | None) -> None:
        with self.sessions() as session, session.begin():
            incidents.record_call_back(session, caller_id, state, record_id)
