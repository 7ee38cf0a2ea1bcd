"""Our one layer around pyVoIP 1.6.8: the SIP signalling and RTP streams of the hotline's lines.

Kept from pyVoIP: ``SIP.SIPMessage`` (header and SDP parsing, subclassed to be defensive),
``SIP.SIPStatus`` (reason phrases) and ``RTP.RTPClient`` (socket set-up and receive loop,
subclassed for our media path). Written here instead: what ``SIPClient``/``VoIPPhone`` do (one
receive loop, client transactions with retransmission, registration, dialogs). The defects measured
in /work/shared/SIP-NOTES.md sit in the structure of those two classes: ``register()`` and
``invite()`` read the shared socket themselves while holding the receive lock (whatever else
arrives meanwhile is misread), every reply goes to the registrar's address, and ACK, BYE and CANCEL
are built from the wrong headers. Patching them method by method would keep that structure.

Each fix is marked ``Defect <name>:`` with the pyVoIP behaviour it replaces, so it can be dropped
when upstream fixes it. Names: ack-to-tag (pyVoIP #272), empty-header, options, answer-sleep,
cancel, max-calls, trunk-mode, wrong-password, re-register, 407, re-invite, bye-route-set
(pyVoIP #7), bind-address, 8-bit-audio, pcma-encode, dtmf-repeat, rtp-memory, rtp-sequence.

Threads: one receive thread and one timer thread per line, two RTP threads per call. None of them
runs call-flow code: they call the ``CallListener`` of a call (see lines.py), which only queues.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import queue
import random
import re
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Iterable, Protocol, Sequence

import pyVoIP
import pyVoIP.VoIP  # noqa: F401  (first: importing pyVoIP.SIP on its own is a circular import)
from pyVoIP import RTP, SIP

from callcenter.ivr.media import (CODECS_BY_PAYLOAD_TYPE, SILENCE, Codec, MediaError, RtpAudioInput,
                                  RtpAudioOutput)

log = logging.getLogger("callcenter.ivr")

Address = tuple[str, int]
T1, T2 = 0.5, 4.0  # RFC 3261 §17.1.1.1 timer values
TRANSACTION_TIMEOUT = 64 * T1  # timers B, F, H
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
USER_AGENT = f"callcenter-hotline (pyVoIP {pyVoIP.__version__})"
EVENT_PAYLOAD_TYPE = 101
OUTGOING_FRAMES = 10  # 200 ms of prompt queued ahead of the RTP sender: with 60 ms, prompts broke up beyond ~20 calls (bench/calls.py)


class SipError(Exception):
    """A SIP operation that failed; the message says which line, peer and response."""


class RegistrationError(SipError):
    pass


class DialError(SipError):
    BUSY_CODES = frozenset({486, 600, 603})  # busy here, busy everywhere, declined
    NO_ANSWER_CODES = frozenset({408, 480, 487})  # rang out, unavailable, called off while ringing

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code

    @property
    def outcome(self) -> str:
        """How a dial that never became a call counts (call records, call-outs, follow-ups): "busy",
        "no_answer", or "failed" for anything else (no line, no free line, a network refusal)."""
        if self.code in self.BUSY_CODES:
            return "busy"
        return "no_answer" if self.code in self.NO_ANSWER_CODES else "failed"


class CallEnded(SipError):
    """The call is over (cancelled, hung up, rejected) and cannot do what was asked."""


# ---------------------------------------------------------------- addresses, URIs, tags

def parse_host_port(text: str, default_port: int = 5060) -> Address:
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected host or host:port") from None


def resolve(address: Address) -> Address:
    """IP literal stays as it is (no DNS); a host name is resolved once, IPv4 only."""
    host, port = address
    try:
        socket.inet_aton(host)
        return address
    except OSError:
        return socket.gethostbyname(host), port


def uri_of(name_addr: str) -> str:
    """'"Name" <sip:u@h;x>;tag=1' -> 'sip:u@h;x' (RFC 3261 §20.10 name-addr / addr-spec)."""
    if "<" in name_addr:
        return name_addr.split("<", 1)[1].split(">", 1)[0].strip()
    return name_addr.split(";", 1)[0].strip()


def tag_of(name_addr: str) -> str:
    tail = name_addr.rsplit(">", 1)[-1] if "<" in name_addr else name_addr
    match = re.search(r";\s*tag=([^;,\s]+)", tail)
    return match.group(1) if match else ""


def user_of(uri: str) -> str:
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""


def uri_address(uri: str) -> Address:
    """Where to send a request for this SIP URI: its host and port (maddr and DNS SRV ignored)."""
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
    hostport = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    return resolve(parse_host_port(hostport))


def split_header_list(value: str) -> list[str]:
    """Comma-separated header values, commas inside <...> or quotes not counted (RFC 3261 §7.3.1)."""
    items, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth -= 1
        elif char == "," and not quoted and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return [item for item in items if item]


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)  # RFC 3261 §8.1.1.7 magic cookie


def new_call_id(host: str) -> str:
    return f"{uuid.uuid4().hex}@{host}"


def reason_phrase(code: int) -> str:
    try:
        return SIP.SIPStatus(code).phrase
    except ValueError:
        return "Unknown"


# ---------------------------------------------------------------- messages

_COMPACT = {"i": "Call-ID", "m": "Contact", "f": "From", "t": "To", "v": "Via", "l": "Content-Length",
            "c": "Content-Type", "k": "Supported", "e": "Content-Encoding", "s": "Subject"}
_CANONICAL = {name.lower(): name for name in (
    "Call-ID", "CSeq", "Via", "From", "To", "Contact", "Content-Length", "Content-Type", "Content-Encoding",
    "Record-Route", "Route", "WWW-Authenticate", "Proxy-Authenticate", "Authorization", "Proxy-Authorization",
    "Supported", "Allow", "Expires", "Min-Expires", "Max-Forwards", "Require", "User-Agent", "Server")}


class SipMessage(SIP.SIPMessage):
    """pyVoIP's SIPMessage with a defensive front end.

    Defect empty-header: pyVoIP splits every header line on ': ' and indexes [1], so an empty value
    such as ``Supported:`` (SIPp and some PBXs send it) raises and the INVITE is dropped silently.
    We split on the first colon, unfold continuation lines, expand compact names, keep every line
    (``header_lines``: Via and Record-Route come several times) and hand pyVoIP only non-empty values.
    Defect options: pyVoIP parses only INVITE, ACK, BYE and CANCEL; anything else (OPTIONS health
    checks) raised and got no reply. Any method parses here."""

    def __init__(self, data: bytes):
        self.header_lines: list[tuple[str, str]] = []
        self.status_code = 0
        self.reason = ""
        self.method = ""
        self.uri = ""
        self.content = b""
        self.sdp_error: str | None = None
        super().__init__(data)

    def parse(self, data: bytes) -> None:
        head, blank, content = data.partition(b"\r\n\r\n")
        if not blank:
            raise SIP.SIPParseError("no empty line after the headers (truncated, or not SIP)")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.heading = lines[0].encode()
        start = lines[0].split(" ", 2)
        if len(start) == 3 and start[0] == "SIP/2.0" and start[1].isdigit():
            self.type = SIP.SIPMessageType.RESPONSE
            self.status_code, self.reason = int(start[1]), start[2]
            try:
                self.status = SIP.SIPStatus(self.status_code)
            except ValueError:
                pass
        elif len(start) == 3 and start[2] == "SIP/2.0" and start[0].isalpha() and start[0].isupper():
            self.type = SIP.SIPMessageType.MESSAGE
            self.method, self.uri = start[0], start[1]
        else:
            raise SIP.SIPParseError(f"not a SIP start line: {lines[0][:60]!r}")
        self._parse_headers(lines[1:])
        for required in ("Via", "Call-ID", "CSeq", "From", "To"):  # RFC 3261 §8.1.1
            if not self.value(required):
                raise SIP.SIPParseError(f"{self.method or self.status_code} without a {required} header")
        length = self.value("Content-Length")
        self.content = content[: int(length)] if length.isdigit() else content
        if self.content and self.value("Content-Type"):
            try:
                self.parse_raw_body(self.content, self.parse_body)
            except Exception as error:  # an SDP pyVoIP cannot read: the INVITE gets 488, not silence
                self.body, self.sdp_error = {}, f"{type(error).__name__}: {error}"

    def _parse_headers(self, lines: list[str]) -> None:
        unfolded: list[str] = []
        for line in lines:
            if line[:1] in (" ", "\t") and unfolded:
                unfolded[-1] += " " + line.strip()
            elif line:
                unfolded.append(line)
        for line in unfolded:
            name, colon, value = line.partition(":")
            if not colon:
                continue  # not a header at all: ignored like an unknown one
            name = name.strip()
            name = _COMPACT.get(name.lower(), _CANONICAL.get(name.lower(), name)) if len(name) == 1 \
                else _CANONICAL.get(name.lower(), name)
            self.header_lines.append((name, value.strip()))
        for name in dict.fromkeys(name for name, _ in self.header_lines):
            data = self.values("Via") if name == "Via" else self.value(name)
            if not data:
                continue
            try:
                self.parse_header(name, data)
            except Exception:  # pyVoIP's own view of a header is a convenience; we read the lines
                self.headers[name] = data

    def value(self, name: str) -> str:
        return next((value for key, value in self.header_lines if key == name), "")

    def values(self, name: str) -> list[str]:
        return [item for key, value in self.header_lines if key == name for item in split_header_list(value)]

    @property
    def call_id(self) -> str:
        return self.value("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.value("CSeq").partition(" ")
        return int(number) if number.isdigit() else 0, method.strip()

    @property
    def branch(self) -> str:
        vias = self.values("Via")
        match = re.search(r";\s*branch=([^;,\s]+)", vias[0]) if vias else None
        return match.group(1) if match else ""

    @property
    def from_tag(self) -> str:
        return tag_of(self.value("From"))

    @property
    def to_tag(self) -> str:
        return tag_of(self.value("To"))

    @property
    def is_request(self) -> bool:
        return self.type == SIP.SIPMessageType.MESSAGE


def build_response(request: SipMessage, code: int, *, to_tag: str = "", headers: Sequence[str] = (),
                   body: str = "", reason: str = "") -> bytes:
    """A response copying Via, From, To, Call-ID and CSeq from the request (RFC 3261 §8.2.6.2),
    adding our To-tag when the request had none."""
    to = request.value("To")
    if to_tag and not tag_of(to) and code > 100:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {code} {reason or reason_phrase(code)}"]
    lines += [f"Via: {value}" for key, value in request.header_lines if key == "Via"]
    lines += [f"From: {request.value('From')}", f"To: {to}", f"Call-ID: {request.call_id}",
              f"CSeq: {request.value('CSeq')}", *headers, f"Server: {USER_AGENT}"]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# ---------------------------------------------------------------- digest authentication (RFC 2617, RFC 7616)

def parse_challenge(header: str) -> dict[str, str]:
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(f"unsupported authentication scheme {scheme!r}")
    return {key.lower(): quoted if quoted or bare == '""' else bare
            for key, quoted, bare in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', params)}


def digest_authorization(challenge: dict[str, str], method: str, uri: str, user: str, password: str) -> str:
    """The Authorization/Proxy-Authorization value answering a Digest challenge (MD5, qop=auth or none)."""
    algorithm = challenge.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise SipError(f"unsupported digest algorithm {algorithm}")
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in [q.strip() for q in challenge.get("qop", "").split(",")]:
        cnonce, nc = secrets.token_hex(8), "00000001"
        fields += [f'response="{md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")}"', "qop=auth", f"nc={nc}",
                   f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    fields.append("algorithm=MD5")
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)


def answer_challenge(response: SipMessage, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization (401) or Proxy-Authorization (407) header line for a challenged request."""
    if response.status_code == 401:
        return "Authorization: " + digest_authorization(parse_challenge(response.value("WWW-Authenticate")),
                                                        method, uri, user, password)
    return "Proxy-Authorization: " + digest_authorization(parse_challenge(response.value("Proxy-Authenticate")),
                                                          method, uri, user, password)


def is_stale(response: SipMessage) -> bool:
    """A challenge saying only the nonce expired (RFC 2617 §3.2.1): the password was right."""
    challenge = response.value("WWW-Authenticate") or response.value("Proxy-Authenticate")
    return re.search(r"stale\s*=\s*\"?true", challenge, re.IGNORECASE) is not None


# ---------------------------------------------------------------- timers and client transactions

class _Scheduled:
    __slots__ = ("action", "cancelled")

    def __init__(self, action: Callable[[], None]):
        self.action, self.cancelled = action, False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One thread running a line's delayed actions (retransmissions, clean-ups); each must be quick."""

    def __init__(self, name: str):
        self._heap: list[tuple[float, int, _Scheduled]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"sip-timers {name}", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, action: Callable[[], None]) -> _Scheduled:
        entry = _Scheduled(action)
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), entry))
            self._wake.notify()
        return entry

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._running and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if not self._running:
                    return
                entry = heapq.heappop(self._heap)[2]
            if not entry.cancelled:
                try:
                    entry.action()
                except Exception:
                    log.exception("timer action failed")


class ClientTransaction:
    """One request until its final response (RFC 3261 §17.1), retransmitted over UDP with timer A
    (INVITE, until a provisional response) or timer E (others, capped at T2), for at most 64*T1."""

    def __init__(self, endpoint: SipEndpoint, method: str, branch: str, data: bytes, destination: Address,
                 on_provisional: Callable[[SipMessage], None] | None = None):
        self.endpoint, self.method, self.branch = endpoint, method, branch
        self.data, self.destination, self.on_provisional = data, destination, on_provisional
        self.provisional: SipMessage | None = None
        self.final: SipMessage | None = None
        self._ack: tuple[bytes, Address] | None = None
        self._done = threading.Event()
        self._interval = T1
        self._started = time.monotonic()
        self._timer: _Scheduled | None = None

    def start(self) -> None:
        self.endpoint.send(self.data, self.destination)
        self._timer = self.endpoint.timers.call_later(self._interval, self._retransmit)

    def _retransmit(self) -> None:
        if self.final or (self.method == "INVITE" and self.provisional) or self.abandoned:
            return
        if time.monotonic() - self._started >= TRANSACTION_TIMEOUT:
            self.abandon()
            return
        self.endpoint.send(self.data, self.destination)
        self._interval = self._interval * 2 if self.method == "INVITE" else min(self._interval * 2, T2)
        self._timer = self.endpoint.timers.call_later(self._interval, self._retransmit)

    @property
    def abandoned(self) -> bool:
        return self._done.is_set() and self.final is None

    def abandon(self) -> None:
        """Stop retransmitting and waiting (timeout, or the caller gave up)."""
        if self._timer:
            self._timer.cancel()
        self._done.set()
        self.endpoint.timers.call_later(TRANSACTION_TIMEOUT, lambda: self.endpoint.forget(self))

    def receive(self, response: SipMessage) -> None:
        if response.status_code < 200:
            self.provisional = response
            if self.on_provisional:
                self.on_provisional(response)
        elif self.final is None:
            self.final = response
            self._done.set()
            # keep matching for a while: retransmitted finals must get our ACK again (RFC 3261 §17.1.1.2, §13.2.2.4)
            self.endpoint.timers.call_later(TRANSACTION_TIMEOUT if self.method == "INVITE" else 5 * T1,
                                            lambda: self.endpoint.forget(self))
        elif self._ack:
            self.endpoint.send(*self._ack)

    def acknowledge(self, ack: bytes, destination: Address) -> None:
        self._ack = (ack, destination)
        self.endpoint.send(ack, destination)

    def wait(self, timeout: float, abandon: bool = True) -> SipMessage | None:
        """The final response, or None after ``timeout`` (then, unless told otherwise, stop trying:
        a late success must not happen behind the back of a caller who was told it failed)."""
        if not self._done.wait(timeout) and abandon:
            self.abandon()
        return self.final


class SipEndpoint:
    """One UDP socket on the line's address, one receive thread, the client transactions.

    Defect bind-address: pyVoIP binds VoIPPhone's myIP, 0.0.0.0 unless set. We bind only the
    configured address, refuse wildcard addresses (the address also goes into Via, Contact and
    SDP) and check what the socket really bound."""

    def __init__(self, name: str, address: Address, on_request: Callable[[SipMessage, Address], None]):
        if address[0] in ("", "0.0.0.0", "::", "*"):
            raise ValueError(f"line {name}: listen address must be one interface address, not {address[0]!r}")
        self.name, self.address, self.on_request = name, address, on_request
        self.timers: Timers | None = None
        self._sock: socket.socket | None = None
        self._transactions: dict[tuple[str, str], ClientTransaction] = {}
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except OSError as error:
            sock.close()
            raise SipError(f"line {self.name}: cannot listen on {self.address[0]}:{self.address[1]}: {error}") from None
        if sock.getsockname() != self.address:
            sock.close()
            raise SipError(f"line {self.name}: socket bound {sock.getsockname()}, not {self.address}")
        sock.settimeout(0.25)
        self._sock, self._running = sock, True
        self.timers = Timers(self.name)
        self._thread = threading.Thread(target=self._receive_loop, name=f"sip-recv {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread:
            self._thread.join(2)
        if self.timers:
            self.timers.stop()
        if self._sock:
            self._sock.close()

    @property
    def socket_address(self) -> Address:
        return self._sock.getsockname()

    def send(self, data: bytes, destination: Address) -> None:
        try:
            self._sock.sendto(data, destination)
        except OSError as error:
            log.warning("line %s: cannot send to %s:%d: %s", self.name, *destination, error)

    def request(self, method: str, branch: str, data: bytes, destination: Address,
                on_provisional: Callable[[SipMessage], None] | None = None) -> ClientTransaction:
        transaction = ClientTransaction(self, method, branch, data, destination, on_provisional)
        self._transactions[(branch, method)] = transaction
        transaction.start()
        return transaction

    def forget(self, transaction: ClientTransaction) -> None:
        self._transactions.pop((transaction.branch, transaction.method), None)

    def _receive_loop(self) -> None:
        while self._running:
            try:
                data, source = self._sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError as error:  # e.g. an ICMP port-unreachable reported late: keep serving
                if not self._running:
                    return
                log.warning("line %s: SIP socket error: %s", self.name, error)
                time.sleep(0.05)
                continue
            self._dispatch(data, source)

    def _dispatch(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n\x00"):
            return  # RFC 5626 §4.4.1 keep-alive (CRLF) or pyVoIP's NUL ping
        try:
            message = SipMessage(data)
        except Exception as error:
            log.warning("line %s: dropped %d bytes from %s:%d that are not a SIP message (%s)",
                        self.name, len(data), *source, error)
            return
        try:
            if message.is_request:
                self.on_request(message, source)
            else:
                transaction = self._transactions.get((message.branch, message.cseq[1]))
                if transaction:
                    transaction.receive(message)
                else:
                    log.debug("line %s: response %d for no transaction of ours (call %s)",
                              self.name, message.status_code, message.call_id)
        except Exception:
            log.exception("line %s: failed handling %s from %s:%d (call %s)", self.name,
                          message.method or message.status_code, *source, message.call_id)
            if message.is_request and message.method != "ACK":
                self.send(build_response(message, 500), source)


# ---------------------------------------------------------------- SDP (RFC 4566, offer/answer RFC 3264)

@dataclass(frozen=True)
class RemoteMedia:
    address: str
    port: int
    payload_types: tuple[int, ...]
    event_payload_type: int | None
    direction: str = "sendrecv"

    @property
    def on_hold(self) -> bool:  # RFC 3264 §8.4; c=0.0.0.0 is the RFC 2543 way
        return self.address == "0.0.0.0" or self.direction in ("sendonly", "inactive")

    @classmethod
    def from_message(cls, message: SipMessage) -> RemoteMedia:
        if message.sdp_error:
            raise SipError(f"unreadable SDP ({message.sdp_error})")
        body = message.body
        audio = [m for m in body.get("m", []) if m.get("type") == "audio" and m.get("port")]
        if not audio or not body.get("c"):
            raise SipError("no audio stream in the SDP")
        media = audio[0]
        event = next((int(pt) for pt, attributes in media["attributes"].items()
                      if attributes.get("rtpmap", {}).get("name", "").lower() == "telephone-event"), None)
        direction = body.get("a", {}).get("transmit_type")
        return cls(body["c"][-1]["address"], int(media["port"]),
                   tuple(int(pt) for pt in media["methods"] if pt.isdigit()), event,
                   str(direction) if direction else "sendrecv")

    def choose_codec(self, allowed: Sequence[Codec]) -> Codec | None:
        """The first codec in the offerer's order that we support (RFC 3264 §6.1)."""
        return next((codec for pt in self.payload_types for codec in allowed if codec.payload_type == pt), None)


def session_description(address: str, port: int, session_id: int, version: int, codecs: Sequence[Codec],
                        event_payload_type: int | None = EVENT_PAYLOAD_TYPE, direction: str = "sendrecv") -> str:
    formats = [str(codec.payload_type) for codec in codecs]
    lines = ["v=0", f"o=callcenter {session_id} {version} IN IP4 {address}", "s=callcenter",
             f"c=IN IP4 {address}", "t=0 0"]
    if event_payload_type is not None:
        formats.append(str(event_payload_type))
    lines.append(f"m=audio {port} RTP/AVP {' '.join(formats)}")
    lines += [f"a=rtpmap:{codec.payload_type} {codec.name}/8000" for codec in codecs]
    if event_payload_type is not None:
        lines += [f"a=rtpmap:{event_payload_type} telephone-event/8000", f"a=fmtp:{event_payload_type} 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


# ---------------------------------------------------------------- RTP

class RtpStream(RTP.RTPClient):
    """pyVoIP's RTPClient (its receive loop) feeding our media pieces, one per call."""

    def __init__(self, call_id: str, local: Address, remote: RemoteMedia, codec: Codec,
                 on_frame: Callable[[bytes], None], on_digit: Callable[[str], None]):
        assoc = {codec.payload_type: RTP.PayloadType(codec.payload_type)}
        if remote.event_payload_type is not None:
            assoc[remote.event_payload_type] = RTP.PayloadType.EVENT
        super().__init__(assoc, local[0], local[1], remote.address, remote.port, RTP.TransmitType.SENDRECV)
        # Defect rtp-memory: RTPPacketManager keeps every packet of a call in its ``log`` dict, in and
        # out (tens of MB per call-hour). Our path never fills them.
        self.pmin = self.pmout = None
        self.call_id, self.codec, self.on_frame, self.on_digit = call_id, codec, on_frame, on_digit
        self.input = RtpAudioInput({codec.payload_type: codec}, remote.event_payload_type)
        # RFC 3550 §5.1: random initial sequence number, timestamp and SSRC
        self.output = RtpAudioOutput(codec, ssrc=random.getrandbits(32), sequence=random.getrandbits(16),
                                     timestamp=random.getrandbits(32))
        self.outgoing: queue.Queue[bytes] = queue.Queue(OUTGOING_FRAMES)
        self.on_hold = remote.on_hold
        self.packets_sent = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        # Defect bind-address: the RTP socket binds the line's address, never 0.0.0.0.
        self.sin = self.sout = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sin.bind((self.inIP, self.inPort))
        except OSError:
            self.sin.close()
            raise
        self.sin.setblocking(False)
        self._threads = [threading.Thread(target=self.recv, name=f"rtp-recv {self.call_id}", daemon=True),
                         threading.Thread(target=self.trans, name=f"rtp-send {self.call_id}", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads, then take what is still in the socket: a caller's last words before BYE."""
        self.NSD = False
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(1)
        while True:
            try:
                self.parse_packet(self.sin.recv(8192))
            except OSError:
                break
        self.sin.close()

    def parse_packet(self, packet: bytes) -> None:
        # Defect 8-bit-audio: RTPClient turns G.711 into 8-bit unsigned PCM (-18 dB of dynamic range
        # before the recogniser). We decode the raw payload to 16-bit (media.RtpAudioInput).
        # Defect dtmf-repeat: RTPClient reports a digit per marked packet; ours one per event.
        # Exceptions other than RTPParseError would end pyVoIP's receive loop: none escape.
        try:
            received = self.input.process_packet(packet)
            for frame in received.frames:
                self.on_frame(frame)
            if received.digit:
                self.on_digit(received.digit)
        except MediaError as error:
            log.debug("call %s: RTP packet dropped: %s", self.call_id, error)
        except Exception:
            log.exception("call %s: RTP packet handling failed", self.call_id)

    def trans(self) -> None:
        # Defect pcma-encode: RTPClient.encode_packet encodes μ-law whatever was negotiated; the
        # packets here carry the negotiated codec (media.RtpAudioOutput).
        # Defect rtp-sequence: RTPClient drops two header bytes from the packet where its sequence
        # number passes 65535 (after ~22 min); ours wraps modulo 2^16. Pacing is by deadline, no drift.
        next_send = time.monotonic()
        while self.NSD:
            try:
                frame = self.outgoing.get_nowait()
            except queue.Empty:
                frame = SILENCE
            packet = self.output.process_frame(frame)
            if not self.on_hold:
                try:
                    self.sout.sendto(packet, (self.outIP, self.outPort))
                    self.packets_sent += 1
                except OSError:
                    pass
            next_send += 0.020
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:
                next_send = time.monotonic()  # fell far behind: do not burst to catch up

    def retarget(self, remote: RemoteMedia) -> None:
        self.outIP, self.outPort, self.on_hold = remote.address, remote.port, remote.on_hold

    def send_frame(self, frame: bytes, timeout: float) -> bool:
        try:
            self.outgoing.put(frame, timeout=timeout)
            return True
        except queue.Full:
            return False

    def flush(self) -> None:
        while True:
            try:
                self.outgoing.get_nowait()
            except queue.Empty:
                return

    @property
    def local_address(self) -> Address:
        return self.sin.getsockname()


class PortPool:
    """Even RTP ports of a line's range (RFC 3550 §11: RTP on even ports)."""

    def __init__(self, low: int, high: int):
        self._free = list(range(low + low % 2, high + 1, 2))
        random.shuffle(self._free)
        self._lock = threading.Lock()
        self.range = (low, high)

    def acquire(self) -> int:
        with self._lock:
            if not self._free:
                raise SipError(f"no free RTP port left in {self.range[0]}-{self.range[1]}")
            return self._free.pop()

    def release(self, port: int) -> None:
        with self._lock:
            self._free.insert(0, port)


# ---------------------------------------------------------------- calls (dialogs, RFC 3261 §12-15)

class CallState(StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(frozen=True)
class RefusedCall:
    """An INVITE answered with an error before it became a call (busy, codec, not allowed)."""

    call_id: str
    caller: str
    called: str
    code: int
    reason: str


class CallListener(Protocol):
    """What a call reports, from the SIP and RTP threads; implementations must only queue."""

    def on_frame(self, pcm: bytes) -> None: ...
    def on_digit(self, key: str) -> None: ...
    def on_ended(self, reason: str) -> None: ...


class SipCall:
    """The signalling and RTP stream of one call."""

    def __init__(self, agent: UserAgent, call_id: str, direction: str, caller: str, called: str):
        self.agent, self.call_id, self.direction = agent, call_id, direction
        self.caller, self.called = caller, called
        self.state = CallState.DIALING if direction == "outbound" else CallState.RINGING
        self.end_reason = ""
        self.listener: CallListener | None = None
        self.lock = threading.RLock()
        self.local_tag = new_tag()
        self.local_party = self.remote_party = ""  # From/To values as used in our requests, with tags
        self.remote_target = ""
        self.route_set: list[str] = []
        self.local_cseq = 100
        self.invite: SipMessage | None = None  # inbound: the INVITE we answer
        self.invite_source: Address | None = None
        self.remote_media: RemoteMedia | None = None
        self.codec: Codec | None = None
        self.stream: RtpStream | None = None
        self.session_id = random.randint(1, 2**31)
        self.sdp_version = 1
        self.acked = threading.Event()
        self._last_response = b""
        self._ok_sent_at = 0.0

    def __repr__(self) -> str:
        return f"<SipCall {self.call_id} {self.direction} {self.caller}->{self.called} {self.state}>"

    # ---- inbound

    @classmethod
    def inbound(cls, agent: UserAgent, invite: SipMessage, source: Address, media: RemoteMedia,
                codec: Codec) -> SipCall:
        call = cls(agent, invite.call_id, "inbound", user_of(uri_of(invite.value("From"))) or "anonymous",
                   user_of(invite.uri) or user_of(uri_of(invite.value("To"))))
        call.invite, call.invite_source, call.remote_media, call.codec = invite, source, media, codec
        call.local_party = f"{invite.value('To')};tag={call.local_tag}"
        call.remote_party = invite.value("From")
        call.remote_target = uri_of(invite.value("Contact")) or uri_of(invite.value("From"))
        call.route_set = invite.values("Record-Route")  # RFC 3261 §12.1.1: in order for the UAS
        return call

    def ring(self) -> None:
        self._respond(180, headers=[f"Contact: {self.agent.contact}"])

    def answer(self) -> None:
        with self.lock:
            if self.state != CallState.RINGING:
                raise CallEnded(f"call {self.call_id}: cannot answer, {self.end_reason or self.state}")
            self._open_stream()
            body = self._session_description()
            # RFC 3261 §12.1.1: the 2xx copies Record-Route and carries our Contact
            headers = [f"Record-Route: {route}" for route in self.route_set]
            headers += [f"Contact: {self.agent.contact}", f"Allow: {ALLOW}"]
            self._respond(200, headers=headers, body=body)
            self.state = CallState.ANSWERED
            self._ok_sent_at = time.monotonic()
        log.info("call %s: answered (%s, RTP %s:%d <-> %s:%d)", self.call_id, self.codec.name,
                 *self.stream.local_address, self.remote_media.address, self.remote_media.port)
        self.agent.timers.call_later(T1, lambda: self._retransmit_ok(T1))

    def _retransmit_ok(self, interval: float) -> None:
        """RFC 3261 §13.3.1.4: the 2xx is retransmitted until the ACK comes, at most 64*T1."""
        if self.acked.is_set() or self.state != CallState.ANSWERED:
            return
        if time.monotonic() - self._ok_sent_at >= TRANSACTION_TIMEOUT:
            log.warning("call %s: no ACK for our 200 OK within %g s; hanging up", self.call_id, TRANSACTION_TIMEOUT)
            self.hangup()
            return
        self.agent.send(self._last_response, self.invite_source)
        self.agent.timers.call_later(min(interval * 2, T2), lambda: self._retransmit_ok(min(interval * 2, T2)))

    def reject(self, code: int = 486) -> None:
        with self.lock:
            if self.state != CallState.RINGING:
                return
            self._respond(code)
            self._end(f"rejected with {code} {reason_phrase(code)}")

    def _respond(self, code: int, headers: Sequence[str] = (), body: str = "") -> None:
        self._last_response = build_response(self.invite, code, to_tag=self.local_tag, headers=headers, body=body)
        self.agent.send(self._last_response, self.invite_source)

    def retransmit_last_response(self) -> None:
        if self._last_response:
            self.agent.send(self._last_response, self.invite_source)

    # ---- requests from the other side (receive thread)

    def on_cancel(self, cancel: SipMessage, source: Address) -> None:
        # Defect cancel: pyVoIP replies 200 to the CANCEL but answers the call anyway ~1 s later.
        # RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE, and the call is over.
        with self.lock:
            self.agent.send(build_response(cancel, 200, to_tag=self.local_tag), source)
            if self.state == CallState.RINGING:
                self._respond(487)
                self._end("cancelled by the caller before answer")

    def on_ack(self, ack: SipMessage) -> None:
        self.acked.set()

    def on_bye(self, bye: SipMessage, source: Address) -> None:
        with self.lock:
            self.agent.send(build_response(bye, 200), source)
            if self.state != CallState.ENDED:
                self._end("hung up by the other side")

    def on_reinvite(self, invite: SipMessage, source: Address) -> None:
        # Defect re-invite: VoIPCall.renegotiate runs gen_ms(), which starts the RTP clients again: a
        # second sender, audio doubled. We keep the one stream and point it where the new SDP says.
        with self.lock:
            if self.state != CallState.ANSWERED:
                code = 491 if self.state in (CallState.RINGING, CallState.DIALING) else 481
                self.agent.send(build_response(invite, code), source)
                return
            try:
                media = RemoteMedia.from_message(invite) if invite.content else self.remote_media
            except SipError as error:
                log.warning("call %s: re-INVITE refused: %s", self.call_id, error)
                self.agent.send(build_response(invite, 488), source)
                return
            self.remote_media = media
            self.stream.retarget(media)
            if invite.value("Contact"):
                self.remote_target = uri_of(invite.value("Contact"))  # RFC 3261 §12.2.2 target refresh
            self.sdp_version += 1
            headers = [f"Contact: {self.agent.contact}", f"Allow: {ALLOW}"]
            self.agent.send(build_response(invite, 200, headers=headers, body=self._session_description()), source)
        log.info("call %s: re-INVITE: RTP now to %s:%d%s", self.call_id, media.address, media.port,
                 " (on hold)" if media.on_hold else "")

    def on_info(self, info: SipMessage, source: Address) -> None:
        """SIP INFO DTMF (application/dtmf-relay, "Signal=5"), which some PBXs send instead of RFC 4733."""
        self.agent.send(build_response(info, 200), source)
        match = re.search(rb"Signal\s*=\s*([0-9*#A-Da-d])", info.content)
        if match and self.listener and info.value("Content-Type").lower() == "application/dtmf-relay":
            self.listener.on_digit(match.group(1).decode().upper())

    # ---- our requests within the dialog

    def hangup(self) -> None:
        with self.lock:
            if self.state == CallState.RINGING:
                self.reject(480)
                return
            if self.state != CallState.ANSWERED:
                return
            data, destination, branch = self._in_dialog_request("BYE")
            self.agent.endpoint.request("BYE", branch, data, destination)
            log.info("call %s: BYE sent to %s:%d%s", self.call_id, *destination,
                     f" (Route: {', '.join(self.route_set)})" if self.route_set else "")
            self._end("hung up by us")

    def _in_dialog_request(self, method: str, cseq: int | None = None) -> tuple[bytes, Address, str]:
        """A request inside the dialog (RFC 3261 §12.2.1.1): Request-URI and Route from the route set.

        Defect bye-route-set (pyVoIP #7): gen_bye has no Route headers and bye() sends to the
        registrar, so behind a record-routing proxy the BYE skips the proxy's dialog state."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        request_uri, routes = self.remote_target, list(self.route_set)
        if routes and not re.search(r";\s*lr\b", uri_of(routes[0])):  # a strict router (RFC 2543)
            request_uri, routes = uri_of(routes[0]), routes[1:] + [f"<{self.remote_target}>"]
        destination = uri_address(uri_of(self.route_set[0]) if self.route_set else self.remote_target)
        branch = new_branch()
        lines = [f"{method} {request_uri} SIP/2.0", self.agent.via(branch), "Max-Forwards: 70",
                 *[f"Route: {route}" for route in routes],
                 f"From: {self.local_party}", f"To: {self.remote_party}", f"Call-ID: {self.call_id}",
                 f"CSeq: {cseq} {method}", f"User-Agent: {USER_AGENT}", "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode(), destination, branch

    # ---- media and ending

    def _open_stream(self) -> None:
        for _ in range(10):
            port = self.agent.ports.acquire()
            stream = RtpStream(self.call_id, (self.agent.address[0], port), self.remote_media, self.codec,
                               self._frame, self._digit)
            try:
                stream.start()
            except OSError as error:
                log.warning("call %s: RTP port %d unusable (%s); trying another", self.call_id, port, error)
                continue  # the port stays out of the pool: something else holds it
            self.stream = stream
            return
        raise SipError(f"call {self.call_id}: no usable RTP port in {self.agent.ports.range}")

    def _frame(self, pcm: bytes) -> None:
        if self.listener:
            self.listener.on_frame(pcm)

    def _digit(self, key: str) -> None:
        log.info("call %s: DTMF %s", self.call_id, key)
        if self.listener:
            self.listener.on_digit(key)

    def _session_description(self) -> str:
        return session_description(self.agent.address[0], self.stream.inPort, self.session_id, self.sdp_version,
                                   [self.codec], self.remote_media.event_payload_type)

    def _end(self, reason: str) -> None:
        if self.state == CallState.ENDED:
            return
        self.state, self.end_reason = CallState.ENDED, reason
        if self.stream:
            self.stream.stop()
            self.agent.ports.release(self.stream.inPort)
        self.agent.forget(self)
        log.info("call %s: ended: %s", self.call_id, reason)
        if self.listener:
            self.listener.on_ended(reason)


# ---------------------------------------------------------------- registration (RFC 3261 §10)

class Registration:
    """Keeps the line's address-of-record registered.

    Defect wrong-password: VoIPPhone.start() returns before the REGISTER outcome; with a wrong
    password the line silently never registers. ``start()`` here waits and raises RegistrationError
    naming the registrar, the user and the response.
    Defect re-register: pyVoIP refreshes at a fixed 115 s and stops the phone for good after three
    failures (a PBX restart kills the line until our process restarts). Here: refresh at half the
    granted expiry; on failure retry every ``retry_interval`` for as long as it takes; and an
    OPTIONS keep-alive to the registrar that re-registers at once when the registrar answers again
    after a silence (it restarted and may have lost its location table)."""

    def __init__(self, agent: UserAgent, server: Address, server_host: str, user: str, password: str | None,
                 expires: int, keepalive_interval: float, retry_interval: float):
        self.agent, self.server, self.user, self.password = agent, server, user, password
        self.expires, self.keepalive_interval, self.retry_interval = expires, keepalive_interval, retry_interval
        self.registrar_uri = f"sip:{server_host}" + (f":{server[1]}" if server[1] != 5060 else "")
        self.aor = f"sip:{user}@{server_host}"
        self.call_id, self.tag, self.cseq = new_call_id(agent.address[0]), new_tag(), 0
        self.registered = threading.Event()
        self.reachable = True
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"registrar {self.server[0]}:{self.server[1]}"

    def start(self, timeout: float) -> None:
        granted = self.register(timeout)
        self._thread = threading.Thread(target=self._run, args=(granted,), name=f"sip-register {self.agent.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(5)
        if self.registered.is_set():
            try:
                self.register(timeout=1.0, expires=0)
            except RegistrationError as error:
                log.info("line %s: unregister failed: %s", self.agent.name, error)
            self.registered.clear()

    def register(self, timeout: float = 5.0, expires: int | None = None) -> int:
        """One REGISTER exchange, digest challenges included; the expiry the registrar granted."""
        expires = self.expires if expires is None else expires
        authorization = ""
        for _ in range(4):
            self.cseq += 1
            branch = new_branch()
            lines = [f"REGISTER {self.registrar_uri} SIP/2.0", self.agent.via(branch), "Max-Forwards: 70",
                     f"From: <{self.aor}>;tag={self.tag}", f"To: <{self.aor}>", f"Call-ID: {self.call_id}",
                     f"CSeq: {self.cseq} REGISTER", f"Contact: {self.agent.contact}", f"Expires: {expires}",
                     f"Allow: {ALLOW}", f"User-Agent: {USER_AGENT}"]
            if authorization:
                lines.append(authorization)
            data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
            response = self.agent.endpoint.request("REGISTER", branch, data, self.server).wait(timeout)
            if response is None:
                raise RegistrationError(f"line {self.agent.name}: no reply from {self.where} to REGISTER "
                                        f"for {self.user} within {timeout:g} s")
            code = response.status_code
            if 200 <= code < 300:
                granted = self._granted_expiry(response, expires)
                if expires:
                    self.registered.set()
                return granted
            if code in (401, 407):
                if not self.password:
                    raise RegistrationError(f"line {self.agent.name}: {self.where} asks for a password for "
                                            f"{self.user} ({code}) and none is configured")
                if authorization and not is_stale(response):
                    self.registered.clear()
                    raise RegistrationError(f"line {self.agent.name}: {self.where} rejected the password for "
                                            f"{self.user} ({code} {response.reason})")
                authorization = answer_challenge(response, "REGISTER", self.registrar_uri, self.user, self.password)
                continue
            if code == 423 and response.value("Min-Expires").isdigit():  # Interval Too Brief
                expires = int(response.value("Min-Expires"))
                continue
            self.registered.clear()
            raise RegistrationError(f"line {self.agent.name}: {self.where} refused REGISTER for {self.user}: "
                                    f"{code} {response.reason}")
        raise RegistrationError(f"line {self.agent.name}: {self.where} keeps challenging REGISTER for {self.user}")

    def _granted_expiry(self, response: SipMessage, requested: int) -> int:
        ours = uri_of(self.agent.contact)
        for contact in response.values("Contact"):
            match = re.search(r";\s*expires=(\d+)", contact.rsplit(">", 1)[-1])
            if uri_of(contact) == ours and match:
                return int(match.group(1))
        header = response.value("Expires")
        return int(header) if header.isdigit() else requested

    def ping(self, timeout: float) -> bool:
        """OPTIONS to the registrar: does it answer at all (any response counts)?"""
        branch = new_branch()
        lines = [f"OPTIONS {self.registrar_uri} SIP/2.0", self.agent.via(branch), "Max-Forwards: 70",
                 f"From: <{self.aor}>;tag={new_tag()}", f"To: <{self.registrar_uri}>",
                 f"Call-ID: {new_call_id(self.agent.address[0])}", "CSeq: 1 OPTIONS", f"User-Agent: {USER_AGENT}"]
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        return self.agent.endpoint.request("OPTIONS", branch, data, self.server).wait(timeout) is not None

    def _run(self, granted: int) -> None:
        next_refresh = time.monotonic() + self._refresh_delay(granted)
        while True:
            wait = max(0.0, next_refresh - time.monotonic())
            if self.keepalive_interval:
                wait = min(wait, self.keepalive_interval)
            if self._stopping.wait(wait):
                return
            if time.monotonic() >= next_refresh:
                next_refresh = self._refresh()
            elif self.keepalive_interval:
                alive = self.ping(min(2.0, self.keepalive_interval * 2))
                if not alive and self.reachable:
                    log.warning("line %s: %s stopped answering; re-registering once it is back",
                                self.agent.name, self.where)
                elif alive and not self.reachable:
                    log.info("line %s: %s answers again (restarted?); re-registering now", self.agent.name, self.where)
                    next_refresh = time.monotonic()
                self.reachable = alive

    def _refresh(self) -> float:
        try:
            granted = self.register()
        except RegistrationError as error:
            self.registered.clear()
            log.error("%s; retrying in %g s", error, self.retry_interval)
            return time.monotonic() + self.retry_interval
        log.info("line %s: registered %s at %s (expires %d s)", self.agent.name, self.aor, self.where, granted)
        return time.monotonic() + self._refresh_delay(granted)

    @staticmethod
    def _refresh_delay(granted: int) -> float:
        return max(1.0, granted / 2)


def _final_response(invite: ClientTransaction, deadline: float, cancel: threading.Event | None) -> SipMessage | None:
    """The INVITE's final response, or None at ``deadline`` or within 0.1 s of ``cancel`` being set."""
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        wait = remaining if cancel is None else min(remaining, 0.1)
        response = invite.wait(wait, abandon=False)
        if response is not None or wait >= remaining or cancel.is_set():
            return response


def _from_invite(invite_data: bytes, method: str, also_keep: Sequence[str], headers: Sequence[str]) -> bytes:
    """A CANCEL or non-2xx ACK made from our INVITE: its Request-URI, Via (so its branch), From,
    Call-ID, Route and Max-Forwards, plus ``also_keep`` and ``headers`` (RFC 3261 §9.1, §17.1.1.3)."""
    head = invite_data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = ("Via", "From", "Call-ID", "Route", "Max-Forwards", *also_keep)
    lines = [f"{method} {head[0].split(' ')[1]} SIP/2.0",
             *[line for line in head[1:] if line.split(":", 1)[0] in keep], *headers, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------- one line's user agent

class UserAgent:
    """A line's SIP side: endpoint, registration (register mode), inbound calls, outbound dialling.

    Defect trunk-mode: VoIPPhone always REGISTERs and sends every reply to the registrar. Here a
    trunk line never registers, takes out-of-dialog requests only from the allow-list, and every
    response goes back to where its request came from (RFC 3581 symmetric response), in both modes."""

    def __init__(self, name: str, address: Address, *, user: str, mode: str = "register",
                 server: Address | None = None, server_host: str = "", password: str | None = None,
                 allow: Iterable[tuple[str, int | None]] = (), max_calls: int = 10,
                 rtp_ports: tuple[int, int] = (20000, 20999), codecs: Sequence[Codec] = (),
                 register_expires: int = 300, keepalive_interval: float = 30.0, retry_interval: float = 10.0,
                 on_incoming: Callable[[SipCall], None] = lambda call: call.reject(480),
                 on_refused: Callable[[RefusedCall], None] = lambda refused: None):
        self.name, self.address, self.user, self.mode = name, address, user, mode
        self.server, self.server_host = server, server_host or (server[0] if server else "")
        self.password = password
        self.allow = list(allow)
        self.max_calls, self.codecs = max_calls, list(codecs) or list(CODECS_BY_PAYLOAD_TYPE.values())
        self.ports = PortPool(*rtp_ports)
        self.on_incoming = on_incoming
        self.on_refused = on_refused  # receive thread: must only queue
        self.endpoint = SipEndpoint(name, address, self._on_request)
        self.registration = (Registration(self, server, self.server_host, user, password, register_expires,
                                          keepalive_interval, retry_interval) if mode == "register" else None)
        self.contact = f"<sip:{user}@{address[0]}:{address[1]}>"
        self._calls: dict[str, SipCall] = {}
        self._ended: dict[str, SipCall] = {}  # kept 32 s to absorb retransmitted INVITE/BYE/ACK
        self._refused: set[str] = set()  # Call-IDs refused in the last 32 s: one report per call
        self._lock = threading.Lock()

    @property
    def timers(self) -> Timers:
        return self.endpoint.timers

    @property
    def calls(self) -> list[SipCall]:
        return list(self._calls.values())

    def start(self, timeout: float = 5.0) -> None:
        # host names (a PBX by name) are looked up once here; IP literals need no DNS at all
        self.allow = [(resolve((ip, 0))[0], port) for ip, port in self.allow]
        if self.server:
            self.server = resolve(self.server)
            if self.registration:
                self.registration.server = self.server
        self.endpoint.start()
        if self.registration:
            try:
                self.registration.start(timeout)
            except Exception:
                self.endpoint.stop()
                raise
            log.info("line %s: registered %s at %s", self.name, self.registration.aor, self.registration.where)
        else:
            log.info("line %s: trunk on %s:%d, accepting INVITEs from %s", self.name, *self.address,
                     ", ".join(f"{ip}:{port or '*'}" for ip, port in self.allow))

    def stop(self) -> None:
        for call in self.calls:
            call.hangup()
        if self.registration:
            self.registration.stop()
        self.endpoint.stop()

    def send(self, data: bytes, destination: Address) -> None:
        self.endpoint.send(data, destination)

    def via(self, branch: str) -> str:
        return f"Via: SIP/2.0/UDP {self.address[0]}:{self.address[1]};branch={branch};rport"

    def forget(self, call: SipCall) -> None:
        with self._lock:
            if self._calls.pop(call.call_id, None) is call:
                self._ended[call.call_id] = call
        self.timers.call_later(TRANSACTION_TIMEOUT, lambda: self._ended.pop(call.call_id, None))

    def _allowed(self, source: Address) -> bool:
        return any(ip == source[0] and port in (None, source[1]) for ip, port in self.allow)

    # ---- requests arriving (receive thread: quick, never blocks)

    def _on_request(self, request: SipMessage, source: Address) -> None:
        method = request.method
        call = self._calls.get(request.call_id) or self._ended.get(request.call_id)
        if method == "ACK":
            if call:
                call.on_ack(request)
        elif method == "CANCEL":
            # RFC 3261 §9.2: a CANCEL matches the INVITE with the same branch
            if call is None or call.invite is None or request.branch != call.invite.branch:
                self.send(build_response(request, 481), source)
            else:
                call.on_cancel(request, source)
        elif method in ("BYE", "INFO"):
            if call is None:
                self.send(build_response(request, 481), source)
            else:
                (call.on_bye if method == "BYE" else call.on_info)(request, source)
        elif method == "INVITE" and call is not None:
            if call.invite is not None and request.branch == call.invite.branch:
                call.retransmit_last_response()
            elif request.to_tag:
                call.on_reinvite(request, source)
            else:
                self.send(build_response(request, 482), source)  # Loop Detected: same Call-ID, new INVITE
        elif method == "INVITE" and request.to_tag:
            self.send(build_response(request, 481), source)
        elif method == "OPTIONS" and call is not None:  # an in-dialog keep-alive from the other phone
            self.send(build_response(request, 200, headers=[f"Allow: {ALLOW}"]), source)
        elif not self._allowed(source):
            why = f"{method} from {source[0]}:{source[1]}, not in the allow-list of line {self.name}"
            if method == "INVITE":
                self._refuse(request, source, 403, why)
            else:
                log.warning("call %s: %s refused (403)", request.call_id, why)
                self.send(build_response(request, 403, to_tag=new_tag()), source)
        elif method == "INVITE":
            self._incoming(request, source)
        elif method == "OPTIONS":
            # Defect options: pyVoIP never answers OPTIONS, so PBX health checks mark the line dead.
            self.send(build_response(request, 200, to_tag=new_tag(),
                                     headers=[f"Allow: {ALLOW}", "Accept: application/sdp"]), source)
        else:
            self.send(build_response(request, 405, headers=[f"Allow: {ALLOW}"]), source)

    def _incoming(self, invite: SipMessage, source: Address) -> None:
        caller = user_of(uri_of(invite.value("From"))) or "anonymous"
        with self._lock:
            # Defect max-calls: pyVoIP accepts every INVITE (3 threads and an RTP port each) until the
            # box falls over. Beyond max_calls we answer 486 Busy Here (RFC 3261 §21.4.24).
            if len(self._calls) >= self.max_calls:
                self._refuse(invite, source, 486, f"INVITE from {caller}: line {self.name} has "
                                                  f"{len(self._calls)} of {self.max_calls} calls")
                return
            try:
                media = RemoteMedia.from_message(invite)
                codec = media.choose_codec(self.codecs)
                if codec is None:
                    raise SipError(f"no common codec in {media.payload_types} (we take "
                                   f"{', '.join(c.name for c in self.codecs)})")
            except SipError as error:
                self._refuse(invite, source, 488, f"INVITE from {caller}: {error}")
                return
            call = SipCall.inbound(self, invite, source, media, codec)
            self._calls[call.call_id] = call
        call.ring()
        log.info("call %s: INVITE from %s to %s via %s:%d on line %s (%s offered)", call.call_id, call.caller,
                 call.called, *source, self.name, codec.name)
        # Defect answer-sleep: VoIPPhone starts the call callback through Timer(1, ...), so every
        # 200 OK came ~1 s late. on_incoming runs now (lines.py gives the flow its own thread).
        self.on_incoming(call)

    def _refuse(self, invite: SipMessage, source: Address, code: int, why: str) -> None:
        """Answer an INVITE with a final error before any call exists; report each refused call once
        (a retransmitted INVITE gets the answer again, not a second report)."""
        log.warning("call %s: refused (%d): %s", invite.call_id, code, why)
        self.send(build_response(invite, code, to_tag=new_tag()), source)
        if invite.call_id in self._refused:
            return
        self._refused.add(invite.call_id)
        self.timers.call_later(TRANSACTION_TIMEOUT, lambda: self._refused.discard(invite.call_id))
        self.on_refused(RefusedCall(invite.call_id, user_of(uri_of(invite.value("From"))) or "anonymous",
                                    user_of(uri_of(invite.value("To"))), code, why))

    # ---- outbound

    def dial(self, target: str, timeout: float, make_listener: Callable[[SipCall], CallListener],
             cancel: threading.Event | None = None) -> SipCall:
        """INVITE ``target`` and return the call once answered. DialError with the SIP code otherwise:
        the callee's refusal, 408 after ``timeout`` s of ringing, 487 once ``cancel`` is set (whoever
        dials gave up: a stopped call-out, a service shutting down)."""
        if self.endpoint.timers is None:
            raise DialError(f"line {self.name}: start() the line before dialling")
        uri, destination = self._target(target)
        with self._lock:
            if len(self._calls) >= self.max_calls:
                raise DialError(f"line {self.name}: {len(self._calls)} calls active (max_calls={self.max_calls}); "
                                f"not dialing {target}", 486)
            call = SipCall(self, new_call_id(self.address[0]), "outbound", self.user, user_of(uri) or target)
            self._calls[call.call_id] = call
        call.listener = make_listener(call)
        from_host = self.server_host or self.address[0]
        call.local_party = f"<sip:{self.user}@{from_host}>;tag={call.local_tag}"
        call.remote_party = f"<{uri}>"
        try:
            return self._invite(call, uri, destination, timeout, cancel)
        except BaseException as error:
            with call.lock:
                call._end(f"dial failed: {error}")
            raise

    def _target(self, target: str) -> tuple[str, Address]:
        if target.startswith(("sip:", "sips:")) or "@" in target:
            uri = target if target.startswith(("sip:", "sips:")) else f"sip:{target}"
        elif self.server:
            port = f":{self.server[1]}" if self.server[1] != 5060 else ""
            uri = f"sip:{target}@{self.server_host}{port}"
        else:
            raise DialError(f"line {self.name}: a trunk without a server can only dial full sip: URIs, not {target!r}")
        return uri, self.server or uri_address(uri)

    def _invite(self, call: SipCall, uri: str, destination: Address, timeout: float,
                cancel: threading.Event | None = None) -> SipCall:
        deadline = time.monotonic() + timeout
        port = self.ports.acquire()
        offer = session_description(self.address[0], port, call.session_id, call.sdp_version, self.codecs)
        authorization = ""
        try:
            for _ in range(3):
                call.local_cseq += 1
                branch = new_branch()
                lines = [f"INVITE {uri} SIP/2.0", self.via(branch), "Max-Forwards: 70", f"From: {call.local_party}",
                         f"To: {call.remote_party}", f"Call-ID: {call.call_id}", f"CSeq: {call.local_cseq} INVITE",
                         f"Contact: {self.contact}", f"Allow: {ALLOW}", f"User-Agent: {USER_AGENT}"]
                if authorization:
                    lines.append(authorization)
                lines += ["Content-Type: application/sdp", f"Content-Length: {len(offer)}"]
                data = ("\r\n".join(lines) + "\r\n\r\n" + offer).encode()
                log.info("call %s: INVITE %s via %s:%d", call.call_id, uri, *destination)
                transaction = self.endpoint.request("INVITE", branch, data, destination)
                response = _final_response(transaction, deadline, cancel)
                if response is None:
                    response = self._cancel(call, transaction, data)
                    if response is None or response.status_code >= 300:
                        if cancel is not None and cancel.is_set():
                            raise DialError(f"call {call.call_id}: dialling {uri} called off", 487)
                        raise DialError(f"call {call.call_id}: no answer from {uri} within {timeout:g} s", 408)
                code = response.status_code
                if code < 300:
                    return self._established(call, transaction, response, port)
                transaction.acknowledge(self._ack_for_failure(data, response), destination)
                # Defect 407: pyVoIP's invite() handles only 401; on 407 it loops in recv() holding the
                # receive lock and call() never returns. Both challenges are answered once here.
                if code in (401, 407) and self.password and not authorization:
                    authorization = answer_challenge(response, "INVITE", uri, self.user, self.password)
                    log.info("call %s: %d %s; INVITE again with credentials", call.call_id, code, response.reason)
                    continue
                raise DialError(f"call {call.call_id}: {uri} answered {code} {response.reason}", code)
            raise DialError(f"call {call.call_id}: {uri} keeps challenging the INVITE", 407)
        except BaseException:
            if call.stream is None:
                self.ports.release(port)
            raise

    def _cancel(self, call: SipCall, invite: ClientTransaction, invite_data: bytes) -> SipMessage | None:
        """Ring timeout: CANCEL (RFC 3261 §9.1) once the callee has sent a provisional response, then
        wait for the INVITE's final response (487, or a 200 that raced the CANCEL)."""
        if invite.provisional is None:
            invite.abandon()
            return None
        cancel = _from_invite(invite_data, "CANCEL", ["To"], [f"CSeq: {call.local_cseq} CANCEL"])
        self.endpoint.request("CANCEL", invite.branch, cancel, invite.destination)
        log.info("call %s: no answer in time; CANCEL sent", call.call_id)
        response = invite.wait(TRANSACTION_TIMEOUT / 8)
        if response is not None and response.status_code >= 300:
            invite.acknowledge(self._ack_for_failure(invite_data, response), invite.destination)
        return response

    @staticmethod
    def _ack_for_failure(invite_data: bytes, response: SipMessage) -> bytes:
        """ACK for a non-2xx final response: same branch and Request-URI as the INVITE, To from the
        response (RFC 3261 §17.1.1.3)."""
        return _from_invite(invite_data, "ACK", [], [f"To: {response.value('To')}", f"CSeq: {response.cseq[0]} ACK"])

    def _established(self, call: SipCall, invite: ClientTransaction, response: SipMessage, port: int) -> SipCall:
        with call.lock:
            # Defect ack-to-tag (pyVoIP #272): gen_ack puts a fresh random tag in the ACK's To header,
            # so the callee never sees its 200 acknowledged and hangs up after ~32 s. The dialog takes
            # the 200's own To (with its tag), Contact and reversed Record-Route (RFC 3261 §12.1.2),
            # and the ACK is built from them (§13.2.2.4).
            call.remote_party = response.value("To")
            call.remote_target = uri_of(response.value("Contact")) or uri_of(call.remote_party)
            call.route_set = list(reversed(response.values("Record-Route")))
            ack, destination, _ = call._in_dialog_request("ACK", cseq=response.cseq[0])
            invite.acknowledge(ack, destination)
            try:
                call.remote_media = RemoteMedia.from_message(response)
                call.codec = call.remote_media.choose_codec(self.codecs)
                if call.codec is None:
                    raise SipError(f"the answer has no codec we offered ({call.remote_media.payload_types})")
                stream = RtpStream(call.call_id, (self.address[0], port), call.remote_media, call.codec,
                                   call._frame, call._digit)
                stream.start()
            except (SipError, OSError) as error:
                call.state = CallState.ANSWERED
                call.hangup()
                raise DialError(f"call {call.call_id}: answered but unusable: {error}") from None
            call.stream, call.state = stream, CallState.ANSWERED
            call.acked.set()
        log.info("call %s: %s answered (%s, RTP %s:%d <-> %s:%d)", call.call_id, call.called, call.codec.name,
                 *stream.local_address, call.remote_media.address, call.remote_media.port)
        return call
