"""Call records: every call the voice side handles leaves one, answered or not.

Each step is its own short transaction, so a call that drops (or a process that dies)
keeps everything recorded up to that moment. Used from the telephone threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.store import CallRecord


@dataclass
class CallFilter:
    direction: str = ""
    ticket_id: int | None = None
    limit: int = 200
    offset: int = 0


class CallLog:
    """The call records of one node: each names the node (and the run of it) that took the call."""

    def __init__(self, sessions: sessionmaker, node: str = "", node_run_id: int | None = None):
        self.sessions = sessions
        self.node = node
        self.node_run_id = node_run_id

    def open(self, *, sip_call_id: str, direction: str, line: str, caller: str, called: str,
             at: datetime | None = None, outcome: str = "in_progress", ticket_id: int | None = None) -> int:
        with self.sessions() as session, session.begin():
            record = CallRecord(sip_call_id=sip_call_id, direction=direction, line=line, caller=caller,
                                called=called, started_at=at or utcnow(), outcome=outcome, ticket_id=ticket_id,
                                node=self.node, node_run_id=self.node_run_id)
            session.add(record)
            session.flush()
            return record.id

    def update(self, call_id: int, **fields: Any) -> None:
        """Set answered_at, ticket_id, recording_path, transcript ... as they become known."""
        unknown = set(fields) - {"answered_at", "ended_at", "ticket_id", "recording_path", "transcript", "outcome"}
        if unknown:
            raise ValueError(f"not call record fields: {sorted(unknown)}")
        with self.sessions() as session, session.begin():
            record = session.get(CallRecord, call_id)
            for key, value in fields.items():
                setattr(record, key, value)

    def close(self, call_id: int, outcome: str, at: datetime | None = None) -> None:
        self.update(call_id, outcome=outcome, ended_at=at or utcnow())

    def record_finished(self, *, outcome: str, ended_at: datetime, answered_at: datetime | None = None,
                        **opened: Any) -> int:
        """A whole call at once, after it is over (a ring that never connected, a short alert):
        ``opened`` as for ``open``."""
        record_id = self.open(**opened)
        if answered_at is not None:
            self.update(record_id, answered_at=answered_at)
        self.close(record_id, outcome, ended_at)
        return record_id


def find_calls(session: Session, wanted: CallFilter) -> list[CallRecord]:
    query = select(CallRecord)
    if wanted.direction:
        query = query.where(CallRecord.direction == wanted.direction)
    if wanted.ticket_id is not None:
        query = query.where(CallRecord.ticket_id == wanted.ticket_id)
    return list(session.scalars(query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
                                .limit(wanted.limit).offset(wanted.offset)))
