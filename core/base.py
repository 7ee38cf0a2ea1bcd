"""What every part of ``core`` shares: who acts, the errors it reports, and reading times.

This module imports nothing from the project, so any module may import it without a cycle.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo


class Role(enum.StrEnum):
    FRONTDESK = "frontdesk"
    ENGINEER = "engineer"
    MANAGER = "manager"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """Who acts: a logged-in user, or the hotline itself."""

    name: str
    role: Role
    engineer_id: int | None = None


class ValidationError(ValueError):
    """Bad input, with a Chinese message per field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class NotFound(LookupError):
    pass


# --- reading times --------------------------------------------------------------


def parse_time(value: Any, tz: ZoneInfo, key: str, errors: dict[str, str]) -> datetime | None:
    """ISO 8601; a time without an offset is read in the site's time zone."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        errors[key] = "时间格式应为 ISO 8601，例如 2026-11-22T14:00+08:00"
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


_CLOCK = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW = re.compile(rf"\s*{_CLOCK}\s*-\s*{_CLOCK}\s*")

Window = tuple[time, time]


class WindowError(ValueError):
    """A clock-time window that cannot be read; the message names the entry."""


def parse_windows(spans: Iterable[str]) -> tuple[Window, ...]:
    """Daily windows such as ``"8:30-17:30"`` or ``"09:00-12:00"`` as [start, end) pairs, earliest
    first. Each must end after it starts on the same day (a window over midnight is refused: for
    calling residents it would mean calling at night); at least one window is needed."""
    windows = []
    for span in spans:
        window = _window(span)
        if window is None:
            raise WindowError(f"应为「HH:MM-HH:MM」且结束晚于开始 / expected e.g. 09:00-12:00: {span!r}")
        windows.append(window)
    if not windows:
        raise WindowError("至少需要一个时段 / needs at least one window")
    return tuple(sorted(windows))


def _window(span: object) -> Window | None:
    match = _WINDOW.fullmatch(span) if isinstance(span, str) else None
    if match is None:
        return None
    h1, m1, s1, h2, m2, s2 = (int(part or 0) for part in match.groups())
    try:
        start, end = time(h1, m1, s1), time(h2, m2, s2)
    except ValueError:  # 25:00, 08:61
        return None
    return (start, end) if start < end else None


def in_windows(windows: Iterable[Window], moment: time) -> bool:
    """Is this clock time inside one of the windows (start included, end not)?"""
    return any(start <= moment < end for start, end in windows)
