"""The call-back list (回拨): callers who gave up before anything was understood.

A caller who hangs up after the greeting or the first key leaves a call record and a recording
but no ticket, so nothing would reach the desk. Such a call is put on this list (number, when,
how far the caller got, the call with its recording) until a clerk marks it called back (已回拨)
or not needed (无需回拨); who did and when is kept.

One number that keeps giving up is one item: an abandoned call joins the number's open item when
that item's latest call is less than ``JOIN_WITHIN`` old, else it starts a new one. Several nodes
may record abandoned calls of one number at the same moment, so the rule is held by the database,
not by a read-then-write: while an item takes calls, its ``open_key`` (the number) is unique; the
second node's insert fails on it and that node joins the item the first one made.

Withheld numbers (no usable caller ID) cannot be called back. Their calls are still listed, all
withheld calls of the hour as one item under 「未显示号码」, each call with its recording, so a
clerk can listen and close it as 无需回拨 (or find the caller from what the recording says).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.db import Base, affected_rows
from core.tickets import TransitionError

JOIN_WITHIN = timedelta(hours=1)
WITHHELD_KEY = "withheld"  # the open_key of the withheld numbers' item (a real number is digits only)

OPEN, CALLED_BACK, NOT_NEEDED = "open", "called_back", "not_needed"
STATUS_NAMES = {OPEN: "待回拨", CALLED_BACK: "已回拨", NOT_NEEDED: "无需回拨"}

# How far a caller got before hanging up (the hotline's steps); "key:N" is a menu key pressed.
STAGE_NAMES = {
    "greeting": "问候语时挂机（未按键）",
    "key": "按键 {key} 后挂机",
    "room_check": "核实房号时挂机",
    "address": "说地址时挂机",
}


class CallbackItem(Base):
    """One number to call back (or the hour's withheld calls), with its abandoned calls."""

    __tablename__ = "callback_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), default="")  # "": withheld, cannot be called back
    # The number (or WITHHELD_KEY) while this item takes the number's next abandoned calls; NULL once
    # it is resolved or a newer item took over. Unique: the one-item-per-number rule across nodes.
    open_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    first_call_at: Mapped[datetime]
    last_call_at: Mapped[datetime] = mapped_column(index=True)
    stage: Mapped[str] = mapped_column(String(32), default="greeting")  # of the latest call
    status: Mapped[str] = mapped_column(String(16), default=OPEN, index=True)
    resolved_by: Mapped[str] = mapped_column(String(64), default="")
    resolved_at: Mapped[datetime | None]


class CallbackCall(Base):
    """An abandoned call on an item (its recording is the call record's)."""

    __tablename__ = "callback_calls"

    call_id: Mapped[int] = mapped_column(ForeignKey("call_records.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("callback_items.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    stage: Mapped[str] = mapped_column(String(32), default="greeting")


class _TookOver(Exception):
    """Another node retired the number's old item first: look again."""


class AlreadyResolved(TransitionError):
    """Somebody else marked the item first (the API answers 409)."""


@dataclass(frozen=True)
class Abandoned:
    """One abandoned call as the hotline saw it."""

    call_id: int
    number: str  # digits; "" when withheld
    at: datetime
    stage: str  # a STAGE_NAMES key, or "key:N"


def stage_name(stage: str) -> str:
    kind, _, key = stage.partition(":")
    return STAGE_NAMES.get(kind, stage).format(key=key)


def record_abandoned(sessions: sessionmaker, call: Abandoned, attempts: int = 5) -> int:
    """Put the call on the list; returns the item's id. Joins the number's item if its latest call
    is less than an hour old; a race with another node is settled by the unique ``open_key``."""
    for _ in range(attempts):
        try:
            with sessions() as session, session.begin():
                return _record(session, call)
        except (IntegrityError, _TookOver):  # another node made the number's item in the same moment: join it
            continue
    raise RuntimeError(f"call {call.call_id}: the call-back list kept changing while it was recorded")


def _record(session: Session, call: Abandoned) -> int:
    key = call.number or WITHHELD_KEY
    item = session.scalar(select(CallbackItem).where(CallbackItem.open_key == key))
    if item is not None and item.last_call_at > call.at - JOIN_WITHIN:
        # Only ever later: two nodes joining at once each move it to their own call's time at most.
        session.execute(update(CallbackItem).where(CallbackItem.id == item.id, CallbackItem.last_call_at <= call.at)
                        .values(last_call_at=call.at, stage=call.stage))
    else:
        if item is not None:  # its hour is over: it stays on the list, the next calls start a new item
            retired = session.execute(update(CallbackItem).where(CallbackItem.id == item.id,
                                                                 CallbackItem.open_key == key)
                                      .values(open_key=None))
            if affected_rows(retired) != 1:
                raise _TookOver()
        item = CallbackItem(number=call.number, open_key=key, first_call_at=call.at, last_call_at=call.at,
                            stage=call.stage)
        session.add(item)
        session.flush()  # the unique open_key is checked here
    session.add(CallbackCall(call_id=call.call_id, item_id=item.id, at=call.at, stage=call.stage))
    return item.id


def open_items(session: Session, limit: int = 200) -> list[CallbackItem]:
    """The items still to be handled, the latest call first."""
    return list(session.scalars(select(CallbackItem).where(CallbackItem.status == OPEN)
                                .order_by(CallbackItem.last_call_at.desc()).limit(limit)))


def recently_resolved(session: Session, since: datetime, limit: int = 50) -> list[CallbackItem]:
    return list(session.scalars(select(CallbackItem).where(CallbackItem.status != OPEN,
                                                           CallbackItem.resolved_at >= since)
                                .order_by(CallbackItem.resolved_at.desc()).limit(limit)))


def calls_of(session: Session, item_ids: list[int]) -> dict[int, list[CallbackCall]]:
    found: dict[int, list[CallbackCall]] = {item_id: [] for item_id in item_ids}
    if item_ids:
        for call in session.scalars(select(CallbackCall).where(CallbackCall.item_id.in_(item_ids))
                                    .order_by(CallbackCall.at)):
            found[call.item_id].append(call)
    return found


def forget_before(session: Session, cutoff: datetime) -> int:
    """Numbers are personal data, kept as long as the calls' (``recordings.keep_days``): items whose
    latest call is older than ``cutoff`` are deleted, handled or not. Returns how many."""
    old = list(session.scalars(select(CallbackItem.id).where(CallbackItem.last_call_at < cutoff)))
    if old:
        session.execute(delete(CallbackCall).where(CallbackCall.item_id.in_(old)))
        session.execute(delete(CallbackItem).where(CallbackItem.id.in_(old)))
    return len(old)


def resolve(session: Session, item_id: int, outcome: str, username: str, at: datetime) -> CallbackItem | None:
    """Mark an open item called back or not needed (None: no such item). A withheld number cannot
    have been called back."""
    item = session.get(CallbackItem, item_id)
    if item is None:
        return None
    if outcome not in (CALLED_BACK, NOT_NEEDED):
        raise ValueError(f"unknown call-back outcome {outcome!r}")
    if outcome == CALLED_BACK and not item.number:
        raise TransitionError("未显示号码的来电无法回拨，只能标记为无需回拨")
    done = session.execute(update(CallbackItem).where(CallbackItem.id == item_id, CallbackItem.status == OPEN)
                           .values(status=outcome, resolved_by=username, resolved_at=at, open_key=None))
    if affected_rows(done) != 1:
        session.refresh(item)
        raise AlreadyResolved(f"这条回拨已由 {item.resolved_by} 标记为「{STATUS_NAMES[item.status]}」")
    session.refresh(item)
    return item
