"""Scheduled jobs: the follow-up tick, the 17:00 list, the recording clean-up (APScheduler 3).

One process per deployment runs them (``scheduler.owner``; every other process leaves them
alone). Their schedule lives in the database (APScheduler's SQLAlchemyJobStore, in the table
the migrations create), so a service that was down at 17:00 keeps that day's list once when
it is back: every job coalesces its missed runs into one and may run however late.

Nothing here can call a resident twice: the tick only hands out ids of follow-ups still
``scheduled`` in their table, and the dialler's ``core.followup.claim`` takes each one once,
whatever a restart or a second scheduler does.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Callable

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from core import followup
from core.daily_list import keep_daily_list, last_cutoff_day
from core.recordings import delete_old_recordings
from core.settings import Settings
from core.store import make_session_factory, scheduler_jobs, utcnow

log = logging.getLogger(__name__)

# Makes one follow-up call: claims it, dials, records the outcome (the telephony side's). It may
# block for the whole call; each runs on a thread of its own.
DialFollowup = Callable[[int], None]

FOLLOWUP_TICK_SECONDS = 30
RECORDING_CLEANUP_AT = (3, 30)  # local time: nobody is calling
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}

# A persistent job store keeps only importable functions and picklable arguments, never live
# objects such as the database or the dialler: each stored job names a method of the Jobs
# that this process started.
_running: Jobs | None = None


def run_job(method: str) -> None:
    jobs = _running
    if jobs is None:
        log.warning("scheduled job %s skipped: no jobs running in this process", method)
        return
    getattr(jobs, method)()


class FollowupCalls:
    """Due follow-ups, each called on a thread of its own, at most ``max_calls`` at once; an id
    still being called is not handed out again by this process."""

    def __init__(self, dial: DialFollowup, max_calls: int):
        self.dial = dial
        self.max_calls = max_calls
        self.executor = ThreadPoolExecutor(max_calls, thread_name_prefix="followup-call")
        self.lock = threading.Lock()
        self.in_flight: set[int] = set()
        # Told when a call ends: the freed line takes the next due follow-up at once. Waiting for
        # the 30 s tick held every line ~60 s for a 40 s survey (bench/followup.py: 7.3 vs 11 calls/min).
        self.on_line_free: Callable[[], None] = lambda: None

    def free(self) -> int:
        with self.lock:
            return self.max_calls - len(self.in_flight)

    def hand_out(self, followup_ids: list[int]) -> list[int]:
        handed = []
        with self.lock:
            for followup_id in followup_ids:
                if followup_id not in self.in_flight and len(self.in_flight) < self.max_calls:
                    self.in_flight.add(followup_id)
                    handed.append(followup_id)
        for followup_id in handed:
            self.executor.submit(self._call, followup_id)
        return handed

    def _call(self, followup_id: int) -> None:
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


class Jobs:
    """The scheduled jobs of one deployment; ``start`` runs them only in the scheduler's owner."""

    def __init__(self, settings: Settings, engine: Engine, dial_followup: DialFollowup | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.clock = clock
        self.calls = FollowupCalls(dial_followup, settings.followup.max_calls) if dial_followup else None
        if self.calls is not None:
            self.calls.on_line_free = self._next_on_free_line
        self.scheduler: BackgroundScheduler | None = None
        self._told_no_dialler = False

    # --- the jobs (also callable directly) ----------------------------------------------------------

    def followup_tick(self) -> list[int]:
        """Hand the follow-ups due now to the dialler; returns the ids handed out."""
        now = self.clock()
        with self.sessions() as session, session.begin():
            followup.recover_stale_calls(session, now, self.settings)
            free = self.calls.free() if self.calls else self.settings.followup.max_calls
            due = followup.due_followups(session, now, self.settings, limit=free) if free else []
        if not due:
            return []
        if self.calls is None:
            if not self._told_no_dialler:
                log.warning("%d follow-up calls are due but no dialler is configured (followup.line): "
                            "they stay scheduled", len(due))
                self._told_no_dialler = True
            return []
        return self.calls.hand_out(due)

    def _next_on_free_line(self) -> None:
        if self.scheduler is not None and self.scheduler.running:  # never after stop()
            self.followup_tick()

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

    # --- the scheduler -----------------------------------------------------------------------------

    def triggers(self) -> dict[str, Any]:
        """Each job (a method name) and when it runs, in the site's time."""
        tz = self.settings.tz
        report = self.settings.sla.daily_report_at()
        hour, minute = RECORDING_CLEANUP_AT
        return {
            "followup_tick": IntervalTrigger(seconds=FOLLOWUP_TICK_SECONDS, timezone=tz),
            "keep_daily_list": CronTrigger(hour=report.hour, minute=report.minute, timezone=tz),
            "clean_recordings": CronTrigger(hour=hour, minute=minute, timezone=tz),
        }

    def start(self) -> bool:
        """Run the jobs if this process is the scheduler's owner; False (and a log line) if not."""
        global _running
        if not self.settings.scheduler.owner:
            log.info("scheduler.owner is false: the scheduled jobs run in another process")
            return False
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
                self.scheduler.add_job(run_job, trigger, args=[method], id=method, name=method)
            elif str(stored.trigger) != str(trigger):  # the settings changed since it was stored
                stored.reschedule(trigger)
            # else: keep it as stored, with a missed run still due
        self.scheduler.resume()
        log.info("scheduler started: %s", ", ".join(f"{job.id} next at {job.next_run_time:%Y-%m-%d %H:%M:%S}"
                                                    for job in self.scheduler.get_jobs()))
        return True

    def stop(self) -> None:
        global _running
        if self.scheduler is not None and self.scheduler.running:
            # APScheduler 3 looks for due jobs once more while shutting down, after its executors are
            # gone, and would mark them as run without running them: detach the stored schedule first.
            self.scheduler.remove_jobstore("default")
            self.scheduler.shutdown(wait=True)
        if self.calls is not None:
            self.calls.stop()
        if _running is self:
            _running = None

    def health(self) -> dict[str, Any]:
        """For /api/health: does this process run the jobs, and when each runs next."""
        running = self.scheduler is not None and self.scheduler.running
        return {"owner": self.settings.scheduler.owner, "running": running,
                "jobs": {job.id: job.next_run_time.isoformat() if job.next_run_time else None
                         for job in self.scheduler.get_jobs()} if running else {}}
