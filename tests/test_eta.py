"""Arrival slips (到场超时): an accepted ticket whose promised arrival is missed by
``sla.eta_slip_minutes`` is noticed once per promise, the desk and the group chat are told, and the
resident's apology call goes out unless the desk stops it or the engineer arrives; on a real
database (SQLite file and PostgreSQL)."""

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import desk, eta, moves
from core.desk import Actor, NewTicket
from core.eta import SlipError
from core.settings import AlertSettings
from core.store import CallRecord, OutboxAlert
from core.store_watch import EtaSlip
from core.tickets import Role, Status, TransitionRequest, Urgency
from tests.support.tickets import CLERK, PHONE

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(hour, minute=0, day=23) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def watched(settings):
    """A line to phone residents on, and a group-chat robot."""
    return replace(settings, alerts=AlertSettings(webhook_url="http://127.0.0.1:9/robot"),
                   followup=replace(settings.followup, line="pbx"))


def accepted(sessions, settings, engineer, reported=None, phone=PHONE, urgency=Urgency.EMERGENCY,
             appointment=None) -> int:
    """A ticket reported at ``reported`` (10:00), dispatched and accepted five minutes later."""
    reported = reported or at(10)
    fixer = Actor("engineer", Role.ENGINEER, engineer)
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, NewTicket(description="厨房水管爆了", building="3", unit="2", room="1101",
                                                       phone=phone, urgency=urgency, category="plumbing",
                                                       appointment_start=appointment), CLERK, reported, settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineer), CLERK,
                        reported + timedelta(minutes=2), settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.ACCEPTED), fixer, reported + timedelta(minutes=5),
                        settings)
        return ticket.id


def detect(sessions, settings, now) -> list[int]:
    with sessions() as session, session.begin():
        return [slip.ticket_id for slip in eta.detect(session, now, settings)]


def claim(sessions, settings, slip_id, now):
    with sessions() as session, session.begin():
        return eta.claim(session, slip_id, now, settings)


def slips(sessions) -> list[EtaSlip]:
    with sessions() as session:
        return session.scalars(select(EtaSlip).order_by(EtaSlip.id)).all()


def notes(sessions, ticket_id) -> list[str]:
    with sessions() as session:
        return [event.note for event in desk.get_ticket(session, ticket_id).events if event.kind == "eta_slip"]


def test_the_promise_is_the_appointment_or_the_sla_arrival(sessions, watched, engineer):
    emergency = accepted(sessions, watched, engineer)
    booked = accepted(sessions, watched, engineer, urgency=Urgency.NORMAL, appointment=at(15))
    general = accepted(sessions, watched, engineer, urgency=Urgency.NORMAL)
    with sessions() as session:
        promise = {t: eta.promised_arrival(desk.get_ticket(session, t), watched) for t in (emergency, booked, general)}
    assert promise == {emergency: at(10, 30), booked: at(15), general: None}  # 30 min for an emergency


def test_a_slip_is_noticed_once_told_to_the_desk_and_the_group_chat(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    assert detect(sessions, watched, at(10, 49)) == []  # promised 10:30, 20 min of grace
    assert detect(sessions, watched, at(10, 50)) == [ticket_id]
    assert detect(sessions, watched, at(10, 51)) == []  # once per ticket per promise
    [slip] = slips(sessions)
    assert (slip.promised_at, slip.phone, slip.status, slip.call_at) == (at(10, 30), PHONE, "pending", at(10, 53))
    assert notes(sessions, ticket_id) == ["维修人员超过承诺到场时间 10:30 已 20 分钟仍未到场；将于 10:53 自动致电住户致歉，前台可取消"]
    with sessions() as session:
        ticket = desk.get_ticket(session, ticket_id)
        assert eta.is_late(ticket)  # the queue's highlight
        [alert] = session.scalars(select(OutboxAlert)).all()
    assert alert.kind == "eta_slip" and ticket.number in alert.text and "维修人员：张工" in alert.text
    assert "承诺到场 11-23 10:30，已超过 20 分钟仍未到场" in alert.text and "10:53 自动致电住户" in alert.text


def test_a_promise_missed_long_ago_is_not_phoned_about(sessions, watched, engineer):
    """An old ticket nobody marked 到场 (or a service that was off for a day) calls nobody at start."""
    accepted(sessions, watched, engineer, reported=at(10, day=22))
    assert detect(sessions, watched, at(10, 31, day=22) + timedelta(hours=eta.MAX_LATE_HOURS)) == []


def test_the_apology_call_goes_out_once_and_its_outcome_is_on_the_ticket(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    detect(sessions, watched, at(10, 50))
    [slip] = slips(sessions)
    with sessions() as session:
        assert eta.due_calls(session, at(10, 52), 5) == []  # the desk's minutes to stop it
        assert eta.due_calls(session, at(10, 53), 5) == [slip.id]
    assert claim(sessions, watched, slip.id, at(10, 53)).phone == PHONE
    assert claim(sessions, watched, slip.id, at(10, 53)) is None  # another node, or the next tick
    with sessions() as session, session.begin():
        call = CallRecord(direction="outbound", line="pbx", called=PHONE, started_at=at(10, 53), outcome="completed")
        session.add(call)
        session.flush()
        eta.record_call(session, slip.id, "answered", call.id, at(10, 54))
        call_id = call.id
    [slip] = slips(sessions)
    assert (slip.status, slip.outcome, slip.call_record_id) == ("called", "answered", call_id)
    assert notes(sessions, ticket_id)[-1] == f"到场超时致歉电话（{PHONE}）：已接听，已告知住户维修人员将晚到并致歉"
    with sessions() as session:
        assert session.get(CallRecord, call_id).ticket_id == ticket_id  # the ticket page lists the call
        assert eta.due_calls(session, at(11, 30), 5) == []


def test_the_desk_stops_the_call_before_it_goes_out(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    with sessions() as session, session.begin(), pytest.raises(SlipError, match="没有待拨"):
        eta.stop(session, ticket_id, CLERK, at(10, 40))
    detect(sessions, watched, at(10, 50))
    with sessions() as session, session.begin():
        stopped = eta.stop(session, ticket_id, CLERK, at(10, 51))
        assert (stopped.status, stopped.stopped_by) == ("stopped", "desk1")
    [slip] = slips(sessions)
    assert claim(sessions, watched, slip.id, at(10, 53)) is None
    with sessions() as session:
        assert eta.due_calls(session, at(10, 53), 5) == []
    assert notes(sessions, ticket_id)[-1] == "前台取消了到场超时致歉电话"


def test_a_call_under_way_cannot_be_stopped(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    detect(sessions, watched, at(10, 50))
    claim(sessions, watched, slips(sessions)[0].id, at(10, 53))
    with sessions() as session, session.begin(), pytest.raises(SlipError, match="已经拨出"):
        eta.stop(session, ticket_id, CLERK, at(10, 53))


def test_an_engineer_who_arrives_first_cancels_the_call(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    detect(sessions, watched, at(10, 50))
    with sessions() as session, session.begin():
        moves.move_ticket(session, desk.get_ticket(session, ticket_id), TransitionRequest(Status.ON_SITE),
                        Actor("engineer", Role.ENGINEER, engineer), at(10, 52), watched)
    with sessions() as session:
        assert not eta.is_late(desk.get_ticket(session, ticket_id))
    [slip] = slips(sessions)
    assert claim(sessions, watched, slip.id, at(10, 53)) is None
    assert slips(sessions)[0].status == "skipped"
    assert notes(sessions, ticket_id)[-1] == "维修单已有进展（到场或改约），不再致电住户致歉"


def test_a_new_promise_may_slip_again(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer, urgency=Urgency.NORMAL, appointment=at(14))
    assert detect(sessions, watched, at(14, 20)) == [ticket_id]
    with sessions() as session, session.begin():  # the desk agrees a later time with the resident
        desk.edit_ticket(session, desk.get_ticket(session, ticket_id), {"appointment_start": "2026-11-23T16:00"},
                         CLERK, at(14, 25), watched)
    assert detect(sessions, watched, at(16, 19)) == []
    assert detect(sessions, watched, at(16, 20)) == [ticket_id]
    assert [s.promised_at for s in slips(sessions)] == [at(14), at(16)]


@pytest.mark.parametrize(("phone", "line", "why"), [("", "pbx", "维修单没有联系电话"),
                                                     (PHONE, "", "未配置回访线路（followup.line）")])
def test_no_number_or_no_line_tells_the_desk_to_call(sessions, watched, engineer, phone, line, why):
    settings = replace(watched, followup=replace(watched.followup, line=line))
    ticket_id = accepted(sessions, settings, engineer, phone=phone)
    detect(sessions, settings, at(10, 50))
    assert slips(sessions)[0].status == "skipped"
    assert notes(sessions, ticket_id)[-1].endswith(f"不自动致电住户（{why}），请前台联系住户")
    with sessions() as session:
        assert eta.due_calls(session, at(11), 5) == []


def test_a_call_cut_off_by_a_crash_is_not_redialled(sessions, watched, engineer):
    ticket_id = accepted(sessions, watched, engineer)
    detect(sessions, watched, at(10, 50))
    claim(sessions, watched, slips(sessions)[0].id, at(10, 53))
    with sessions() as session, session.begin():
        assert eta.recover_stale_calls(session, at(11, 0)) == []
        assert eta.recover_stale_calls(session, at(11, 4)) == [slips(sessions)[0].id]
    assert (slips(sessions)[0].status, slips(sessions)[0].outcome) == ("unreached", "failed")
    assert notes(sessions, ticket_id)[-1] == "到场超时致歉电话中断，结果未知，请前台联系住户"
