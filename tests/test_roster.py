"""The duty roster: who is on duty when (pure rules), and the stored pattern and overrides."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import roster_store
from core.base import Actor
from core.roster import (
    Gap,
    Link,
    Override,
    PatternError,
    Person,
    Roster,
    ShiftPattern,
    gaps,
    on_duty,
    parse_clock,
    parse_weekdays,
    weekdays_text,
)
from core.store import Engineer, RosterOverride, Shift
from core.tickets import Role

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2026-11-23 is a Monday.
MON, TUE, WED, FRI, SAT, SUN, NEXT_MON = 23, 24, 25, 27, 28, 29, 30
ZHANG, LI, WANG, ZHAO, SUN_, ZHOU, WU = range(1, 8)
PEOPLE = {
    ZHANG: Person(ZHANG, "张工", "13800000001"),
    LI: Person(LI, "李工", "13800000002"),
    WANG: Person(WANG, "王主管", "sip:wang@pbx.local"),
    ZHAO: Person(ZHAO, "赵经理", "13800000004"),
    SUN_: Person(SUN_, "孙工", "13800000005"),
    ZHOU: Person(ZHOU, "周工", ""),  # no number: cannot be rung
    WU: Person(WU, "吴工", "13800000007", active=False),
}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def shift(name, days, start, end, chain, skill="", id=0):
    links = tuple(link if isinstance(link, Link) else Link(link) for link in chain)
    return ShiftPattern(name, parse_weekdays(days), parse_clock(start), parse_clock(end), skill, links, id)


def roster(*shifts, overrides=()):
    return Roster(tuple(shifts), tuple(overrides), PEOPLE, SHANGHAI, ring_seconds=25)


WEEK = roster(
    shift("白班", "1-5", "08:00", "20:00", [ZHANG, LI, WANG, ZHAO], id=1),
    shift("夜班", "1-5", "20:00", "08:00", [LI, ZHANG, WANG, ZHAO], id=2),
    shift("周末白班", "6,7", "08:00", "20:00", [SUN_, WANG], id=3),
    shift("周末夜班", "6,7", "20:00", "08:00", [ZHANG, WANG], id=4),
)


def names(duty):
    return [link.name for link in duty.chain]


@pytest.mark.parametrize(("moment", "shift_name"), [
    (at(FRI, 19, 59), "白班"),
    (at(FRI, 20, 0), "夜班"),
    (at(SAT, 3, 0), "夜班"),  # Friday's night shift runs past midnight into Saturday
    (at(SAT, 7, 59), "夜班"),
    (at(SAT, 8, 0), "周末白班"),  # the end is exclusive
    (at(SUN, 23, 0), "周末夜班"),
    (at(NEXT_MON, 3, 0), "周末夜班"),  # Sunday night into Monday, not Monday's own night shift
    (at(NEXT_MON, 8, 0), "白班"),
    (at(MON, 3, 0), "周末夜班"),
    (at(WED, 21, 0), "夜班"),
])
def test_the_shift_on_duty_follows_weekdays_and_crosses_midnight(moment, shift_name):
    assert on_duty(WEEK, moment).shift == shift_name


def test_the_chain_is_in_order_with_contacts_and_ring_times():
    pattern = roster(shift("白班", "1-7", "08:00", "20:00", [Link(ZHANG, 40), LI, WANG]))
    duty = on_duty(pattern, at(MON, 9))
    assert [(c.engineer_id, c.name, c.contact, c.ring_seconds) for c in duty.chain] == [
        (ZHANG, "张工", "13800000001", 40), (LI, "李工", "13800000002", 25),
        (WANG, "王主管", "sip:wang@pbx.local", 25)]
    assert duty.until == at(MON, 20)


def test_a_shift_on_some_weekdays_only():
    weekend_only = roster(shift("周末值班", "6,7", "00:00", "00:00", [ZHANG]))  # 00:00-00:00: all day
    assert on_duty(weekend_only, at(SAT, 0)).shift == "周末值班"
    assert on_duty(weekend_only, at(SUN, 23, 59)).shift == "周末值班"
    assert on_duty(weekend_only, at(NEXT_MON, 0)).shift is None
    assert on_duty(weekend_only, at(FRI, 12)).shift is None


def test_an_override_wins_over_the_pattern_for_its_range_only():
    li_on_leave = Override(at(FRI, 20), at(SAT, 8), replaced_id=LI, substitute_id=SUN_, id=1)
    pattern = roster(*WEEK.shifts, overrides=[li_on_leave])
    assert names(on_duty(pattern, at(FRI, 19))) == ["张工", "李工", "王主管", "赵经理"]  # before
    assert names(on_duty(pattern, at(FRI, 22))) == ["孙工", "张工", "王主管", "赵经理"]  # the stand-in takes the place
    assert names(on_duty(pattern, at(SAT, 7, 59))) == ["孙工", "张工", "王主管", "赵经理"]
    assert names(on_duty(pattern, at(WED, 22))) == ["李工", "张工", "王主管", "赵经理"]  # another night: the pattern
    nobody_covers = roster(*WEEK.shifts, overrides=[Override(at(MON, 0), at(TUE, 0), ZHANG, None, id=1)])
    assert names(on_duty(nobody_covers, at(MON, 9))) == ["李工", "王主管", "赵经理"]  # the next moves up


def test_a_swap_inside_the_chain_does_not_ring_anyone_twice():
    swap = Override(at(MON, 0), at(TUE, 0), replaced_id=ZHANG, substitute_id=WANG, id=1)
    assert names(on_duty(roster(*WEEK.shifts, overrides=[swap]), at(MON, 9))) == ["王主管", "李工", "赵经理"]


def test_later_overrides_apply_after_earlier_ones():
    first = Override(at(MON, 0), at(TUE, 0), ZHANG, LI, id=1)
    second = Override(at(MON, 0), at(TUE, 0), LI, SUN_, id=2)  # and Li is away too
    assert names(on_duty(roster(*WEEK.shifts, overrides=[second, first]), at(MON, 9)))[:2] == ["孙工", "王主管"]


def test_inactive_and_unreachable_engineers_are_passed_over():
    pattern = roster(shift("白班", "1-7", "08:00", "20:00", [WU, ZHOU, ZHANG]))
    assert names(on_duty(pattern, at(MON, 9))) == ["张工"]


def test_skills_pick_their_own_shift_else_the_general_one():
    pattern = roster(
        shift("综合值班", "1-7", "08:00", "08:00", [ZHANG, WANG], id=1),
        shift("电梯值班", "1-7", "08:00", "08:00", [SUN_, ZHAO], skill="电梯", id=2),
    )
    assert on_duty(pattern, at(MON, 3), "电梯").shift == "电梯值班"
    assert on_duty(pattern, at(MON, 3), "水电").shift == "综合值班"  # no 水电 shift: the general one
    assert on_duty(pattern, at(MON, 3)).shift == "综合值班"
    lift_people_away = [Override(at(MON, 0), at(TUE, 0), SUN_, None, id=1),
                        Override(at(MON, 0), at(TUE, 0), ZHAO, None, id=2)]
    assert on_duty(roster(*pattern.shifts, overrides=lift_people_away), at(MON, 3), "电梯").shift == "综合值班"
    elevator_only = roster(shift("电梯值班", "1-7", "08:00", "08:00", [SUN_], skill="电梯"))
    assert on_duty(elevator_only, at(MON, 3), "燃气").shift is None
    assert on_duty(elevator_only, at(MON, 3)).shift == "电梯值班"  # no particular skill: whoever is on duty


def test_where_shifts_overlap_the_one_that_began_last_wins():
    pattern = roster(shift("24小时值班", "1-7", "00:00", "00:00", [ZHAO], id=1),
                     shift("白班", "1-5", "08:00", "17:00", [ZHANG], id=2))
    assert [on_duty(pattern, at(MON, h)).shift for h in (7, 8, 16, 17)] == ["24小时值班", "白班", "白班", "24小时值班"]


def test_no_shift_is_an_empty_on_call():
    duty = on_duty(roster(), at(MON, 9), "水电")
    assert (duty.shift, duty.chain, duty.skill) == (None, [], "水电")


def test_gaps_are_the_empty_slots_merged():
    days_only = roster(shift("白班", "1-5", "08:00", "20:00", [ZHANG], id=1))
    assert gaps(days_only, at(MON, 0), at(TUE, 0)) == [
        Gap("", at(MON, 0), at(MON, 8), None), Gap("", at(MON, 20), at(TUE, 0), None)]
    # Over the weekend it is one warning from Friday 20:00 to Monday 08:00, not one per day.
    assert gaps(days_only, at(FRI, 12), at(NEXT_MON, 12)) == [Gap("", at(FRI, 20), at(NEXT_MON, 8), None)]
    assert gaps(WEEK, at(MON, 0), at(MON, 0) + timedelta(days=7)) == []


def test_a_shift_whose_people_are_all_away_is_a_gap_named_after_it():
    pattern = roster(shift("夜班", "1-7", "20:00", "08:00", [ZHANG], id=1),
                     shift("白班", "1-7", "08:00", "20:00", [LI], id=2),
                     overrides=[Override(at(TUE, 22), at(WED, 2), ZHANG, None, id=1)])
    assert gaps(pattern, at(MON, 0), at(FRI, 0)) == [Gap("", at(TUE, 22), at(WED, 2), "夜班")]


def test_gaps_per_skill():
    pattern = roster(shift("综合", "1-7", "08:00", "20:00", [ZHANG], id=1),
                     shift("电梯", "1-7", "00:00", "00:00", [SUN_], skill="电梯", id=2))
    assert pattern.skills() == ["", "电梯"]
    assert gaps(pattern, at(MON, 0), at(TUE, 0), ["水电", "电梯"]) == [
        Gap("水电", at(MON, 0), at(MON, 8), None), Gap("水电", at(MON, 20), at(TUE, 0), None)]
    assert gaps(pattern, at(MON, 0), at(TUE, 0)) == []  # someone is always on duty for anything


def test_weekday_and_clock_notation():
    assert parse_weekdays("1-5") == {1, 2, 3, 4, 5} and parse_weekdays("6,7") == {6, 7}
    assert parse_weekdays("1-3, 5") == {1, 2, 3, 5}
    assert parse_clock("08:00") == time(8) and parse_clock("24:00") == time(0)
    for bad in ("0", "8", "5-1", "一"):
        with pytest.raises(PatternError, match="1=周一"):
            parse_weekdays(bad)
    for bad in ("25:00", "8", "08:60", "24:30"):
        with pytest.raises(PatternError, match="HH:MM"):
            parse_clock(bad)
    assert [weekdays_text(d) for d in ({1, 2, 3, 4, 5}, {6, 7}, range(1, 8), {1, 3})] == [
        "周一至周五", "周六、周日", "每天", "周一、周三"]


# --- the stored roster --------------------------------------------------------------------------------

ROWS = [
    {"name": "白班", "weekdays": "1-5", "start": "08:00", "end": "20:00", "skill": "", "chain": "张工>李工:40>王主管"},
    {"name": "夜班", "weekdays": "1-7", "start": "20:00", "end": "08:00", "skill": "", "chain": "李工 > 张工"},
    {"name": "电梯", "weekdays": "1-7", "start": "00:00", "end": "24:00", "skill": "电梯", "chain": "孙工"},
]


@pytest.fixture
def engineers(sessions):
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002"),
                         Engineer(name="王主管", sip_uri="sip:wang@pbx.local"),
                         Engineer(name="孙工", phone="13800000005"),
                         Engineer(name="吴工", phone="13800000007", active=False)])
    with sessions() as session:
        return {e.name: e for e in session.scalars(select(Engineer))}


def test_a_stored_pattern_answers_who_is_on_duty(sessions, settings, engineers):
    with sessions() as session, session.begin():
        assert len(roster_store.replace_shifts(session, ROWS)) == 3
    with sessions() as session:
        stored = roster_store.load_roster(session, settings)
    day = on_duty(stored, at(FRI, 9))
    assert day.shift == "白班"
    assert [(c.name, c.contact, c.ring_seconds) for c in day.chain] == [
        ("张工", "13800000001", 25), ("李工", "13800000002", 40), ("王主管", "sip:wang@pbx.local", 25)]
    assert names(on_duty(stored, at(SAT, 3))) == ["李工", "张工"]
    assert on_duty(stored, at(SAT, 23, 59), "电梯").shift == "电梯"
    assert gaps(stored, at(MON, 0), at(MON, 0) + timedelta(days=7), ["水电", "电梯"]) == [
        Gap("水电", at(SAT, 8), at(SAT, 20), None), Gap("水电", at(SUN, 8), at(SUN, 20), None)]


@pytest.mark.parametrize(("row", "message"), [
    ({"name": ""}, "第 3 行: 缺少班次名称"),
    ({"weekdays": "周一"}, "第 3 行: 星期应写成"),
    ({"end": "8点"}, "第 3 行: 时间应为 HH:MM"),
    ({"chain": "张工>无名"}, "第 3 行: 没有名为「无名」的维修人员"),
    ({"chain": "张工>吴工"}, "第 3 行: 维修人员「吴工」已停用"),
    ({"chain": "张工>李工>张工"}, "第 3 行: 呼叫链中「张工」重复"),
    ({"chain": ""}, "第 3 行: 呼叫链应为维修人员姓名"),
    ({"chain": "张工:3"}, "第 3 行: 「张工:3」的振铃秒数"),
])
def test_a_bad_line_refuses_the_whole_file_and_keeps_the_old_pattern(sessions, settings, engineers, row, message):
    with sessions() as session, session.begin():
        roster_store.replace_shifts(session, ROWS[:1])
    with sessions() as session, session.begin():
        with pytest.raises(roster_store.RosterError, match=message):
            roster_store.replace_shifts(session, [ROWS[1], ROWS[0] | row, ROWS[2]])
    with sessions() as session:
        assert [s.name for s in session.scalars(select(Shift))] == ["白班"]


def test_an_empty_file_does_not_wipe_the_roster(sessions, engineers):
    with sessions() as session, session.begin():
        with pytest.raises(roster_store.RosterError, match="没有班次"):
            roster_store.replace_shifts(session, [])


def test_overrides_are_stored_checked_and_removed(sessions, settings, engineers):
    boss = Actor("boss", Role.MANAGER)
    with sessions() as session, session.begin():
        roster_store.replace_shifts(session, ROWS)
        zhang, sun = roster_store.engineer_named(session, "张工"), roster_store.engineer_named(session, "孙工")
        override = roster_store.add_override(session, at(FRI, 0), at(SAT, 0), zhang, sun, boss, at(MON, 10), "调休")
        override_id = override.id
    with sessions() as session:
        stored = roster_store.load_roster(session, settings)
        assert names(on_duty(stored, at(FRI, 9))) == ["孙工", "李工", "王主管"]
        assert names(on_duty(stored, at(SAT, 3))) == ["李工", "张工"]  # after its range: the pattern
        assert [o.note for o in roster_store.current_overrides(session, at(FRI, 23))] == ["调休"]
        assert roster_store.current_overrides(session, at(SAT, 0)) == []
        assert roster_store.load_roster(session, settings, since=at(SAT, 0)).overrides == ()
    with sessions() as session, session.begin():
        zhang, li = roster_store.engineer_named(session, "张工"), roster_store.engineer_named(session, "李工")
        wu = roster_store.engineer_named(session, "吴工")
        for args, message in (((at(FRI, 0), at(FRI, 0), zhang, li, boss), "结束时间应晚于开始时间"),
                              ((at(FRI, 0), at(SAT, 0), zhang, zhang, boss), "不能是被替换的人"),
                              ((at(FRI, 0), at(SAT, 0), zhang, wu, boss), "已停用"),
                              ((at(FRI, 0), at(SAT, 0), zhang, li, Actor("desk", Role.FRONTDESK)), "只有主管")):
            with pytest.raises(roster_store.RosterError, match=message):
                roster_store.add_override(session, *args, now=at(MON, 10))
        with pytest.raises(roster_store.RosterError, match="没有名为「无名」"):
            roster_store.engineer_named(session, "无名")
        roster_store.remove_override(session, override_id, boss)
    with sessions() as session:
        assert session.scalars(select(RosterOverride)).all() == []
