"""SIP messages (RFC 3261 §7, §20): parsed in one linear pass, with hard caps, and built.

Cheap rejection comes first: ``start_line`` reads only the first line, which is all the transport
needs to decide whether a datagram deserves more (its size and its sender are checked before
that). ``SipMessage.parse`` then reads the headers in one pass into a dict of lists: compact names
expanded, folded lines joined, empty values kept, repeated headers kept in order. A datagram over
``MAX_DATAGRAM`` bytes or with more than ``MAX_HEADERS`` header fields is refused whole: SIP over
UDP needs a few kilobytes, and nothing an attacker sends may cost more than its length.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.sip.errors import BadMessage
from callcenter.sip.uri import param, tag_of

MAX_DATAGRAM = 8192  # bytes; RFC 3261 §18.1.1 wants anything near the path MTU (1300) on TCP anyway
MAX_HEADERS = 100  # header fields after unfolding; a real INVITE has 10-30
MAX_START_LINE = 1024
USER_AGENT = "callcenter-hotline"
REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 §8.1.1

_METHOD = re.compile(r"[A-Z]{2,20}")  # RFC 3261 §25.1 allows any token; real methods are upper-case words
_CSEQ = re.compile(r"(\d{1,10})\s+([A-Za-z]{2,20})")
_COMPACT = {"i": "call-id", "m": "contact", "f": "from", "t": "to", "v": "via", "l": "content-length",
            "c": "content-type", "k": "supported", "e": "content-encoding", "s": "subject", "o": "event",
            "r": "refer-to", "b": "referred-by", "u": "allow-events", "x": "session-expires", "y": "identity",
            "a": "accept-contact", "j": "reject-contact", "d": "request-disposition"}

# RFC 3261 §21 and the few later codes a PBX sends us.
REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable"}


def reason_phrase(code: int) -> str:
    return REASONS.get(code) or REASONS.get(code // 100 * 100, "Unknown")


@dataclass(frozen=True)
class StartLine:
    """The first line of a datagram: a request (``method``, ``uri``) or a response (``status_code``)."""

    method: str = ""
    uri: str = ""
    status_code: int = 0
    reason: str = ""

    @property
    def is_request(self) -> bool:
        return bool(self.method)


def start_line(data: bytes) -> StartLine:
    """Read only the first line (at most MAX_START_LINE bytes); BadMessage if it is not SIP."""
    end = data.find(b"\n", 0, MAX_START_LINE)
    if end < 0:
        raise BadMessage("malformed", f"no line end in the first {MAX_START_LINE} bytes")
    try:
        text = data[:end].rstrip(b"\r").decode("ascii")
    except UnicodeDecodeError:
        raise BadMessage("malformed", "the start line is not ASCII") from None
    parts = text.split(" ", 2)
    if len(parts) == 3 and parts[2] == "SIP/2.0" and _METHOD.fullmatch(parts[0]) and parts[1]:
        return StartLine(method=parts[0], uri=parts[1])
    if len(parts) >= 2 and parts[0] == "SIP/2.0" and len(parts[1]) == 3 and parts[1].isdigit() \
            and 100 <= int(parts[1]) <= 699:
        return StartLine(status_code=int(parts[1]), reason=parts[2] if len(parts) == 3 else "")
    raise BadMessage("malformed", f"not a SIP start line: {text[:60]!r}")


def split_header_list(value: str) -> list[str]:
    """Comma-separated header values, commas inside <...> or quotes not counted (RFC 3261 §7.3.1)."""
    items, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        elif char == "," and not quoted and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return [item for item in items if item]


def _header_end(data: bytes) -> tuple[int, int]:
    """Where the headers end and the body starts (CRLF CRLF, or bare LF LF from lax peers)."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    raise BadMessage("malformed", "no empty line after the headers (truncated, or not SIP)")


class SipMessage:
    """A parsed request or response. Header names are looked up case-insensitively by full name."""

    def __init__(self, start: StartLine, headers: dict[str, list[str]], content: bytes):
        self.start = start
        self.method, self.uri = start.method, start.uri
        self.status_code, self.reason = start.status_code, start.reason
        self.headers = headers  # lower-case full name -> the values of each header line, in order
        self.content = content

    def __repr__(self) -> str:
        return f"<SipMessage {self.method or self.status_code} {self.call_id}>"

    @classmethod
    def parse(cls, data: bytes, start: StartLine | None = None) -> SipMessage:
        """BadMessage (``oversized``, ``too_many_headers``, ``malformed``) when it cannot be used."""
        if len(data) > MAX_DATAGRAM:
            raise BadMessage("oversized", f"{len(data)} bytes, more than {MAX_DATAGRAM}")
        start = start or start_line(data)
        head_end, body_start = _header_end(data)
        first_end = data.find(b"\n") + 1
        headers: dict[str, list[str]] = {}
        current: list[str] | None = None  # the pieces of the header being read (folded lines join)
        fields: list[tuple[str, list[str]]] = []
        for line in data[first_end:head_end].decode("utf-8", "replace").split("\n"):
            line = line.rstrip("\r")
            if line[:1] in (" ", "\t"):
                if current is not None:
                    current.append(line.strip())
                continue
            if len(fields) >= MAX_HEADERS:
                raise BadMessage("too_many_headers", f"more than {MAX_HEADERS} header fields")
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name or " " in name:
                current = None  # not a header at all: ignored like an unknown one
                fields.append(("", []))
                continue
            current = [value.strip()]
            fields.append((_COMPACT.get(name, name), current))
        for name, pieces in fields:
            if name:
                headers.setdefault(name, []).append(" ".join(piece for piece in pieces if piece))
        message = cls(start, headers, b"")
        message.content = message._checked_body(data[body_start:])
        return message

    def _checked_body(self, body: bytes) -> bytes:
        for name in REQUIRED:
            if not self.value(name):
                raise BadMessage("malformed", f"{self.method or self.status_code} without a {name} header")
        match = _CSEQ.fullmatch(self.value("CSeq"))
        if match is None or (self.method and match.group(2) != self.method):
            raise BadMessage("malformed", f"CSeq {self.value('CSeq')[:40]!r} does not fit {self.method or 'a response'}")
        length = self.value("Content-Length")
        if not length:
            return body
        if not length.isdigit() or int(length) > len(body):
            raise BadMessage("malformed", f"Content-Length {length[:20]!r} but {len(body)} bytes of body")
        return body[: int(length)]

    # ---- headers

    def value(self, name: str) -> str:
        """The first value of a header ('' when absent or empty)."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Route, Record-Route, Contact), header lines and commas both."""
        return [item for value in self.headers.get(name.lower(), ()) for item in split_header_list(value)]

    @property
    def is_request(self) -> bool:
        return self.start.is_request

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
        return param(vias[0].partition(";")[2], "branch") if vias else ""

    @property
    def from_tag(self) -> str:
        return tag_of(self.value("From"))

    @property
    def to_tag(self) -> str:
        return tag_of(self.value("To"))


# ---------------------------------------------------------------- building messages

def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)  # RFC 3261 §8.1.1.7 magic cookie


def new_call_id(host: str) -> str:
    return f"{uuid.uuid4().hex}@{host}"


def encode(start: str, headers: Sequence[str], body: str = "", content_type: str = "application/sdp") -> bytes:
    """A message from its start line, header lines and body; Content-Length (and type) added."""
    lines = [start, *headers]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def build_response(request: SipMessage, code: int, *, to_tag: str = "", headers: Sequence[str] = (),
                   body: str = "", reason: str = "") -> bytes:
    """A response copying Via, From, To, Call-ID and CSeq from the request (RFC 3261 §8.2.6.2),
    adding our To-tag when the request had none."""
    to = request.value("To")
    if to_tag and not tag_of(to) and code > 100:
        to += f";tag={to_tag}"
    lines = [f"Via: {value}" for value in request.headers.get("via", ())]
    lines += [f"From: {request.value('From')}", f"To: {to}", f"Call-ID: {request.call_id}",
              f"CSeq: {request.value('CSeq')}", *headers, f"Server: {USER_AGENT}"]
    return encode(f"SIP/2.0 {code} {reason or reason_phrase(code)}", lines, body)
