"""The SIP edge on an open network, end to end with real peers on loopback (issue 12): SIPp as the
resident, Kamailio as the PBX, and 127.0.0.2 as somebody else (tests/support/hostile.py).

- a scanner's INVITE flood and 64 KB header bombs from 127.0.0.2 while a resident goes through a
  whole call: every prompt arrives whole, one call record, no log line per packet;
- the PBX starts only after the service, then restarts and forgets us: the line registers by itself;
- a stranger with the call's Call-ID and both tags can neither end it, nor move its audio, nor
  press its keys, and RTP sprayed at its media port never reaches the recording;
- a caller whose Contact is an IPv6 literal or a host name that does not resolve still gets our BYE.

Name lookups go through ``callcenter.sip.uri.lookup``, replaced here by one that fails or never
answers: nothing leaves 127.0.0.0/8. SIPp plays pcaps through a raw socket: run as root.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from dataclasses import replace

import pytest

from callcenter.ivr.flows.hotline import HotlineServices
from callcenter.ivr.lines import Line, LineConfig
from callcenter.ivr.media import PCMU
from callcenter.ivr.service import Telephony
from callcenter.sip import uri as sip_uri
from callcenter.sip.message import encode
from core.calls import CallLog
from core.intake import PhoneDrafts
from core.store import CallRecord
from tests.support import rtp_pcap
from tests.support.e2e import db_url, plain, prompts, time_limit  # noqa: F401 (fixtures)
from tests.support.hostile import STRANGER, Stranger
from tests.support.hotline_caller import CallerScript, SpokenScripts, read_recording
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, Kamailio, free_udp_ports, sipp, speech_wav  # noqa: F401 (fixtures)

pytestmark = pytest.mark.serial  # measures timing under floods and failover: needs the machine to itself

TEST_TIME_LIMIT = 90


def no_such_host(host: str) -> str:
    raise OSError(-2, "Name or service not known")


def dns_that_never_answers(host: str) -> str:
    time.sleep(5)
    raise OSError(-3, "Temporary failure in name resolution")


@pytest.fixture
def telephony(settings, sessions, prompts):
    """telephony(**[[lines]] table) -> the service's own wiring (Telephony, hotline flow), started."""
    made = []

    def make(**table) -> Telephony:
        rtp = free_udp_ports(20)
        table = {"name": "hotline", "listen": f"{LOOPBACK}:{free_udp_ports()}", "rtp_ports": [rtp, rtp + 19],
                 **table}
        services = HotlineServices(settings, prompts, PhoneDrafts(sessions, settings), CallLog(sessions),
                                   SpokenScripts())
        made.append(Telephony(replace(settings, lines=(table,)), services))
        made[-1].start()
        return made[-1]
    yield make
    for one in made:
        one.stop()


def call_records(sessions) -> list:
    with sessions() as session:
        return [plain(r) for r in session.query(CallRecord).order_by(CallRecord.id)]


# ---------------------------------------------------------------- (1) flood and bombs during a real call

def test_a_scanner_flood_and_header_bombs_leave_a_real_call_whole(telephony, sessions, prompts, sipp, tmp_path,
                                                                   caplog):
    service = telephony(mode="trunk", allow=[LOOPBACK])
    line = service.lines[0]
    capture = RtpCapture()
    caller = CallerScript()
    caller.keys(1.0, "2")  # over the greeting: the status of a ticket
    caller.keys(7.0, "20260101001#")  # after the whole "请输入工单号"
    pcap = caller.write_pcap(tmp_path / "caller.pcap", 25)
    scanner = Stranger(line.address)
    caplog.set_level(logging.INFO, logger="callcenter.sip")
    run = sipp.start("hotline_caller", line.config.listen, port=free_udp_ports(), timeout=60,
                     params={"pcap": pcap, "caller": "13800138000", "bye_timeout_ms": 45000, "media_ip": LOOPBACK,
                             "media_port": capture.port})
    try:
        scanner.bombs(10)
        flood = scanner.flood(rate=900, seconds=15)
        time.sleep(7)
        scanner.bombs(10)
        flood.join()
        assert run.wait(45) == 0, run.report()
    finally:
        scanner.stop()
        capture.close()
    for prompt in ("hotline.ask_ticket_number", "hotline.ticket_not_found", "hotline.goodbye"):
        assert capture.heard(prompts[prompt]), f"{prompt} did not arrive whole"
    deadline = time.monotonic() + 5
    while (records := call_records(sessions)) and records[-1].outcome == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(r.caller, r.outcome) for r in records] == [("13800138000", "completed")]  # no row per scanner INVITE
    turned_away = line.health()["turned_away"]
    assert turned_away.get("not_allowed", 0) >= 0.8 * scanner.sent_in_flood and turned_away.get("oversized", 0) >= 16  # of 20, paced
    per_packet = [r for r in caplog.records if r.name == "callcenter.sip" and r.levelno >= logging.WARNING]
    assert len(per_packet) <= 1, [r.getMessage() for r in per_packet]  # at most the one-a-minute summary


# ---------------------------------------------------------------- (2) the PBX comes after us, then restarts

def test_a_register_line_comes_up_when_the_pbx_does_and_again_after_it_restarts(telephony, sipp, tmp_path):
    pbx = Kamailio(tmp_path)  # its port, not yet listening: the PBX boots after us after a power cut
    service = telephony(mode="register", server=pbx.address, user="hotline", flow="none", register_expires=600,
                        keepalive_interval=0.5)
    line = service.lines[0]
    assert line.status == "registering" and not service.health()["up"]
    assert "no reply from registrar" in line.health()["error"]
    try:
        pbx.start()
        came_up = time.monotonic()
        while line.status != "registered" and time.monotonic() - came_up < 30:
            time.sleep(0.1)
        assert line.status == "registered" and service.health()["up"], line.health()
        sipp.run("caller_refused", pbx.address, params={"code": 480})  # the PBX finds us (and we say "no flow")
        pbx.restart()  # an empty location table
        assert pbx.output.wait_for(r"REGISTERED hotline expires 600", timeout=5)
        sipp.run("caller_refused", pbx.address, params={"code": 480})
    finally:
        pbx.stop()
    assert line.status == "registered"


# ---------------------------------------------------------------- (3) a stranger and the call's secrets

def test_a_stranger_with_the_call_id_can_neither_end_move_nor_pollute_the_call(sipp, tmp_path):
    speech = rtp_pcap.read_pcm(speech_wav("您好，我家厨房的水管漏水了，请派师傅来看一下。", tmp_path / "leak.wav"))
    recording = tmp_path / "call.wav"
    answered, done, flow_saw = threading.Event(), threading.Event(), {}

    def flow(call):
        call.answer()
        call.start_recording(recording)
        flow_saw["media"] = call.media_address
        answered.set()
        call.ended.wait(20)
        flow_saw["keys"], flow_saw["end"] = call.dtmf(), call.end_reason
        done.set()
    rtp = free_udp_ports(8)
    line = Line(LineConfig("hotline", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}", allow=[LOOPBACK],
                           rtp_ports=(rtp, rtp + 7)), on_call=flow)
    line.start()
    stranger, sink = Stranger(line.address), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((STRANGER, 0))
    sink.settimeout(0.1)
    hold = 3.5
    pcap = tmp_path / "speech.pcap"
    pcap.write_bytes(rtp_pcap.pcap_bytes(rtp_pcap.rtp_stream(speech, "PCMU", "", None)))
    run = sipp.start("caller", line.config.listen, port=free_udp_ports(), params={"pcap": pcap,
                                                                                   "hold_ms": int(hold * 1000)})
    try:
        assert answered.wait(10), run.report()
        ok = run.wait_received("200")[0]  # what anyone on the path saw: the 200 OK to the INVITE
        for request in forged(ok, line.address, stranger, sink.getsockname()[1]):
            stranger.send(request)
        stranger.spray_rtp(flow_saw["media"], packets=300)
        assert run.wait(20) == 0, run.report()  # our 200 to its own BYE: the call was up until then
        assert done.wait(5)
        with pytest.raises(socket.timeout):
            sink.recv(2048)  # no RTP was moved to the stranger
    finally:
        stranger.stop()
        sink.close()
        line.stop()
    assert flow_saw["end"] == "hung up by the other side" and "9" not in flow_saw["keys"]
    audio = read_recording(recording)
    assert hold - 0.4 <= len(audio) / 16000 <= hold + 0.4  # 300 spoofed packets a second apart added nothing
    assert audio == PCMU.decode(PCMU.encode(speech))[:len(audio)]  # and not one sample of theirs
    turned_away = line.health()["turned_away"]
    assert turned_away["rtp_wrong_source"] >= 290 and turned_away["not_allowed"] >= 3


def forged(ok: str, line: tuple[str, int], stranger: Stranger, sink_port: int) -> list[bytes]:
    """BYE, re-INVITE (our audio to the stranger) and INFO (key 9) with the call's Call-ID and tags."""
    def header(name: str) -> str:
        return re.search(rf"^{name}:\s*(.*?)\s*$", ok, re.MULTILINE | re.IGNORECASE).group(1)
    common = [f"From: {header('From')}", f"To: {header('To')}", f"Call-ID: {header('Call-ID')}", "Max-Forwards: 70"]
    assert ";tag=" in header("To") and ";tag=" in header("From")
    via = f"Via: SIP/2.0/UDP {stranger.host}:{stranger.port};branch=z9hG4bK-forged"
    sdp = (f"v=0\r\no=x 1 2 IN IP4 {STRANGER}\r\ns=-\r\nc=IN IP4 {STRANGER}\r\nt=0 0\r\n"
           f"m=audio {sink_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    uri = f"sip:hotline@{line[0]}:{line[1]}"
    return [encode(f"BYE {uri} SIP/2.0", [via + "1", *common, "CSeq: 10 BYE"]),
            encode(f"INVITE {uri} SIP/2.0", [via + "2", *common, "CSeq: 11 INVITE",
                                             f"Contact: <sip:x@{STRANGER}:{stranger.port}>"], sdp),
            encode(f"INFO {uri} SIP/2.0", [via + "3", *common, "CSeq: 12 INFO"], "Signal=9\r\nDuration=160\r\n",
                   "application/dtmf-relay")]


# ---------------------------------------------------------------- (4) Contacts nobody can reach

@pytest.mark.parametrize("contact, lookup", [("<sip:13800138000@[::1]:5099>", no_such_host),
                                             ("<sip:13800138000@caller.invalid:5099>", dns_that_never_answers)])
def test_a_caller_whose_contact_cannot_be_reached_still_gets_our_bye(sipp, monkeypatch, contact, lookup):
    monkeypatch.setattr(sip_uri, "lookup", lookup)
    hung_up = {}

    def flow(call):
        call.answer()
        time.sleep(0.5)
        started = time.monotonic()
        call.hangup()
        hung_up["seconds"] = time.monotonic() - started
    rtp = free_udp_ports(4)
    line = Line(LineConfig("hotline", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}", allow=[LOOPBACK],
                           rtp_ports=(rtp, rtp + 3)), on_call=flow)
    line.start()
    try:
        sipp.run("caller_contact", line.config.listen, params={"bye_timeout_ms": 5000}, variables={"contact": contact})
        assert hung_up["seconds"] < 1.0  # DNS that never answers costs half a second, not minutes
        assert line.calls == [] and line._agent.ports.free == 2
    finally:
        line.stop()
