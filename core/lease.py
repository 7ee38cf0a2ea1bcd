"""A lease in the database: one holder at a time for a job that must not run twice (the scheduler).

A row per lease names its holder and when the lease runs out. Taking or renewing it is one
UPDATE that succeeds only if this holder has it or it ran out; PostgreSQL lets one such UPDATE
through at a time (the row lock, and the condition checked again after it), SQLite takes one
writer at a time. The holder renews well before the end; a holder that dies stops renewing and
another node takes the lease once it ran out. The same works on SQLite and PostgreSQL.

Times come from each node's clock: nodes keep their clocks in step (NTP), which is far closer
than the seconds a lease lasts. A holder also stops counting on its lease ``SAFETY_SECONDS``
(a quarter of the lease at most) before the end by its own monotonic clock, in case a renewal stalls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.node_store import Lease as LeaseRow

log = logging.getLogger(__name__)
SAFETY_SECONDS = 2.0
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class LeaseState:
    held: bool
    holder: str  # who holds it now ("" if nobody); a holder is "node_name/instance"


class Lease:
    """The lease ``name`` as seen by ``holder`` (unique per process: node name and a random part)."""

    def __init__(self, sessions: sessionmaker, name: str, holder: str, seconds: float,
                 clock: Callable[[], datetime] = utcnow):
        self.sessions, self.name, self.holder, self.seconds, self.clock = sessions, name, holder, seconds, clock
        self._valid_until = 0.0  # time.monotonic() after which we no longer count on holding it
        self.current_holder = ""

    @property
    def held(self) -> bool:
        """This process holds the lease now (read by the jobs before each run, and by health)."""
        return time.monotonic() < self._valid_until

    def acquire(self) -> LeaseState:
        """Take the lease if it is free or ran out, or renew it if ours; one short transaction."""
        started = time.monotonic()
        now = self.clock()
        with self.sessions() as session, session.begin():
            _ensure_row(session, self.name)
            taken = session.execute(
                update(LeaseRow).where(LeaseRow.name == self.name,
                                       or_(LeaseRow.holder == self.holder, LeaseRow.holder == "",
                                           LeaseRow.expires_at < now))
                .values(holder=self.holder, expires_at=now + timedelta(seconds=self.seconds),
                        # SET sees the row as it was: a renewal keeps the time it was taken
                        acquired_at=case((LeaseRow.holder == self.holder, LeaseRow.acquired_at), else_=now))
                .execution_options(synchronize_session=False)).rowcount == 1
            self.current_holder = lease_holder(session, self.name, now)
        was_held = self.held
        self._valid_until = started + self.seconds - min(SAFETY_SECONDS, self.seconds / 4) if taken else 0.0
        if taken and not was_held:
            log.info("lease %s taken by %s", self.name, self.holder)
        elif was_held and not taken:
            log.warning("lease %s lost to %s", self.name, self.current_holder or "nobody")
        return LeaseState(taken, self.current_holder)

    def release(self) -> None:
        """Give the lease up at once (a clean stop): another node takes it at its next try."""
        self._valid_until = 0.0
        with self.sessions() as session, session.begin():
            # Ran out now: the vacancy counts from here (vacant_since), and anyone may take it.
            session.execute(update(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                            .values(holder="", acquired_at=None, expires_at=self.clock())
                            .execution_options(synchronize_session=False))
        self.current_holder = ""
        log.info("lease %s released by %s", self.name, self.holder)


def lease_holder(session: Session, name: str, now: datetime) -> str:
    """Who holds ``name`` now, "" if nobody."""
    row = session.execute(select(LeaseRow.holder, LeaseRow.expires_at).where(LeaseRow.name == name)).first()
    return row.holder if row is not None and row.expires_at >= now else ""


def vacant_since(session: Session, name: str, now: datetime) -> datetime | None:
    """Since when nobody holds ``name`` (None while somebody does): when it ran out or was given up,
    read from the database, so every node that looks gets the same answer. A lease nobody ever held
    is vacant from the first look of any node (that moment is stored)."""
    _ensure_row(session, name, expires_at=now)
    session.execute(update(LeaseRow).where(LeaseRow.name == name, LeaseRow.expires_at == NEVER)
                    .values(expires_at=now).execution_options(synchronize_session=False))
    row = session.execute(select(LeaseRow.holder, LeaseRow.expires_at).where(LeaseRow.name == name)).one()
    return None if row.holder and row.expires_at >= now else min(row.expires_at, now)


def _ensure_row(session: Session, name: str, expires_at: datetime = NEVER) -> None:
    if session.scalar(select(LeaseRow.name).where(LeaseRow.name == name)) is not None:
        return
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[session.get_bind().dialect.name]
    # Two nodes may both find it missing: the second insert does nothing instead of failing.
    session.execute(dialect.insert(LeaseRow).values(name=name, holder="", expires_at=expires_at)
                    .on_conflict_do_nothing(index_elements=["name"]))
