"""What a line turns away, counted rather than logged: the network is hostile, and a scanner's
ten thousand INVITEs must cost neither ten thousand log lines nor ten thousand rows.

Every dropped datagram (SIP or RTP) is counted by reason; one summary line per minute at most
says how many and from where (a few sample sources). ``may_answer`` is the budget for the few
403s the line still sends to senders it does not know (so a misconfigured PBX learns why), and
``error`` logs an unexpected exception in a handler at most once a minute, with its traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

log = logging.getLogger("callcenter.sip")

SUMMARY_SECONDS = 60.0
SAMPLE_SOURCES = 5

# What each reason means, for the summary line and for whoever exports the counters.
REASONS = {
    "not_allowed": "requests from addresses outside the allow-list and no call of ours",
    "oversized": "datagrams larger than the cap",
    "too_many_headers": "messages with more header fields than the cap",
    "malformed": "datagrams that are not SIP",
    "unexpected_response": "responses from addresses we sent nothing to",
    "wrong_source": "in-dialog requests from an address that is not the call's peer",
    "rtp_wrong_source": "RTP packets from an address that is not the call's media peer",
    "handler_error": "messages our own code failed on",
}


class Guard:
    def __init__(self, line: str, answers_per_second: float = 2.0, burst: int = 10,
                 clock=time.monotonic):
        self.line = line
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()  # sample of the window's sources (bounded)
        self._rate, self._burst = answers_per_second, burst
        self._tokens, self._refilled = float(burst), clock()
        self._last_error_log = -SUMMARY_SECONDS

    def drop(self, reason: str, source: tuple[str, int] | None = None) -> None:
        """Count one datagram turned away (any thread; never logs)."""
        with self._lock:
            self._counts[reason] += 1
            self._window[reason] += 1
            if source is not None and (source[0] in self._sources or len(self._sources) < SAMPLE_SOURCES):
                self._sources[source[0]] += 1

    def may_answer(self) -> bool:
        """Take one answer from the budget (``answers_per_second``, bursts of ``burst``)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def error(self, what: str) -> None:
        """An exception in our own handling (call from an ``except`` block): counted, and logged with
        its traceback at most once a minute."""
        self.drop("handler_error")
        now = self._clock()
        with self._lock:
            if now - self._last_error_log < SUMMARY_SECONDS:
                return
            self._last_error_log = now
        log.exception("line %s: %s (further failures this minute are only counted)", self.line, what)

    def summarise(self) -> None:
        """The one line per minute (called by the line's timer, and when it stops)."""
        with self._lock:
            window, sources = self._window, self._sources
            self._window, self._sources = Counter(), Counter()
        if not window:
            return
        parts = ", ".join(f"{reason} {count}" for reason, count in window.most_common())
        where = ", ".join(f"{ip} ({count})" for ip, count in sources.most_common())
        log.warning("line %s: turned away %d datagrams in the last minute: %s%s", self.line, sum(window.values()),
                    parts, f"; from {where}{' and others' if len(sources) >= SAMPLE_SOURCES else ''}" if where else "")

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
