"""Stored incidents (core.incidents): one building-wide outage and the callers attached to it.

A model module of its own on the shared ``Base`` (core/store.py is full); the migrations' env and
the schema check import it, so the tables are part of the one schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.store import Base


class Incident(Base):
    """停水, 停电, 电梯, 燃气 … in one or more buildings (or a public area), open until the desk closes it."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), index=True)  # core.incidents.KINDS
    buildings: Mapped[list[Any]]  # building numbers as tickets store them ("3", "A"); may be empty with an area
    area: Mapped[str] = mapped_column(String(32), default="")
    action: Mapped[str] = mapped_column(String(16))  # what is being done: core.incidents.ACTIONS (spoken)
    note: Mapped[str] = mapped_column(Text, default="")  # the desk's own words, not spoken
    expected_end: Mapped[datetime | None]
    opened_at: Mapped[datetime] = mapped_column(index=True)
    opened_by: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), unique=True)  # declared from
    closed_at: Mapped[datetime | None] = mapped_column(index=True)  # None: open
    closed_by: Mapped[str] = mapped_column(String(64), default="")
    call_back: Mapped[bool] = mapped_column(Boolean, default=False)  # on closing: ring the callers 「已恢复…」

    callers: Mapped[list[IncidentCaller]] = relationship(
        order_by="IncidentCaller.id", cascade="all, delete-orphan", lazy="selectin", back_populates="incident")


class IncidentCaller(Base):
    """One resident who called about the incident: their call, number, words and how they were matched."""

    __tablename__ = "incident_callers"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    phone: Mapped[str] = mapped_column(String(32), default="", index=True)
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))  # if one was made
    building: Mapped[str] = mapped_column(String(16), default="")
    unit: Mapped[str] = mapped_column(String(8), default="")
    room: Mapped[str] = mapped_column(String(16), default="")
    words: Mapped[str] = mapped_column(Text, default="")
    how: Mapped[str] = mapped_column(String(16), default="")  # caller_id | speech | keypad | ticket
    # Closing with a call-back: pending -> called | no_answer | failed | skipped (no number).
    call_back_state: Mapped[str] = mapped_column(String(12), default="")
    call_back_record_id: Mapped[int | None] = mapped_column(Integer)

    incident: Mapped[Incident] = relationship(back_populates="callers")
