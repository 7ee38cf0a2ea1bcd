"""Scheduled jobs: the follow-up tick, the watch over complaints and late arrivals
(core.watch_jobs), the 17:00 list, the recording clean-up (APScheduler 3), and closing the calls
of nodes that died.

Any number of nodes may share the database; the jobs run on exactly one of them at a time, the
holder of the ``scheduler`` lease (core.lease). Every node with ``scheduler.owner`` (the default)
tries to take it every ``cluster.heartbeat_seconds``; the holder renews it as often, and starts
APScheduler only while it holds it. A holder that dies stops renewing: another node takes over
within ``cluster.lease_seconds + cluster.heartbeat_seconds``. A clean stop hands it over at once.

The schedule lives in the database (APScheduler's SQLAlchemyJobStore, in the table the
migrations create), so a service that was down at 17:00 keeps that day's list once when it is
back: every job coalesces its missed runs into one and may run however late.

Nothing here can call a resident twice: the tick only hands out ids of follow-ups still
``scheduled`` in their table, and the dialler's ``core.followup.claim`` takes each one once,
whatever a restart or a second scheduler (a holder that stalled past its lease) does.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from core import followup, incidents, nodes
from core.call_pool import CallItem, DialFollowup, FollowupCalls
from core.calling_hours import CallingHours
from core.daily_list import keep_daily_list, last_cutoff_day
from core.db import make_session_factory, utcnow
from core.lease import Lease
from core.recordings import delete_old_recordings
from core.settings import Settings
from core.store import scheduler_jobs
from core.watch_jobs import WATCH_TICK_SECONDS, NoticeCalls, Watches

log = logging.getLogger(__name__)

FOLLOWUP_TICK_SECONDS = 30
LEASE_NAME = "scheduler"  # the lease whose holder runs the jobs (also watched: callcenter/watchdog.py)
RECORDING_CLEANUP_AT = (3, 30)  # local time: nobody is calling
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}

# A persistent job store keeps only importable functions and picklable arguments, never live
# objects such as the database or the dialler: each stored job names a method of the Jobs
# that this process started.
_running: Jobs | None = None


def run_job(method: str) -> None:
    jobs = _running
    if jobs is None or not jobs.lease.held:
        log.warning("scheduled job %s skipped: this process does not hold the scheduler's lease", method)
        return
    getattr(jobs, method)()


class Jobs:
    """The scheduled jobs of one deployment, run by the node that holds the scheduler's lease."""

    def __init__(self, settings: Settings, engine: Engine, dial_followup: DialFollowup | None = None,
                 clock: Callable[[], datetime] = utcnow, notice_calls: NoticeCalls | None = None):
        self.settings = settings
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.clock = clock
        self.calls = FollowupCalls(dial_followup, settings.followup.max_calls) if dial_followup else None
        if self.calls is not None:
            self.calls.on_line_free = self._next_on_free_line
        self.watches = Watches(settings, self.sessions, clock, notice_calls, FollowupCalls)
        self.scheduler: BackgroundScheduler | None = None
        # The holder names this process: its node, and a random part (two processes may share a node name).
        self.lease = Lease(self.sessions, LEASE_NAME, f"{settings.node_name}/{secrets.token_hex(4)}",
                           settings.cluster.lease_seconds)
        self._scheduler_lock = threading.Lock()  # the keeper thread and stop() both start and stop it
        self._stopping = threading.Event()
        self._keeper: threading.Thread | None = None
        self._told_no_dialler = False

    @property
    def lease_held(self) -> bool:
        """This node runs the scheduled jobs now (for /api/health and a metrics exporter)."""
        return self.lease.held

    # --- the jobs (also callable directly) ----------------------------------------------------------

    def followup_tick(self) -> list[CallItem]:
        """Hand the follow-ups due now to the dialler; returns the ids handed out."""
        now = self.clock()
        with self.sessions() as session, session.begin():
            followup.recover_stale_calls(session, now, self.settings)
            free = self.calls.free() if self.calls else self.settings.followup.max_calls
            due: list[CallItem] = [*followup.due_followups(session, now, self.settings, limit=free)] if free else []
            due += self._incident_call_backs(session, now, free - len(due))
        if not due:
            return []
        if self.calls is None:
            if not self._told_no_dialler:
                log.warning("%d follow-up calls are due but no dialler is configured (followup.line): "
                            "they stay scheduled", len(due))
                self._told_no_dialler = True
            return []
        return self.calls.hand_out(due)

    def _incident_call_backs(self, session, now: datetime, free: int) -> list[tuple[str, int]]:
        """Closed incidents' call-backs (「已恢复供水」), in the follow-ups' pool and calling hours (any day:
        the residents asked about it): ("incident", caller id) items for the dialler."""
        if free <= 0 or not CallingHours.of(self.settings).is_open(now, rest_day_agreed=True):
            return []
        return [("incident", caller.id) for caller in incidents.pending_call_backs(session, free)]

    def _next_on_free_line(self) -> None:
        if self.scheduler is not None and self.scheduler.running:  # never after stop()
            self.followup_tick()

    def watch_tick(self) -> dict[str, list[int]]:
        """Complaints nobody acted on, arrivals that slipped: noticed, and their calls handed out."""
        return self.watches.tick()

    def keep_daily_list(self) -> None:
        """The 17:00 list of open tickets, kept as it stood (core.daily_list)."""
        now = self.clock()
        day = last_cutoff_day(now, self.settings)
        with self.sessions() as session, session.begin():
            kept = keep_daily_list(session, day, now, self.settings)
            log.info("17:00 list of %s kept: %d open tickets", day, len(kept.numbers))

    def clean_recordings(self) -> int:
        with self.sessions() as session, session.begin():
            return delete_old_recordings(session, self.settings.recordings_dir, self.clock(),
                                         self.settings.recordings.keep_days)

    def close_lost_calls(self) -> list[int]:
        """Calls in progress on nodes that died, closed as node_lost (core.nodes); their record ids."""
        with self.sessions() as session, session.begin():
            return nodes.close_lost_calls(session, self.clock(), self.settings.cluster)

    # --- the scheduler -----------------------------------------------------------------------------

    def triggers(self) -> dict[str, Any]:
        """Each job (a method name) and when it runs, in the site's time."""
        tz = self.settings.tz
        report = self.settings.sla.daily_report_at()
        hour, minute = RECORDING_CLEANUP_AT
        return {
            "followup_tick": IntervalTrigger(seconds=FOLLOWUP_TICK_SECONDS, timezone=tz),
            "watch_tick": IntervalTrigger(seconds=WATCH_TICK_SECONDS, timezone=tz),
            "keep_daily_list": CronTrigger(hour=report.hour, minute=report.minute, timezone=tz),
            "clean_recordings": CronTrigger(hour=hour, minute=minute, timezone=tz),
        }

    def start(self) -> bool:
        """Take part in the election for the scheduler's lease (unless ``scheduler.owner`` is false):
        try now, then every heartbeat on a thread of its own. True if this node runs the jobs now."""
        if not self.settings.scheduler.owner:
            log.info("scheduler.owner is false: this node never runs the scheduled jobs")
            return False
        self._stopping.clear()
        self.keep_lease()
        self._keeper = threading.Thread(target=self._keep, name="scheduler-lease", daemon=True)
        self._keeper.start()
        return self.lease.held

    def _keep(self) -> None:
        while not self._stopping.wait(self.settings.cluster.heartbeat_seconds):
            self.keep_lease()

    def keep_lease(self) -> None:
        """Take or renew the lease; run the scheduler exactly while it is held; meanwhile close the
        calls of nodes that died."""
        try:
            self.lease.acquire()
        except Exception:  # the database is unreachable: the lease runs out by itself (lease.held)
            log.exception("scheduler lease: could not reach the database")
        with self._scheduler_lock:
            if self._stopping.is_set():
                return
            running = self.scheduler is not None and self.scheduler.running
            if self.lease.held and not running:
                self._start_scheduler()
            elif running and not self.lease.held:
                log.warning("scheduler stopped on this node: its lease went to %s", self.lease.current_holder or "nobody")
                self._stop_scheduler()
        if self.lease.held:
            try:
                self.close_lost_calls()
            except Exception:
                log.exception("closing the calls of lost nodes failed; trying again at the next heartbeat")

    def _start_scheduler(self) -> None:
        global _running
        # APScheduler logs two INFO lines per run: every 30 s for the tick. Our jobs log what they do.
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
        store = SQLAlchemyJobStore(engine=self.engine, tablename=scheduler_jobs.name)
        self.scheduler = BackgroundScheduler(jobstores={"default": store}, job_defaults=JOB_DEFAULTS,
                                             timezone=self.settings.tz)
        _running = self
        self.scheduler.start(paused=True)  # bring the stored schedule up to date before anything runs
        for method, trigger in self.triggers().items():
            stored = self.scheduler.get_job(method)
            if stored is None:
                # replace_existing: a holder that stalled past its lease may have stored it meanwhile
                self.scheduler.add_job(run_job, trigger, args=[method], id=method, name=method, replace_existing=True)
            elif str(stored.trigger) != str(trigger):  # the settings changed since it was stored
                stored.reschedule(trigger)
            # else: keep it as stored, with a missed run still due
        self.scheduler.resume()
        log.info("scheduler started on node %s: %s", self.settings.node_name,
                 ", ".join(f"{job.id} next at {job.next_run_time:%Y-%m-%d %H:%M:%S}" for job in self.scheduler.get_jobs()))

    def _stop_scheduler(self) -> None:
        global _running
        if self.scheduler is not None and self.scheduler.running:
            # APScheduler 3 looks for due jobs once more while shutting down, after its executors are
            # gone, and would mark them as run without running them: detach the stored schedule first.
            self.scheduler.remove_jobstore("default")
            self.scheduler.shutdown(wait=True)
        if _running is self:
            _running = None

    def stop(self) -> None:
        self._stopping.set()
        if self._keeper is not None:
            self._keeper.join(10)
        with self._scheduler_lock:
            self._stop_scheduler()
        if self.lease.held:
            try:
                self.lease.release()  # another node takes over at its next heartbeat
            except Exception:
                log.exception("scheduler lease: could not release it (it runs out by itself)")
        if self.calls is not None:
            self.calls.stop()
        self.watches.stop()

    def health(self) -> dict[str, Any]:
        """For /api/health: may this node run the jobs, does it now, who does, when each runs next."""
        scheduler = self.scheduler
        running = scheduler is not None and scheduler.running
        holder = self.lease.current_holder.split("/")[0] if self.lease.current_holder else None
        return {"enabled": self.settings.scheduler.owner, "owner": self.lease.held, "holder": holder,
                "running": running,
                "jobs": {job.id: job.next_run_time.isoformat() if job.next_run_time else None
                         for job in scheduler.get_jobs()} if scheduler is not None and running else {}}
