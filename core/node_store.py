"""The records of several nodes sharing one database (core.nodes, core.lease, core.changes): each
node's runs and heartbeats, the leases, and the change feed for the consoles of every node."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class NodeRun(Base):
    """One run of a node (a ``callcenter serve`` process, from its start to its stop): its heartbeat
    tells the other nodes it is alive."""

    __tablename__ = "node_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(64), index=True)  # settings.node_name
    host: Mapped[str] = mapped_column(String(64), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)  # the last heartbeat
    stopped_at: Mapped[datetime | None]  # a clean stop


class Lease(Base):
    """A job only one node may do at a time (the scheduler): held by ``holder`` until ``expires_at``
    unless renewed; after that any node may take it."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    acquired_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class LiveChange(Base):
    """What changed, for the consoles of every node, written by database triggers (core.changes) on
    SQLite, where writers take turns, so ids arrive in commit order. PostgreSQL's triggers NOTIFY
    instead and leave this table empty."""

    __tablename__ = "live_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # an id is never handed out twice, even after a purge

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    call_id: Mapped[int | None] = mapped_column(Integer)
