"""Calling hours: when the service may phone a resident (pure time arithmetic, no database).

Residents are called only inside the windows of ``followup.calling_hours`` in the site's time,
never on ``followup.rest_days`` unless they agreed to that time themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.settings import Settings

# Rest days cannot cover every day (settings refuse that); a year is far more than any holiday.
_SEARCH_DAYS = 366


@dataclass(frozen=True)
class CallingHours:
    windows: tuple[tuple[time, time], ...]  # [start, end) in the site's time, earliest first
    rest_weekdays: frozenset[int]  # ISO weekdays, 7 = Sunday
    rest_dates: frozenset[date]
    tz: ZoneInfo

    @classmethod
    def of(cls, settings: Settings) -> CallingHours:
        policy = settings.followup
        return cls(policy.windows(), policy.rest_weekdays(), policy.rest_dates(), settings.tz)

    def is_rest_day(self, day: date) -> bool:
        return day.isoweekday() in self.rest_weekdays or day in self.rest_dates

    def is_open(self, moment: datetime, rest_day_agreed: bool = False) -> bool:
        """May we call at this moment?"""
        local = moment.astimezone(self.tz)
        if self.is_rest_day(local.date()) and not rest_day_agreed:
            return False
        return any(start <= local.time() < end for start, end in self.windows)

    def next_open(self, moment: datetime, rest_day_agreed: bool = False) -> datetime:
        """The first moment at or after ``moment`` when we may call (in the site's time)."""
        local = moment.astimezone(self.tz)
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if self.is_rest_day(day) and not rest_day_agreed:
                continue
            for start, end in self.windows:
                opens = datetime.combine(day, start, tzinfo=self.tz)
                closes = datetime.combine(day, end, tzinfo=self.tz)
                if local < closes:
                    return max(local, opens)
        raise ValueError("no calling hours within a year: check followup.rest_days")

    def after_open_minutes(self, moment: datetime, minutes: float) -> datetime:
        """The moment when ``minutes`` of calling hours have passed since ``moment``: the clock
        stops at lunch, at night and on rest days (60 minutes from 11:30 end at 14:30)."""
        left = timedelta(minutes=minutes)
        at = self.next_open(moment)
        while True:
            local = at.astimezone(self.tz)
            closes = next(datetime.combine(local.date(), end, tzinfo=self.tz)
                          for start, end in self.windows if start <= local.time() < end)
            if at + left <= closes:
                return at + left
            left -= closes - at
            at = self.next_open(closes)
