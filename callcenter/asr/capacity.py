"""How many calls may use a recogniser at once on this node: counted here, and only here.

A call holds one recogniser stream from the moment its flow starts until it ends, not only
while it listens: a call listens several times with prompts in between, and a caller who has
been let in must never find the recognisers gone at their next answer. So the stream is taken
when the call's flow starts (``take``) and given back when the flow ends, whatever ended it
(hang-up, error, media timeout), by the flow's ``finally``; ``StreamSlot.release`` may be called
any number of times.

Admission (an INVITE arriving on the SIP receive thread) ``reserve``s a stream for the call's
Call-ID before it rings, so a burst of INVITEs cannot all be let in on the same free stream;
the call's flow, a few milliseconds later on its own thread, turns that reservation into its
slot. A reservation whose flow never comes (the INVITE failed after all) lapses after
``RESERVATION_SECONDS``; there are never more reservations than free streams, so nobody can
grow this table.

The default number of streams (``asr.max_streams = 0``) comes from the machine and the model:
``floor(cores × CPU_SHARE / REAL_TIME_FACTOR)``, at least 1. ``REAL_TIME_FACTOR`` is what one
stream of the small model costs while its caller speaks, measured by ``bench/asr.py`` (0.26 of a
core on this project's 2-core bench machine); ``CPU_SHARE`` keeps a quarter of the machine for
the SIP, audio, database and web work. On 2 cores that is 5, the number of callers
``bench/calls.py`` measured to be served cleanly (speech end to saved description 1.2 s) all
speaking at once; at 8 it took 7 s. A site with another model or other machines measures with
``bench/asr.py`` and sets ``asr.max_streams`` to a number.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("callcenter.asr")

REAL_TIME_FACTOR = 0.26  # one stream of vosk-model-small (bench/asr.py): CPU seconds per second of speech
CPU_SHARE = 0.75  # of the machine, for recognisers; the rest for SIP, audio, the database and the web
RESERVATION_SECONDS = 10.0  # an admitted INVITE's flow starts within milliseconds; this is a safety net
SUMMARY_SECONDS = 60.0  # at most one log line a minute about calls refused while full


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the whole box)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_max_streams(cores: int | None = None, real_time_factor: float = REAL_TIME_FACTOR) -> int:
    """``floor(cores × CPU_SHARE / real_time_factor)``, at least 1 (see the module's docstring)."""
    cores = usable_cores() if cores is None else cores
    return max(1, math.floor(cores * CPU_SHARE / real_time_factor + 1e-9))


def max_streams_for(setting: int) -> int:
    """``asr.max_streams``: 0 is the default for this machine, a positive number is taken as it is."""
    if setting < 0:
        raise ValueError(f"asr.max_streams must be 0 (from the cores) or a positive number, not {setting}")
    return setting or default_max_streams()


class StreamSlot:
    """One recogniser stream held by one call; ``release`` gives it back (once, however often called)."""

    def __init__(self, slots: StreamSlots, call_id: str):
        self._slots, self.call_id = slots, call_id
        self._released = False

    def release(self) -> None:
        self._slots._give_back(self)

    def __enter__(self) -> StreamSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class StreamSlots:
    """The recogniser streams of this node: ``max_streams`` of them, each held by one call."""

    def __init__(self, max_streams: int, clock: Callable[[], float] = time.monotonic):
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self._clock = clock
        self._lock = threading.Lock()
        self._held: set[StreamSlot] = set()
        self._reserved: dict[str, float] = {}  # Call-ID -> when admission reserved a stream for it
        self.refused = 0  # INVITEs refused (503) because every stream was taken, since the start
        self.without_speech = 0  # calls answered while full, in keypad-and-recording mode
        self._spell_refused = 0  # refused since the last log line about it
        self._spell_logged_at: float | None = None  # while refusing: when that line was written

    @property
    def in_use(self) -> int:
        """Streams held by calls or reserved for calls about to start."""
        with self._lock:
            self._lapse()
            return len(self._held) + len(self._reserved)

    @property
    def full(self) -> bool:
        return self.in_use >= self.max_streams

    def reserve(self, call_id: str) -> bool:
        """Admission: keep a stream for this call (True), or False when every stream is taken."""
        with self._lock:
            self._lapse()
            if call_id in self._reserved:
                return True
            if len(self._held) + len(self._reserved) >= self.max_streams:
                return False
            self._reserved[call_id] = self._clock()
            return True

    def take(self, call_id: str) -> StreamSlot | None:
        """The call's flow starts: its reserved stream, else a free one; None when all are taken."""
        with self._lock:
            self._lapse()
            if self._reserved.pop(call_id, None) is None and len(self._held) + len(self._reserved) >= self.max_streams:
                return None
            slot = StreamSlot(self, call_id)
            self._held.add(slot)
            return slot

    def cancel(self, call_id: str) -> None:
        """Admission reserved a stream for an INVITE that will not become a call after all."""
        with self._lock:
            self._reserved.pop(call_id, None)

    def _give_back(self, slot: StreamSlot) -> None:
        with self._lock:
            if slot._released:
                return
            slot._released = True
            self._held.discard(slot)
            refused, self._spell_refused = self._spell_refused, 0
            spell = self._spell_logged_at is not None
            self._spell_logged_at = None
        if spell and refused:
            log.info("a recogniser is free again (%d of %d in use); %d more calls were refused while all were busy",
                     self.in_use, self.max_streams, refused)
        elif spell:
            log.info("a recogniser is free again (%d of %d in use)", self.in_use, self.max_streams)

    def _lapse(self) -> None:
        """Drop reservations whose call never started (under ``_lock``)."""
        now = self._clock()
        for call_id in [c for c, at in self._reserved.items() if now - at > RESERVATION_SECONDS]:
            del self._reserved[call_id]

    # ---- what the node did about being full: counted, logged once a minute at most

    def note_refused(self) -> None:
        """An INVITE was refused (503) because every stream was taken. The first of a spell is
        logged at once, then one line a minute says how many more, never one line per call."""
        now = self._clock()
        with self._lock:
            self.refused += 1
            self._spell_refused += 1
            if self._spell_logged_at is not None and now - self._spell_logged_at < SUMMARY_SECONDS:
                return
            first, count = self._spell_logged_at is None, self._spell_refused
            self._spell_logged_at, self._spell_refused = now, 0
        if first:
            log.warning("all %d recognisers busy: new calls get 503 so the dispatcher tries another node",
                        self.max_streams)
        else:
            log.warning("all %d recognisers still busy: %d calls refused with 503 in the last %.0f s",
                        self.max_streams, count, SUMMARY_SECONDS)

    def note_without_speech(self, call_id: str) -> None:
        """A call answered while full: it runs on keys and a recording, with no recogniser."""
        with self._lock:
            self.without_speech += 1
        log.warning("call %s: all %d recognisers busy and no other node to try: keypad and recording only",
                    call_id, self.max_streams)

    def health(self) -> dict:
        """For /api/health: streams in use and the limit, calls refused and calls taken without speech."""
        return {"max_streams": self.max_streams, "in_use": self.in_use, "refused_full": self.refused,
                "answered_without_speech": self.without_speech}


def speech_for_call(streams: StreamSlots | None, call_id: str, new_recognizer: Callable | None
                    ) -> tuple[StreamSlot | None, Callable | None]:
    """A call's stream and the recogniser factory it may use: none when every stream is taken (the
    call runs on keys and its recording). Without a limit (``streams`` None) the factory as it is."""
    if streams is None or new_recognizer is None:
        return None, new_recognizer
    slot = streams.take(call_id)
    return slot, (new_recognizer if slot is not None else None)
