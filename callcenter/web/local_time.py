"""Times as the console shows them: ISO 8601 in the site's time zone, to the second."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def local_iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None
