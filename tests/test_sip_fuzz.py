"""10,000 mutations of real captured SIP messages (tests/data/sip/) through the parser and a line's
dispatcher, with Hypothesis: bytes flipped, cut, repeated; folded lines, commas, quotes and brackets
put in; header bombs; Contacts, Routes and SDP ports nobody can use; fresh Call-IDs so that many
become calls, which the flow answers and hangs up at once.

What must hold for every one: nothing raises out of the receive loop (and our own handlers never
fail: no "handler_error"), a message costs time in proportion to its size, and when it is all
over no call holds a slot or an RTP port.
"""

from __future__ import annotations

import itertools
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.sip import uri as sip_uri
from callcenter.sip.agent import UserAgent
from callcenter.sip.errors import BadMessage
from callcenter.sip.message import SipMessage
from tests.support.sip import LOOPBACK, free_udp_ports

CAPTURED = sorted((Path(__file__).parent / "data" / "sip").glob("*.sip"))
INSERTS = [b"\r\n", b"\r\n ", b"\n", b",", b"<", b">", b'"', b";", b":", b"\x00", b"\xff\xfe", b"=", b"@", b"[::1]",
           b";tag=", b";branch=z9hG4bK", b"Content-Length: 99999\r\n", b"Content-Length: -1\r\n", b"X:\r\n" * 120,
           b"Record-Route: <sip:127.0.0.1:1;lr>, <garbage>, <sip:[::1]>\r\n", b"Via: \r\n", b"CSeq: 1 BYE\r\n",
           b"m=audio 99999 RTP/AVP 0\r\n", b"m=audio 0 RTP/AVP 0\r\n", b"c=IN IP6 ::1\r\n", b"c=IN IP4 host.name\r\n",
           b"a=sendonly\r\n", "报修".encode(), b"\t", b" " * 50]
CONTACTS = [b"<sip:a@[::1]:5060>", b"<sip:a@nowhere.invalid>", b"<sip:a@127.0.0.1:99999>", b"<>", b"garbage",
            b"<sip:a@127.0.0.2:5060>", b"*"]
SOURCES = [(LOOPBACK, 5062)] * 4 + [(LOOPBACK, 5099), ("127.0.0.2", 5060)]  # mostly the allowed PBX
FRESH = itertools.count()  # Hypothesis likes to draw the same small numbers: Call-IDs must differ
INVITES = [path for path in CAPTURED if path.name.startswith("invite")]


@st.composite
def mutated(draw) -> tuple[bytes, tuple[str, int], bool]:
    """A captured message (an INVITE half the time), 0-3 mutations, often a Content-Length that
    fits again and a fresh Call-ID (so that more of them get past the parser to the dialogs)."""
    files = INVITES if draw(st.booleans()) else CAPTURED
    data = bytearray(draw(st.sampled_from(files)).read_bytes())
    fresh = draw(st.booleans())  # a new call rather than a message about an old one (see fresh_call_id)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 7))
        if kind == 0:  # flip a few bytes
            for _ in range(draw(st.integers(1, 4))):
                where = draw(st.integers(0, max(0, len(data) - 1)))
                if data:
                    data[where] = draw(st.integers(0, 255))
        elif kind == 1:  # cut a piece out
            data[at:at + draw(st.integers(1, 200))] = b""
        elif kind == 2:  # repeat a piece
            piece = data[at:at + draw(st.integers(1, 300))]
            data[at:at] = piece * draw(st.integers(1, 20))
        elif kind == 3:
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif kind == 4:  # a header line twice
            line_end = bytes(data).find(b"\r\n", at)
            line_start = bytes(data).rfind(b"\r\n", 0, at)
            if 0 <= line_start < line_end:
                data[line_end:line_end] = data[line_start:line_end]
        elif kind == 5:  # a Contact (or Record-Route) nobody can reach
            contact = draw(st.sampled_from(CONTACTS))
            header = draw(st.sampled_from([b"Contact: ", b"Record-Route: "]))
            start = bytes(data).find(header)
            if start >= 0:
                end = bytes(data).find(b"\r\n", start)
                data[start + len(header):end if end >= 0 else len(data)] = contact
        elif kind == 6:
            data = data[:at]
        else:  # bare line feeds
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
    if draw(st.booleans()):
        data = bytearray(fit_content_length(bytes(data)))
    return bytes(data), draw(st.sampled_from(SOURCES)), fresh


def fresh_call_id(data: bytes) -> bytes:
    """A Call-ID no earlier message had. Done outside the strategy: Hypothesis draws the same small
    numbers again and again, and a strategy may not depend on a counter."""
    return data.replace(b"Call-ID: ", b"Call-ID: f%d-" % next(FRESH), 1)


def fit_content_length(data: bytes) -> bytes:
    head, blank, body = data.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length")]
    return b"\r\n".join(lines + [b"Content-Length: %d" % len(body)]) + blank + body if blank else data


def nobody_home(host: str) -> str:
    raise OSError(-2, "Name or service not known")  # no DNS query leaves this machine


@pytest.fixture(scope="module")
def line():
    """A trunk line taking calls from 127.0.0.1:5062; each INVITE that becomes a call is answered and
    hung up at once (one in four), or refused, by its "flow", right on the receive thread."""
    original, sip_uri.lookup = sip_uri.lookup, nobody_home

    def flow(call):
        if zlib.crc32(call.call_id.encode()) % 4 == 0:
            call.answer()
            call.hangup()
            flows["answered"] += 1
        else:
            call.reject(486)
            flows["refused"] += 1
    flows = {"answered": 0, "refused": 0}
    rtp = free_udp_ports(40)
    agent = UserAgent("fuzz", (LOOPBACK, free_udp_ports()), user="hotline", mode="trunk", allow=[(LOOPBACK, 5062)],
                      max_calls=5, rtp_ports=(rtp, rtp + 39), on_incoming=flow)
    agent.start()
    agent.flows, agent.messages = flows, 0
    yield agent
    agent.stop()
    sip_uri.lookup = original


@settings(max_examples=500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(messages=st.lists(mutated(), min_size=20, max_size=20))
def test_mutated_messages_never_break_the_line(line, messages):
    """500 examples of 20 messages each: 10,000 (Hypothesis' own cost per example, not ours, made
    one message per example take twice as long)."""
    for data, source, fresh in messages:
        data = fresh_call_id(data) if fresh else data
        started = time.thread_time()  # CPU time: a loaded CI box may park this thread for longer
        try:
            SipMessage.parse(data)
        except BadMessage:
            pass
        parsed = time.thread_time() - started
        assert parsed < 0.05, f"{len(data)} bytes took {1000 * parsed:.1f} ms to parse"
        line.endpoint.dispatch(data, source)  # raises nothing, whatever came
        assert "handler_error" not in line.guard.counts
        assert len(line.calls) == 0  # every call this made was answered and hung up, or refused
    line.messages += len(messages)


def test_afterwards_no_call_holds_a_slot_or_a_port(line):
    free = len(range(line.ports.range[0] + line.ports.range[0] % 2, line.ports.range[1] + 1, 2))
    assert line.messages == 10_000 and line.calls == [] and line.ports.free == free
    assert "handler_error" not in line.guard.counts
    # the mutations reached the dialogs, not only the parser's refusals
    assert line.flows["answered"] >= 50 and line.flows["refused"] >= 200, line.flows
    assert {"malformed", "not_allowed", "wrong_source", "too_many_headers"} <= set(line.guard.counts)
