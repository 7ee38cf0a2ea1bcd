"""Two calls joined: each side hears the other. The one place where calls are bridged.

``bridge(a, b)`` relays audio both ways until either side hangs up. Used for the hotline's
"0 → front desk" (the hotline dials the desk on its own line and bridges) and for an emergency
caller put through to the engineer who took the job. Each call keeps its own recording: a bridged
hotline call goes on recording its caller.

The caller and the engineer run on different threads (the hotline's call thread, the call-out
runner's), so they meet at a ``Meeting``: the hotline opens one when its emergency call-out
starts and closes it when the caller's call ends; the engineer who accepts and asks to talk
``join``s it; the caller, if they asked to hold for the engineer, takes them and runs the bridge on
the hotline's thread while the engineer's thread waits in ``join``. Meetings are per process: an
engineer whose call runs in another IVR process is told the caller's number instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from callcenter.ivr.lines import Call

log = logging.getLogger("callcenter.ivr")

JITTER_FRAMES = 3  # 60 ms of the other side's voice held back


class Bridgeable(Protocol):
    """What the bridge uses of a call (``lines.Call``; a flow's ``dialogue.CallLike``)."""

    @property
    def call_id(self) -> str: ...
    @property
    def end_reason(self) -> str: ...
    @property
    def is_active(self) -> bool: ...
    def flush_frames(self) -> None: ...
    def frames(self, timeout: float | None = None) -> Iterable[bytes]: ...
    def send_frame(self, pcm: bytes) -> bool: ...
    def dtmf(self) -> str: ...


def bridge(a: Bridgeable, b: Bridgeable) -> None:
    """Relay ``a``'s audio to ``b`` and ``b``'s to ``a`` until either call ends; keys are ignored.
    Hanging up the other side afterwards is the caller's choice."""
    a.flush_frames()  # what was said before the bridge is not for the other side
    b.flush_frames()
    over = threading.Event()
    other_way = threading.Thread(target=_relay, args=(b, a, over), name=f"bridge {b.call_id}", daemon=True)
    other_way.start()
    log.info("calls %s and %s bridged", a.call_id, b.call_id)
    _relay(a, b, over)
    other_way.join(1)
    log.info("bridge of %s and %s over (%s / %s)", a.call_id, b.call_id, a.end_reason or "up", b.end_reason or "up")


def _relay(source: Bridgeable, sink: Bridgeable, over: threading.Event) -> None:
    # The first frames are held back until JITTER_FRAMES have come, so the sink's sender always has a
    # few queued: a packet a little late then delays the voice by a frame instead of cutting a hole in it.
    held: list[bytes] | None = []
    try:
        while not over.is_set() and source.is_active and sink.is_active:
            for frame in source.frames(timeout=0.1):
                if held is not None:
                    held.append(frame)
                    if len(held) < JITTER_FRAMES:
                        continue
                    frames, held = held, None
                else:
                    frames = [frame]
                if not all(sink.send_frame(f) for f in frames):
                    break
            source.dtmf()  # keys mean nothing in a conversation: do not let them pile up
    finally:
        over.set()


class Meeting:
    """Where one emergency caller still on the hotline and the engineer who accepted meet."""

    def __init__(self, ticket_id: int):
        self.ticket_id = ticket_id
        self._changed = threading.Condition()
        self._caller_here = True  # until the hotline call ends or the caller will not hold
        self._engineer: Call | None = None  # waiting to be taken by the caller
        self._withdrawn = False  # the engineer will not (or no longer) talk
        self._bridged = False
        self._over = False

    # -- the hotline caller's side

    def take_engineer(self, timeout: float) -> Call | None:
        """The engineer's call, once they have joined (within ``timeout`` s); the caller then bridges."""
        with self._changed:
            self._changed.wait_for(lambda: self._engineer is not None or self._withdrawn, timeout)
            engineer, self._engineer = self._engineer, None
            if engineer is not None:
                self._bridged = True
            return engineer

    @property
    def engineer_withdrawn(self) -> bool:
        """The engineer who accepted chose not to talk, or stopped waiting for the caller."""
        with self._changed:
            return self._withdrawn

    def close(self) -> None:
        """The caller's part is over (the bridge ended, or they hung up or would not hold)."""
        with self._changed:
            self._caller_here, self._over = False, True
            self._changed.notify_all()

    # -- the engineer's side

    @property
    def caller_on_line(self) -> bool:
        with self._changed:
            return self._caller_here

    def join(self, engineer: Call, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) for the caller to take this call, then until their conversation
        ends. True if they talked; False if the caller never came (hung up, would not hold, too late)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._engineer = engineer
            self._changed.notify_all()
            while not self._bridged and not self._over and engineer.is_active:
                if not self._changed.wait(min(0.5, max(0.0, deadline - time.monotonic()))) \
                        and time.monotonic() >= deadline:
                    break
            if not self._bridged:
                self._engineer, self._withdrawn = None, True
                self._changed.notify_all()
                return False
            self._changed.wait_for(lambda: self._over)
            return True

    def decline(self) -> None:
        """The engineer does not want to talk: the caller stops waiting for them."""
        with self._changed:
            self._withdrawn = True
            self._changed.notify_all()


class Meetings:
    """The open meetings of this process, by ticket."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, Meeting] = {}

    def open(self, ticket_id: int) -> Meeting:
        meeting = Meeting(ticket_id)
        with self._lock:
            self._open[ticket_id] = meeting
        return meeting

    def find(self, ticket_id: int) -> Meeting | None:
        with self._lock:
            return self._open.get(ticket_id)

    def close(self, meeting: Meeting) -> None:
        meeting.close()
        with self._lock:
            if self._open.get(meeting.ticket_id) is meeting:
                del self._open[meeting.ticket_id]
