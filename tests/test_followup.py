"""Follow-up calls (回访): calling hours, when to call, retries, opt-outs and what an answer does to
the ticket, on a real database (SQLite file and PostgreSQL)."""

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import desk, followup, moves
from core.base import Actor, ValidationError
from core.calling_hours import CallingHours
from core.followup import FollowUpError, SurveyAnswers, Verdict, due_time, next_retry, verdict
from core.followup_report import FollowupFilter, find_followups
from core.settings import FollowupSettings, load_settings
from core.store import CallRecord, FollowUp
from core.tickets import Role, Status, TransitionRequest, Urgency
from tests.support.tickets import CLERK, PHONE, completed_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day, hour, minute=0) -> datetime:
    """A moment in Shanghai in the week of Monday 2026-11-23 (day 23 = Monday ... 29 = Sunday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def policy(**changes):
    return replace(load_settings(environ={}), followup=FollowupSettings(**changes))


# --- calling hours and when to call (pure) ------------------------------------------------------


@pytest.mark.parametrize(("moment", "opens"), [
    (at(23, 8, 59), at(23, 9, 0)),  # before the morning window: its start
    (at(23, 9, 0), at(23, 9, 0)),  # the first minute is inside
    (at(23, 11, 59), at(23, 11, 59)),
    (at(23, 12, 0), at(23, 14, 0)),  # lunch: the afternoon window
    (at(23, 19, 59), at(23, 19, 59)),
    (at(23, 20, 0), at(24, 9, 0)),  # the end is outside: next morning
    (at(23, 23, 30), at(24, 9, 0)),
])
def test_calling_hours_edges(moment, opens):
    hours = CallingHours.of(policy())
    assert hours.next_open(moment) == opens
    assert hours.is_open(moment) == (moment == opens)


@pytest.mark.parametrize(("completed", "urgency", "due"), [
    (at(23, 10, 0), Urgency.NORMAL, at(24, 10, 0)),  # the next day, same time
    (at(23, 21, 30), Urgency.NORMAL, at(25, 9, 0)),  # 21:30 the next day is too late: the morning after
    (at(23, 21, 30), Urgency.EMERGENCY, at(24, 9, 0)),  # 4 h later is 01:30: next morning 09:00
    (at(23, 9, 30), Urgency.EMERGENCY, at(23, 14, 0)),  # 13:30 is lunch
    (at(23, 11, 0), Urgency.EMERGENCY, at(23, 15, 0)),
])
def test_due_time_waits_the_delay_then_the_next_calling_window(completed, urgency, due):
    assert due_time(completed, urgency, policy()) == due


def test_rest_days_are_skipped_unless_the_resident_agreed():
    settings = policy(rest_days=("6", "7", "2026-11-30"))
    friday_evening = at(27, 18, 0)
    # Saturday 18:00 -> Sunday -> Monday 30th is a listed holiday -> Tuesday morning.
    assert due_time(friday_evening, Urgency.NORMAL, settings) == datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
    hours = CallingHours.of(settings)
    assert hours.next_open(at(28, 10, 0), rest_day_agreed=True) == at(28, 10, 0)
    assert not hours.is_open(at(28, 10, 0)) and hours.is_open(at(28, 10, 0), rest_day_agreed=True)


def test_retries_are_spaced_inside_calling_hours_then_given_up():
    settings = policy(max_attempts=3, retry_minutes=120)
    assert next_retry(at(23, 9, 30), 1, settings) == at(23, 11, 30)
    assert next_retry(at(23, 11, 0), 1, settings) == at(23, 14, 0)  # 13:00 is lunch
    assert next_retry(at(23, 19, 0), 2, settings) == at(24, 9, 0)
    assert next_retry(at(23, 10, 0), 3, settings) is None  # third call unanswered: 回访失败


@pytest.mark.parametrize(("resolved", "rating", "meaning"), [
    (True, "满意", Verdict.SATISFIED),
    (None, "基本满意", Verdict.SATISFIED),
    (True, "不满意", Verdict.UNHAPPY),
    (False, "满意", Verdict.UNHAPPY),  # "not fixed" whatever the rating
    (False, None, Verdict.UNHAPPY),
    (True, None, Verdict.NO_RATING),
    (None, None, Verdict.NO_RATING),
])
def test_what_an_answer_means(resolved, rating, meaning):
    assert verdict(SurveyAnswers(resolved=resolved, rating=rating)) == meaning


# --- records on both databases -------------------------------------------------------------------


def the_followup(sessions, ticket_id) -> FollowUp:
    with sessions() as session:
        return session.scalars(select(FollowUp).where(FollowUp.ticket_id == ticket_id).order_by(FollowUp.id)).all()[-1]


def claimed(sessions, followup_id, now):
    with sessions() as session, session.begin():
        taken = followup.claim(session, followup_id, now)
        return taken.id if taken else None


def answer(sessions, settings, followup_id, now, call_record_id=None, **answers):
    with sessions() as session, session.begin():
        followup.record_answers(session, followup_id, SurveyAnswers(**answers), call_record_id, now, settings)


def ticket_state(sessions, ticket_id):
    with sessions() as session:
        ticket = desk.get_ticket(session, ticket_id)
        return ticket.status, ticket.engineer_id, [(e.kind, e.actor, e.reason, e.note) for e in ticket.events]


def test_completing_a_ticket_schedules_one_follow_up_at_the_policy_time(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 21, 30))
    scheduled = the_followup(sessions, ticket_id)
    assert (scheduled.status, scheduled.phone, scheduled.attempts) == ("scheduled", PHONE, 0)
    assert scheduled.due_at == at(25, 9, 0)
    with sessions() as session, session.begin():  # asking again changes nothing
        again = followup.schedule_for(session, desk.get_ticket(session, ticket_id), at(24, 8, 0), settings)
        assert again.id == scheduled.id
        assert session.scalars(select(FollowUp)).all() == [again]
    *_, events = ticket_state(sessions, ticket_id)
    assert events[-1] == ("followup", "followup", "", "已安排回访电话：11月25日 09:00")


def test_no_phone_means_no_call_and_a_note_for_the_desk(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10), phone="")
    with sessions() as session:
        assert session.scalars(select(FollowUp)).all() == []
    *_, events = ticket_state(sessions, ticket_id)
    assert events[-1][3] == "不安排自动回访：维修单没有联系电话，请前台人工回访"
    with sessions() as session, session.begin(), pytest.raises(FollowUpError, match="没有联系电话"):
        followup.schedule_for(session, desk.get_ticket(session, ticket_id), at(23, 11), settings)


def test_a_satisfied_resident_moves_the_ticket_to_followed_up_ready_to_archive(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    followup_id = the_followup(sessions, ticket_id).id
    assert claimed(sessions, followup_id, at(24, 9, 59)) is None  # not due yet
    with sessions() as session:
        assert followup.due_followups(session, at(24, 10), settings, limit=10) == [followup_id]
    assert claimed(sessions, followup_id, at(24, 10)) == followup_id
    answer(sessions, settings, followup_id, at(24, 10, 3), resolved=True, rating="满意", comment="师傅很细心")
    done = the_followup(sessions, ticket_id)
    assert (done.status, done.attempts, done.resolved, done.rating, done.comment) == ("done", 1, True, "满意", "师傅很细心")
    status, _, events = ticket_state(sessions, ticket_id)
    assert status == Status.FOLLOWED_UP
    assert events[-1][3] == "自动回访：问题已解决，评价「满意」，住户意见：师傅很细心"
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        assert ticket.rating == "满意"
        moves.move_ticket(session, ticket, TransitionRequest(Status.ARCHIVED), CLERK, at(24, 11), settings)
    with sessions() as session, session.begin(), pytest.raises(FollowUpError, match="已经记录过"):
        followup.record_answers(session, followup_id, SurveyAnswers(rating="满意"), None, at(24, 11), settings)


@pytest.mark.parametrize(("answers", "reason"), [
    ({"resolved": True, "rating": "不满意", "comment": "地上全是水没擦"}, "回访不满意"),
    ({"resolved": False, "rating": "满意", "comment": "还在漏"}, "回访：问题未解决"),
])
def test_an_unhappy_resident_reopens_the_ticket_for_the_same_engineer_and_alerts_the_manager(
        sessions, settings, engineer, answers, reason):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    followup_id = the_followup(sessions, ticket_id).id
    with sessions() as session, session.begin():
        call = CallRecord(direction="outbound", line="pbx", called=PHONE, started_at=at(24, 10),
                          outcome="completed", recording_path="2026/11/24/1.wav")
        session.add(call)
        session.flush()
        call_id = call.id
    claimed(sessions, followup_id, at(24, 10))
    answer(sessions, settings, followup_id, at(24, 10, 4), call_record_id=call_id, **answers)
    status, engineer_id, events = ticket_state(sessions, ticket_id)
    assert (status, engineer_id) == (Status.DISPATCHED, engineer)  # 返修 to whoever did the work
    assert events[-3][:3] == ("transition", "followup", reason)
    kind, actor, _, note = events[-2]
    assert (kind, actor) == ("alert", "followup")
    assert events[-1][:2] == ("complaint", "followup") and events[-1][3].startswith(f"登记为投诉：{reason}")
    assert note.startswith(f"{reason}：") and answers["comment"] in note and "已返修，派给 张工；请主管今日跟进" in note
    with sessions() as session:
        assert session.get(CallRecord, call_id).ticket_id == ticket_id  # the ticket page plays the call
        waiting = find_followups(session, FollowupFilter(needs_person=True))
        assert [(f.id, f.comment, f.call_record_id) for f in waiting] == [(followup_id, answers["comment"], call_id)]


def test_nobody_answers_retries_inside_calling_hours_then_fails_for_a_clerk(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    followup_id = the_followup(sessions, ticket_id).id
    for when, outcome in ((at(24, 10), "no_answer"), (at(24, 14), "busy"), (at(24, 19), "voicemail")):
        assert claimed(sessions, followup_id, when) == followup_id
        with sessions() as session, session.begin():
            followup.record_no_contact(session, followup_id, outcome, when + timedelta(minutes=1), settings)
    failed = the_followup(sessions, ticket_id)
    assert (failed.status, failed.attempts, failed.last_outcome) == ("failed", 3, "voicemail")
    status, _, events = ticket_state(sessions, ticket_id)
    assert status == Status.COMPLETED  # waits for the clerk's 回访
    assert [e[3] for e in events if e[0] == "followup"][1:] == [
        "回访电话未接通（无人接听），第 1 次；将于 11月24日 14:00 再次拨打",
        "回访电话未接通（占线），第 2 次；将于 11月24日 16:01 再次拨打",
        "回访失败：回访电话未接通（语音信箱），第 3 次，请前台人工回访",
    ]
    with sessions() as session:
        assert [f.id for f in find_followups(session, FollowupFilter(needs_person=True))] == [followup_id]
    with sessions() as session, session.begin():  # the clerk calls by hand: it is a 回访 all the same
        moves.move_ticket(session, desk.get_ticket(session, ticket_id),
                        TransitionRequest(Status.FOLLOWED_UP, rating="基本满意"), CLERK, at(25, 9), settings)
    by_hand = the_followup(sessions, ticket_id)
    assert (by_hand.id, by_hand.status, by_hand.rating, by_hand.recorded_by) == (followup_id, "done", "基本满意", "desk1")
    with sessions() as session:
        assert find_followups(session, FollowupFilter(needs_person=True)) == []


def test_silence_or_a_voicemail_answering_counts_as_no_answer(sessions, settings, engineer):
    followup_id = the_followup(sessions, completed_ticket(sessions, settings, engineer, at(23, 10))).id
    claimed(sessions, followup_id, at(24, 10))
    answer(sessions, settings, followup_id, at(24, 10, 1), reached=False)
    with sessions() as session:
        current = session.get(FollowUp, followup_id)
        assert (current.status, current.last_outcome, current.due_at) == ("scheduled", "no_answer", at(24, 14))


def test_only_one_process_gets_a_follow_up(sessions, settings, engineer):
    followup_id = the_followup(sessions, completed_ticket(sessions, settings, engineer, at(23, 10))).id
    start, results = threading.Barrier(6), []

    def race():
        start.wait()
        results.append(claimed(sessions, followup_id, at(24, 10)))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [followup_id] + [None] * 5
    with sessions() as session:
        assert session.get(FollowUp, followup_id).attempts == 1


def test_a_call_cut_off_by_a_crash_counts_once_and_is_retried_later(sessions, settings, engineer):
    followup_id = the_followup(sessions, completed_ticket(sessions, settings, engineer, at(23, 10))).id
    claimed(sessions, followup_id, at(24, 10))
    with sessions() as session, session.begin():
        assert followup.recover_stale_calls(session, at(24, 10, 14), settings) == []  # may still be talking
        assert followup.recover_stale_calls(session, at(24, 10, 16), settings) == [followup_id]
    with sessions() as session:
        current = session.get(FollowUp, followup_id)
        assert (current.status, current.attempts, current.due_at) == ("scheduled", 1, at(24, 14))
    assert claimed(sessions, followup_id, at(24, 14)) == followup_id
    with sessions() as session:
        assert session.get(FollowUp, followup_id).attempts == 2


def test_an_opted_out_number_is_never_called_again(sessions, settings, engineer):
    first = completed_ticket(sessions, settings, engineer, at(23, 10))
    first_followup = the_followup(sessions, first).id
    claimed(sessions, first_followup, at(24, 10))
    answer(sessions, settings, first_followup, at(24, 10, 2), rating="满意", resolved=True, opted_out=True)
    assert the_followup(sessions, first).status == "done"  # the answer still counts
    second = completed_ticket(sessions, settings, engineer, at(24, 11))
    with sessions() as session:
        assert followup.is_opted_out(session, "138-0013-8000")
        assert session.scalars(select(FollowUp).where(FollowUp.ticket_id == second)).all() == []
    *_, events = ticket_state(sessions, second)
    assert events[-1][3] == "不安排自动回访：该号码已要求不再回访，请前台人工回访"
    with sessions() as session, session.begin(), pytest.raises(FollowUpError, match="已要求不再回访"):
        followup.schedule_for(session, desk.get_ticket(session, second), at(24, 12), settings)


def test_opting_out_withdraws_calls_already_scheduled(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    with sessions() as session, session.begin():
        followup.opt_out(session, PHONE, at(23, 12), "住户致电前台")
    withdrawn = the_followup(sessions, ticket_id)
    assert withdrawn.status == "opted_out"
    with sessions() as session:
        assert followup.due_followups(session, at(24, 10), settings, limit=10) == []


def test_due_follow_ups_wait_for_calling_hours_and_working_days(sessions, settings, engineer):
    settings = replace(settings, followup=FollowupSettings(rest_days=("6", "7")))
    friday = completed_ticket(sessions, settings, engineer, at(26, 10))  # due Friday 27th 10:00
    agreed = completed_ticket(sessions, settings, engineer, at(26, 11))
    with sessions() as session, session.begin():
        followup.schedule_for(session, desk.get_ticket(session, agreed), at(26, 12), settings, at=at(28, 10))
    friday_id, agreed_id = the_followup(sessions, friday).id, the_followup(sessions, agreed).id
    with sessions() as session:
        due = lambda now: followup.due_followups(session, now, settings, limit=10)  # noqa: E731
        assert due(at(27, 12, 30)) == []  # lunch
        assert due(at(27, 20, 0)) == []  # evening
        assert due(at(28, 10, 30)) == [agreed_id]  # Saturday: only the resident who agreed to it
        assert due(at(30, 9, 0)) == [friday_id, agreed_id]  # missed ones: Monday morning, longest waiting first


def test_a_time_agreed_with_the_resident_must_be_in_the_future_and_inside_calling_hours(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        for when, message in ((at(23, 9), "不能早于现在"), (at(24, 12, 30), "回访时段")):
            with pytest.raises(ValidationError, match=message):
                followup.schedule_for(session, ticket, at(23, 11), settings, at=when)
        moved = followup.schedule_for(session, ticket, at(23, 11), settings, at=at(24, 15))
        assert (moved.due_at, moved.resident_agreed) == (at(24, 15), True)


def test_a_rework_by_hand_withdraws_the_call_and_a_new_completion_schedules_another(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10))
    with sessions() as session, session.begin():  # the resident rang the hotline: still leaking
        moves.move_ticket(session, desk.get_ticket(session, ticket_id), TransitionRequest(
            Status.DISPATCHED, engineer_id=engineer, reason="住户来电：仍漏水"), CLERK, at(23, 15), settings)
    with sessions() as session:
        assert session.scalars(select(FollowUp)).all() == []
    fixer = Actor("zhang", Role.ENGINEER, engineer)
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        for step in (Status.ACCEPTED, Status.ON_SITE):
            moves.move_ticket(session, ticket, TransitionRequest(step), fixer, at(23, 16), settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.COMPLETED, actual_item="更换水管"), fixer,
                        at(23, 17), settings)
    assert the_followup(sessions, ticket_id).due_at == at(24, 17)
