"""Timers and client transactions (RFC 3261 §17.1): a request retransmitted over UDP until its
final response, and that response handed to whoever waits for it."""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from callcenter.sip.message import SipMessage

log = logging.getLogger("callcenter.sip")

T1, T2 = 0.5, 4.0  # RFC 3261 §17.1.1.1 timer values
TRANSACTION_TIMEOUT = 64 * T1  # timers B, F, H


class Scheduled:
    __slots__ = ("action", "cancelled", "context")

    def __init__(self, action: Callable[[], object]):  # any result is dropped
        self.action, self.cancelled = action, False
        # Run in the context it was scheduled from: a call's timers log with its call_id (core.log_context).
        self.context = contextvars.copy_context()

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One thread running a line's delayed actions (retransmissions, clean-ups); each must be quick."""

    def __init__(self, name: str):
        self._heap: list[tuple[float, int, Scheduled]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"sip-timers {name}", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, action: Callable[[], object]) -> Scheduled:
        entry = Scheduled(action)
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), entry))
            self._wake.notify()
        return entry

    def every(self, interval: float, action: Callable[[], None]) -> None:
        """Run ``action`` every ``interval`` seconds until the timers stop."""
        def again() -> None:
            try:
                action()
            finally:
                self.call_later(interval, again)
        self.call_later(interval, again)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._thread is not threading.current_thread():
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
                    entry.context.run(entry.action)
                except Exception:
                    log.exception("timer action failed")


class Sender(Protocol):
    """What a transaction needs of the line it runs on (``transport.SipEndpoint``): sending a
    datagram, the line's timers, and forgetting the transaction once it is over."""

    timers: Timers | None

    def send(self, data: bytes, destination: tuple[str, int]) -> None: ...

    def forget(self, transaction: ClientTransaction) -> None: ...


class ClientTransaction:
    """One request until its final response, retransmitted with timer A (INVITE, until a provisional
    response) or timer E (others, capped at T2), for at most 64*T1."""

    def __init__(self, endpoint: Sender, method: str, branch: str, data: bytes, destination: tuple[str, int],
                 on_provisional: Callable[[SipMessage], None] | None = None):
        self.endpoint, self.method, self.branch = endpoint, method, branch
        self.data, self.destination, self.on_provisional = data, destination, on_provisional
        self.provisional: SipMessage | None = None
        self.final: SipMessage | None = None
        self._ack: tuple[bytes, tuple[str, int]] | None = None
        self._done = threading.Event()
        self._interval = T1
        self._started = time.monotonic()
        self._timer: Scheduled | None = None

    def start(self) -> None:
        self.endpoint.send(self.data, self.destination)
        self._timer = self._timers().call_later(self._interval, self._retransmit)

    def _timers(self) -> Timers:
        timers = self.endpoint.timers
        if timers is None:
            raise RuntimeError(f"{self.method} transaction {self.branch}: the line is not started (no timers)")
        return timers

    def _retransmit(self) -> None:
        if self.final or (self.method == "INVITE" and self.provisional) or self.abandoned:
            return
        if time.monotonic() - self._started >= TRANSACTION_TIMEOUT:
            self.abandon()
            return
        self.endpoint.send(self.data, self.destination)
        self._interval = self._interval * 2 if self.method == "INVITE" else min(self._interval * 2, T2)
        self._timer = self._timers().call_later(self._interval, self._retransmit)

    @property
    def abandoned(self) -> bool:
        return self._done.is_set() and self.final is None

    def abandon(self) -> None:
        """Stop retransmitting and waiting (timeout, or the caller gave up)."""
        if self._timer:
            self._timer.cancel()
        self._done.set()
        self._timers().call_later(TRANSACTION_TIMEOUT, lambda: self.endpoint.forget(self))

    def receive(self, response: SipMessage) -> None:
        if response.status_code < 200:
            self.provisional = response
            if self.on_provisional:
                self.on_provisional(response)
        elif self.final is None:
            self.final = response
            self._done.set()
            # keep matching for a while: retransmitted finals must get our ACK again (RFC 3261 §17.1.1.2, §13.2.2.4)
            self._timers().call_later(TRANSACTION_TIMEOUT if self.method == "INVITE" else 5 * T1,
                                      lambda: self.endpoint.forget(self))
        elif self._ack:
            self.endpoint.send(*self._ack)

    def acknowledge(self, ack: bytes, destination: tuple[str, int]) -> None:
        self._ack = (ack, destination)
        self.endpoint.send(ack, destination)

    def wait(self, timeout: float, abandon: bool = True) -> SipMessage | None:
        """The final response, or None after ``timeout`` (then, unless told otherwise, stop trying:
        a late success must not happen behind the back of a caller who was told it failed)."""
        if not self._done.wait(timeout) and abandon:
            self.abandon()
        return self.final
