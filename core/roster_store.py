"""The stored duty roster: load it as a ``core.roster.Roster``, replace the weekly pattern from a
CSV file, and add or remove overrides. Each function is part of the caller's unit of work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import dispatch
from core.base import Actor, NotFound
from core.contacts import is_valid_contact
from core.roster import (
    Gap,
    Link,
    Override,
    PatternError,
    Person,
    Roster,
    ShiftPattern,
    gaps,
    parse_clock,
    parse_weekdays,
)
from core.settings import Settings
from core.store import Engineer, RosterOverride, Shift, ShiftLink
from core.tickets import SUPERVISOR

SHIFT_COLUMNS = ("name", "weekdays", "start", "end", "skill", "chain")


class RosterError(ValueError):
    """A roster change that cannot be made; nothing of it was saved. The message is Chinese."""


def load_roster(session: Session, settings: Settings, since: datetime | None = None) -> Roster:
    """The whole pattern, the overrides that have not ended by ``since``, and everyone they name."""
    overrides = select(RosterOverride)
    if since is not None:
        overrides = overrides.where(RosterOverride.ends_at > since)
    return Roster(
        shifts=tuple(shift_pattern(shift) for shift in session.scalars(select(Shift).order_by(Shift.id))),
        overrides=tuple(Override(o.starts_at, o.ends_at, o.replaced_id, o.substitute_id, o.id)
                        for o in session.scalars(overrides.order_by(RosterOverride.id))),
        people={e.id: Person(e.id, e.name, reachable(e), e.active) for e in session.scalars(select(Engineer))},
        tz=settings.tz,
        ring_seconds=settings.callout.ring_seconds,
    )


def reachable(engineer: Engineer) -> str:
    """The engineer's contact if it can be rung (core/contacts.py), else "" (passed over like no number)."""
    contact = engineer.phone or engineer.sip_uri
    return contact if contact and is_valid_contact(contact) else ""


def upcoming_gaps(roster: Roster, now: datetime, settings: Settings, days: int = 7) -> list[Gap]:
    """The empty slots of the coming days, for every skill the roster plans for or an emergency needs."""
    skills = list(dict.fromkeys(roster.skills() + dispatch.emergency_skills(settings.callout)))
    return gaps(roster, now, now + timedelta(days=days), skills)


def shift_pattern(shift: Shift) -> ShiftPattern:
    return ShiftPattern(shift.name, frozenset(shift.weekdays), shift.start_time, shift.end_time, shift.skill,
                        tuple(Link(link.engineer_id, link.ring_seconds) for link in shift.links), shift.id)


# --- the weekly pattern, from a CSV file --------------------------------------------------


def replace_shifts(session: Session, rows: list[dict[str, str]]) -> list[Shift]:
    """The file is the whole weekly pattern: every shift is replaced, overrides are kept.

    Rows are ``name,weekdays,start,end,skill,chain`` (chain: engineer names in order, separated
    by ``>``; ``张工:40`` gives that link its own ring time in seconds). Any bad line refuses the
    whole file, naming the line.
    """
    if not rows:
        raise RosterError("文件中没有班次（只有表头）")
    engineers = {e.name: e for e in session.scalars(select(Engineer))}
    patterns = [parse_shift_row(row, line, engineers) for line, row in enumerate(rows, start=2)]
    for shift in session.scalars(select(Shift)):
        session.delete(shift)
    session.flush()
    shifts = []
    for pattern in patterns:
        shift = Shift(name=pattern.name, weekdays=sorted(pattern.weekdays), start_time=pattern.start,
                      end_time=pattern.end, skill=pattern.skill,
                      links=[ShiftLink(position=i, engineer_id=link.engineer_id, ring_seconds=link.ring_seconds)
                             for i, link in enumerate(pattern.chain)])
        session.add(shift)
        shifts.append(shift)
    session.flush()
    return shifts


def parse_shift_row(row: dict[str, str], line: int, engineers: dict[str, Engineer]) -> ShiftPattern:
    def refuse(message: str) -> RosterError:
        return RosterError(f"第 {line} 行: {message}")

    name, skill = row.get("name", ""), row.get("skill", "")
    if not name:
        raise refuse("缺少班次名称")
    if len(name) > 64 or len(skill) > 16:
        raise refuse("班次名称不能超过 64 个字，技能不能超过 16 个字")
    try:
        weekdays = parse_weekdays(row.get("weekdays", ""))
        start, end = parse_clock(row.get("start", "")), parse_clock(row.get("end", ""))
    except PatternError as error:
        raise refuse(str(error)) from None
    links: list[Link] = []
    for entry in (part.strip() for part in row.get("chain", "").split(">")):
        who, _, ring = entry.partition(":")
        who = who.strip()
        if not who:
            raise refuse("呼叫链应为维修人员姓名，按顺序用 > 分隔，例如 张工>李工>王主管")
        engineer = engineers.get(who)
        if engineer is None:
            raise refuse(f"没有名为「{who}」的维修人员（请先导入维修人员）")
        if not engineer.active:
            raise refuse(f"维修人员「{who}」已停用")
        if any(link.engineer_id == engineer.id for link in links):
            raise refuse(f"呼叫链中「{who}」重复")
        if ring and not (ring.strip().isdigit() and 5 <= int(ring) <= 300):
            raise refuse(f"「{entry}」的振铃秒数应为 5 到 300 的整数")
        links.append(Link(engineer.id, int(ring) if ring else None))
    return ShiftPattern(name, weekdays, start, end, skill, tuple(links))


# --- overrides ------------------------------------------------------------------------------


def engineer_named(session: Session, name: str) -> Engineer:
    engineer = session.scalar(select(Engineer).where(Engineer.name == name.strip()))
    if engineer is None:
        raise RosterError(f"没有名为「{name}」的维修人员")
    return engineer


def add_override(session: Session, starts_at: datetime, ends_at: datetime, replaced: Engineer,
                 substitute: Engineer | None, actor: Actor, now: datetime, note: str = "") -> RosterOverride:
    """``substitute`` stands in for ``replaced`` in [starts_at, ends_at); None: nobody covers."""
    if actor.role not in SUPERVISOR:
        raise RosterError("只有主管可以调整值班")
    if ends_at <= starts_at:
        raise RosterError("结束时间应晚于开始时间")
    if substitute is not None:
        if substitute.id == replaced.id:
            raise RosterError("顶班人员不能是被替换的人")
        if not substitute.active:
            raise RosterError(f"维修人员「{substitute.name}」已停用")
        if not reachable(substitute):
            raise RosterError(f"维修人员「{substitute.name}」没有电话或分机，无法呼叫")
    override = RosterOverride(starts_at=starts_at, ends_at=ends_at, replaced_id=replaced.id,
                              substitute_id=substitute.id if substitute else None, note=note.strip(),
                              created_by=actor.name, created_at=now)
    session.add(override)
    session.flush()
    return override


def remove_override(session: Session, override_id: int, actor: Actor) -> None:
    if actor.role not in SUPERVISOR:
        raise RosterError("只有主管可以调整值班")
    override = session.get(RosterOverride, override_id)
    if override is None:
        raise NotFound("这条调班记录不存在")
    session.delete(override)


def current_overrides(session: Session, now: datetime) -> list[RosterOverride]:
    """Overrides that have not ended yet, soonest first (the past ones are history)."""
    return list(session.scalars(select(RosterOverride).where(RosterOverride.ends_at > now)
                                .order_by(RosterOverride.starts_at, RosterOverride.id)))
