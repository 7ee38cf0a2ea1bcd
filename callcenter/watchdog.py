"""Watches for the two outages that no call or request notices, and tells the managers' group chat
(core.alerts): a telephone line down for ``alerts.line_down_minutes``, and the scheduled jobs
without an owner (nobody holds the scheduler's lease, core.lease) for ``alerts.no_owner_minutes``.

Every node runs one while ``alerts.webhook_url`` is set, checking every ``CHECK_SECONDS``. Each
check hands core.alerts what it sees; core decides whether it has been long enough and keys the
alert by the outage (the node, the line and when it went down; when the lease ran out, as the
database says), so an outage is one alert however many checks, and however many nodes, see it.
A line that comes up again ends its outage: a later one is a new alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import alerts, lease
from core.jobs import LEASE_NAME
from core.settings import Settings
from core.store import utcnow

log = logging.getLogger("callcenter.alerts")

CHECK_SECONDS = 10.0


class Watchdog:
    """One node's watch on its own lines and on the shared scheduler lease."""

    def __init__(self, settings: Settings, sessions: sessionmaker, lines: Callable[[], Iterable],
                 clock: Callable[[], datetime] = utcnow, check_seconds: float = CHECK_SECONDS):
        self.settings, self.sessions, self.lines, self.clock = settings, sessions, lines, clock
        self.check_seconds = check_seconds
        self.down_since: dict[str, datetime] = {}  # this node's lines that are down now: since when

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # the database away for a moment: the next check sees the same outage
                log.exception("watchdog: check failed; again in %g s", self.check_seconds)
            await asyncio.sleep(self.check_seconds)

    def check(self) -> None:
        now = self.clock()
        with self.sessions() as session, session.begin():
            self.check_lines(session, now)
            self.check_scheduler(session, now)

    def check_lines(self, session, now: datetime) -> None:
        for line in self.lines():
            if line.up:
                if self.down_since.pop(line.name, None) is not None:
                    log.info("line %s is up again", line.name)
                continue
            since = self.down_since.setdefault(line.name, now)
            health = line.health()
            detail = f"{health['state']}" + (f"，{health['error']}" if health.get("error") else "")
            if alerts.line_down(session, line.name, self.settings.node_name, since, detail, now, self.settings):
                log.warning("line %s down since %s: group-chat alert recorded", line.name,
                            since.isoformat(timespec="seconds"))

    def check_scheduler(self, session, now: datetime) -> None:
        since = lease.vacant_since(session, LEASE_NAME, now)
        if since is not None and alerts.no_scheduler_owner(session, since, now, self.settings):
            log.warning("no node has run the scheduled jobs since %s: group-chat alert recorded",
                        since.isoformat(timespec="seconds"))
