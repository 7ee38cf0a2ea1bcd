"""Storage of the watches kept on tickets after the phone has had its say: complaints (投诉,
``core.complaints``) and arrival slips (到场超时, ``core.eta``). Same ``Base`` as ``core.store``
(``core.store`` is past its size limit, so these rows live here); Alembic's env imports this module.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.store import Base, Ticket


class Complaint(Base):
    """A resident unhappy after a repair (a 不满意 or "not fixed" follow-up): who handles it by when,
    and whether the manager had to be phoned because nobody did."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # Equal to ticket_id until handled, NULL after: the unique index keeps one open complaint per ticket
    # even when several nodes record the same unhappy answer.
    open_ticket_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id", ondelete="SET NULL"))
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id", ondelete="SET NULL"))
    opened_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)  # what the resident said, as the follow-up recorded it
    due_at: Mapped[datetime] = mapped_column(index=True)  # handled by then (followup.complaint_due_hours)
    # The manager is phoned at escalate_at unless somebody acted (followup.complaint_minutes of calling hours).
    escalate_at: Mapped[datetime] = mapped_column(index=True)
    escalation: Mapped[str] = mapped_column(String(12), index=True)  # see core.complaints.ESCALATION_NAMES
    escalated_at: Mapped[datetime | None]  # when the call was claimed
    escalation_result: Mapped[str] = mapped_column(Text, default="")  # whom we rang and how it went
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[str] = mapped_column(String(64), default="")
    handled_note: Mapped[str] = mapped_column(Text, default="")

    ticket: Mapped[Ticket] = relationship(lazy="joined")


class EtaSlip(Base):
    """An accepted ticket whose promised arrival was missed by ``sla.eta_slip_minutes``: the desk is
    told, and the resident is phoned with an apology unless the desk stops the call. One row per
    ticket per promised time, so each promise is apologised for once."""

    __tablename__ = "eta_slips"
    __table_args__ = (UniqueConstraint("ticket_id", "promised_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    promised_at: Mapped[datetime]  # the arrival promised (the appointment, or the SLA's arrival time)
    detected_at: Mapped[datetime]
    phone: Mapped[str] = mapped_column(String(32), default="")
    call_at: Mapped[datetime] = mapped_column(index=True)  # the call goes out then unless stopped
    status: Mapped[str] = mapped_column(String(12), index=True)  # see core.eta.STATUS_NAMES
    claimed_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(12), default="")  # answered, no_answer, busy, failed
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id", ondelete="SET NULL"))
    stopped_by: Mapped[str] = mapped_column(String(64), default="")  # the clerk who stopped the call
    updated_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(lazy="joined")


# A ticket's complaints and slips, newest first, for its JSON (loaded with a list of tickets in one
# query each). View-only: the rows are written through core.complaints and core.eta.
Ticket.complaints = relationship(Complaint, viewonly=True, lazy="selectin", order_by=Complaint.id.desc())
Ticket.eta_slips = relationship(EtaSlip, viewonly=True, lazy="selectin", order_by=EtaSlip.id.desc())
