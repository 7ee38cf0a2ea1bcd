"""The ticket's rules without a database: transitions, who may make them, SLA deadlines."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from core.settings import SlaSettings
from core.tickets import (
    RULES,
    Channel,
    Role,
    Status,
    TransitionError,
    TransitionRequest,
    Urgency,
    allowed_moves,
    current_due_at,
    deadlines,
    on_time,
    rule_for,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLA = SlaSettings()


def complete_request(to: Status) -> TransitionRequest:
    """A request carrying everything any rule may ask for."""
    return TransitionRequest(to=to, reason="wrong_place", engineer_id=1, rating="满意",
                             actual_item="更换水龙头", material_fee=30, labour_fee=20)


@pytest.mark.parametrize(("current", "to"), sorted(RULES))
def test_every_allowed_move_passes_for_its_roles_and_is_refused_for_others(current, to):
    rule = RULES[(current, to)]
    for role in Role:
        if role in rule.roles:
            assert rule_for(current, complete_request(to), role) is rule
        else:
            with pytest.raises(TransitionError, match="无权执行"):
                rule_for(current, complete_request(to), role)


ILLEGAL = [
    (Status.RECEIVED, Status.COMPLETED),
    (Status.DRAFT, Status.DISPATCHED),
    (Status.DISPATCHED, Status.ARCHIVED),
    (Status.COMPLETED, Status.ARCHIVED),  # archived only after the follow-up
    (Status.CANCELLED, Status.RECEIVED),
    (Status.ARCHIVED, Status.DISPATCHED),
    (Status.ON_SITE, Status.ACCEPTED),
    (Status.FOLLOWED_UP, Status.CANCELLED),
]


@pytest.mark.parametrize(("current", "to"), ILLEGAL)
def test_illegal_moves_are_refused_in_chinese(current, to):
    with pytest.raises(TransitionError) as refused:
        rule_for(current, complete_request(to), Role.ADMIN)
    assert "不能转为" in str(refused.value)


@pytest.mark.parametrize(("current", "request_", "message"), [
    (Status.RECEIVED, TransitionRequest(Status.DISPATCHED), "需要指定维修人员"),
    (Status.RECEIVED, TransitionRequest(Status.CANCELLED, reason="不想修了"), "撤单需要选择撤单原因"),
    (Status.DISPATCHED, TransitionRequest(Status.DISPATCHED, engineer_id=2), "需要填写原因"),
    (Status.ON_SITE, TransitionRequest(Status.COMPLETED), "实际维修项目"),
    (Status.ON_SITE, TransitionRequest(Status.COMPLETED, actual_item="x", labour_fee=-5), "不能为负数"),
    (Status.COMPLETED, TransitionRequest(Status.FOLLOWED_UP, rating="还行"), "满意度"),
    (Status.ON_SITE, TransitionRequest(Status.REFUSED), "需要填写原因"),
])
def test_incomplete_moves_say_what_is_missing(current, request_, message):
    with pytest.raises(TransitionError, match=message):
        rule_for(current, request_, Role.ADMIN)


def test_terminal_states_offer_nothing_and_engineers_cannot_dispatch():
    assert allowed_moves(Status.CANCELLED, Role.ADMIN) == []
    assert allowed_moves(Status.ARCHIVED, Role.ADMIN) == []
    assert [to for to, _ in allowed_moves(Status.RECEIVED, Role.ENGINEER)] == [Status.PRICE_REVIEW]
    assert {to for to, _ in allowed_moves(Status.DISPATCHED, Role.ENGINEER)} == {Status.ACCEPTED}


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def ticket(reported, **fields):
    base = dict(reported_at=reported, urgency=Urgency.NORMAL, channel=Channel.DESK, area="",
                is_paid=False, appointment_start=None, accepted_at=None, arrived_at=None,
                completed_at=None, status=Status.RECEIVED, status_changed_at=reported,
                postponed_until=None)
    return SimpleNamespace(**(base | fields))


def test_emergency_reported_before_midnight_is_due_after_midnight():
    t = ticket(local(2026, 11, 22, 23, 50), urgency=Urgency.EMERGENCY)
    due = deadlines(t, SLA)
    assert due.dispatch_due_at == local(2026, 11, 22, 23, 53)
    assert due.arrival_due_at == local(2026, 11, 23, 0, 20)
    assert due.completion_due_at == local(2026, 11, 23, 7, 50)


def test_public_area_report_has_its_own_limits():
    due = deadlines(ticket(local(2026, 11, 22, 9, 0), area="电梯"), SLA)
    assert due.dispatch_due_at == local(2026, 11, 22, 9, 10)
    assert due.arrival_due_at == local(2026, 11, 22, 9, 15)


def test_appointment_means_arrive_five_minutes_early_and_finish_within_a_day_of_it():
    t = ticket(local(2026, 11, 22, 16, 0), appointment_start=local(2026, 11, 24, 14, 0))
    due = deadlines(t, SLA)
    assert due.arrival_due_at == local(2026, 11, 24, 13, 55)
    assert due.completion_due_at == local(2026, 11, 25, 14, 0)


def test_paid_item_wanted_now_is_due_ten_minutes_after_the_order_is_taken():
    t = ticket(local(2026, 11, 22, 10, 0), is_paid=True, accepted_at=local(2026, 11, 22, 10, 7))
    assert deadlines(t, SLA).arrival_due_at == local(2026, 11, 22, 10, 17)


def test_low_urgency_gets_72_hours_and_phone_drafts_must_be_reviewed_in_2_minutes():
    t = ticket(local(2026, 11, 22, 10, 0), urgency=Urgency.LOW, channel=Channel.PHONE, status=Status.DRAFT)
    due = deadlines(t, SLA)
    assert due.completion_due_at == local(2026, 11, 25, 10, 0)
    assert current_due_at(t, SLA) == local(2026, 11, 22, 10, 2)


def test_the_due_time_follows_the_state():
    reported = local(2026, 11, 22, 10, 0)
    t = ticket(reported, urgency=Urgency.EMERGENCY)
    assert current_due_at(t, SLA) == reported + timedelta(minutes=3)
    t.status = Status.DISPATCHED
    assert current_due_at(t, SLA) == reported + timedelta(minutes=30)
    t.status = Status.ON_SITE
    assert current_due_at(t, SLA) == reported + timedelta(hours=8)
    t.status, t.status_changed_at = Status.PRICE_REVIEW, reported + timedelta(hours=1)
    assert current_due_at(t, SLA) == reported + timedelta(hours=1, minutes=15)
    t.status, t.postponed_until = Status.POSTPONED, local(2026, 11, 23, 9, 0)
    assert current_due_at(t, SLA) == local(2026, 11, 23, 9, 0)
    t.status = Status.COMPLETED
    assert current_due_at(t, SLA) is None


def test_limits_are_settings():
    sla = SlaSettings(emergency_arrival_minutes=15)
    t = ticket(local(2026, 11, 22, 10, 0), urgency=Urgency.EMERGENCY)
    assert deadlines(t, sla).arrival_due_at == local(2026, 11, 22, 10, 15)


def test_on_time_needs_both_arrival_and_completion_in_time():
    reported = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    t = ticket(reported, urgency=Urgency.EMERGENCY, arrived_at=reported + timedelta(minutes=25),
               completed_at=reported + timedelta(hours=3))
    assert on_time(t, SLA) is True
    t.arrived_at = reported + timedelta(minutes=31)
    assert on_time(t, SLA) is False
    t.completed_at = None
    assert on_time(t, SLA) is None
