"""Incidents end to end: a resident (SIPp, espeak-ng Mandarin, RFC 4733 keys) calls the hotline on
127.0.0.1 while the desk has declared 3号楼停水. What the caller hears is captured from the RTP the
hotline sends; what the desk would check (the incident's callers, tickets, the call record) is read
from the database. The scripted stand-in recogniser hears the words (tests/support/hotline_caller.py).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core import incidents
from core.desk import Actor
from core.incident_store import Incident
from core.tickets import Role
from tests.support.e2e import db_url, one, prompts, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript, SpokenScripts, utterance_script
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, free_udp_ports, sipp  # noqa: F401 (fixture)
from tests.test_hotline_e2e import RESIDENT, STRANGER, make_hotline  # noqa: F401 (fixture)

TEST_TIME_LIMIT = 150
CLERK = Actor("desk1", Role.FRONTDESK)
NO_WATER = "我家停水了"


def declare_water_outage(hotline) -> int:
    with hotline.sessions() as session, session.begin():
        now = datetime.now(UTC)
        return incidents.declare(session, kind="water", buildings=["3"], action="repairing", actor=CLERK, now=now,
                                 expected_end=now + timedelta(hours=3)).id


def call(hotline, sipp, script: CallerScript, tmp_path, *, caller: str, length: float,
         hang_up_at: float | None = None):
    """SIPp calls the hotline's trunk line; the hotline's RTP arrives at ``capture``."""
    line = hotline.trunk_line()
    capture = RtpCapture()
    pcap = script.write_pcap(tmp_path / f"caller-{random.getrandbits(32):08x}.pcap", length)
    params = {"pcap": pcap, "caller": caller, "media_ip": LOOPBACK, "media_port": capture.port,
              "bye_timeout_ms": 90_000}
    if hang_up_at is not None:
        run = sipp.start("hotline_caller_hangs_up", line.config.listen, port=free_udp_ports(), timeout=90,
                         params={**params, "hold_ms": int(hang_up_at * 1000)})
    else:
        run = sipp.start("hotline_caller", line.config.listen, port=free_udp_ports(), timeout=90, params=params)
    return run, capture


def callers_of(hotline, incident_id):
    with hotline.sessions() as session:
        return [(c.phone, c.how, c.call_record_id, c.ticket_id, c.building, c.room, c.words)
                for c in session.get(Incident, incident_id).callers]


def test_a_resident_known_by_caller_id_hears_the_outage_hangs_up_and_is_counted_with_no_ticket(
        make_hotline, sipp, tmp_path, prompts):  # noqa: F811
    scripts = SpokenScripts()
    hotline = make_hotline(scripts)
    hotline.add_resident(**RESIDENT)
    incident_id = declare_water_outage(hotline)
    # greeting 6.3 s + 「三号楼目前停水，正在抢修，预计…恢复。如果是其他问题，请按1或直接说。」 ≈ 17.5 s
    # Hangs up while the flow waits for an answer after the announcement (with slack for a loaded machine).
    run, capture = call(hotline, sipp, CallerScript(), tmp_path, caller=RESIDENT["phone"], length=22, hang_up_at=21.0)
    try:
        assert run.wait(40) == 0, run.report()
        record = hotline.wait_for_call_record()
        assert capture.heard(prompts.address("3") + prompts.say("incident.now", "incident.kind_water"))
        assert capture.heard(prompts["incident.action_repairing"])
        assert capture.heard(prompts["incident.other_problem"])
    finally:
        capture.close()
    assert (record.outcome, record.ticket_id) == ("incident", None)
    assert hotline.tickets() == []
    assert callers_of(hotline, incident_id) == [(RESIDENT["phone"], "caller_id", record.id, None, "3", "1101", "")]
    assert hotline.recording(record)  # the call is kept, as every answered call
    assert scripts.used == 0  # nothing to recognise: nobody spoke


def test_a_resident_who_stays_on_the_line_is_told_it_is_noted_and_counted(make_hotline, sipp, tmp_path,
                                                                          prompts):  # noqa: F811
    hotline = make_hotline(SpokenScripts())
    hotline.add_resident(**RESIDENT)
    incident_id = declare_water_outage(hotline)
    run, capture = call(hotline, sipp, CallerScript(), tmp_path, caller=RESIDENT["phone"], length=45)
    try:
        assert run.wait(60) == 0, run.report()  # the hotline said goodbye and hung up
        record = hotline.wait_for_call_record()
        assert capture.heard(prompts["incident.counted"])
        assert not capture.heard(prompts["hotline.menu"])
    finally:
        capture.close()
    assert (record.outcome, record.ticket_id) == ("incident", None)
    assert hotline.tickets() == []
    assert [c[:2] for c in callers_of(hotline, incident_id)] == [(RESIDENT["phone"], "caller_id")]
    assert len(run.received("BYE")) == 1


def test_a_caller_with_another_problem_presses_1_and_goes_on_as_usual(make_hotline, sipp, tmp_path,
                                                                      prompts):  # noqa: F811
    hotline = make_hotline(None)  # no speech model: the keypad path
    hotline.add_resident(**RESIDENT)
    incident_id = declare_water_outage(hotline)
    script = CallerScript()
    script.keys(15.0, "1")  # over 「如果是其他问题，请按1或直接说」
    run, capture = call(hotline, sipp, script, tmp_path, caller=RESIDENT["phone"], length=24, hang_up_at=23.0)
    try:
        assert run.wait(40) == 0, run.report()
        record = hotline.wait_for_call_record()
        assert capture.heard(prompts["hotline.verify_room"])  # on with the ordinary questions
    finally:
        capture.close()
    assert record.outcome == "caller_hung_up"
    assert callers_of(hotline, incident_id) == []


def test_a_stranger_keys_the_address_and_is_counted_when_it_is_the_same_outage(make_hotline, sipp, tmp_path,
                                                                               prompts, voices):  # noqa: F811
    words = voices(NO_WATER)
    scripts = SpokenScripts(utterance_script("我 家 停水 了", len(words) / 16000))
    hotline = make_hotline(scripts)
    incident_id = declare_water_outage(hotline)
    script = CallerScript()
    said = script.speak(7.0, words, "problem")  # over the menu: the problem straight away
    # The address by voice is asked twice (silence), then by keypad.
    heard_at = said + 0.8
    keypad = heard_at + 2 * (len(prompts["hotline.ask_address"]) / 16000 + 6.0)
    script.keys(keypad + 2.0, "3#")
    script.keys(keypad + 3.5, "2#")
    script.keys(keypad + 5.0, "1101#")
    run, capture = call(hotline, sipp, script, tmp_path, caller=STRANGER, length=keypad + 30)
    try:
        assert run.wait(90) == 0, run.report()
        record = hotline.wait_for_call_record()
        assert capture.heard(prompts.address("3") + prompts.say("incident.now", "incident.kind_water"))
        assert capture.heard(prompts["incident.counted"])
    finally:
        capture.close()
    assert (record.outcome, record.ticket_id) == ("incident", None)
    assert hotline.tickets() == []  # no draft was ever written
    assert callers_of(hotline, incident_id) == [(STRANGER, "keypad", record.id, None, "3", "1101", NO_WATER)]
    assert one(u for u in record.transcript["utterances"] if u["step"] == "problem")["text"] == NO_WATER
    with hotline.sessions() as session:
        assert session.scalars(select(Incident)).one().closed_at is None


def test_closing_with_a_call_back_rings_the_counted_resident_with_the_news(settings, sessions, sipp, tmp_path,
                                                                           prompts):  # noqa: F811
    from dataclasses import replace

    from callcenter.ivr.flows.survey import SurveyServices
    from callcenter.ivr.followup_dialler import FollowupServices
    from callcenter.ivr.incident_callback import dial_outbound
    from callcenter.ivr.lines import Line, LineConfig
    from core.calls import CallLog
    from core.followup_service import FollowUpCalls
    from core.incident_service import IncidentCalls
    from core.incidents import Place
    from core.store import CallRecord

    capture = RtpCapture()
    phone = sipp.start("engineer_answers", timeout=60, params={
        "media_ip": LOOPBACK, "media_port": capture.port, "ring_ms": 300, "bye_timeout_ms": 40000,
        "pcap": CallerScript().write_pcap(tmp_path / "resident.pcap", 20)}).wait_ready()
    rtp = free_udp_ports(10)
    line = Line(LineConfig(name="outbound", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}", allow=[LOOPBACK],
                           rtp_ports=(rtp, rtp + 9)), on_call=None)
    line.start()
    settings = replace(settings, followup=replace(settings.followup, line="outbound"))
    contact = f"sip:resident@{LOOPBACK}:{phone.port}"
    try:
        now = datetime.now(UTC)
        with sessions() as session, session.begin():
            incident = incidents.get(session, incidents.declare(session, kind="water", buildings=["3"], actor=CLERK,
                                                                now=now).id)
            caller_id = incidents.attach_call(session, incident, at=now, phone=contact, call_record_id=None,
                                              place=Place("3", "2", "1101"), words="", how="caller_id").id
            incidents.close(session, incident.id, CLERK, now, call_back=True)
        services = FollowupServices(SurveyServices(settings, prompts, CallLog(sessions), None),
                                    FollowUpCalls(sessions, settings), IncidentCalls(sessions, settings),
                                    lambda name: line if name == "outbound" else None)
        dial_outbound(("incident", caller_id), services)
        assert phone.wait(30) == 0, phone.report()
        assert capture.heard(prompts.address("3") + prompts["incident.restored_water"])
        assert capture.heard(prompts["incident.call_back_end"])
    finally:
        line.stop()
        capture.close()
    with sessions() as session:
        caller = session.get(incidents.IncidentCaller, caller_id)
        record = session.get(CallRecord, caller.call_back_record_id)
        assert caller.call_back_state == "called"
        assert (record.direction, record.called, record.outcome) == ("outbound", contact, "completed")
    dial_outbound(("incident", caller_id), services)  # done: nobody is rung twice
    assert len(phone.received("INVITE")) == 1
