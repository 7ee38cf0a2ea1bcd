"""What the SIP package raises. Every message names the line, the peer and the response."""

from __future__ import annotations


class SipError(Exception):
    """A SIP operation that failed; the message says which line, peer and response."""


class RegistrationError(SipError):
    """A REGISTER that failed (no answer, refused, wrong password, unusable challenge)."""


class DialError(SipError):
    """A dial that never became a call. ``code`` is the SIP status when there was one."""

    BUSY_CODES = frozenset({486, 600, 603})  # busy here, busy everywhere, declined
    NO_ANSWER_CODES = frozenset({408, 480, 487})  # rang out, unavailable, called off while ringing

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code

    @property
    def outcome(self) -> str:
        """How a dial that never became a call counts (call records, call-outs, follow-ups): "busy",
        "no_answer", or "failed" for anything else (no line, no free line, DNS, a network refusal)."""
        if self.code in self.BUSY_CODES:
            return "busy"
        return "no_answer" if self.code in self.NO_ANSWER_CODES else "failed"


class CallEnded(SipError):
    """The call is over (cancelled, hung up, rejected) and cannot do what was asked."""


class BadMessage(ValueError):
    """A datagram that is not a usable SIP message. ``kind`` is what the line counts it as
    (``oversized``, ``too_many_headers``, ``malformed``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
