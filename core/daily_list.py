"""The 17:00 list kept as it stood at the cut-off (docs/process.md "The 17:00 list": every ticket
not done by 17:00 is listed for the department head). The console computes the list live for any
day; the kept copy says what was open at the cut-off even after those tickets are closed in the
evening."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import desk
from core.settings import Settings
from core.store import DailyList


def last_cutoff_day(now: datetime, settings: Settings) -> date:
    """The day whose 17:00 cut-off is the latest one at or before ``now`` (a run delayed past
    midnight by a restart still keeps yesterday's list)."""
    local = now.astimezone(settings.tz)
    before_cutoff = local.time() < settings.sla.daily_report_at()
    return local.date() - timedelta(days=1) if before_cutoff else local.date()


def keep_daily_list(session: Session, day: date, now: datetime, settings: Settings) -> DailyList:
    """Keep the day's list once; a second run (a restart, a second scheduler) returns the first."""
    kept = session.get(DailyList, day)
    if kept is not None:
        return kept
    tickets = desk.daily_report(session, day, settings)
    kept = DailyList(day=day, made_at=now, ticket_ids=[t.id for t in tickets], numbers=[t.number for t in tickets])
    try:
        with session.begin_nested():
            session.add(kept)
    except IntegrityError:  # kept by another process a moment ago
        other = session.get(DailyList, day)
        if other is None:
            raise LookupError(f"the daily list of {day} clashed with another but cannot be read") from None
        return other
    return kept
