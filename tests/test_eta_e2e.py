"""A late engineer, end to end (issue 17.4): the service as ``callcenter serve`` wires it (its lines,
and the scheduled watch's body ``Jobs.watch_tick``) notices two accepted emergencies whose arrival
slipped, the desk stops one apology call, and the other resident's phone (SIPp answering on
127.0.0.1) is dialled on ``followup.line`` and hears 「…预计晚到约二十分钟…」; what the desk would
check is read back from the database.

SIPp needs root (raw sockets); missing tools skip, or fail with CALLCENTER_REQUIRE_SIP=1.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.app import build_voice
from callcenter.ivr.notice_calls import slip_message
from core import desk, eta, moves
from core.desk import Actor, NewTicket
from core.jobs import Jobs
from core.store import CallRecord, Engineer
from core.store_watch import EtaSlip
from core.tickets import Role, Status, TransitionRequest, Urgency
from tests.support.e2e import db_url, plain, prompts, time_limit  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, free_udp_ports, sipp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("time_limit")
TEST_TIME_LIMIT = 90
CALLED_PHONE, STOPPED_PHONE = "13800138000", "13900139000"
CLERK = Actor("desk1", Role.FRONTDESK)


class ShiftedClock:
    """The real clock (SIP timers run on it) plus an offset the test moves: minutes pass at once."""

    def __init__(self):
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def accepted_emergency(sessions, settings, phone: str, reported: datetime) -> int:
    with sessions() as session, session.begin():
        engineer = session.scalar(select(Engineer).where(Engineer.name == "张工"))
        if engineer is None:
            engineer = Engineer(name="张工", phone="13800000001")
            session.add(engineer)
            session.flush()
        ticket = desk.create_ticket(session, NewTicket(description="厨房水管爆了", phone=phone, building="3", unit="2",
                                                       room="1101", category="plumbing", urgency=Urgency.EMERGENCY),
                                    CLERK, reported, settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineer.id), CLERK,
                        reported + timedelta(minutes=1), settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.ACCEPTED), Actor("zhang", Role.ENGINEER, engineer.id),
                        reported + timedelta(minutes=2), settings)
        return ticket.id


def slip_of(sessions, ticket_id) -> EtaSlip:
    with sessions() as session:
        return session.scalar(select(EtaSlip).where(EtaSlip.ticket_id == ticket_id))


def test_a_late_engineers_resident_hears_the_apology_unless_the_desk_stops_it(settings, engine, sessions, sipp,
                                                                            prompts, tmp_path):
    capture = RtpCapture()  # the resident's phone picks up after 0.3 s and listens (its media comes here)
    port = free_udp_ports()
    resident = sipp.start("engineer_answers", port=port, timeout=60, params={
        "media_ip": LOOPBACK, "media_port": capture.port, "ring_ms": 300, "bye_timeout_ms": 40000,
        "pcap": CallerScript().write_pcap(tmp_path / "silence.pcap", 20)}).wait_ready()
    rtp = free_udp_ports(4)
    settings = replace(settings, followup=replace(settings.followup, line="residents"), lines=(
        {"name": "residents", "mode": "trunk", "flow": "none", "listen": f"{LOOPBACK}:{free_udp_ports()}",
         "server": f"{LOOPBACK}:{port}", "allow": [LOOPBACK], "rtp_ports": [rtp, rtp + 3]},))
    clock = ShiftedClock()
    now = clock()
    called = accepted_emergency(sessions, settings, CALLED_PHONE, now - timedelta(minutes=50))  # promised 30 min
    stopped = accepted_emergency(sessions, settings, STOPPED_PHONE, now - timedelta(minutes=51))
    voice = build_voice(settings, sessions, None, clock)
    voice.start()
    jobs = Jobs(settings, engine, clock=clock, notice_calls=voice.notices)
    try:
        assert jobs.watch_tick()["eta_slips"] == []  # noticed: the desk has its minutes to stop a call
        assert slip_of(sessions, called).status == slip_of(sessions, stopped).status == "pending"
        with sessions() as session, session.begin():
            eta.stop(session, stopped, CLERK, clock())
        clock.offset += timedelta(minutes=settings.sla.eta_slip_hold_minutes)
        assert jobs.watch_tick()["eta_slips"] == [slip_of(sessions, called).id]
        deadline = time.monotonic() + 40
        while slip_of(sessions, called).status in ("pending", "calling"):
            assert time.monotonic() < deadline, "the apology call did not end"
            time.sleep(0.2)
        assert jobs.watch_tick()["eta_slips"] == []  # once per promise
    finally:
        jobs.stop()
        voice.stop()
    assert resident.wait(20) == 0, resident.report()
    invites = resident.received("INVITE")
    assert len(invites) == 1 and invites[0].startswith(f"INVITE sip:{CALLED_PHONE}@")  # never the stopped one
    assert capture.heard(slip_message(prompts, 20))  # 「…预计晚到约二十分钟，给您带来不便，敬请谅解。」
    capture.close()

    slip = slip_of(sessions, called)
    assert (slip.status, slip.outcome) == ("called", "answered")
    assert slip_of(sessions, stopped).status == "stopped"
    with sessions() as session:
        record = plain(session.get(CallRecord, slip.call_record_id))
        notes = [e.note for e in desk.get_ticket(session, called).events if e.kind == "eta_slip"]
    assert (record.direction, record.called, record.outcome, record.ticket_id) == ("outbound", CALLED_PHONE,
                                                                                  "completed", called)
    assert record.answered_at is not None and record.ended_at is not None
    assert notes[-1] == f"到场超时致歉电话（{CALLED_PHONE}）：已接听，已告知住户维修人员将晚到并致歉"
