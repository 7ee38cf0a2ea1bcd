"""The scheduled watch over open tickets (``core.jobs`` runs ``tick`` every ``WATCH_TICK_SECONDS``
on the scheduler lease's holder, so exactly one node looks): complaints nobody acted on
(``core.complaints``) and arrivals that slipped (``core.eta``). It decides and records; the calls
are the telephone side's (``NoticeCalls``), each on a thread of its own, claimed in the database
before dialling so nothing is called twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import complaints, eta
from core.call_pool import FollowupCalls
from core.settings import Settings

log = logging.getLogger(__name__)

WATCH_TICK_SECONDS = 30
MANAGER_CALLS = 1  # the managers are rung one complaint at a time, one contact after another


@dataclass
class NoticeCalls:
    """The telephone side's two calls, each blocking for the whole call (None: not on this node)."""

    ring_complaint: Callable[[int], None] | None = None  # claim a complaint's escalation, ring the managers
    call_eta_slip: Callable[[int], None] | None = None  # claim a slip, phone the resident the apology


class Watches:
    def __init__(self, settings: Settings, sessions: sessionmaker, clock: Callable[[], datetime],
                 calls: NoticeCalls | None, pool: Callable[[Callable[[int], None], int], FollowupCalls[int]]):
        self.settings, self.sessions, self.clock = settings, sessions, clock
        calls = calls or NoticeCalls()
        self.complaint_calls = pool(calls.ring_complaint, MANAGER_CALLS) if calls.ring_complaint else None
        self.slip_calls = pool(calls.call_eta_slip, settings.followup.max_calls) if calls.call_eta_slip else None
        self._told: set[str] = set()

    def tick(self) -> dict[str, list[int]]:
        """Look once: record new slips, hand due calls to the dialler; the ids handed out."""
        now = self.clock()
        with self.sessions() as session, session.begin():
            complaints.recover_stale_calls(session, now)
            eta.recover_stale_calls(session, now)
            eta.detect(session, now, self.settings)
            escalations = complaints.due_escalations(session, now, self.settings)
            free = self.slip_calls.free() if self.slip_calls else self.settings.followup.max_calls
            slips = eta.due_calls(session, now, free) if free else []
        return {"complaints": self._hand_out(self.complaint_calls, escalations, "complaint escalations", "callout.line"),
                "eta_slips": self._hand_out(self.slip_calls, slips, "arrival-slip calls", "followup.line")}

    def _hand_out(self, calls: FollowupCalls[int] | None, ids: list[int], what: str, setting: str) -> list[int]:
        if not ids:
            return []
        if calls is None:
            if what not in self._told:  # said once, not every 30 s
                log.warning("%d %s are due but this node has no dialler for them (%s): they wait", len(ids), what,
                            setting)
                self._told.add(what)
            return []
        return calls.hand_out(ids)

    def stop(self) -> None:
        for calls in (self.complaint_calls, self.slip_calls):
            if calls is not None:
                calls.stop()
