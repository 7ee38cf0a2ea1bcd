"""Storage: the SQLAlchemy 2 models (the base, the engine and sessions: ``core.db``).

Times are stored in UTC and come back timezone-aware; pages show them in the site's time zone.
The schema is changed only through Alembic migrations in ``core/migrations``.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# The base, the engine and the models kept in their own modules stay reachable as store.X for callers.
from core.db import Base, UtcDateTime, make_engine, make_session_factory, normalise_url, utcnow  # noqa: F401
from core.node_store import Lease, LiveChange, NodeRun  # noqa: F401
from core.tickets import Channel, Role, Status, Urgency


class Ticket(Base):
    """One 维修单 through its whole life."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[Status] = mapped_column(String(16), index=True)
    status_changed_at: Mapped[datetime]
    channel: Mapped[Channel] = mapped_column(String(8))
    urgency: Mapped[Urgency] = mapped_column(String(12), index=True)
    category: Mapped[str] = mapped_column(String(24), default="other")
    # 报修人, 联系电话, 房号 (栋-单元-室) or a public area (电梯, 车库, 楼道 ...)
    reporter_name: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str] = mapped_column(String(32), default="", index=True)
    building: Mapped[str] = mapped_column(String(16), default="", index=True)
    unit: Mapped[str] = mapped_column(String(16), default="")
    room: Mapped[str] = mapped_column(String(16), default="")
    area: Mapped[str] = mapped_column(String(32), default="")
    description: Mapped[str] = mapped_column(Text)  # 报修内容
    reported_at: Mapped[datetime] = mapped_column(index=True)  # 报修时间
    received_by: Mapped[str] = mapped_column(String(64), default="")  # 接报人
    appointment_start: Mapped[datetime | None]  # 预约维修时间
    appointment_end: Mapped[datetime | None]
    is_vip: Mapped[bool] = mapped_column(Boolean, default=False)
    # 有偿 in-home work priced from the fee standard; public-area work is free.
    is_paid: Mapped[bool] = mapped_column(Boolean, default=False)
    fee_item_id: Mapped[int | None] = mapped_column(ForeignKey("fee_items.id"))
    quoted_fee: Mapped[float | None] = mapped_column(Float)
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"), index=True)
    dispatched_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]  # 接单时间
    arrived_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]  # 完成时间
    postponed_until: Mapped[datetime | None]  # 暂缓: the time promised to the resident
    # After the visit: 实际维修项目, 材料费/人工费, 客户提供材料的验证结果, 客户签名确认
    actual_item: Mapped[str] = mapped_column(Text, default="")
    material_fee: Mapped[float | None] = mapped_column(Float)
    labour_fee: Mapped[float | None] = mapped_column(Float)
    material_check: Mapped[str | None] = mapped_column(String(8))
    customer_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[str | None] = mapped_column(String(8))  # 回访 result
    cancel_reason: Mapped[str | None] = mapped_column(String(24))
    remarks: Mapped[str] = mapped_column(Text, default="")  # 备注
    # The deadline of the present state, kept in step so "overdue" is one indexed query.
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column(index=True)
    # Bumped by every change of the row and checked by it (``version_id_col``): a change made on a
    # ticket someone else changed since it was read fails instead of overwriting (core.desk.claim).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    engineer: Mapped[Engineer | None] = relationship(lazy="joined")
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id", cascade="all, delete-orphan"
    )
    calls: Mapped[list[CallRecord]] = relationship(order_by="CallRecord.id", viewonly=True)
    if TYPE_CHECKING:  # mapped in core.store_watch (Complaint, EtaSlip rows), which imports this module
        complaints: Mapped[list[Any]]
        eta_slips: Mapped[list[Any]]


class TicketEvent(Base):
    """Who did what to a ticket, when: every transition, correction and note."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))  # a username, or "hotline" for the IVR
    kind: Mapped[str] = mapped_column(String(16))  # created | transition | edit | note
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None]

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class TicketCounter(Base):
    """The last sequence number handed out per local day (ticket numbers read over the phone)."""

    __tablename__ = "ticket_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class Resident(Base):
    """The resident directory: a caller's number tells us who and where they are."""

    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    building: Mapped[str] = mapped_column(String(16), default="")
    unit: Mapped[str] = mapped_column(String(16), default="")
    room: Mapped[str] = mapped_column(String(16), default="")


class Engineer(Base):
    __tablename__ = "engineers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str] = mapped_column(String(32), default="")
    sip_uri: Mapped[str] = mapped_column(String(128), default="")
    skills: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class User(Base):
    """A staff account of the web console."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(String(16))
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class WebSession(Base):
    """A login; only the token's hash is stored, so a leaked database opens no session."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class FeeItem(Base):
    """One line of the 《有偿维修收费标准》 that the manager maintains."""

    __tablename__ = "fee_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(24), default="other")
    unit: Mapped[str] = mapped_column(String(16), default="次")
    material_fee: Mapped[float] = mapped_column(Float, default=0.0)
    labour_fee: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CallRecord(Base):
    """Every call the voice side handles, answered or not."""

    __tablename__ = "call_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(128), default="", index=True)  # for grepping logs
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    line: Mapped[str] = mapped_column(String(32), default="")
    caller: Mapped[str] = mapped_column(String(64), default="")
    called: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(24), default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    recording_path: Mapped[str] = mapped_column(String(256), default="")  # relative to settings.recordings_dir
    transcript: Mapped[dict[str, Any] | None]
    node: Mapped[str] = mapped_column(String(64), default="", index=True)  # the node that took it (node_name)
    # The process (run of that node) that took it: if that process is gone while the call is still
    # in progress, a surviving node closes the record (core.nodes).
    node_run_id: Mapped[int | None] = mapped_column(ForeignKey("node_runs.id", ondelete="SET NULL"), index=True)


class AuditEntry(Base):
    """Who did what that matters for privacy and security (core.audit): logins, failed logins,
    account changes, every playback of a recording. Only appended to."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_username_at", "action", "username", "at"),
                      Index("ix_audit_log_action_address_at", "action", "address", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(24))  # see core.audit.ACTIONS
    username: Mapped[str] = mapped_column(String(64), default="")  # who acted, or the name tried at a login
    address: Mapped[str] = mapped_column(String(64), default="")  # the client's address ("from where")
    target: Mapped[str] = mapped_column(String(64), default="")  # what it was done to: "call:12", "user:3"
    detail: Mapped[dict[str, Any] | None]


# --- the duty roster and emergency call-outs (core.roster, core.callouts) ----------------


class Shift(Base):
    """A weekly duty slot: on these weekdays from start to end (an end not after the start
    crosses midnight), for one skill or, with skill "", for every kind of repair."""

    __tablename__ = "shifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    weekdays: Mapped[list[Any]]  # ISO weekdays the shift starts on, 1 = Monday
    start_time: Mapped[time]
    end_time: Mapped[time]
    skill: Mapped[str] = mapped_column(String(16), default="", index=True)

    links: Mapped[list[ShiftLink]] = relationship(
        order_by="ShiftLink.position", cascade="all, delete-orphan", lazy="selectin"
    )


class ShiftLink(Base):
    """One place in a shift's escalation chain: primary, backup, supervisor, manager ..."""

    __tablename__ = "shift_links"
    __table_args__ = (UniqueConstraint("shift_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("engineers.id"))
    ring_seconds: Mapped[int | None] = mapped_column(Integer)  # None: callout.ring_seconds


class RosterOverride(Base):
    """A swap, leave or holiday: in [starts_at, ends_at) ``substitute`` stands in for ``replaced``
    wherever the pattern names them; no substitute means nobody covers."""

    __tablename__ = "roster_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    replaced_id: Mapped[int] = mapped_column(ForeignKey("engineers.id"))
    substitute_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class CallOut(Base):
    """Ringing the on-duty chain for one emergency ticket, until someone accepts or nobody does."""

    __tablename__ = "callouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # Equal to ticket_id while ringing, NULL after: the unique index lets only one call-out per
    # ticket run, even when several IVR processes share the database.
    running_ticket_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    state: Mapped[str] = mapped_column(String(12), index=True)  # ringing | accepted | exhausted | stopped
    skill: Mapped[str] = mapped_column(String(16), default="")
    shift_name: Mapped[str | None] = mapped_column(String(64))
    # The chain as it stood at the start, so a restart resumes the same steps whatever the roster says now.
    chain: Mapped[list[Any]]
    started_at: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(String(64))
    ended_at: Mapped[datetime | None]
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))  # who accepted
    stopped_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")

    attempts: Mapped[list[CallOutAttempt]] = relationship(
        order_by="CallOutAttempt.id", cascade="all, delete-orphan", lazy="selectin"
    )


class CallOutAttempt(Base):
    """One ring of one step. Stored before dialling, so no step is rung twice, not even after a crash."""

    __tablename__ = "callout_attempts"
    __table_args__ = (UniqueConstraint("callout_id", "round", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    callout_id: Mapped[int] = mapped_column(ForeignKey("callouts.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)  # 1.. for the chain; 0 for the last resort
    position: Mapped[int] = mapped_column(Integer)
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))  # None: the last resort
    contact: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(12))  # None while ringing; see core.dispatch.Outcome
    rang_seconds: Mapped[float | None] = mapped_column(Float)


# --- follow-up calls (core.followup), the kept 17:00 lists and the scheduler (core.jobs) ----------


class FollowUp(Base):
    """One 回访 of one completed repair: when to call, how often it was tried, what the resident said."""

    __tablename__ = "followups"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # Equal to ticket_id while scheduled or calling, NULL after: the unique index lets a ticket have
    # one open follow-up only, even when several processes schedule at once.
    open_ticket_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    phone: Mapped[str] = mapped_column(String(32), index=True)
    completed_at: Mapped[datetime]  # the completion (完成时间) this follow-up asks about
    due_at: Mapped[datetime] = mapped_column(index=True)
    resident_agreed: Mapped[bool] = mapped_column(Boolean, default=False)  # agreed time: a rest day is fine
    status: Mapped[str] = mapped_column(String(12), index=True)  # see core.followup.STATUS_NAMES
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # calls dialled so far
    last_outcome: Mapped[str] = mapped_column(String(12), default="")  # answered, no_answer, busy ...
    claimed_at: Mapped[datetime | None]  # when the present (or last) call was claimed
    resolved: Mapped[bool | None] = mapped_column(Boolean)  # 问题解决了吗
    rating: Mapped[str | None] = mapped_column(String(8))  # one of core.tickets.RATINGS
    comment: Mapped[str] = mapped_column(Text, default="")
    comment_start: Mapped[float | None] = mapped_column(Float)  # seconds into the recording
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id", ondelete="SET NULL"))
    recorded_by: Mapped[str] = mapped_column(String(64), default="")  # "followup", or the clerk who called
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(lazy="joined")
    call: Mapped[CallRecord | None] = relationship(lazy="joined")


class FollowUpOptOut(Base):
    """A number that asked not to be called back (「别再打了」): never dialled for a follow-up again."""

    __tablename__ = "followup_opt_outs"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime]
    how: Mapped[str] = mapped_column(String(128), default="")  # the survey call, or who wrote it down


class DailyList(Base):
    """The 17:00 list as it stood at the cut-off: what the department head was shown that day."""

    __tablename__ = "daily_lists"

    day: Mapped[date] = mapped_column(primary_key=True)
    made_at: Mapped[datetime]
    ticket_ids: Mapped[list[Any]]
    numbers: Mapped[list[Any]]  # the ticket numbers, as they were read out


class OutboxAlert(Base):
    """A group-chat alert to send (core.alerts): written in the transaction of the event it tells
    of, sent by whichever node claims it first, so it goes out once and survives a crash."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))  # see core.alerts.KINDS
    # One alert per event, however many nodes notice it (a scheduler without owner, say).
    key: Mapped[str] = mapped_column(String(160), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))  # pending | sent | failed (gave up)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    # When a node may (next) claim it; a claim moves it past the send's time-out, so an alert whose
    # sender died is due again by itself.
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_alert_outbox_due", "state", "next_attempt_at"),)


# APScheduler 3's persistent job store (core.jobs) with APScheduler's own columns: declared here so
# that the migrations create it and the schema check knows it.
scheduler_jobs = Table(
    "apscheduler_jobs", Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
