"""Complaints (投诉): an unhappy follow-up opens one with its time limits, tells the group chat at
once, lists it for the manager until handled, and phones the manager once when nobody acted within
``followup.complaint_minutes`` of calling hours; on a real database (SQLite file and PostgreSQL)."""

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import complaints, desk, followup
from core.complaints import ComplaintError, Ring, escalation_time
from core.desk import Actor
from core.followup import SurveyAnswers
from core.jobs import Jobs
from core.settings import AlertSettings, FollowupSettings, load_settings
from core.store import CallRecord, OutboxAlert
from core.store_watch import Complaint
from core.tickets import Role
from core.watch_jobs import NoticeCalls
from tests.support.tickets import PHONE, completed_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
BOSS = Actor("boss", Role.MANAGER)
MANAGER_PHONE = "13900000009"


def at(day, hour, minute=0) -> datetime:
    """A moment in Shanghai in the week of Monday 2026-11-23 (day 23 = Monday ... 29 = Sunday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def policy(**changes):
    return replace(load_settings(environ={}), followup=FollowupSettings(**changes))


# --- the time limits (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(("opened", "rings"), [
    (at(23, 10, 0), at(23, 11, 0)),  # inside the morning window: an hour later
    (at(23, 11, 30), at(23, 14, 30)),  # 30 min before lunch, 30 min after it
    (at(23, 12, 30), at(23, 15, 0)),  # opened at lunch: the clock starts at 14:00
    (at(23, 19, 30), at(24, 9, 30)),  # 30 min in the evening, 30 min next morning
    (at(23, 21, 0), at(24, 10, 0)),  # opened at night: the first hour of the next morning
])
def test_the_manager_is_rung_after_the_minutes_counted_inside_calling_hours(opened, rings):
    assert escalation_time(opened, policy()) == rings


def test_rest_days_stop_the_clock_and_the_minutes_are_a_setting():
    settings = policy(rest_days=("6", "7"), complaint_minutes=90)
    assert escalation_time(at(27, 19, 30), settings) == at(30, 10, 0)  # Friday evening -> Monday
    assert complaints.due_time(at(27, 19, 30), settings) == at(28, 19, 30)  # 24 h to handle it, any day


# --- opening, the alert, handling -----------------------------------------------------------------------


@pytest.fixture
def watched(settings):
    """Settings with a group-chat robot and a manager to phone."""
    return replace(settings, alerts=AlertSettings(webhook_url="http://127.0.0.1:9/robot"),
                   callout=replace(settings.callout, alert_contacts=(MANAGER_PHONE,)),
                   web=replace(settings.web, public_url="https://baoxiu.example.com"))


def unhappy(sessions, settings, engineer, when=None, comment="地上全是水没擦", resolved=True) -> tuple[int, int]:
    """A completed ticket whose follow-up call at ``when`` heard 不满意; (ticket id, call record id)."""
    when = when or at(24, 10)
    ticket_id = completed_ticket(sessions, settings, engineer, when - timedelta(days=1))
    with sessions() as session, session.begin():
        call = CallRecord(direction="outbound", line="pbx", called=PHONE, started_at=when, outcome="completed",
                          recording_path="2026/11/24/1.wav")
        session.add(call)
        session.flush()
        call_id = call.id
        followup_id = followup.open_followup(session, ticket_id).id
    with sessions() as session, session.begin():
        assert followup.claim(session, followup_id, when) is not None
    with sessions() as session, session.begin():
        followup.record_answers(session, followup_id, SurveyAnswers(resolved=resolved, rating="不满意", comment=comment),
                                call_id, when + timedelta(minutes=3), settings)
    return ticket_id, call_id


def test_an_unhappy_follow_up_opens_a_complaint_and_tells_the_group_chat_at_once(sessions, watched, engineer):
    ticket_id, call_id = unhappy(sessions, watched, engineer)
    opened = at(24, 10, 3)
    with sessions() as session:
        ticket = desk.get_ticket(session, ticket_id)
        [complaint] = ticket.complaints
        assert (complaint.opened_at, complaint.due_at, complaint.escalate_at) == (opened, at(25, 10, 3), at(24, 11, 3))
        assert complaint.reason == "回访不满意（问题已解决，评价「不满意」，住户意见：地上全是水没擦）"
        assert (complaint.escalation, complaint.handled_at, complaint.call_record_id) == ("waiting", None, call_id)
        assert ticket.events[-1].kind == "complaint" and "处理时限 11月25日 10:03" in ticket.events[-1].note
        [alert] = session.scalars(select(OutboxAlert)).all()
    assert alert.kind == "followup_unhappy" and alert.created_at == opened and alert.ticket_id == ticket_id
    assert ticket.number in alert.text and "住户意见：地上全是水没擦" in alert.text
    assert f"回访录音（需登录）：https://baoxiu.example.com/tickets/{ticket_id}#call-{call_id}" in alert.text
    assert "已登记为投诉，处理时限 11-25 10:03；11-24 11:03 前无人处理将电话通知主管" in alert.text


def test_a_manager_handles_it_and_then_nobody_is_phoned(sessions, watched, engineer):
    ticket_id, _ = unhappy(sessions, watched, engineer)
    other_id, _ = unhappy(sessions, watched, engineer, when=at(24, 9))
    with sessions() as session:  # open ones first, the earliest due on top
        assert [c.ticket_id for c in complaints.find(session)] == [other_id, ticket_id]
    with sessions() as session, session.begin():
        complaints.handle(session, ticket_id, BOSS, "已致电住户，明早返修", at(24, 10, 30))
    with sessions() as session, session.begin(), pytest.raises(ComplaintError, match="没有未处理的投诉"):
        complaints.handle(session, ticket_id, BOSS, "", at(24, 10, 31))
    with sessions() as session:
        handled = session.scalar(select(Complaint).where(Complaint.ticket_id == ticket_id))
        assert (handled.handled_by, handled.handled_note, handled.escalation) == ("boss", "已致电住户，明早返修",
                                                                                "not_needed")
        assert [c.ticket_id for c in complaints.find(session)] == [other_id, ticket_id]  # handled ones after
        assert complaints.open_complaint(session, ticket_id) is None
        assert desk.get_ticket(session, ticket_id).events[-1].note == "投诉已处理：已致电住户，明早返修"
        # the other one (opened 09:03) is due at 10:03; the handled one never is
        other = complaints.open_complaint(session, other_id)
        assert complaints.due_escalations(session, at(24, 11, 30), watched) == [other.id]


def test_the_manager_is_phoned_once_when_nobody_acted(sessions, watched, engineer):
    ticket_id, _ = unhappy(sessions, watched, engineer)
    with sessions() as session:
        assert complaints.due_escalations(session, at(24, 11, 2), watched) == []  # a minute early
        [due] = complaints.due_escalations(session, at(24, 11, 3), watched)
    with sessions() as session, session.begin():
        assert complaints.claim_escalation(session, due, at(24, 11, 3)).ticket_id == ticket_id
    with sessions() as session, session.begin():  # a second node, or the next tick: not again
        assert complaints.claim_escalation(session, due, at(24, 11, 3)) is None
        assert complaints.due_escalations(session, at(24, 11, 4), watched) == []
    with sessions() as session, session.begin():
        complaints.record_escalation(session, due, [Ring(MANAGER_PHONE, True)], at(24, 11, 4))
    with sessions() as session:
        complaint = session.get(Complaint, due)
        assert (complaint.escalation, complaint.escalation_result) == ("called", f"{MANAGER_PHONE}（已接听）")
        assert complaint.handled_at is None  # still open: the manager now deals with it
        event = desk.get_ticket(session, ticket_id).events[-1]
        assert event.note == f"投诉超时无人处理，已电话通知主管：{MANAGER_PHONE}（已接听）"


def test_no_escalation_outside_calling_hours_nor_without_a_number(sessions, watched, engineer):
    ticket_id, _ = unhappy(sessions, watched, engineer, when=at(24, 19, 50))  # due 09:53 next morning
    with sessions() as session:
        assert complaints.due_escalations(session, at(24, 23), watched) == []
    nobody = replace(watched, callout=replace(watched.callout, alert_contacts=()))
    with sessions() as session, session.begin():
        assert complaints.due_escalations(session, at(25, 9, 53), nobody) == []
    with sessions() as session:
        complaint = complaints.open_complaint(session, ticket_id)
        assert complaint.escalation == "no_contacts"
        assert "未配置主管电话" in desk.get_ticket(session, ticket_id).events[-1].note


def test_the_scheduled_watch_hands_the_escalation_to_the_dialler_once(sessions, engine, watched, engineer, clock):
    ticket_id, _ = unhappy(sessions, watched, engineer)
    rung, done = [], threading.Event()

    def ring(complaint_id):  # as callcenter.ivr.notice_calls.ring_complaint does, without a telephone
        with sessions() as session, session.begin():
            if complaints.claim_escalation(session, complaint_id, clock()) is None:
                return
        rung.append(complaint_id)
        with sessions() as session, session.begin():
            complaints.record_escalation(session, complaint_id, [Ring(MANAGER_PHONE, False)], clock())
        done.set()

    clock.now = at(24, 11, 3)
    jobs = Jobs(watched, engine, clock=clock, notice_calls=NoticeCalls(ring_complaint=ring))
    try:
        assert "watch_tick" in jobs.triggers()
        [handed] = jobs.watch_tick()["complaints"]
        assert done.wait(10)
        clock.advance(minutes=1)
        assert jobs.watch_tick()["complaints"] == []
    finally:
        jobs.stop()
    assert rung == [handed]
    with sessions() as session:
        complaint = session.get(Complaint, handed)
        assert (complaint.ticket_id, complaint.escalation) == (ticket_id, "called")
