"""The duty roster (值班表): who is on duty at a moment, for a skill, and who comes after them.

Plain rules on a ``Roster`` snapshot, no database (``core.roster_store`` loads and changes the
stored one). A shift is a weekly pattern in the site's wall-clock time: on its weekdays from
``start`` to ``end``; an end at or before the start runs past midnight into the next day, so
"Friday 20:00-08:00" still covers Saturday 03:00. Overrides (swaps, leave, holidays) replace one
engineer by another, or by nobody, for a time range, and win over the pattern only there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAY_NAMES = "一二三四五六日"  # ISO weekdays 1..7
ANY_SKILL = ""  # a shift for every kind of repair; asked for: whoever is on duty


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    contact: str  # a phone number or a SIP URI; "" cannot be rung
    active: bool = True


@dataclass(frozen=True)
class Link:
    """A place in a shift's chain; without its own ring time the call-out setting applies."""

    engineer_id: int
    ring_seconds: int | None = None


@dataclass(frozen=True)
class ShiftPattern:
    name: str
    weekdays: frozenset[int]  # the days the shift starts on
    start: time
    end: time
    skill: str = ANY_SKILL
    chain: tuple[Link, ...] = ()
    id: int = 0

    def occurrence(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """When the shift that starts on ``day`` runs, if it runs that day."""
        if day.isoweekday() not in self.weekdays:
            return None
        end_day = day if self.end > self.start else day + timedelta(days=1)
        return datetime.combine(day, self.start, tzinfo=tz), datetime.combine(end_day, self.end, tzinfo=tz)


@dataclass(frozen=True)
class Override:
    starts_at: datetime
    ends_at: datetime
    replaced_id: int
    substitute_id: int | None  # None: nobody covers (leave without a stand-in)
    id: int = 0

    def applies_at(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Roster:
    shifts: tuple[ShiftPattern, ...]
    overrides: tuple[Override, ...]
    people: Mapping[int, Person]
    tz: ZoneInfo
    ring_seconds: int = 25  # callout.ring_seconds, for links without their own

    def skills(self) -> list[str]:
        """Every skill the roster plans for, "" (anyone at all) first."""
        return [ANY_SKILL] + sorted({s.skill for s in self.shifts} - {ANY_SKILL})


@dataclass(frozen=True)
class ChainLink:
    engineer_id: int
    name: str
    contact: str
    ring_seconds: int


@dataclass(frozen=True)
class OnCall:
    shift: str | None  # None: no shift covers this moment for this skill
    chain: list[ChainLink] = field(default_factory=list)  # primary, backup, supervisor, manager ...
    skill: str = ANY_SKILL
    until: datetime | None = None  # when this shift ends


@dataclass(frozen=True)
class Gap:
    """A time with nobody to ring for a skill: a warning on the manager's page."""

    skill: str
    starts_at: datetime
    ends_at: datetime
    shift: str | None  # None: no shift at all; a name: that shift's people are all away or unreachable


def on_duty(roster: Roster, at: datetime, skill: str = ANY_SKILL) -> OnCall:
    """Who is on duty at ``at`` for ``skill``, and who comes after them, overrides applied.

    A shift for exactly that skill wins; else a shift for every skill (skill ""). Asked for no
    particular skill, a general shift wins, else any shift on duty. A shift whose people are all
    away gives way to the next of these, so an emergency still reaches someone. Where shifts of one
    kind overlap, the one that began last wins (a day shift laid over a 24-hour duty).
    """
    covering = []
    local_day = at.astimezone(roster.tz).date()
    for shift in roster.shifts:
        for day in (local_day - timedelta(days=1), local_day):
            times = shift.occurrence(day, roster.tz)
            if times and times[0] <= at < times[1]:
                covering.append((shift, times))
    exact = [c for c in covering if c[0].skill == skill]
    general = [c for c in covering if c[0].skill == ANY_SKILL]
    nobody_there = None
    for pool in (exact, general, covering if skill == ANY_SKILL else []):
        if pool:
            shift, (_, ends) = max(pool, key=lambda c: (c[1][0], -c[0].id))
            duty = OnCall(shift.name, _chain(roster, shift, at), skill, ends)
            if duty.chain:
                return duty
            nobody_there = nobody_there or duty  # named in the gap warning if nothing else answers
    return nobody_there or OnCall(None, [], skill)


def _chain(roster: Roster, shift: ShiftPattern, at: datetime) -> list[ChainLink]:
    places: list[tuple[int | None, int | None]] = [(link.engineer_id, link.ring_seconds) for link in shift.chain]
    for override in sorted(roster.overrides, key=lambda o: o.id):
        if override.applies_at(at):
            # The stand-in takes the place and its ring time; later overrides may replace them in turn.
            places = [(override.substitute_id if who == override.replaced_id else who, ring) for who, ring in places]
    chain, seen = [], set()
    for who, ring in places:
        person = roster.people.get(who) if who is not None else None
        if person is None or not person.active or not person.contact or who in seen:
            continue  # away, retired or unreachable: the next in line moves up
        seen.add(who)
        chain.append(ChainLink(person.id, person.name, person.contact, ring or roster.ring_seconds))
    return chain


def gaps(roster: Roster, start: datetime, end: datetime, skills: Sequence[str] | None = None) -> list[Gap]:
    """Every stretch of [start, end) in which a skill has nobody to ring, earliest first.

    Who is on duty only changes where a shift or an override begins or ends, so checking
    each of those moments covers the whole range. When "" is among the skills, a time with
    nobody on duty at all is one gap for "", not one more per skill.
    """
    skills = roster.skills() if skills is None else list(skills)
    changes = {start}
    first, last = start.astimezone(roster.tz).date(), end.astimezone(roster.tz).date()
    for offset in range(-1, (last - first).days + 1):
        for shift in roster.shifts:
            changes.update(shift.occurrence(first + timedelta(days=offset), roster.tz) or ())
    for override in roster.overrides:
        changes.update((override.starts_at, override.ends_at))
    moments = sorted(m for m in changes if start <= m < end)
    nobody_at_all = {m for m in moments if ANY_SKILL in skills and not on_duty(roster, m).chain}
    found: list[Gap] = []
    for skill in skills:
        for begins, ends in zip(moments, moments[1:] + [end], strict=True):
            if skill != ANY_SKILL and begins in nobody_at_all:
                continue
            duty = on_duty(roster, begins, skill)
            if duty.chain:
                continue
            if found and found[-1].skill == skill and found[-1].shift == duty.shift and found[-1].ends_at == begins:
                found[-1] = Gap(skill, found[-1].starts_at, ends, duty.shift)
            else:
                found.append(Gap(skill, begins, ends, duty.shift))
    return sorted(found, key=lambda g: (g.starts_at, skills.index(g.skill)))


# --- reading and writing the pattern as people type it ----------------------------------


class PatternError(ValueError):
    """A weekday list or clock time that cannot be read; the message is Chinese."""


def parse_weekdays(text: str) -> frozenset[int]:
    """``1-5``, ``6,7``, ``1-5,7`` (1 = Monday) -> the ISO weekdays."""
    days: set[int] = set()
    for part in re.split(r"[,，、\s]+", text.strip()):
        match = re.fullmatch(r"([1-7])(?:-([1-7]))?", part)
        if not match or (match[2] and int(match[2]) < int(match[1])):
            raise PatternError(f"星期应写成 1-5 或 6,7（1=周一，7=周日）：{text!r}")
        days.update(range(int(match[1]), int(match[2] or match[1]) + 1))
    return frozenset(days)


def parse_clock(text: str) -> time:
    """``HH:MM``; ``24:00`` is midnight at the end of the day."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    hours, minutes = (int(match[1]), int(match[2])) if match else (99, 99)
    if not ((hours < 24 and minutes < 60) or (hours, minutes) == (24, 0)):
        raise PatternError(f"时间应为 HH:MM，例如 08:00 或 20:00：{text!r}")
    return time(hours % 24, minutes)


def weekdays_text(days: frozenset[int] | Sequence[int]) -> str:
    """「周一至周五」, 「周六、周日」, 「每天」."""
    days = sorted(set(days))
    if len(days) == 7:
        return "每天"
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    name = lambda d: "周" + WEEKDAY_NAMES[d - 1]  # noqa: E731
    return "、".join(f"{name(r[0])}至{name(r[-1])}" if len(r) > 2 else "、".join(map(name, r)) for r in runs)
