"""The consent call (有偿服务电话确认) end to end: the engineer asks for it, our follow-up line dials the
resident (SIPp on 127.0.0.1 answering and pressing a key by RFC 4733), the resident hears the price and
presses 1 (or 2), and what the engineer would check is read back: the consent stored with the amount,
the number and the call record, and whether the paid repair may now be completed.

SIPp plays the resident's pcap through a raw socket: run as root. Missing tools skip these tests,
or fail them with CALLCENTER_REQUIRE_SIP=1.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.ivr.consent_call import ConsentCalls, ConsentCallServices, quote_prompt
from callcenter.ivr.lines import Line, LineConfig
from core import desk, moves
from core.calls import CallLog
from core.consent import PaidConsent
from core.desk import Actor, NewTicket
from core.store import CallRecord, Engineer
from core.ticket_call_service import TicketCallService
from core.tickets import Role, Status, TransitionError, TransitionRequest
from tests.support.e2e import db_url, one, plain, prompts, time_limit  # noqa: F401
from tests.support.hotline_caller import CallerScript
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, REQUIRE_SIP, Sipp, free_udp_ports, require

PHONE = "13800138000"
TEST_TIME_LIMIT = 90


@pytest.fixture
def resident_line(settings, tmp_path):
    """Our follow-up line in trunk mode towards the resident's phone, and a factory for that phone."""
    require("sipp", "espeak-ng", "sox")
    if os.geteuid() != 0:
        reason = "SIPp plays pcap audio through a raw socket: run the SIP tests as root"
        pytest.fail(reason) if REQUIRE_SIP else pytest.skip(reason)
    sipp, runs, captures = Sipp(tmp_path / "sipp"), [], []
    (tmp_path / "sipp").mkdir()

    def phone(script: CallerScript):
        capture = RtpCapture()
        port = free_udp_ports()
        run = sipp.start("engineer_answers", port=port, timeout=TEST_TIME_LIMIT, params={
            "pcap": script.write_pcap(tmp_path / "resident.pcap", 40), "ring_ms": 300, "bye_timeout_ms": 60000,
            "media_ip": LOOPBACK, "media_port": capture.port}).wait_ready()
        rtp = free_udp_ports(4)
        line = Line(LineConfig(name="followup", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}",
                               server=f"{LOOPBACK}:{port}", allow=[LOOPBACK], rtp_ports=(rtp, rtp + 3)))
        line.start()
        runs.append((run, line))
        captures.append(capture)
        return run, line, capture

    yield phone
    for run, line in runs:
        run.stop()
        line.stop()
    for capture in captures:
        capture.close()


def paid_ticket_on_site(sessions, settings) -> tuple[int, Actor]:
    clerk = Actor("desk1", Role.FRONTDESK)
    start = datetime.now(UTC) - timedelta(hours=1)
    with sessions() as session, session.begin():
        engineer = Engineer(name="张工", phone="13800000001")
        session.add(engineer)
        session.flush()
        zhang = Actor("zhang", Role.ENGINEER, engineer.id)
        ticket = desk.create_ticket(session, NewTicket(description="厨房水龙头坏了，要换新的", phone=PHONE,
                                                       reporter_name="王阿姨", building="3", unit="2", room="1101",
                                                       is_paid=True), clerk, start, settings)
        for minutes, (actor, step) in enumerate([(clerk, TransitionRequest(Status.DISPATCHED, engineer_id=engineer.id)),
                                                 (zhang, TransitionRequest(Status.ACCEPTED)),
                                                 (zhang, TransitionRequest(Status.ON_SITE))], start=1):
            moves.move_ticket(session, ticket, step, actor, start + timedelta(minutes=minutes), settings)
        return ticket.id, zhang


def ask_and_wait(settings, sessions, prompts, line, ticket_id, amount_fen):  # noqa: F811 (prompts: the fixture's)
    """What the API's POST /consent-call does on a node that can dial; then wait for the call's record to close."""
    settings = replace(settings, followup=replace(settings.followup, line="followup"))
    calls = ConsentCalls(ConsentCallServices(settings, prompts, TicketCallService(sessions, settings), CallLog(sessions),
                                             {"followup": line}.get))
    calls.place(ticket_id, amount_fen, "zhang")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sessions() as session:
            record = session.scalars(select(CallRecord)).first()
            if record is not None and record.ended_at is not None:
                break
        time.sleep(0.2)
    calls.stop()
    with sessions() as session:
        return plain(one(session.scalars(select(CallRecord)), "call record"))


def complete(sessions, settings, ticket_id, engineer, **fees):
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        return moves.move_ticket(session, ticket, TransitionRequest(Status.COMPLETED, actual_item="更换水龙头", **fees),
                               engineer, datetime.now(UTC), settings).status


def test_the_resident_presses_1_and_the_paid_repair_may_be_completed(settings, sessions, prompts,  # noqa: F811
                                                                     resident_line):
    ticket_id, zhang = paid_ticket_on_site(sessions, settings)
    script = CallerScript()
    greeting = len(prompts["hotline.greeting"]) / 16000
    script.keys(greeting + 2.5, "1")  # over 「本次维修为有偿服务，报价五十八点五零元，同意请按1…」
    phone, line, capture = resident_line(script)

    record = ask_and_wait(settings, sessions, prompts, line, ticket_id, 5850)

    assert (record.direction, record.called, record.ticket_id, record.outcome) == ("outbound", PHONE, ticket_id,
                                                                                     "completed")
    assert [(u["step"], u["keys"]) for u in record.transcript["utterances"]] == [("consent", "1")]
    assert record.transcript["consent"] == {"amount_fen": 5850, "answer": "agree"}
    assert capture.heard(prompts["hotline.greeting"]), "the resident was not told who calls and that it is recorded"
    assert capture.heard(quote_prompt(prompts, 5850)[:16000 * 2]), "the resident did not hear the price asked"
    assert capture.heard(prompts["consent.agreed"])
    with sessions() as session:
        stored = plain(one(session.scalars(select(PaidConsent)), "consent"))
    assert (stored.agreed, stored.amount_fen, stored.method, stored.consented_by, stored.call_record_id) == (
        True, 5850, "phone", PHONE, record.id)
    assert complete(sessions, settings, ticket_id, zhang, material_fee=38.5, labour_fee=20) == Status.COMPLETED
    assert phone.wait(30) == 0, phone.report()


def test_the_resident_presses_2_and_the_work_cannot_be_completed(settings, sessions, prompts,  # noqa: F811
                                                                 resident_line):
    ticket_id, zhang = paid_ticket_on_site(sessions, settings)
    script = CallerScript()
    script.keys(len(prompts["hotline.greeting"]) / 16000 + 2.5, "2")
    phone, line, capture = resident_line(script)

    record = ask_and_wait(settings, sessions, prompts, line, ticket_id, 12000)

    assert record.transcript["consent"] == {"amount_fen": 12000, "answer": "refuse"}
    assert capture.heard(prompts["consent.refused"])
    with sessions() as session:
        stored = plain(one(session.scalars(select(PaidConsent)), "consent"))
    assert (stored.agreed, stored.amount_fen, stored.method) == (False, 12000, "phone")
    with pytest.raises(TransitionError, match="有偿服务须先取得业主对报价的同意"):
        complete(sessions, settings, ticket_id, zhang)
    assert phone.wait(30) == 0, phone.report()
