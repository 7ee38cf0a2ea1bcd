"""Incidents: a building-wide outage is one incident, not fifty tickets.

The desk declares one (停水 in 3号楼, what is being done, when it should end), or the hotline
forms one by itself when a second emergency of the same kind comes from the same building within
``callout.incident_window_minutes`` of the first. While it is open, the hotline announces it to
callers from that building and attaches them to it (their call record, number and words) instead
of writing a ticket and ringing the engineers again. The desk closes it, optionally with a call
back to every caller attached (「已恢复供水」).

One rule decides whether a caller (or an emergency ticket) belongs to an incident: ``incident_for``.
Only outages that hit a whole building are incidents: a person trapped in a lift (``lift_trapped``)
is never swallowed by an announcement, whatever is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import desk
from core.db import affected_rows
from core.desk import Actor, NotFound, ValidationError
from core.incident_store import Incident, IncidentCaller
from core.settings import Settings
from core.store import Ticket
from core.tickets import DESK, Status, TransitionError, Urgency

log = logging.getLogger(__name__)

# kind -> the name the desk sees; the hotline speaks pieces "incident.kind_<kind>".
KINDS = {"water": "停水", "power": "停电", "lift": "电梯停运", "gas": "停气"}
# What is being done, spoken to callers (pieces "incident.action_<action>").
ACTIONS = {"repairing": "正在抢修", "checking": "正在排查原因", "utility": "正在等待供水供电单位恢复",
           "planned": "这是计划检修"}
# Said on the call-back when it is over (pieces "incident.restored_<kind>").
RESTORED = {"water": "已恢复供水", "power": "已恢复供电", "lift": "电梯已恢复运行", "gas": "已恢复供气"}
# Triage's emergency kinds (core.triage.emergency_rules) that are a building's outage.
KIND_OF_EMERGENCY = {"water_outage": "water", "power_outage": "power", "lift_fault": "lift", "gas_leak": "gas"}
NEVER_ATTACHED = frozenset({"lift_trapped"})  # somebody is in danger: their own ticket and call-out
HOW = ("caller_id", "speech", "keypad", "ticket")
MAX_BUILDINGS = 50
CALL_BACK_STATES = {"pending": "待回电", "calling": "回电中", "called": "已回电", "no_answer": "无人接听", "failed": "呼叫失败",
                    "skipped": "无号码"}
HOTLINE_NAME = desk.HOTLINE.name


class IncidentError(TransitionError):
    """An incident action that cannot be done (the API answers 409); the message is Chinese."""


@dataclass(frozen=True)
class Place:
    building: str = ""
    unit: str = ""
    room: str = ""
    area: str = ""

    @property
    def known(self) -> bool:
        return bool(self.building or self.area)


def kind_of(draft) -> str | None:
    """The incident kind a triage Draft describes, or None (nothing an outage explains, or a danger
    that must stay its own emergency)."""
    kinds = [word.kind for word in draft.emergency_words]
    if any(kind in NEVER_ATTACHED for kind in kinds):
        return None
    for kind in kinds:
        if kind in KIND_OF_EMERGENCY:
            return KIND_OF_EMERGENCY[kind]
    return None


def kind_of_text(text: str, now: datetime, settings: Settings) -> str | None:
    from core.triage import triage  # triage loads the word lists: only when a text is read

    return kind_of(triage(text, now, settings)) if text else None


# --- the desk ---------------------------------------------------------------------------------------


def check(kind: str, buildings: list[str], area: str, action: str, note: str, expected_end: datetime | None,
          now: datetime) -> dict[str, str]:
    """What is wrong with a declaration, field by field (empty: nothing)."""
    errors: dict[str, str] = {}
    if kind not in KINDS:
        errors["kind"] = "请选择事件类型（停水、停电、电梯停运、停气）"
    if action not in ACTIONS:
        errors["action"] = "请选择处理情况"
    if len(buildings) > MAX_BUILDINGS or any(len(str(b)) > 16 for b in buildings):
        errors["buildings"] = f"楼号最多 {MAX_BUILDINGS} 个，每个不超过 16 个字符"
    if not buildings and not area:
        errors["buildings"] = "请填写楼号或区域"
    if len(area) > 32:
        errors["area"] = "区域不超过 32 个字符"
    if len(note or "") > desk.NOTE_LIMIT:
        errors["note"] = f"说明不超过 {desk.NOTE_LIMIT} 个字"
    if expected_end is not None and expected_end <= now:
        errors["expected_end"] = "预计恢复时间应晚于现在"
    return errors


def declare(session: Session, *, kind: str, buildings: list[str], area: str = "", action: str = "repairing",
            note: str = "", expected_end: datetime | None = None, actor: Actor, now: datetime,
            ticket_id: int | None = None) -> Incident:
    """Open an incident; ``ticket_id``: declared from that ticket (it becomes the first caller)."""
    if actor.role not in DESK and actor != desk.HOTLINE:
        raise IncidentError("只有前台或主管可以发布停水停电等事件")
    buildings = [str(b).strip() for b in buildings if str(b).strip()]
    area = (area or "").strip()
    errors = check(kind, buildings, area, action, note, expected_end, now)
    if errors:
        raise ValidationError(errors)
    ticket = desk.get_ticket(session, ticket_id) if ticket_id is not None else None
    incident = Incident(kind=kind, buildings=sorted(set(buildings), key=buildings.index), area=area, action=action,
                        note=(note or "").strip(), expected_end=expected_end, opened_at=now, opened_by=actor.name,
                        ticket_id=ticket_id)
    session.add(incident)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise IncidentError("该维修单已经发布过事件") from None
    if ticket is not None:
        attach_ticket(session, incident, ticket, now)
    log.info("incident %d (%s, %s %s) declared by %s", incident.id, KINDS[kind], incident.buildings, area, actor.name)
    return incident


def close(session: Session, incident_id: int, actor: Actor, now: datetime, call_back: bool = False) -> Incident:
    """Close an open incident; ``call_back``: every attached caller with a number is rung once
    (one call per number) with 「已恢复…」 on ``followup.line``."""
    if actor.role not in DESK:
        raise IncidentError("只有前台或主管可以关闭事件")
    incident = get(session, incident_id)
    if incident.closed_at is not None:
        raise IncidentError("事件已关闭")
    incident.closed_at, incident.closed_by, incident.call_back = now, actor.name, bool(call_back)
    if call_back:
        seen: set[str] = set()
        for caller in incident.callers:
            if not caller.phone:
                caller.call_back_state = "skipped"
            elif caller.phone in seen:
                continue
            else:
                seen.add(caller.phone)
                caller.call_back_state = "pending"
    session.flush()
    log.info("incident %d closed by %s (call back: %s)", incident.id, actor.name, call_back)
    return incident


def get(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"事件 {incident_id} 不存在")
    return incident


def listing(session: Session, open_only: bool = False, limit: int = 100) -> list[Incident]:
    query = select(Incident)
    if open_only:
        query = query.where(Incident.closed_at.is_(None))
    return list(session.scalars(query.order_by(Incident.closed_at.is_not(None), Incident.opened_at.desc()).limit(limit)))


def proposal(ticket: Ticket, now: datetime, settings: Settings) -> dict:
    """What the desk's 「发布事件」 on a ticket starts from: the kind its words describe, its building."""
    return {"ticket_id": ticket.id, "kind": kind_of_text(ticket.description, now, settings),
            "buildings": [ticket.building] if ticket.building else [], "area": ticket.area, "action": "repairing"}


# --- the one rule: which incident a caller belongs to ------------------------------------------------


def open_incidents(session: Session) -> list[Incident]:
    return list(session.scalars(select(Incident).where(Incident.closed_at.is_(None)).order_by(Incident.opened_at)))


def covers(incident: Incident, place: Place) -> bool:
    if incident.area:
        return place.area == incident.area or (bool(place.building) and place.building in incident.buildings)
    return bool(place.building) and place.building in incident.buildings


def open_for_place(session: Session, place: Place) -> Incident | None:
    """The open incident (any kind) for a caller's building, newest first: announced right after the greeting."""
    if not place.known:
        return None
    matching = [incident for incident in open_incidents(session) if covers(incident, place)]
    return matching[-1] if matching else None


def incident_for(session: Session, place: Place, kind: str | None, now: datetime, settings: Settings,
                 exclude_ticket_id: int | None = None) -> Incident | None:
    """The incident a report of ``kind`` from ``place`` belongs to: an open one of that kind covering
    the place; else, when an emergency ticket of the same kind from the same building was reported
    within ``callout.incident_window_minutes``, an incident formed from that ticket now. None: the
    report is its own."""
    if kind is None or not place.known:
        return None
    for incident in reversed(open_incidents(session)):
        if incident.kind == kind and covers(incident, place):
            return incident
    since = now - timedelta(minutes=settings.callout.incident_window_minutes)
    recent = session.scalars(
        select(Ticket).where(Ticket.urgency == Urgency.EMERGENCY, Ticket.building == place.building,
                             Ticket.area == place.area, Ticket.reported_at >= since,
                             Ticket.status != Status.CANCELLED, Ticket.id != (exclude_ticket_id or 0))
        .order_by(Ticket.reported_at, Ticket.id).limit(20))
    for ticket in recent:
        if kind_of_text(ticket.description, now, settings) != kind:
            continue
        try:
            with session.begin_nested():
                formed = declare(session, kind=kind, buildings=[place.building] if place.building else [],
                                 area=place.area, action="repairing", actor=desk.HOTLINE, now=now,
                                 ticket_id=ticket.id)
        except IncidentError:  # another node formed it from the same ticket a moment ago
            other = session.scalar(select(Incident).where(Incident.ticket_id == ticket.id))
            if other is None or other.closed_at is not None:
                continue
            formed = other
        return formed
    return None


def attach_call(session: Session, incident: Incident, *, at: datetime, phone: str, call_record_id: int | None,
                place: Place, words: str, how: str) -> IncidentCaller:
    """A caller counted on the incident, with no ticket."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}")
    caller = IncidentCaller(at=at, phone=phone[:32], call_record_id=call_record_id, building=place.building,
                            unit=place.unit, room=place.room, words=words[:desk.NOTE_LIMIT], how=how)
    incident.callers.append(caller)
    session.flush()
    log.info("incident %d: caller %s attached (%s)", incident.id, caller.id, how)
    return caller


def attach_ticket(session: Session, incident: Incident, ticket: Ticket, now: datetime) -> IncidentCaller:
    """A ticket that was made anyway (the first report, a desk ticket): one caller, and an event on it."""
    existing = next((c for c in incident.callers if c.ticket_id == ticket.id), None)
    if existing is not None:
        return existing
    caller = IncidentCaller(at=ticket.reported_at, phone=ticket.phone, ticket_id=ticket.id, building=ticket.building,
                            unit=ticket.unit, room=ticket.room, words=ticket.description, how="ticket")
    incident.callers.append(caller)
    desk.record_event(ticket, desk.HOTLINE, now, "incident", note=f"并入事件 #{incident.id}（{KINDS[incident.kind]}）",
                      data={"incident_id": incident.id})
    session.flush()
    return caller


# --- the call-back when it is over ------------------------------------------------------------------


def pending_call_backs(session: Session, limit: int) -> list[IncidentCaller]:
    return list(session.scalars(select(IncidentCaller).where(IncidentCaller.call_back_state == "pending")
                                .order_by(IncidentCaller.id).limit(limit)))


def claim_call_back(session: Session, caller_id: int) -> IncidentCaller | None:
    """Take one pending call-back (stored before dialling: no number is rung twice, whatever node)."""
    from sqlalchemy import update

    taken = affected_rows(session.execute(update(IncidentCaller).where(IncidentCaller.id == caller_id,
                                                                       IncidentCaller.call_back_state == "pending")
                                          .values(call_back_state="calling")))
    return session.get(IncidentCaller, caller_id) if taken else None


def record_call_back(session: Session, caller_id: int, outcome: str, record_id: int | None) -> None:
    caller = session.get(IncidentCaller, caller_id)
    if caller is None:
        raise LookupError(f"no incident caller {caller_id}")
    caller.call_back_state = outcome if outcome in CALL_BACK_STATES else "failed"
    caller.call_back_record_id = record_id
