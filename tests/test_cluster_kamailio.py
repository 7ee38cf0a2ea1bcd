"""`callcenter kamailio-config` (issue 13): the configuration Kamailio 5.6 accepts, and what its
dispatcher then does, checked against the real Kamailio on 127.0.0.2.

The nodes here are small UDP responders that stand in for hotline nodes to make the dispatcher's
choices visible (who got the INVITE, which answer, which BYE); they answer OPTIONS probes like a
node. The real nodes behind the real dispatcher are tests/test_cluster_e2e.py.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from callcenter.cli import main
from callcenter.kamailio_config import NEXT_NODE_HEADER
from tests.support.cluster import DISPATCHER_IP, ROOT, Dispatcher
from tests.support.sip import LOOPBACK, REQUIRE_SIP, require

STRANGER = "127.0.0.3"


def headers(message: str) -> list[tuple[str, str]]:
    lines = message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    return [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]


def values(message: str, name: str) -> list[str]:
    return [value for key, value in headers(message) if key.lower() == name.lower()]


class FakeNode:
    """Answers OPTIONS with 200 and INVITEs with ``answer`` (None: never answers INVITEs, as a hung
    process); keeps every request it got. ``address`` is what the dispatcher list names."""

    def __init__(self, answer: int | None = 200):
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def got(self, method: str) -> list[str]:
        return [r for r in self.requests if r.startswith(method + " ")]

    def _serve(self) -> None:
        while not self.closed:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                continue
            message = data.decode(errors="replace")
            method = message.split(" ", 1)[0]
            if method == "OPTIONS":
                self._reply(message, source, 200)
                continue
            self.requests.append(message)
            if method == "INVITE" and self.answer is not None:
                self._reply(message, source, 180)
                self._reply(message, source, self.answer)
            elif method == "BYE":
                self._reply(message, source, 200)

    def _reply(self, request: str, source, code: int) -> None:
        lines = [f"SIP/2.0 {code} {'OK' if code == 200 else 'Answer'}"]
        lines += [f"Via: {via}" for via in values(request, "Via")]
        lines += [f"Record-Route: {route}" for route in values(request, "Record-Route")]
        to = values(request, "To")[0]
        lines += [f"From: {values(request, 'From')[0]}", f"To: {to}{'' if 'tag=' in to else ';tag=node' + str(self.port)}",
                  f"Call-ID: {values(request, 'Call-ID')[0]}", f"CSeq: {values(request, 'CSeq')[0]}",
                  f"Contact: <sip:node@{self.address}>", "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), source)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class Caller:
    """A PBX sending one call through the dispatcher from ``ip``."""

    def __init__(self, dispatcher: Dispatcher, ip: str = LOOPBACK):
        self.dispatcher = dispatcher
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.ip, self.port = ip, self.sock.getsockname()[1]
        self.call_id = f"call-{random.getrandbits(48):x}@{ip}"
        self.branch = f"z9hG4bK{random.getrandbits(48):x}"
        self.answer: str | None = None

    def _send(self, first_line: str, method: str, cseq: int, branch: str, extra: list[str] = ()) -> None:
        lines = [first_line, f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch}",
                 f"From: <sip:13800138000@{self.ip}>;tag=pbx", f"To: <sip:hotline@{self.dispatcher.address}>"
                 + (re.search(r";tag=[^;>\s]+", values(self.answer, "To")[0]).group(0) if self.answer and
                    method != "INVITE" else ""),
                 f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70", *extra,
                 f"Contact: <sip:pbx@{self.ip}:{self.port}>", "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), (DISPATCHER_IP, self.dispatcher.port))

    def invite(self, timeout: float = 10.0, extra: list[str] = ()) -> int:
        """Send the INVITE; the final answer's code (the 200 is kept for ACK and BYE)."""
        self._send(f"INVITE sip:hotline@{self.dispatcher.address} SIP/2.0", "INVITE", 1, self.branch, extra)
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                message = self.sock.recv(65535).decode(errors="replace")
            except OSError:
                continue
            code = int(message.split(" ", 2)[1])
            if code >= 200:
                self.answer = message
                if code >= 300:  # hop by hop
                    self._send(f"ACK sip:hotline@{self.dispatcher.address} SIP/2.0", "ACK", 1, self.branch)
                return code
        raise AssertionError(f"no final answer in {timeout} s")

    def hang_up(self) -> int:
        """ACK the 200, then BYE along the recorded route; the BYE's answer code."""
        routes = values(self.answer, "Record-Route")[::-1]
        target = re.search(r"<([^>]+)>", values(self.answer, "Contact")[0]).group(1)
        route = [f"Route: {', '.join(routes)}"] if routes else []
        self._send(f"ACK {target} SIP/2.0", "ACK", 1, f"z9hG4bK{random.getrandbits(48):x}", route)
        self._send(f"BYE {target} SIP/2.0", "BYE", 2, f"z9hG4bK{random.getrandbits(48):x}", route)
        while True:
            message = self.sock.recv(65535).decode(errors="replace")
            if "BYE" in values(message, "CSeq")[0]:
                return int(message.split(" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


class StandIn:
    """What Dispatcher needs of a node: its address."""

    def __init__(self, node: FakeNode):
        self.address = node.address


@pytest.fixture
def dispatch(tmp_path):
    """dispatch(*nodes, algorithm=...) -> a running Kamailio in front of the fake nodes."""
    require("kamailio")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((DISPATCHER_IP, 0))
    except OSError:
        (pytest.fail if REQUIRE_SIP else pytest.skip)(f"{DISPATCHER_IP} is not a local address here")
    started = []

    def start(*nodes: FakeNode, algorithm: str = "round-robin") -> Dispatcher:  # round-robin: predictable turns
        dispatcher = Dispatcher(tmp_path / f"d{len(started)}", [StandIn(n) for n in nodes], algorithm=algorithm)
        started.append(dispatcher.start())
        return dispatcher
    yield start
    for dispatcher in started:
        dispatcher.stop()


def answered_by(nodes: list[FakeNode], call: Caller) -> list[int]:
    return [n for n, node in enumerate(nodes) if any(call.call_id in r for r in node.got("INVITE"))]


# ---------------------------------------------------------------- the generated configuration


@pytest.mark.parametrize("algorithm", ["least-loaded", "round-robin"])
def test_kamailio_accepts_the_written_configuration(tmp_path, algorithm):
    require("kamailio")
    assert main(["kamailio-config", "--listen", "192.0.2.5:5060", "--node", "192.0.2.11:5070", "--node",
                 "192.0.2.12:5070", "--allow", "198.51.100.0/24", "--allow", "203.0.113.7",
                 "--algorithm", algorithm, "--out", str(tmp_path)]) == 0
    nodes = (tmp_path / "dispatcher.list").read_text()
    assert "1 sip:192.0.2.11:5070 8 0 duid=node1" in nodes and "1 sip:192.0.2.12:5070 8 0 duid=node2" in nodes
    config = (tmp_path / "kamailio.cfg").read_text()
    assert "listen=udp:192.0.2.5:5060" in config and '"198.51.100.0/24,203.0.113.7/32"' in config
    assert ("#!define LEAST_LOADED" in config) == (algorithm == "least-loaded")
    check = subprocess.run(["kamailio", "-c", "-f", str(tmp_path / "kamailio.cfg")], capture_output=True, text=True)
    assert check.returncode == 0 and "config file ok" in check.stdout + check.stderr, check.stderr[-2000:]


@pytest.mark.parametrize("arguments, problem", [
    (["--listen", "0.0.0.0:5060", "--node", "192.0.2.11:5070", "--allow", "192.0.2.1"], "0.0.0.0"),
    (["--listen", "192.0.2.5", "--node", "192.0.2.11:5070", "--allow", "192.0.2.1"], "IPv4-ADDRESS:PORT"),
    (["--listen", "192.0.2.5:5060", "--node", "pbx.example.com:5070", "--allow", "192.0.2.1"], "--node"),
    (["--listen", "192.0.2.5:5060", "--node", "192.0.2.11:5070", "--node", "192.0.2.11:5070", "--allow", "192.0.2.1"],
     "twice"),
    (["--listen", "192.0.2.5:5060", "--node", "192.0.2.11:5070", "--allow", "somewhere"], "--allow"),
])
def test_options_that_cannot_work_are_refused_and_nothing_is_written(tmp_path, capsys, arguments, problem):
    assert main(["kamailio-config", *arguments, "--out", str(tmp_path / "out")]) == 1
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- what the dispatcher does with it


def test_round_robin_spreads_calls_and_the_bye_reaches_the_node_that_answered(dispatch):
    nodes = [FakeNode(), FakeNode()]
    dispatcher = dispatch(*nodes)
    takers = []
    for _ in range(4):
        call = Caller(dispatcher)
        assert call.invite() == 200
        takers += answered_by(nodes, call)
        assert call.hang_up() == 200
        taker = nodes[takers[-1]]
        assert any(call.call_id in bye for bye in taker.got("BYE"))  # record-routed to the node that answered
        assert not any(call.call_id in bye for bye in nodes[1 - takers[-1]].got("BYE"))
        call.close()
    assert sorted(takers) == [0, 0, 1, 1]


@pytest.mark.parametrize("refusal", [486, 500, 503])
def test_a_full_or_failing_node_passes_the_call_to_the_next(dispatch, refusal):
    full, free = FakeNode(refusal), FakeNode()
    dispatcher = dispatch(full, free)
    for _ in range(2):  # whichever node is tried first
        call = Caller(dispatcher)
        assert call.invite() == 200
        assert answered_by([full, free], call)[-1] == 1
        call.close()
    assert full.got("INVITE")  # it was asked, and said no


def test_an_invite_says_when_another_node_is_left_to_try_and_only_then(dispatch):
    """Full is not busy: a full node may refuse (503) only an INVITE marked as having another node
    after it; the last node tried gets it unmarked and takes the call. A PBX's own mark is dropped."""
    full, free = FakeNode(503), FakeNode()
    dispatcher = dispatch(full, free)
    for _ in range(2):  # round-robin: once each node first
        call = Caller(dispatcher)
        assert call.invite(extra=[f"{NEXT_NODE_HEADER}: forged"]) == 200
        tries = [(n, invite) for n, node in enumerate([full, free]) for invite in node.got("INVITE")
                 if call.call_id in invite]
        tries.sort(key=lambda t: t[0] == 1)  # the full node, when tried, was tried first (it refused)
        marks = [values(invite, NEXT_NODE_HEADER) for _, invite in tries]
        other = {0: free, 1: full}
        assert marks[:-1] == [[f"sip:{other[n].address}"] for n, _ in tries[:-1]]
        assert marks[-1] == (["sip:" + full.address] if len(tries) == 1 else [])
        call.close()
    assert len(full.got("INVITE")) == 1 and len(free.got("INVITE")) == 2


def test_a_node_that_does_not_answer_is_passed_over_after_two_seconds(dispatch):
    hung, alive = FakeNode(None), FakeNode()
    dispatcher = dispatch(hung, alive)
    delays, tried_hung = [], 0
    for _ in range(2):
        call = Caller(dispatcher)
        began = time.monotonic()
        assert call.invite() == 200
        delays.append(time.monotonic() - began)
        assert answered_by([hung, alive], call) in ([1], [0, 1])
        tried_hung += answered_by([hung, alive], call) == [0, 1]
        call.close()
    slow = [d for d in delays if d > 1.0]
    assert tried_hung == len(slow) >= 1  # round-robin: one of the two calls went to the hung node first
    assert all(1.5 < d < 4.0 for d in slow), delays


def test_a_dead_node_is_left_out_once_its_probes_fail(dispatch):
    dead, alive = FakeNode(), FakeNode()
    dispatcher = dispatch(dead, alive)
    dead.close()  # the machine is gone: no reply to anything
    time.sleep(6)  # a probe every second, each given 2 s to answer; two missed: down
    for _ in range(3):
        call = Caller(dispatcher)
        began = time.monotonic()
        assert call.invite() == 200 and time.monotonic() - began < 1.5  # not the 2 s failover wait
        call.close()
    assert "marked down" not in dispatcher.output.text()  # the probes did it, before any call waited


def test_when_every_node_is_full_the_caller_hears_busy(dispatch):
    dispatcher = dispatch(FakeNode(486), FakeNode(486))
    call = Caller(dispatcher)
    assert call.invite() == 486
    call.close()


def test_least_loaded_sends_a_call_to_the_node_with_fewer_calls_in_progress(dispatch):
    nodes = [FakeNode(), FakeNode()]
    dispatcher = dispatch(*nodes, algorithm="least-loaded")
    first = Caller(dispatcher)
    assert first.invite() == 200
    second = Caller(dispatcher)
    assert second.invite() == 200
    busy = answered_by(nodes, first)[0]
    assert answered_by(nodes, second) == [1 - busy]  # not the node already talking
    assert first.hang_up() == 200  # its call is over: that node has none now
    third = Caller(dispatcher)
    assert third.invite() == 200
    assert answered_by(nodes, third) == [busy]
    for call in (first, second, third):
        call.close()


def test_only_the_allowed_peers_may_send_calls(dispatch):
    node = FakeNode()
    dispatcher = dispatch(node)
    stranger = Caller(dispatcher, STRANGER)
    assert stranger.invite() == 403
    assert node.got("INVITE") == []
    stranger.close()
    friend = Caller(dispatcher)
    assert friend.invite() == 200
    friend.close()


def test_the_command_runs_as_a_program(tmp_path):
    done = subprocess.run([sys.executable, "-m", "callcenter.cli", "kamailio-config", "--listen", "192.0.2.5:5060",
                           "--node", "192.0.2.11:5070", "--allow", "192.0.2.1", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"kamailio -f {tmp_path / 'kamailio.cfg'}" in done.stdout
    assert Path(tmp_path / "dispatcher.list").exists()

