"""The pool of outbound calls the scheduled jobs hand out (follow-ups, incident call-backs, notices):
each on a thread of its own, at most ``max_calls`` at once. Kept apart from ``core.jobs`` so that the
jobs and the watch over open tickets (``core.watch_jobs``) share it without importing each other."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger("core.jobs")

# What the jobs' pool dials: a follow-up id, or ("incident", caller id) for an incident call-back.
CallItem = int | tuple[str, int]
# Makes one follow-up call: claims it, dials, records the outcome (the telephony side's). It may
# block for the whole call; each runs on a thread of its own.
DialFollowup = Callable[[CallItem], None]

Item = TypeVar("Item", bound=Hashable)


class FollowupCalls(Generic[Item]):
    """Due follow-ups, each called on a thread of its own, at most ``max_calls`` at once; an id
    still being called is not handed out again by this process."""

    def __init__(self, dial: Callable[[Item], None], max_calls: int):
        self.dial = dial
        self.max_calls = max_calls
        self.executor = ThreadPoolExecutor(max_calls, thread_name_prefix="followup-call")
        self.lock = threading.Lock()
        self.in_flight: set[Item] = set()
        # Told when a call ends: the freed line takes the next due follow-up at once. Waiting for
        # the 30 s tick held every line ~60 s for a 40 s survey (bench/followup.py: 7.3 vs 11 calls/min).
        self.on_line_free: Callable[[], None] = lambda: None

    def free(self) -> int:
        with self.lock:
            return self.max_calls - len(self.in_flight)

    def hand_out(self, followup_ids: Sequence[Item]) -> list[Item]:
        handed: list[Item] = []
        with self.lock:
            for followup_id in followup_ids:
                if followup_id not in self.in_flight and len(self.in_flight) < self.max_calls:
                    self.in_flight.add(followup_id)
                    handed.append(followup_id)
        for followup_id in handed:
            self.executor.submit(self._call, followup_id)
        return handed

    def _call(self, followup_id: Item) -> None:
        try:
            self.dial(followup_id)
        except Exception:
            log.exception("follow-up %d: the call failed", followup_id)
        finally:
            with self.lock:
                self.in_flight.discard(followup_id)
        try:
            self.on_line_free()
        except Exception:
            log.exception("follow-up calls: handing out the next one failed")

    def stop(self) -> None:
        # A call under way ends on its own thread (or with the lines; a cut-off one is counted by
        # core.followup.recover_stale_calls): a service stop does not wait minutes for a survey.
        self.executor.shutdown(wait=False, cancel_futures=True)
