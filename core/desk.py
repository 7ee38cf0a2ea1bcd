"""The ticket desk: create, move, correct, find and count tickets (one unit of work each).

The web console, the command line and the hotline all go through these functions, so
every change to a ticket leaves an event and keeps its deadline in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import false, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base import Actor, NotFound, ValidationError, parse_time  # noqa: F401 (also desk.X for callers)
from core.claims import Conflict, claim, hold  # noqa: F401 (Conflict: desk.Conflict for callers)
from core.phones import PHONE_PATTERN, normalise_phone  # noqa: F401 (also desk.X for callers)
from core.settings import Settings
from core.store import Engineer, FeeItem, Resident, Ticket, TicketCounter, TicketEvent
from core.tickets import (
    CATEGORY_NAMES,
    CLOSED,
    Channel,
    Role,
    Status,
    TransitionError,
    TransitionRequest,
    Urgency,
    current_due_at,
    rule_for,
)

NOTE_LIMIT = 2000  # characters of a note, a remark, a description


HOTLINE = Actor("hotline", Role.FRONTDESK)
# The emergency call-out records, on the front desk's behalf, what an engineer accepted on the phone.
CALLOUT = Actor("callout", Role.FRONTDESK)
# The follow-up call records, as the front desk would, the resident's rating or the 返修 it asks for.
FOLLOWUP = Actor("followup", Role.FRONTDESK)


@dataclass
class NewTicket:
    description: str = ""  # required from people (parse_new_ticket); a phone draft may not know it yet
    phone: str = ""
    reporter_name: str = ""
    building: str = ""
    unit: str = ""
    room: str = ""
    area: str = ""
    category: str = "other"
    urgency: Urgency = Urgency.NORMAL
    channel: Channel = Channel.DESK
    appointment_start: datetime | None = None
    appointment_end: datetime | None = None
    is_paid: bool = False
    fee_item_id: int | None = None
    is_vip: bool = False
    remarks: str = ""
    reported_at: datetime | None = None  # a phone draft: when the call came in


def parse_new_ticket(payload: Any, tz: ZoneInfo) -> NewTicket:
    """Check a new-ticket form or JSON body; every problem is reported at once, per field."""
    if not isinstance(payload, dict):
        raise ValidationError({"_": "请求内容应为 JSON 对象"})
    errors: dict[str, str] = {}
    text = lambda key, limit: _text(payload, key, limit, errors)  # noqa: E731
    ticket = NewTicket(description=text("description", 2000))
    if not ticket.description:
        errors["description"] = "请填写报修内容"
    for key, limit in (("reporter_name", 64), ("building", 16), ("unit", 16), ("room", 16),
                       ("area", 32), ("remarks", 2000)):
        setattr(ticket, key, text(key, limit))
    if not ticket.room and not ticket.area:
        errors["room"] = "请填写房号，或公共区域位置"
    ticket.phone = normalise_phone(text("phone", 32))
    if ticket.phone and not PHONE_PATTERN.match(ticket.phone):
        errors["phone"] = "联系电话格式不正确"
    ticket.category = text("category", 24) or "other"
    if ticket.category not in CATEGORY_NAMES:
        errors["category"] = "未知的报修类别"
    ticket.urgency = _choice(payload, "urgency", Urgency, Urgency.NORMAL, errors, "紧急程度无效")
    ticket.channel = _choice(payload, "channel", Channel, Channel.DESK, errors, "来源渠道无效")
    ticket.appointment_start = parse_time(payload.get("appointment_start"), tz, "appointment_start", errors)
    ticket.appointment_end = parse_time(payload.get("appointment_end"), tz, "appointment_end", errors)
    if ticket.appointment_start and ticket.appointment_end and ticket.appointment_end < ticket.appointment_start:
        errors["appointment_end"] = "预约结束时间早于开始时间"
    for flag in ("is_paid", "is_vip"):
        value = payload.get(flag, False)
        if not isinstance(value, bool):
            errors[flag] = "应为 true 或 false"
        else:
            setattr(ticket, flag, value)
    fee_item = payload.get("fee_item_id")
    if fee_item not in (None, ""):
        if isinstance(fee_item, bool) or not isinstance(fee_item, int):
            errors["fee_item_id"] = "收费项目无效"
        else:
            ticket.fee_item_id = fee_item
    if errors:
        raise ValidationError(errors)
    return ticket


def _text(payload: dict, key: str, limit: int, errors: dict[str, str]) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[key] = "应为文字"
        return ""
    value = value.strip()
    if len(value) > limit:
        errors[key] = f"不能超过 {limit} 个字"
    return value


def _choice(payload: dict, key: str, enum_type, default, errors: dict[str, str], message: str):
    value = payload.get(key) or default
    try:
        return enum_type(value)
    except ValueError:
        errors[key] = message
        return default


# --- numbers --------------------------------------------------------------------


def next_ticket_number(session: Session, day: date) -> str:
    """Date + daily sequence (``20261122007``): short enough to read digit by digit.

    The counter row is updated in the caller's transaction, so two processes never share a number.
    """
    key = day.strftime("%Y%m%d")
    for _ in range(3):
        bumped = session.execute(
            update(TicketCounter).where(TicketCounter.day == key)
            .values(last=TicketCounter.last + 1).returning(TicketCounter.last)
        ).scalar()
        if bumped is not None:
            return f"{key}{bumped:03d}"
        try:
            with session.begin_nested():
                session.add(TicketCounter(day=key, last=1))
            return f"{key}001"
        except IntegrityError:
            continue  # another process created today's counter first: bump it instead
    raise RuntimeError("could not allocate a ticket number")


# --- changes ----------------------------------------------------------------------


def quote(ticket: Ticket, fee_item: FeeItem | None) -> float | None:
    """The price shown to the resident: public areas are free, in-home paid work from the standard."""
    if ticket.area:
        return 0.0
    if not ticket.is_paid:
        return None
    if fee_item is None:
        return None  # outside the standard: the supervisor prices it (待评审)
    return round(fee_item.material_fee + fee_item.labour_fee, 2)


def create_ticket(session: Session, new: NewTicket, actor: Actor, now: datetime, settings: Settings) -> Ticket:
    fee_item = None
    if new.fee_item_id is not None:
        fee_item = session.get(FeeItem, new.fee_item_id)
        if fee_item is None or not fee_item.active:
            raise ValidationError({"fee_item_id": "收费项目不存在"})
    reported = new.reported_at or now
    status = Status.DRAFT if new.channel == Channel.PHONE and actor == HOTLINE else Status.RECEIVED
    values = {f.name: getattr(new, f.name) for f in fields(new) if f.name != "reported_at"}
    ticket = Ticket(
        **values,
        number=next_ticket_number(session, reported.astimezone(settings.tz).date()),
        status=status,
        status_changed_at=now,
        reported_at=reported,
        received_by=actor.name,
        updated_at=now,
    )
    if new.area:
        ticket.is_paid = False
    ticket.quoted_fee = quote(ticket, fee_item)
    ticket.due_at = current_due_at(ticket, settings.sla)
    session.add(ticket)
    record_event(ticket, actor, now, "created", to_status=status)
    session.flush()  # the caller shows the new id and number at once
    return ticket


def apply_move(session: Session, ticket: Ticket, request: TransitionRequest, actor: Actor,
               now: datetime, settings: Settings, seen_version: int | None = None) -> Ticket:
    """Move a ticket to another state if the rules allow it; refuse with a Chinese message if not.
    Only on the ticket as it was read (or as ``seen_version`` says the user saw it): else Conflict.
    The ticket alone: people and the call-out move tickets through ``core.moves.move_ticket``,
    which also keeps the ticket's follow-up call in step."""
    claim(session, ticket, seen_version)
    current = Status(ticket.status)
    sla = settings.sla
    rule = rule_for(current, request, actor.role)
    if actor.role == Role.ENGINEER and not can_see(ticket, actor):
        raise TransitionError("只能处理派给自己的维修单")
    data: dict[str, Any] = {}
    if rule.needs_engineer:
        engineer = session.get(Engineer, request.engineer_id)
        if engineer is None or not engineer.active:
            raise TransitionError("指定的维修人员不存在或已停用")
        if current == request.to and engineer.id == ticket.engineer_id:
            raise TransitionError("改派需要选择另一位维修人员")
        data["engineer"] = {"id": engineer.id, "name": engineer.name, "previous_id": ticket.engineer_id}
        ticket.engineer_id, ticket.engineer = engineer.id, engineer
        ticket.dispatched_at = now
        ticket.accepted_at = ticket.arrived_at = None
    if request.to == Status.ACCEPTED:
        ticket.accepted_at = now
    elif request.to == Status.ON_SITE and ticket.arrived_at is None:
        ticket.arrived_at = now
    elif request.to == Status.COMPLETED:
        ticket.completed_at = now
        ticket.actual_item = request.actual_item.strip()
        ticket.material_fee = request.material_fee
        ticket.labour_fee = request.labour_fee
        ticket.material_check = request.material_check
        ticket.customer_confirmed = request.customer_confirmed
        data["completion"] = {
            "actual_item": ticket.actual_item, "material_fee": ticket.material_fee,
            "labour_fee": ticket.labour_fee, "material_check": ticket.material_check,
            "customer_confirmed": ticket.customer_confirmed,
        }
    elif request.to == Status.FOLLOWED_UP:
        ticket.rating = request.rating
        data["rating"] = request.rating
    elif request.to == Status.POSTPONED:
        ticket.postponed_until = request.postponed_until
        if request.postponed_until:
            data["postponed_until"] = request.postponed_until.isoformat()
    elif request.to == Status.CANCELLED:
        ticket.cancel_reason = request.reason
    if request.to == Status.DISPATCHED and current in (Status.COMPLETED, Status.FOLLOWED_UP):
        ticket.completed_at = None  # 返修: the repair is not done after all
        ticket.rating = None
    ticket.status = request.to
    ticket.status_changed_at = now
    ticket.updated_at = now
    ticket.due_at = current_due_at(ticket, sla)
    record_event(ticket, actor, now, "transition", current, request.to,
            note=request.note, reason=request.reason, data=data or None)
    return ticket


# Fields the front desk may correct (a phone draft's address, a wrong category ...).
EDITABLE = ("description", "reporter_name", "phone", "building", "unit", "room", "area", "category",
            "urgency", "appointment_start", "appointment_end", "is_paid", "is_vip", "remarks")


def edit_ticket(session: Session, ticket: Ticket, payload: dict, actor: Actor, now: datetime,
                settings: Settings, seen_version: int | None = None) -> Ticket:
    """Correct fields; each correction is recorded as an event with the old and new values.
    Only on the ticket as it was read (or as ``seen_version`` says the user saw it): else Conflict."""
    if actor.role not in (Role.FRONTDESK, Role.MANAGER, Role.ADMIN):
        raise TransitionError("只有前台或主管可以修改维修单")
    unknown = set(payload) - set(EDITABLE)
    if unknown:
        raise ValidationError({key: "不可修改的字段" for key in sorted(unknown)})
    claim(session, ticket, seen_version)
    merged = {key: _plain(getattr(ticket, key)) for key in EDITABLE} | payload
    checked = parse_new_ticket(merged, settings.tz)
    changes = {}
    for key in payload:
        old, new = getattr(ticket, key), getattr(checked, key)
        if _plain(old) != _plain(new):
            changes[key] = {"from": _plain(old), "to": _plain(new)}
            setattr(ticket, key, new)
    if not changes:
        return ticket
    if ticket.area:
        ticket.is_paid = False
    ticket.updated_at = now
    ticket.due_at = current_due_at(ticket, settings.sla)
    record_event(ticket, actor, now, "edit", data={"changes": changes})
    return ticket


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def add_note(session: Session, ticket: Ticket, note: str, actor: Actor, now: datetime) -> None:
    """A note never overwrites anything, so it goes on whatever the ticket became meanwhile."""
    if not note.strip():
        raise ValidationError({"note": "备注不能为空"})
    if len(note.strip()) > NOTE_LIMIT:
        raise ValidationError({"note": f"备注不能超过 {NOTE_LIMIT} 个字"})
    hold(session, ticket)
    ticket.updated_at = now
    record_event(ticket, actor, now, "note", note=note.strip())


def can_see(ticket: Ticket, actor: Actor) -> bool:
    """Engineers see the tickets assigned to them only; an engineer account linked to nobody (or to
    an engineer who was deactivated: ``Actor.engineer_id`` None) sees nothing."""
    if actor.role != Role.ENGINEER:
        return True
    return actor.engineer_id is not None and ticket.engineer_id == actor.engineer_id


def visible_to(actor: Actor):
    """``can_see`` as a query condition: the tickets ``actor`` may find."""
    if actor.role != Role.ENGINEER:
        return true()
    return Ticket.engineer_id == actor.engineer_id if actor.engineer_id is not None else false()


def record_event(ticket: Ticket, actor: Actor, now: datetime, kind: str,
                 from_status: Status | None = None, to_status: Status | None = None,
                 note: str = "", reason: str = "", data: dict | None = None) -> None:
    """Every change to a ticket leaves one of these: who, when, what (and the live queue sees it)."""
    ticket.events.append(TicketEvent(at=now, actor=actor.name, kind=kind, from_status=from_status,
                                     to_status=to_status, note=note, reason=reason, data=data))


# --- finding and counting ----------------------------------------------------------


@dataclass
class TicketFilter:
    statuses: list[Status] = field(default_factory=list)
    urgency: Urgency | None = None
    building: str = ""
    overdue: bool | None = None
    engineer_id: int | None = None
    channel: Channel | None = None
    search: str = ""
    limit: int = 200
    offset: int = 0


def find_tickets(session: Session, wanted: TicketFilter, now: datetime, seen_by: Actor | None = None
                 ) -> tuple[list[Ticket], int]:
    """The queue: emergencies first, then the newest; with the total count for paging. ``seen_by``:
    only the tickets that actor may see (an engineer, their own), whatever else is asked for."""
    query = select(Ticket)
    if seen_by is not None:
        query = query.where(visible_to(seen_by))
    if wanted.statuses:
        query = query.where(Ticket.status.in_(wanted.statuses))
    if wanted.urgency:
        query = query.where(Ticket.urgency == wanted.urgency)
    if wanted.building:
        query = query.where(Ticket.building == wanted.building)
    if wanted.engineer_id is not None:
        query = query.where(Ticket.engineer_id == wanted.engineer_id)
    if wanted.channel:
        query = query.where(Ticket.channel == wanted.channel)
    if wanted.overdue is True:
        query = query.where(Ticket.due_at < now)
    elif wanted.overdue is False:
        query = query.where((Ticket.due_at.is_(None)) | (Ticket.due_at >= now))
    if wanted.search:
        like = f"%{wanted.search}%"
        query = query.where(Ticket.number.like(like) | Ticket.phone.like(like)
                            | Ticket.description.like(like) | Ticket.reporter_name.like(like))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    emergency_first = (Ticket.urgency == Urgency.EMERGENCY).desc()
    rows = session.scalars(
        query.order_by(emergency_first, Ticket.reported_at.desc(), Ticket.id.desc())
        .limit(wanted.limit).offset(wanted.offset)
    ).all()
    return list(rows), total or 0


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"维修单 {ticket_id} 不存在")
    return ticket


def resident_by_phone(session: Session, phone: str) -> Resident | None:
    return session.scalar(select(Resident).where(Resident.phone == normalise_phone(phone)))


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, start + timedelta(days=1)


def daily_report(session: Session, day: date, settings: Settings) -> list[Ticket]:
    """The 17:00 list for the department head: every ticket reported by the cut-off and not done."""
    cutoff = datetime.combine(day, settings.sla.daily_report_at(), tzinfo=settings.tz)
    return list(session.scalars(
        select(Ticket).where(Ticket.reported_at <= cutoff, Ticket.status.not_in(CLOSED))
        .order_by(Ticket.due_at.is_(None), Ticket.due_at, Ticket.id)
    ).all())
