"""No lost updates on tickets: a change goes through only on the ticket as it was read.

Every function that changes a ticket row ``claim``s it first (``core.desk``: moves, corrections,
notes; ``core.intake``: the hotline's draft saves). Whoever changed it in between wins; the other
gets ``Conflict`` with how the ticket stands now (the API: 409 with what changed), having written
nothing, and the session still usable, so the phone side can look again and act on what it finds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.store import Ticket, TicketEvent
from core.tickets import STATUS_NAMES, Status, TransitionError


class Conflict(TransitionError):
    """The ticket changed since it was read (somebody else was quicker): nothing was written.
    Carries how it stands now, so whoever tried can be told what changed (the API answers 409)."""

    def __init__(self, ticket_id: int, status: Status, version: int, updated_at: datetime,
                 last_change: dict[str, Any] | None):
        super().__init__(f"维修单刚被其他人修改，现在是「{STATUS_NAMES[Status(status)]}」；请查看后再操作")
        self.ticket_id, self.status, self.version = ticket_id, Status(status), version
        self.updated_at, self.last_change = updated_at, last_change


def claim(session: Session, ticket: Ticket, seen_version: int | None = None) -> None:
    """Go on with a change only if the ticket is still as it was read (``seen_version``: as the user
    saw it); else raise Conflict, having written nothing. From here to the commit the row is ours:
    PostgreSQL locks it, SQLite holds its one write lock; whoever comes next waits, then conflicts.

    A no-op UPDATE on the version does both the check and the lock; the change itself then bumps
    the version (``Ticket.version`` is the mapper's version counter, so even a write that forgot to
    claim fails rather than overwrite)."""
    session.flush()  # this unit's own earlier changes are not a conflict
    seen = ticket.version if seen_version is None else seen_version
    matched = affected_rows(session.execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.version == seen).values(version=Ticket.version)
        .execution_options(synchronize_session=False)))
    if matched == 1:
        return
    session.refresh(ticket)
    last = session.scalar(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                          .order_by(TicketEvent.id.desc()).limit(1))
    last_change = None if last is None else {
        "at": last.at, "actor": last.actor, "kind": last.kind, "to_status": last.to_status, "note": last.note}
    raise Conflict(ticket.id, Status(ticket.status), ticket.version, ticket.updated_at, last_change)


def hold(session: Session, ticket: Ticket) -> None:
    """``claim`` the ticket as it is now, whatever changed since it was read (for additions such as
    notes, which overwrite nothing)."""
    for _ in range(10):
        try:
            return claim(session, ticket)
        except Conflict:
            continue  # claim refreshed it: take the newer version
    raise RuntimeError(f"ticket {ticket.id} keeps changing; giving up")
