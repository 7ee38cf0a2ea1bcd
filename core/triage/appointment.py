"""When the caller wants the visit: a day, a part of the day or a clock time, resolved against now.

Everything here reads the normalised text (numbers as digits) and works in the site's
time: ``now`` is already in the site's time zone, and the window found is in it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.triage.text import CLAUSE_BREAK, Span, blank


@dataclass(frozen=True)
class Appointment:
    start: datetime
    end: datetime

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


DAY_OFFSETS = {"大后天": 3, "后天": 2, "明天": 1, "明儿": 1, "明日": 1, "明早": 1, "明晚": 1,
               "今天": 0, "今儿": 0, "今日": 0, "今早": 0, "今晚": 0}
WEEKEND_VISIT_DAY = 5  # 周末 books the Saturday
WEEKDAY_INDEX = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6,
                 "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
# Repair visits happen in the day; these are the windows the desk books.
PART_OF_DAY_HOURS = {
    "上午": (9, 12), "早上": (9, 12), "早晨": (9, 12), "一早": (9, 12), "上半天": (9, 12), "明早": (9, 12),
    "今早": (9, 12), "中午": (12, 14), "下午": (14, 18), "下半天": (14, 18), "傍晚": (17, 19),
    "晚上": (18, 21), "今晚": (18, 21), "明晚": (18, 21), "夜里": (18, 21),
}
DAY_PARTS = ((9, 12), (12, 14), (14, 18), (18, 21))
WORKING_DAY_HOURS = (9, 18)  # a day named without a time
AFTER_WORK = re.compile(r"下班(?:以后|之后|后|回来|回家)")
AFTER_WORK_HOURS = (19, 21)
SLOT = timedelta(hours=1)  # a time of day (三点, 三点左右) books one hour
VISIT_WORDS = re.compile(r"来|上门|修|看|换|在家|有人|有空|方便|可以|行吗|都行|就行|吧")
TIME_PARTICLES = re.compile(r"[\s#吧啊呀的呢就都吗]|可以|行")
ASAP_WORDS = re.compile(r"现在|马上|尽快|立刻|立即|赶紧|越快越好|随时|什么时候都|啥时候都")

UNAVAILABLE = re.compile(r"(?:都|也)?(?:不在|没空|没时间|不方便|不行|没人)")  # 明天不在家, 后天上午来吧
DAY_WORD = re.compile("|".join(sorted(DAY_OFFSETS, key=len, reverse=True)))
WEEKDAY = re.compile(r"(?<!上)(?<!上个)(这个?|本|下个?)?(?:周|星期|礼拜)([一二三四五六日天1-7])|(这个?|本|下个?)?周末")
MONTH_DAY = re.compile(r"(?:(\d{1,2})月)?(\d{1,2})[号日](?![楼栋单元\d室院门])")
# A bare 15号 is a date only when a time or a visit follows (15号 下午, 15号来).
DATE_FOLLOWERS = re.compile(r"的?(?:上午|下午|中午|晚上|早上|\d{1,2}点|来|过来|上门|那天"
                            r"|左右|前后|以后|之后|之前|以前)")
PART_OF_DAY = re.compile("|".join(sorted(PART_OF_DAY_HOURS, key=len, reverse=True)))
_MINUTE = r"半|一刻|三刻|\d{1,2}"
CLOCK_RANGE = re.compile(rf"(\d{{1,2}})(?:[点:：]({_MINUTE})?分?)?(?:到|至|-|~)(上午|下午|中午|晚上)?"
                         rf"(\d{{1,2}})[点:：]({_MINUTE})?分?")
CLOCK = re.compile(rf"(\d{{1,2}})[点:：]({_MINUTE})?分?钟?(左右|前后|以后|之后|过后|以前|之前|后|前)?")
CLOCK_AFTER = ("以后", "之后", "过后", "后")
CLOCK_BEFORE = ("以前", "之前", "前")


def find_appointment(text: str, now: datetime) -> tuple[Appointment | None, list[Span]]:
    """The visit window the caller asked for, resolved against ``now`` (in the site's time zone);
    None for 'any time' or 'now'.

    Also returns the spans of the time words, so the summary can leave them out.
    """
    spans: list[Span] = []
    today = now.date()
    day, roll = _find_day(text, today, spans)
    part = _first_match(PART_OF_DAY, text, spans)
    window = _clock_window(text, part, spans)
    is_point_in_time = window is not None
    if not spans or not _asks_for_visit(text, spans, day, today):
        return None, []
    if window is None and part:
        window = (time(PART_OF_DAY_HOURS[part][0]), time(PART_OF_DAY_HOURS[part][1]))
    if window is None:
        if day is None or (day == today and ASAP_WORDS.search(text)):
            return None, spans
        window = (time(WORKING_DAY_HOURS[0]), time(WORKING_DAY_HOURS[1]))
    start, end = (datetime.combine(day or today, t, tzinfo=now.tzinfo) for t in window)
    passed = start <= now if is_point_in_time else end <= now
    if roll and passed:
        start, end = start + timedelta(days=roll), end + timedelta(days=roll)
    return Appointment(start, end), spans


def _asks_for_visit(text: str, spans: list[Span], day: date | None, today: date) -> bool:
    """A later day always books a visit; 今天/晚上/三点 only when the caller asks for one then
    (晚上过来吧, 三点以后家里有人) or the time ends the clause (马桶堵了下午三点, or the bare answer
    to "什么时候方便?"). 晚上黑乎乎的 and 今天早上突然停水了 describe the fault, not the visit."""
    if day is not None and day > today:
        return True
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    clause_start = max((m.end() for m in CLAUSE_BREAK.finditer(text, 0, first)), default=0)
    next_break = CLAUSE_BREAK.search(text, last)
    clause_end = next_break.start() if next_break else len(text)
    said_after = TIME_PARTICLES.sub("", text[last:clause_end])
    return bool(VISIT_WORDS.search(blank(text, spans, " ")[clause_start:clause_end])) or not said_after


def _first_match(pattern: re.Pattern, text: str, spans: list[Span]) -> str | None:
    match = pattern.search(text)
    if match:
        spans.append(match.span())
    return match.group() if match else None


def _find_day(text: str, today: date, spans: list[Span]) -> tuple[date | None, int]:
    """The day named and how far a passed time rolls it: a bare time rolls a day, a weekday a week."""
    word = next((w for w in DAY_WORD.finditer(text) if not UNAVAILABLE.match(text, w.end())), None)
    if word:
        spans.append(word.span())
        return today + timedelta(days=DAY_OFFSETS[word.group()]), 0
    weekday = WEEKDAY.search(text)
    if weekday:
        spans.append(weekday.span())
        return _weekday_date(weekday, today)
    month_day = _month_day(text, today, spans)
    if month_day:
        return month_day, 0
    return None, 1


def _weekday_date(match: re.Match, today: date) -> tuple[date, int]:
    """下周三 is in next calendar week; 周三/这周三 is the coming one (today if it is Wednesday)."""
    prefix = match.group(1) or match.group(3) or ""
    index = WEEKDAY_INDEX[match.group(2)] if match.group(2) else WEEKEND_VISIT_DAY
    if prefix.startswith("下"):
        next_monday = today + timedelta(days=7 - today.weekday())
        return next_monday + timedelta(days=index), 0
    return today + timedelta(days=(index - today.weekday()) % 7), 7


def _month_day(text: str, today: date, spans: list[Span]) -> date | None:
    for match in MONTH_DAY.finditer(text):
        month, day = match.group(1), int(match.group(2))
        if month is None and not DATE_FOLLOWERS.match(text, match.end()):
            continue
        found = _next_date(today, int(month) if month else None, day)
        if found:
            spans.append(match.span())
            return found
    return None


def _next_date(today: date, month: int | None, day: int) -> date | None:
    """The first date on or after today with this day (and month)."""
    candidates = ([(today.year, month), (today.year + 1, month)] if month
                  else [(today.year, today.month), (today.year + today.month // 12, today.month % 12 + 1)])
    for year, month_of in candidates:
        try:
            found = date(year, month_of, day)
        except ValueError:
            continue
        if found >= today:
            return found
    return None


def _clock_window(text: str, part: str | None, spans: list[Span]) -> tuple[time, time] | None:
    after_work = AFTER_WORK.search(text)
    if after_work:
        spans.append(after_work.span())
        return time(AFTER_WORK_HOURS[0]), time(AFTER_WORK_HOURS[1])
    ranged = CLOCK_RANGE.search(text)
    if ranged:
        window = _range_window(ranged, part)
        if window:
            spans.append(ranged.span())
            return window
    clock = CLOCK.search(text)
    if not clock:
        return None
    at = _clock_time(clock.group(1), clock.group(2), part)
    if at is None:
        return None
    spans.append(clock.span())
    return _modified_window(at, clock.group(3))


def _range_window(match: re.Match, part: str | None) -> tuple[time, time] | None:
    start = _clock_time(match.group(1), match.group(2), part)
    end = _clock_time(match.group(4), match.group(5), match.group(3) or part)
    if start is None or end is None:
        return None
    if end <= start and end.hour < 12:
        end = end.replace(hour=end.hour + 12)  # 十一点到一点 ends at 13:00
    return (start, end) if end > start else None


def _clock_time(hour_text: str, minute_text: str | None, part: str | None) -> time | None:
    hour = _day_hour(int(hour_text), part)
    minute = 0 if minute_text is None else {"半": 30, "一刻": 15, "三刻": 45}.get(minute_text) or int(minute_text)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _day_hour(hour: int, part: str | None) -> int:
    """12-hour speech -> 24-hour clock; with no part of day, 1-7 is afternoon (repairs happen by day)."""
    if part is None:
        return hour + 12 if 1 <= hour <= 7 else hour
    start_hour, _ = PART_OF_DAY_HOURS[part]
    if start_hour >= 14 and hour < 12:
        return hour + 12
    if start_hour == 12 and 1 <= hour <= 5:
        return hour + 12
    return hour


def _modified_window(at: time, modifier: str | None) -> tuple[time, time]:
    if modifier in CLOCK_AFTER:
        return at, _end_of_part(at)
    if modifier in CLOCK_BEFORE:
        return _start_of_part(at), at
    return at, _slot_end(at)  # 三点, 三点左右


def _slot_end(at: time) -> time:
    end = datetime.combine(date.min, at) + SLOT
    return end.time() if end.date() == date.min else time(23, 59)


def _end_of_part(at: time) -> time:
    """两点半以后 runs to the end of that afternoon; before 9:00 counts as morning."""
    for _, end_hour in DAY_PARTS:
        if at < time(end_hour):
            return time(end_hour)
    return _slot_end(at)


def _start_of_part(at: time) -> time:
    """十点前 starts when that morning does; 八点前 (before any part) gives the hour before."""
    for start_hour, end_hour in DAY_PARTS:
        if time(start_hour) < at <= time(end_hour):
            return time(start_hour)
    return time(max(at.hour - 1, 0), at.minute)
