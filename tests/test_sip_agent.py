"""A line's user agent against canned datagrams and scripted peers on 127.0.0.x: who may send what,
what it costs, what a failure leaves behind, and how a line comes back. Each test names the
hardening of issue 12 it checks; on the old ivr/sipfix.py every one of them fails. 127.0.0.2 and
127.0.0.3 are "somebody else". No SIPp, no root: seconds.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from itertools import pairwise

import pytest

from callcenter.ivr.lines import Line, LineConfig
from callcenter.ivr.media import RtpPacket
from callcenter.sip import agent as sip_agent
from callcenter.sip import transport
from callcenter.sip import uri as sip_uri
from callcenter.sip.agent import UserAgent
from callcenter.sip.dialog import CallState
from callcenter.sip.digest import parse_challenge
from callcenter.sip.errors import DialError, RegistrationError, SipError
from callcenter.sip.message import SipMessage, build_response, encode
from tests.support import sip_messages as canned
from tests.support.sip import LOOPBACK, free_udp_ports

STRANGER = ("127.0.0.2", 5060)
PEER = (LOOPBACK, 5062)


class Harness:
    """A trunk line's agent taking INVITEs from 127.0.0.1, every datagram it sends kept."""

    def __init__(self, on_incoming=None, **options):
        rtp = free_udp_ports(20)
        self.incoming, self.refused = [], []
        self.agent = UserAgent("test", (LOOPBACK, free_udp_ports()), user="hotline", mode="trunk",
                               allow=[(LOOPBACK, None)], rtp_ports=(rtp, rtp + 19),
                               on_incoming=on_incoming or self.incoming.append, on_refused=self.refused.append,
                               **options)
        self.agent.start()
        send = self.agent.endpoint.send
        self.agent.endpoint.send = lambda data, destination: (self._sent.append((data, destination)),
                                                              send(data, destination))
        self._sent: list[tuple[bytes, tuple]] = []

    @property
    def sent(self) -> list[tuple[SipMessage, tuple]]:
        return [(SipMessage.parse(data), destination) for data, destination in self._sent]

    def receive(self, data: bytes, source=PEER) -> None:
        self.agent.endpoint.dispatch(data, source)

    def responses(self, to=None) -> list[int]:
        return [m.status_code for m, where in self.sent if not m.is_request and (to is None or where == to)]

    def answered_call(self, source=PEER, **invite):
        self.receive(data := canned.invite(self.agent.address, source, **invite), source)
        call = self.incoming[-1]
        call.answer()
        self.receive(canned.in_dialog("ACK", data, call.local_tag, source), source)
        return call, data

    def stop(self) -> None:
        self.agent.stop()


@pytest.fixture
def harness():
    made = []

    def make(**options) -> Harness:
        made.append(Harness(**options))
        return made[-1]
    yield make
    for harness in made:
        harness.stop()


@pytest.fixture
def parses(monkeypatch):
    """How many datagrams were parsed beyond their first line."""
    count = {"n": 0}
    original = SipMessage.parse.__func__

    def counting(cls, data, start=None):
        count["n"] += 1
        return original(cls, data, start)
    monkeypatch.setattr(transport.SipMessage, "parse", classmethod(counting))
    return count


# ---------------------------------------------------------------- (1) cheap rejection first

def test_a_strangers_invite_flood_costs_a_count_not_rows_logs_or_parsing(harness, parses, caplog):
    line = harness()
    caplog.set_level(logging.INFO, logger="callcenter")
    caplog.clear()  # the line's start-up lines are not the flood's
    for _ in range(2000):
        line.receive(canned.invite(line.agent.address, STRANGER), STRANGER)
    assert line.incoming == [] and line.refused == []  # no call, so no call record
    assert line.agent.guard.counts == {"not_allowed": 2000}
    parsed = parses["n"]
    assert parsed <= 10 and line.responses(STRANGER) == [403] * parsed  # a few 403s, then silence
    assert [r for r in caplog.records if r.name.startswith("callcenter")] == []  # no log line per packet
    line.agent.guard.summarise()
    [summary] = caplog.records
    assert "turned away 2000 datagrams" in summary.getMessage() and "127.0.0.2 (2000)" in summary.getMessage()
    line.receive(canned.options(line.agent.address, PEER))  # the allowed peer is served as ever
    assert line.responses(PEER) == [200]


def test_oversized_datagrams_and_header_bombs_are_refused_unread(harness, parses):
    line = harness()
    line.receive(b"OPTIONS sip:x SIP/2.0\r\n" + b"X:\r\n" * 16000 + b"\r\n", STRANGER)  # 64 KB of empty headers
    line.receive(b"OPTIONS sip:x SIP/2.0\r\n" + b"X:\r\n" * 16000 + b"\r\n")  # even from the allowed peer
    assert parses["n"] == 0
    bomb = canned.options(line.agent.address, PEER).replace(b"\r\n\r\n", b"\r\n" + b"X:\r\n" * 1500 + b"\r\n")
    line.receive(bomb)
    assert line.agent.guard.counts == {"oversized": 2, "too_many_headers": 1} and line.responses() == []


def test_responses_are_read_only_from_where_we_sent_requests(harness, parses):
    line = harness()
    response = build_response(SipMessage.parse(canned.options(line.agent.address, PEER)), 200)
    parses["n"] = 0
    line.receive(response, STRANGER)
    assert parses["n"] == 0 and line.agent.guard.counts == {"unexpected_response": 1}


def test_an_allowed_peer_over_max_calls_gets_486_and_one_record_per_call(harness):
    line = harness(max_calls=1)
    line.receive(canned.invite(line.agent.address, PEER))
    busy = canned.invite(line.agent.address, PEER)
    line.receive(busy)
    line.receive(busy)  # its retransmission: answered again, reported once
    assert len(line.incoming) == 1 and line.responses() == [180, 486, 486]
    assert [(r.code, r.caller) for r in line.refused] == [(486, "13800138000")]


def test_the_owner_may_refuse_an_invite_before_it_rings(harness):
    """The admission hook: another part of the service says 503 when this node can take no more.
    It sees the INVITE's headers, is asked once per INVITE (a retransmission gets the same 503),
    the 503 says when to try again, and the owner keeps its own count (no on_refused report)."""
    busy_node = threading.Event()
    asked = []

    def admit(invitation):
        asked.append((invitation.caller, invitation.header("Max-Forwards")))
        return 503 if busy_node.is_set() else None

    line = harness(admit=admit)
    busy_node.set()
    refused = canned.invite(line.agent.address, PEER, caller="13900139000")
    line.receive(refused)
    busy_node.clear()
    line.receive(refused)  # its retransmission, after a stream came free: still the same transaction's 503
    assert line.incoming == [] and line.responses() == [503, 503]
    assert line.sent[-1][0].value("Retry-After") == "5"
    assert asked == [("13900139000", "70")] and line.refused == []
    line.receive(canned.invite(line.agent.address, PEER))
    assert len(line.incoming) == 1 and line.responses()[-1] == 180


# ---------------------------------------------------------------- (2) dialogs belong to their peer

def test_a_strangers_bye_reinvite_info_and_cancel_leave_the_call_alone(harness):
    line = harness()
    ringing = canned.invite(line.agent.address, PEER)
    line.receive(ringing)
    for source in (STRANGER, ("127.0.0.1", 5999)):  # another host; the right host with the wrong branch
        line.receive(canned.cancel(ringing).replace(b"z9hG4bK-", b"z9hG4bKx-") if source[0] == LOOPBACK
                     else canned.cancel(ringing), source)
    assert line.incoming[0].state == CallState.RINGING
    line.incoming[0].reject(486)

    call, invite = line.answered_call()
    call.listener = keys = type("Keys", (), {"digits": [], "on_digit": lambda self, k: self.digits.append(k),
                                             "on_frame": lambda self, p: None, "on_ended": lambda self, r: None})()
    target = call.stream._send_to
    for source in (STRANGER, ("127.0.0.3", 5062)):  # the right Call-ID and both tags, from elsewhere
        line.receive(canned.in_dialog("BYE", invite, call.local_tag, source), source)
        line.receive(canned.in_dialog("INVITE", invite, call.local_tag, source, cseq=3,
                                      body=canned.sdp("127.0.0.2", 40002)), source)
        line.receive(canned.in_dialog("INFO", invite, call.local_tag, source, cseq=4, body="Signal=5\r\n",
                                      content_type="application/dtmf-relay"), source)
    line.receive(canned.in_dialog("BYE", invite, call.local_tag, PEER, from_tag="forged"))  # wrong tag: 481
    line.receive(canned.in_dialog("BYE", invite, "not-ours", PEER))
    assert call.state == CallState.ANSWERED and call.stream._send_to == target and keys.digits == []
    assert set(line.responses(STRANGER)) <= {403} and line.responses(PEER)[-2:] == [481, 481]
    assert line.agent.guard.counts["not_allowed"] == 7  # the stranger's CANCEL too
    line.receive(canned.in_dialog("INFO", invite, call.local_tag, PEER, cseq=5, body="Signal=5\r\n",
                                  content_type="application/dtmf-relay"))
    line.receive(canned.in_dialog("BYE", invite, call.local_tag, PEER, cseq=6))
    assert keys.digits == ["5"] and call.state == CallState.ENDED and line.responses(PEER)[-1] == 200


def test_the_callers_own_hosts_may_talk_in_the_dialog_but_not_start_calls(harness):
    """A phone whose Contact is 127.0.0.3 (not on the allow-list) may send its BYE from there; a new
    INVITE from 127.0.0.3 is still refused."""
    line = harness()
    call, invite = line.answered_call(contact="<sip:13800138000@127.0.0.3:5064>")
    line.receive(canned.invite(line.agent.address, ("127.0.0.3", 5064)), ("127.0.0.3", 5064))
    assert len(line.incoming) == 1
    line.receive(canned.in_dialog("BYE", invite, call.local_tag, ("127.0.0.3", 5064)), ("127.0.0.3", 5064))
    assert call.state == CallState.ENDED


# ---------------------------------------------------------------- (3) every failure releases what it holds

def no_such_host(host: str) -> str:
    raise OSError(-2, "Name or service not known")


def dns_that_hangs(host: str) -> str:
    time.sleep(3)
    raise OSError(-3, "Temporary failure in name resolution")


@pytest.mark.parametrize("contact", ["<sip:13800138000@[::1]:5062>", "<sip:13800138000@caller.invalid:5062>",
                                     "<sip:13800138000@127.0.0.1:99999>", "<mailto:x>", "garbage"])
def test_a_contact_that_cannot_be_reached_still_ends_the_call_cleanly(harness, monkeypatch, contact):
    monkeypatch.setattr(sip_uri, "lookup", no_such_host)
    line = harness()
    free = line.agent.ports.free
    ended = []
    call, _ = line.answered_call(contact=contact)
    call.listener = type("L", (), {"on_ended": lambda self, reason: ended.append(reason),
                                   "on_frame": lambda self, p: None, "on_digit": lambda self, k: None})()
    assert line.agent.ports.free == free - 1
    call.hangup()
    [bye] = [(m, where) for m, where in line.sent if m.method == "BYE"]
    assert bye[1] == PEER  # where the INVITE came from
    assert call.state == CallState.ENDED and line.agent.calls == [] and line.agent.ports.free == free
    assert ended == ["hung up by us"] and not any(t.name.startswith("rtp-") and call.call_id in t.name
                                                  for t in threading.enumerate())


def test_a_bye_that_cannot_be_built_still_frees_everything(harness, monkeypatch):
    line = harness()
    free = line.agent.ports.free
    call, _ = line.answered_call()
    monkeypatch.setattr(type(call), "in_dialog_request", lambda self, *a, **k: 1 / 0)
    call.hangup()
    assert call.state == CallState.ENDED and line.agent.calls == [] and line.agent.ports.free == free


@pytest.mark.parametrize("body", [canned.sdp(media_port=99999), canned.sdp(media_ip="pbx.example"),
                                  canned.sdp(payload_types="18"), ""])
def test_an_invite_with_an_unusable_sdp_gets_488_and_holds_nothing(harness, body):
    line = harness()
    line.receive(canned.invite(line.agent.address, PEER, body=body))
    assert line.responses() == [488] and line.agent.calls == [] and line.incoming == []
    assert [r.code for r in line.refused] == [488]


def test_dialing_a_host_that_does_not_resolve_fails_at_once(harness, monkeypatch):
    monkeypatch.setattr(sip_uri, "lookup", dns_that_hangs)
    line = harness()
    free = line.agent.ports.free
    started = time.monotonic()
    with pytest.raises(DialError) as failed:
        line.agent.dial("sip:engineer@nowhere.example", 20, lambda call: None)
    assert time.monotonic() - started < 2.5 and failed.value.outcome == "failed"
    assert line.agent.calls == [] and line.agent.ports.free == free
    for target in ("sip:", "sip:engineer@[::1]", "8001\r\nX-Injected: 1", ""):
        with pytest.raises(DialError):
            line.agent.dial(target, 20, lambda call: None)
    assert line.agent.calls == [] and line.agent.ports.free == free


# ---------------------------------------------------------------- media belongs to its peer (RTP)

class Heard:
    def __init__(self):
        self.frames, self.ended = [], threading.Event()

    def on_frame(self, pcm):
        self.frames.append(pcm)

    def on_digit(self, key):
        pass

    def on_ended(self, reason):
        self.ended.set()


def rtp(sequence: int, timestamp: int, ssrc: int = 7, payload: bytes = b"\xff" * 160) -> bytes:  # μ-law silence
    return RtpPacket(0, sequence, timestamp, ssrc, payload).to_bytes()


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(1)
    return sock


def wait_for(condition, timeout=5.0) -> bool:
    """Whether ``condition`` came true within ``timeout`` s (generous: a loaded CI box is slow to schedule)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_rtp_is_taken_only_from_the_peer_and_spray_never_reaches_the_call(harness):
    phone, sprayer, neighbour = udp(LOOPBACK), udp("127.0.0.2"), udp(LOOPBACK)
    line = harness()
    call, _ = line.answered_call(body=canned.sdp(LOOPBACK, phone.getsockname()[1]))
    call.listener = heard = Heard()
    ours = call.stream.local_address
    loud = b"\x80" * 160  # μ-law full scale
    for n in range(50):  # forged timestamps a second apart: each would have added 1 s of "gap"
        sprayer.sendto(rtp(n, n * 8000, ssrc=99, payload=loud), ours)
    for n in range(10):
        phone.sendto(rtp(n, 160 * n), ours)
    assert wait_for(lambda: len(heard.frames) == 10)
    for n in range(10, 20):  # once the phone sent from where its SDP said, nobody else is latched
        neighbour.sendto(rtp(n, 160 * n, payload=loud), ours)
    phone.sendto(rtp(20, 160 * 20, ssrc=8), ours)  # a new SSRC from the phone itself is fine
    assert wait_for(lambda: len(heard.frames) == 11)
    time.sleep(0.1)
    assert all(frame == bytes(320) for frame in heard.frames) and len(heard.frames) == 11
    assert line.agent.guard.counts["rtp_wrong_source"] == 60
    call.hangup()
    for sock in (phone, sprayer, neighbour):
        sock.close()


@pytest.mark.parametrize("symmetric", [True, False])
def test_symmetric_rtp_latches_to_a_caller_behind_nat(harness, symmetric):
    """The SDP names a private address nobody can reach; the caller's packets come from its NAT (here
    127.0.0.1, the host its INVITE came from). With symmetric_rtp we take them and answer there."""
    nat = udp(LOOPBACK)
    line = harness(symmetric_rtp=symmetric)
    call, _ = line.answered_call(body=canned.sdp("192.168.1.20", 4000))
    call.listener = heard = Heard()
    nat.sendto(rtp(1, 160), call.stream.local_address)
    if symmetric:
        assert wait_for(lambda: len(heard.frames) == 1)
        assert RtpPacket.parse(nat.recv(2048)).payload_type == 0  # our audio comes back through the NAT
    else:
        time.sleep(0.2)
        assert heard.frames == [] and line.agent.guard.counts["rtp_wrong_source"] == 1
    call.hangup()
    nat.close()


def test_a_call_without_rtp_ends_with_its_own_outcome(harness):
    line = harness(rtp_timeout=0.5)
    free = line.agent.ports.free
    call, _ = line.answered_call(body=canned.sdp(LOOPBACK, 40000))
    call.listener = heard = Heard()
    assert heard.ended.wait(3), "the silent call did not end"
    assert call.end_outcome == "media_timeout" and "no RTP" in call.end_reason
    assert [m.method for m, _ in line.sent if m.is_request] == ["BYE"]
    assert wait_for(lambda: line.agent.ports.free == free) and line.agent.calls == []


def test_a_call_on_hold_may_be_silent(harness):
    line = harness(rtp_timeout=0.3)
    call, _ = line.answered_call(body=canned.sdp("0.0.0.0", 40000))
    call.listener = heard = Heard()
    assert not heard.ended.wait(1.0) and call.state == CallState.ANSWERED
    call.hangup()


def test_the_recording_stops_at_its_size_cap(tmp_path):
    line = Line(LineConfig("cap", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}", allow=[LOOPBACK],
                           max_recording_minutes=0.01))  # 0.6 s
    session = type("Session", (), {"call_id": "c1", "stream": None, "end_reason": ""})()
    from callcenter.ivr.lines import Call
    call = Call(line, session)
    call.start_recording(tmp_path / "r.wav")
    for _ in range(100):  # 2 s of audio
        call.on_frame(bytes(320))
    assert call.stop_recording() == 0.0  # already closed at the cap
    assert (tmp_path / "r.wav").stat().st_size == 44 + 2 * 8000 * 6 // 10


# ---------------------------------------------------------------- (4) lines come back by themselves

class Registrar:
    """A scripted registrar on 127.0.0.1: each REGISTER gets the next answer of ``script`` (None: no
    answer at all); "challenge" sends a SHA-256 401 and checks the credentials that come back."""

    def __init__(self, script, code=401):
        self.script, self.code = list(script), code
        self.sock = udp(LOOPBACK)
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.attempts: list[float] = []  # when each REGISTER (not query) came
        self.bound = set()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, source = self.sock.recvfrom(8192)
            except OSError:
                continue
            request = SipMessage.parse(data)
            contact = request.value("Contact")
            if not contact:  # a query: what we have bound, listed with a parameter of its own as PBXs do
                self.sock.sendto(build_response(request, 200, headers=[
                    f"Contact: {c.replace('>', ';ob>')};expires=60" for c in self.bound]), source)
                continue
            header = request.value("Authorization") or request.value("Proxy-Authorization")
            if header:
                fields = parse_challenge(header)
                sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
                expected = sha(f"{sha('8001:pbx:secret')}:n1:{fields['nc']}:{fields['cnonce']}:auth:"
                               f"{sha('REGISTER:' + fields['uri'])}")
                ok = fields["response"] == expected and fields["algorithm"] == "SHA-256"
                if ok:
                    self.bound.add(contact)  # before the 200: the line may be asked at once what is bound
                self.sock.sendto(build_response(request, 200 if ok else 403,
                                                headers=[f"Contact: {contact};expires=60"] if ok else []), source)
                continue
            if request.value("Expires") != "0":  # not our unregistering at the end
                self.attempts.append(time.monotonic())
            answer = self.script.pop(0) if self.script else "challenge"
            if answer == "challenge":
                name = "WWW-Authenticate" if self.code == 401 else "Proxy-Authenticate"
                self.sock.sendto(build_response(request, self.code, headers=[  # RFC 8760: the strongest is taken
                    f'{name}: Digest realm="pbx", nonce="n0", algorithm=MD5, qop="auth"',
                    f'{name}: Digest realm="pbx", nonce="n1", algorithm=SHA-256, qop="auth"']), source)
            elif answer is not None:
                self.sock.sendto(build_response(request, answer), source)

    def forget_everyone(self):
        self.bound.clear()

    def stop(self):
        self.running = False
        self.thread.join(1)
        self.sock.close()


@pytest.fixture
def registrar():
    made = []

    def make(script, code=401):
        made.append(Registrar(script, code))
        return made[-1]
    yield make
    for one in made:
        one.stop()


def register_line(server, **options) -> UserAgent:
    rtp = free_udp_ports(4)
    agent = UserAgent("pbx", (LOOPBACK, free_udp_ports()), user="8001", password="secret", mode="register",
                      server=server, rtp_ports=(rtp, rtp + 3), retry_interval=0.5, keepalive_interval=0.2, **options)
    agent.registration.timeout = 0.3
    return agent


@pytest.mark.parametrize("code", [401, 407])
def test_a_register_line_keeps_trying_whatever_goes_wrong_then_answers_sha256(registrar, code):
    pbx = registrar([None, None, 403, 503, "challenge"], code)
    line = register_line(pbx.address)
    seen = []
    try:
        with pytest.raises(RegistrationError, match="no reply"):
            line.start(timeout=0.5)  # the first failure is said at once ...
        deadline = time.monotonic() + 15
        while line.current_status().state != "registered" and time.monotonic() < deadline:  # ... and the line goes on
            status = line.current_status()
            if status.error and status.error not in seen:
                seen.append(status.error)
            time.sleep(0.02)
        assert line.current_status().state == "registered" and line.current_status().error == ""
    finally:
        line.stop()
    assert any("no reply" in e for e in seen) and any("403" in e for e in seen) and any("503" in e for e in seen)
    gaps = [b - a for a, b in pairwise(pbx.attempts)]
    assert len(pbx.attempts) == 5 and max(gaps) <= 0.5 + 0.3 + 0.3  # never longer than retry_interval apart


def test_a_registrar_that_forgets_us_gets_us_back_at_once(registrar):
    pbx = registrar(["challenge"])
    line = register_line(pbx.address)
    try:
        line.start(timeout=5)
        assert line.current_status().state == "registered" and pbx.bound
        registrations = len(pbx.attempts)
        time.sleep(0.7)  # three binding queries, each answered with our Contact (plus ";ob"): nothing to do
        assert len(pbx.attempts) == registrations
        pbx.forget_everyone()  # a PBX restart: the location table is empty
        assert wait_for(lambda: len(pbx.attempts) > registrations and pbx.bound, timeout=6)
        assert wait_for(lambda: line.current_status().state == "registered")
    finally:
        line.stop()


def test_a_line_that_cannot_bind_stops_nothing_and_comes_up_by_itself():
    taken = udp(LOOPBACK)
    port = taken.getsockname()[1]
    rtp = free_udp_ports(4)
    stuck = UserAgent("stuck", (LOOPBACK, port), user="h", mode="trunk", allow=[(LOOPBACK, None)],
                      rtp_ports=(rtp, rtp + 3), retry_interval=1.0)
    try:
        with pytest.raises(SipError, match="cannot listen"):
            stuck.start(timeout=0.5)
        status = stuck.current_status()
        assert (status.state, status.up) == ("down", False) and "cannot listen" in status.error
        taken.close()
        assert wait_for(lambda: stuck.current_status().state == "listening", timeout=6)
    finally:
        stuck.stop()


def test_an_allow_list_name_that_does_not_resolve_yet(monkeypatch):
    answers = {"pbx.example": None}

    def lookup(host):
        if answers.get(host) is None:
            raise OSError(-2, "Name or service not known")
        return answers[host]
    monkeypatch.setattr(sip_uri, "lookup", lookup)
    rtp = free_udp_ports(4)
    trunk = UserAgent("t", (LOOPBACK, free_udp_ports()), user="h", mode="trunk", allow=[("pbx.example", None)],
                      rtp_ports=(rtp, rtp + 3), retry_interval=1.0)
    try:
        with pytest.raises(SipError, match="pbx.example"):
            trunk.start(timeout=0.5)
        answers["pbx.example"] = "127.0.0.1"
        assert wait_for(lambda: trunk.current_status().state == "listening", timeout=6)
        assert trunk.allowed(PEER)
    finally:
        trunk.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit we cause
def test_a_keeper_thread_that_dies_is_noticed_and_replaced(registrar, monkeypatch):
    monkeypatch.setattr(sip_agent, "WATCHDOG_SECONDS", 0.2)
    pbx = registrar(["challenge"])
    line = register_line(pbx.address)
    try:
        line.start(timeout=5)
        step = line.registration.step

        def dies():
            line.registration.step = step
            raise SystemExit("killed")  # not an Exception: the keeper's own handler cannot catch it
        line.registration.step = dies
        assert wait_for(lambda: not line._keeper.is_alive() or line.current_status().error, timeout=6)
        assert wait_for(lambda: line._keeper.is_alive() and line.current_status().state == "registered", timeout=6)
    finally:
        line.stop()


def test_encode_counts_the_body_in_bytes():
    message = SipMessage.parse(encode("OPTIONS sip:a SIP/2.0", ["Via: SIP/2.0/UDP h;branch=z9hG4bK1", "From: <sip:a>;tag=1",
                                                                 "To: <sip:b>", "Call-ID: x", "CSeq: 1 OPTIONS"], "水"))
    assert message.content == "水".encode()


def test_a_bridge_ends_when_one_side_goes_silent():
    """A caller whose phone vanishes without a BYE (no more RTP) while bridged to the desk: the
    hotline's leg ends for lack of media, the bridge with it, and the desk's leg is hung up."""
    from callcenter.ivr.bridge import bridge

    lines, seen = [], {}

    def make(name, on_call=None, **config) -> Line:
        rtp = free_udp_ports(8)
        line = Line(LineConfig(name, mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}", allow=[LOOPBACK],
                               rtp_ports=(rtp, rtp + 7), **config), on_call)
        line.start()
        lines.append(line)
        return line

    def desk_answers(call):
        call.answer()
        call.ended.wait(10)
        seen["desk"] = call.end_reason

    def hotline(call):
        call.answer()
        desk = call.line.dial(f"sip:desk@{desk_line.config.listen}", timeout=5)
        bridge(call, desk)
        desk.hangup()
        seen["caller"] = (call.end_outcome, call.end_reason)

    desk_line = make("desk", desk_answers)
    hub = make("hub", hotline, rtp_timeout_seconds=0.5)
    phone = make("phone")
    try:
        caller = phone.dial(f"sip:hotline@{hub.config.listen}", timeout=5)
        assert wait_for(lambda: len(hub.calls) == 2, timeout=6)  # the caller's leg and the desk's
        caller._session.stream.stop()  # the phone is gone: no more RTP, no BYE
        assert wait_for(lambda: "desk" in seen and "caller" in seen, timeout=5), seen
        assert seen["caller"][0] == "media_timeout" and seen["desk"] == "hung up by the other side"
        assert wait_for(lambda: hub.calls == [] and desk_line.calls == [])
    finally:
        for line in lines:
            line.stop()
