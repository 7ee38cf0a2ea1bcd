"""The call-back list (回拨) of callers who gave up: one item per number per hour, on every node at once."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core import callback_list
from core.callback_list import Abandoned, AlreadyResolved, CallbackCall, CallbackItem, record_abandoned, stage_name
from core.contacts import is_phone_number
from core.store import CallRecord
from core.tickets import TransitionError

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
NUMBER = "13900139000"


def abandoned_call(sessions, number=NUMBER, at=T0, stage="greeting") -> Abandoned:
    """A finished call record, as the hotline leaves it, and the abandoned call it describes."""
    with sessions() as session, session.begin():
        record = CallRecord(direction="inbound", line="hotline", caller=f"sip:{number or 'anonymous'}@pbx",
                            started_at=at, outcome="caller_hung_up", recording_path="2026/11/23/x.wav")
        session.add(record)
        session.flush()
        return Abandoned(call_id=record.id, number=number, at=at, stage=stage)


def items(sessions):
    with sessions() as session:
        return [(item.number, item.status, item.first_call_at, item.last_call_at, item.stage,
                 sorted(c.call_id for c in session.scalars(select(CallbackCall).where(CallbackCall.item_id == item.id))))
                for item in session.scalars(select(CallbackItem).order_by(CallbackItem.id))]


def test_calls_from_one_number_within_an_hour_are_one_item_and_a_later_one_starts_another(sessions):
    first = abandoned_call(sessions, at=T0)
    second = abandoned_call(sessions, at=T0 + timedelta(minutes=40), stage="key:1")
    third = abandoned_call(sessions, at=T0 + timedelta(minutes=100))  # 60 min after the second: a new item
    other = abandoned_call(sessions, number="13800138000", at=T0 + timedelta(minutes=41))
    ids = [record_abandoned(sessions, call) for call in (first, second, other, third)]
    assert ids[0] == ids[1] and len(set(ids)) == 3
    assert items(sessions) == [
        (NUMBER, "open", T0, T0 + timedelta(minutes=40), "key:1", [first.call_id, second.call_id]),
        ("13800138000", "open", other.at, other.at, "greeting", [other.call_id]),
        (NUMBER, "open", third.at, third.at, "greeting", [third.call_id]),
    ]
    with sessions() as session:  # the latest call first: the desk works down the list
        assert [item.last_call_at for item in callback_list.open_items(session)] == [third.at, other.at, second.at]


def test_a_clerk_marks_an_item_and_the_next_call_is_a_new_item(sessions):
    first = abandoned_call(sessions)
    item_id = record_abandoned(sessions, first)
    with sessions() as session, session.begin():
        done = callback_list.resolve(session, item_id, callback_list.CALLED_BACK, "desk", T0 + timedelta(minutes=5))
        assert (done.status, done.resolved_by, done.resolved_at) == ("called_back", "desk", T0 + timedelta(minutes=5))
    with sessions() as session, session.begin(), pytest.raises(AlreadyResolved, match="desk"):
        callback_list.resolve(session, item_id, callback_list.NOT_NEEDED, "manager", T0 + timedelta(minutes=6))
    with sessions() as session:
        assert callback_list.open_items(session) == []
        assert [i.id for i in callback_list.recently_resolved(session, T0)] == [item_id]
        assert session.get(CallbackItem, item_id).resolved_by == "desk"  # the second clerk changed nothing
    # Called back at 10:05, gave up again at 10:20: the desk has to call again.
    again = record_abandoned(sessions, abandoned_call(sessions, at=T0 + timedelta(minutes=20)))
    assert again != item_id
    with sessions() as session, session.begin():
        assert callback_list.resolve(session, 999999, callback_list.NOT_NEEDED, "desk", T0) is None


def test_withheld_numbers_are_one_item_per_hour_and_cannot_be_called_back(sessions):
    ids = {record_abandoned(sessions, abandoned_call(sessions, number="", at=T0 + timedelta(minutes=m)))
           for m in (0, 10, 30)}
    assert len(ids) == 1
    [item_id] = ids
    with sessions() as session, session.begin(), pytest.raises(TransitionError, match="无法回拨"):
        callback_list.resolve(session, item_id, callback_list.CALLED_BACK, "desk", T0)
    with sessions() as session, session.begin():
        assert callback_list.resolve(session, item_id, callback_list.NOT_NEEDED, "desk", T0).status == "not_needed"


def test_two_nodes_recording_one_numbers_calls_at_once_make_one_item(sessions):
    """Eight calls of one number ending together on several nodes: every call on the one item."""
    calls = [abandoned_call(sessions, at=T0 + timedelta(seconds=i)) for i in range(8)]
    start = threading.Barrier(len(calls))
    made, failures = [], []

    def node(call):
        try:
            start.wait()
            made.append(record_abandoned(sessions, call))
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)
    threads = [threading.Thread(target=node, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and len(made) == len(calls)
    [(number, status, first, last, _, call_ids)] = items(sessions)
    assert (number, status, last) == (NUMBER, "open", calls[-1].at)
    assert call_ids == sorted(c.call_id for c in calls)


def test_numbers_go_with_the_calls_after_recordings_keep_days(sessions, tmp_path):
    from core.recordings import delete_old_recordings

    old = record_abandoned(sessions, abandoned_call(sessions, at=T0 - timedelta(days=40)))
    recent = record_abandoned(sessions, abandoned_call(sessions, number="13800138000", at=T0 - timedelta(days=2)))
    with sessions() as session, session.begin():
        delete_old_recordings(session, tmp_path, T0, keep_days=30)
    with sessions() as session:
        assert [i.id for i in session.scalars(select(CallbackItem))] == [recent]
        assert {c.item_id for c in session.scalars(select(CallbackCall))} == {recent} and old != recent


def test_stage_names_say_how_far_the_caller_got():
    assert stage_name("greeting") == "问候语时挂机（未按键）"
    assert stage_name("key:1") == "按键 1 后挂机"
    assert stage_name("address") == "说地址时挂机"


def test_a_callback_number_follows_the_desks_phone_rule():
    assert is_phone_number("13800138000") and is_phone_number("138-0013 8000") and is_phone_number("+8613800138000")
    assert not is_phone_number("") and not is_phone_number("12") and not is_phone_number("sip:desk@pbx")
    assert not is_phone_number("anonymous") and not is_phone_number("1" * 21)
