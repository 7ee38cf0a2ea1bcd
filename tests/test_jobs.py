"""The scheduled jobs on both databases: a real APScheduler with its job store in the database,
restarted, doubled, and late."""

import os
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core import desk, followup
from core.daily_list import last_cutoff_day
from core.desk import NewTicket
from core.followup import SurveyAnswers
from core.jobs import Jobs
from core.settings import SchedulerSettings
from core.store import CallRecord, DailyList, FollowUp, scheduler_jobs
from tests.support.tickets import CLERK, completed_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)  # inside calling hours


def eventually(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the scheduler did not get there in time"
        time.sleep(0.05)


class Dialler:
    """The telephony side as the jobs see it: claims each follow-up, and the resident is happy
    (or, with ``hold``, the call goes on until released)."""

    def __init__(self, sessions, settings, now, hold: threading.Event | None = None):
        self.sessions, self.settings, self.now, self.hold = sessions, settings, now, hold
        self.handed: list[int] = []  # every id the jobs gave us
        self.called: list[int] = []  # the ones we actually dialled

    def __call__(self, followup_id: int) -> None:
        self.handed.append(followup_id)
        with self.sessions() as session, session.begin():
            if followup.claim(session, followup_id, self.now) is None:
                return
        self.called.append(followup_id)
        if self.hold is not None:
            self.hold.wait(10)
            return  # cut off: no outcome stored
        with self.sessions() as session, session.begin():
            followup.record_answers(session, followup_id, SurveyAnswers(resolved=True, rating="满意"), None,
                                    self.now, self.settings)


@pytest.fixture
def due_followups(sessions, settings, engineer):
    """Three follow-ups due Tuesday 10:00 (completed on Monday at 10:00, from three numbers)."""
    monday = TUESDAY_10 - timedelta(days=1)
    tickets = [completed_ticket(sessions, settings, engineer, monday, phone=f"1380013800{n}") for n in range(3)]
    with sessions() as session:
        return sorted(session.scalars(select(FollowUp.id).where(FollowUp.ticket_id.in_(tickets))))


@pytest.fixture
def started():
    running = []

    def start(jobs: Jobs) -> Jobs:
        jobs.start()
        running.append(jobs)
        return jobs

    yield start
    for jobs in running:
        jobs.stop()


def tick_now(jobs: Jobs) -> None:
    """Make the scheduler run its follow-up tick at once instead of in 30 seconds."""
    jobs.scheduler.modify_job("followup_tick", next_run_time=datetime.now(SHANGHAI))


def test_a_tick_hands_out_due_follow_ups_and_none_without_a_dialler(sessions, settings, engine, due_followups):
    dialler = Dialler(sessions, settings, TUESDAY_10)
    jobs = Jobs(settings, engine, dialler, clock=lambda: TUESDAY_10)
    assert sorted(jobs.followup_tick()) == due_followups[:2]  # followup.max_calls = 2 at once
    eventually(lambda: len(dialler.called) == 2)
    eventually(lambda: jobs.calls.free() == 2)
    assert jobs.followup_tick() == due_followups[2:]
    eventually(lambda: len(dialler.called) == 3)
    jobs.calls.stop()
    assert Jobs(settings, engine, dialler, clock=lambda: TUESDAY_10 + timedelta(hours=3)).followup_tick() == []

    with sessions() as session, session.begin():  # another due one, and nobody configured to dial it
        session.get(FollowUp, due_followups[0]).status = "scheduled"
    assert Jobs(settings, engine, None, clock=lambda: TUESDAY_10).followup_tick() == []
    with sessions() as session:
        assert session.get(FollowUp, due_followups[0]).status == "scheduled"  # left for when there is one


def test_a_line_that_comes_free_takes_the_next_due_follow_up_without_waiting_for_the_tick(
        sessions, settings, engine, due_followups, started):
    settings = replace(settings, followup=replace(settings.followup, max_calls=1))
    dialler = Dialler(sessions, settings, TUESDAY_10)
    jobs = started(Jobs(settings, engine, dialler, clock=lambda: TUESDAY_10))
    tick_now(jobs)  # one tick; the next is 30 s away
    eventually(lambda: sorted(dialler.called) == due_followups, seconds=5)
    assert sorted(dialler.handed) == due_followups  # one at a time, each once


def test_a_restart_between_scheduling_and_calling_calls_each_resident_once(
        sessions, settings, engine, due_followups, started):
    settings = replace(settings, followup=replace(settings.followup, max_calls=5))
    first = started(Jobs(settings, engine, Dialler(sessions, settings, TUESDAY_10), clock=lambda: TUESDAY_10))
    first.stop()  # down before its first tick (30 s away)
    dialler = Dialler(sessions, settings, TUESDAY_10)
    second = started(Jobs(settings, engine, dialler, clock=lambda: TUESDAY_10))
    with sessions() as session:  # the schedule was kept, not doubled
        # followup_tick, watch_tick, keep_daily_list, clean_recordings
        assert session.scalar(select(func.count()).select_from(scheduler_jobs)) == 4
    tick_now(second)
    eventually(lambda: sorted(dialler.called) == due_followups)
    tick_now(second)
    time.sleep(0.5)
    assert sorted(dialler.handed) == due_followups and sorted(dialler.called) == due_followups
    with sessions() as session:
        assert {f.status for f in session.scalars(select(FollowUp))} == {"done"}


def test_a_call_under_way_at_a_restart_is_not_made_again(sessions, settings, engine, due_followups, started):
    settings = replace(settings, followup=replace(settings.followup, max_calls=5))
    hold = threading.Event()
    talking = Dialler(sessions, settings, TUESDAY_10, hold=hold)
    first = started(Jobs(settings, engine, talking, clock=lambda: TUESDAY_10))
    tick_now(first)
    eventually(lambda: len(talking.called) == 3)
    first.stop()  # the process goes down mid-call
    dialler = Dialler(sessions, settings, TUESDAY_10)
    second = started(Jobs(settings, engine, dialler, clock=lambda: TUESDAY_10 + timedelta(minutes=5)))
    tick_now(second)
    time.sleep(0.5)
    hold.set()
    assert dialler.handed == []  # still "calling": nobody dials them twice
    with sessions() as session:
        assert {(f.status, f.attempts) for f in session.scalars(select(FollowUp))} == {("calling", 1)}


def test_a_node_with_scheduler_owner_false_never_runs_the_jobs(sessions, settings, engine, due_followups, started):
    owner_dialler, other_dialler = Dialler(sessions, settings, TUESDAY_10), Dialler(sessions, settings, TUESDAY_10)
    other_settings = replace(settings, scheduler=SchedulerSettings(owner=False))
    other = started(Jobs(other_settings, engine, other_dialler, clock=lambda: TUESDAY_10))
    owner = started(Jobs(settings, engine, owner_dialler, clock=lambda: TUESDAY_10))
    assert other.scheduler is None and other.health() == {"enabled": False, "owner": False, "holder": None,
                                                          "running": False, "jobs": {}}
    assert owner.health()["running"] and set(owner.health()["jobs"]) == {"followup_tick", "watch_tick", "keep_daily_list",
                                                                         "clean_recordings"}
    assert owner.health()["owner"] and owner.health()["holder"] == settings.node_name
    tick_now(owner)
    eventually(lambda: sorted(owner_dialler.called) == due_followups)  # two lines: two, then the third
    assert other_dialler.handed == []


def test_a_17_00_list_missed_while_the_service_was_down_is_kept_once_after_the_restart(
        sessions, settings, engine, started):
    def kept_lists():
        with sessions() as session:
            return [(kept.day, kept.numbers) for kept in session.scalars(select(DailyList))]

    first = started(Jobs(settings, engine, None))
    # The service went down before Monday's 17:00 and is back on Tuesday morning (paused, so that
    # only the restarted scheduler can run it).
    first.scheduler.pause()
    first.scheduler.modify_job("keep_daily_list", next_run_time=datetime.now(SHANGHAI) - timedelta(hours=16))
    first.stop()
    started(Jobs(settings, engine, None, clock=lambda: TUESDAY_10))
    eventually(lambda: kept_lists() != [])
    time.sleep(0.3)
    assert kept_lists() == [(TUESDAY_10.date() - timedelta(days=1), [])]  # Monday's, once


def test_the_daily_list_keeps_the_open_tickets_of_the_last_cut_off(sessions, settings, engine):
    monday_noon = TUESDAY_10 - timedelta(hours=22)
    with sessions() as session, session.begin():
        open_ticket = desk.create_ticket(session, NewTicket(description="门锁坏了", room="1101", building="3"),
                                         CLERK, monday_noon, settings)
        number = open_ticket.number
    assert last_cutoff_day(TUESDAY_10, settings) == monday_noon.date()
    assert last_cutoff_day(TUESDAY_10 + timedelta(hours=7), settings) == TUESDAY_10.date()
    jobs = Jobs(settings, engine, None, clock=lambda: TUESDAY_10)
    jobs.keep_daily_list()
    jobs.keep_daily_list()  # a second run keeps the first list
    with sessions() as session:
        assert [(k.day, k.numbers) for k in session.scalars(select(DailyList))] == [(monday_noon.date(), [number])]


def test_recordings_older_than_keep_days_are_deleted_and_their_paths_cleared(sessions, settings, engine):
    now = TUESDAY_10
    root = settings.recordings_dir
    calls = {"old": now - timedelta(days=31), "recent": now - timedelta(days=29)}
    with sessions() as session, session.begin():
        for name, started_at in calls.items():
            path = root / f"{started_at:%Y/%m/%d}/{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF")
            session.add(CallRecord(direction="inbound", caller="13800138000", started_at=started_at,
                                   outcome="completed", recording_path=str(path.relative_to(root))))
    orphan = root / "2026/10/01/cut-off.wav"  # a crash before its record was updated
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    os.utime(orphan, (now.timestamp() - 40 * 86400,) * 2)
    assert Jobs(settings, engine, None, clock=lambda: now).clean_recordings() == 2
    with sessions() as session:
        kept = {r.recording_path for r in session.scalars(select(CallRecord))}
    assert kept == {"", "2026/10/26/recent.wav"}
    assert sorted(p.name for p in root.rglob("*.wav")) == ["recent.wav"]
    assert not (root / "2026/10/01").exists()


def test_a_changed_report_time_reschedules_the_stored_job(settings, engine, started):
    first = started(Jobs(settings, engine, None))
    assert str(first.scheduler.get_job("keep_daily_list").trigger) == "cron[hour='17', minute='0']"
    first.stop()
    later = replace(settings, sla=replace(settings.sla, daily_report_time="17:30"))
    second = started(Jobs(later, engine, None))
    assert str(second.scheduler.get_job("keep_daily_list").trigger) == "cron[hour='17', minute='30']"
    assert len(second.scheduler.get_jobs()) == 4
