"""Benchmark: a backlog of follow-up calls (回访) drained through a limited number of outbound lines.

``--count`` repairs were all completed yesterday at 13:00, so their follow-ups are all due at the
same moment, 14:00 today (the afternoon calling window opens); the site clock starts there and
runs in real time. Every ticket has its own resident phone number, and every number goes to one
SIPp "phone" on 127.0.0.1 (``followup.line`` is a trunk line whose server is SIPp) that answers
every INVITE after 100 ms and presses 1 (问题解决了) then 1 (满意) over the questions, then stays
silent through the comment until the survey thanks them and hangs up.

What runs is the service's own path: ``core.jobs.Jobs`` (the scheduler's owner, ``followup.max_calls``
= ``--lines`` calls at once, each on a thread of its own) hands due follow-ups to
``callcenter.ivr.followup_dialler.call_followup``, which claims, dials, runs the survey and records
the answers; the ticket becomes 回访. The scheduler's own tick runs every 30 s; the bench also
calls the same ``Jobs.followup_tick`` every ``--tick-seconds`` (default 1; 0 = only the scheduler's
30 s tick, as the service runs today) so a freed line gets its next call at once.

Printed: follow-ups scheduled; done / failed / retry pending; calls per minute; mean call length;
time to drain the backlog (measured, or projected from the rate when ``--timeout-minutes`` stops it
first: it says which); residents called more than once (from SIPp's log of the INVITEs it received,
per To number, and from our call records); peak RSS of this process.

    .venv/bin/python bench/followup.py [--count 1000] [--lines 4] [--timeout-minutes 20] [--tick-seconds 1]

Needs sipp, espeak-ng and sox, and root (SIPp plays the resident's pcap through a raw socket).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from callcenter.ivr.flows.survey import RepairFacts, SurveyServices, introduction  # noqa: E402
from callcenter.ivr.followup_dialler import FollowupServices, call_followup  # noqa: E402
from callcenter.ivr.lines import Line  # noqa: E402
from callcenter.ivr.prompts import Prompts  # noqa: E402
from callcenter.ivr.service import line_config  # noqa: E402
from core import desk, followup, migrate, moves  # noqa: E402
from core.base import Actor  # noqa: E402
from core.calls import CallLog  # noqa: E402
from core.desk import NewTicket  # noqa: E402
from core.followup_service import FollowUpCalls  # noqa: E402
from core.incident_service import IncidentCalls  # noqa: E402
from core.jobs import FOLLOWUP_TICK_SECONDS, Jobs  # noqa: E402
from core.settings import DatabaseSettings, load_settings  # noqa: E402
from core.store import CallRecord, Engineer, FollowUp, Ticket, make_engine, make_session_factory  # noqa: E402
from core.tickets import Role, Status, TransitionRequest  # noqa: E402
from tests.support.hotline_caller import CallerScript  # noqa: E402
from tests.support.sip import LOOPBACK, Sipp, free_udp_ports  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPORTED = datetime(2026, 11, 23, 11, 0, tzinfo=SHANGHAI)  # a Monday morning
COMPLETED = REPORTED + timedelta(hours=2)  # 13:00: each follow-up is due 24 h later, i.e. at 14:00 the next day
OPENS = datetime(2026, 11, 24, 14, 0, tzinfo=SHANGHAI)  # the afternoon window opens: the whole backlog is due
REPAIR = dict(description="卫生间水龙头滴水", building="3", unit="2", room="1101", category="plumbing")
FIRST_PHONE = 13900000000
RESIDENT_HANGS_UP = 100.0  # seconds after the answer, should our BYE never come
SCRIPT_SECONDS = 80.0
PROGRESS_EVERY = 30.0


class RunningClock:
    """The site's time, from ``start`` on, at the speed of the wall clock."""

    def __init__(self, start: datetime):
        self.start, self.began = start.astimezone(UTC), time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def completed_repairs(sessions, settings, count: int) -> list[str]:
    """``count`` tickets, each a different resident's, dispatched and completed by 张工 (which
    schedules each one's follow-up); their phone numbers."""
    clerk = Actor("desk1", Role.FRONTDESK)
    phones = [str(FIRST_PHONE + index) for index in range(1, count + 1)]
    with sessions() as session, session.begin():
        engineer = Engineer(name="张工", phone="13800000001")
        session.add(engineer)
        session.flush()
        engineer_id = engineer.id
    fixer = Actor("zhang", Role.ENGINEER, engineer_id)
    steps = [(clerk, TransitionRequest(Status.DISPATCHED, engineer_id=engineer_id)),
             (fixer, TransitionRequest(Status.ACCEPTED)), (fixer, TransitionRequest(Status.ON_SITE)),
             (fixer, TransitionRequest(Status.COMPLETED, actual_item="更换水龙头阀芯", labour_fee=20,
                                       customer_confirmed=True))]
    for start in range(0, count, 100):
        with sessions() as session, session.begin():
            for phone in phones[start:start + 100]:
                ticket = desk.create_ticket(session, NewTicket(phone=phone, reporter_name="住户", **REPAIR),
                                            clerk, REPORTED, settings)
                for index, (actor, step) in enumerate(steps):
                    at = COMPLETED if step.to == Status.COMPLETED else REPORTED + timedelta(minutes=10 * (index + 1))
                    moves.move_ticket(session, ticket, step, actor, at, settings)
    return phones


def statuses(sessions) -> Counter:
    with sessions() as session:
        return Counter(dict(session.execute(select(FollowUp.status, func.count()).group_by(FollowUp.status)).all()))


def due_now(sessions, now: datetime) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(FollowUp).where(
            FollowUp.status == followup.SCHEDULED, FollowUp.due_at <= now))


def invites_per_number(messages: str) -> Counter:
    """Distinct INVITEs (by Call-ID: a retransmission is not a second call) SIPp received, per To number."""
    calls: dict[str, str] = {}
    for block in re.split(r"-{20,}.*\n", messages):
        if not block.startswith("UDP message received"):
            continue
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if not body.lstrip().startswith("INVITE "):
            continue
        to = re.search(r"^(?:To|t)\s*:.*?sip:([^@;>]+)@", body, re.M | re.I)
        call_id = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", body, re.M | re.I)
        if to and call_id:
            calls[call_id.group(1)] = to.group(1)
    return Counter(calls.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="follow-ups due at once (one resident each)")
    parser.add_argument("--lines", type=int, default=4, help="followup.max_calls: calls at the same time")
    parser.add_argument("--timeout-minutes", type=float, default=20.0,
                        help="stop then and report what drained so far (the rest is projected)")
    parser.add_argument("--tick-seconds", type=float, default=1.0,
                        help=f"also run the follow-up tick this often (0: only the scheduler's {FOLLOWUP_TICK_SECONDS} s)")
    parser.add_argument("--verbose", action="store_true", help="log every call")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ivr = logging.getLogger("callcenter.ivr")
    ivr.setLevel(logging.INFO)  # every call's steps with --verbose; else only why a dial failed (kept below)
    dial_failures: list[str] = []
    if args.verbose:
        logging.getLogger("core.followup").setLevel(logging.INFO)
    else:  # on the handler: the line's own loggers below callcenter.ivr inherit INFO too
        logging.root.handlers[0].addFilter(lambda record: record.levelno >= logging.WARNING or (
            record.getMessage().startswith("follow-up call to") and not dial_failures.append(record.getMessage())))

    work = Path(tempfile.mkdtemp(prefix="bench-followup-"))
    sipp_port, listen_port, rtp = free_udp_ports(), free_udp_ports(), free_udp_ports(4 * args.lines + 20)
    base = load_settings(environ={"CALLCENTER_DATA_DIR": str(work / "data")})
    line_table = {"name": "followup", "mode": "trunk", "flow": "none", "listen": f"{LOOPBACK}:{listen_port}",
                  "server": f"{LOOPBACK}:{sipp_port}", "allow": [LOOPBACK], "max_calls": args.lines,
                  "rtp_ports": [rtp, rtp + 4 * args.lines + 19]}
    settings = replace(base, database=DatabaseSettings(url=f"sqlite:///{work / 'callcenter.db'}"),
                       followup=replace(base.followup, line="followup", max_calls=args.lines),
                       lines=(line_table,))
    if not settings.scheduler.owner:
        raise SystemExit("scheduler.owner is false in this environment: the jobs would not run here")
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)

    began = time.monotonic()
    phones = completed_repairs(sessions, settings, args.count)
    with sessions() as session:
        due_times = set(aware(d) for d in session.scalars(select(FollowUp.due_at)))
    scheduled = statuses(sessions)[followup.SCHEDULED]
    print(f"{scheduled} follow-ups scheduled for {args.count} completed repairs in {time.monotonic() - began:.1f} s; "
          f"due at {', '.join(sorted(d.astimezone(SHANGHAI).strftime('%Y-%m-%d %H:%M') for d in due_times))} "
          f"(site time); {args.lines} lines; {os.cpu_count()} cores; SQLite")

    # The resident: keys over the two questions, timed from the answer (our introduction comes first,
    # whole, without barge-in).
    prompts = Prompts()
    repair = RepairFacts(reported_at=REPORTED, category=REPAIR["category"], building=REPAIR["building"],
                         unit=REPAIR["unit"], room=REPAIR["room"])
    intro = sum(len(part) for part in introduction(prompts, repair, OPENS)) / 16000
    resident = CallerScript()
    resident.keys(intro + 1.0, "1")  # over 「问题解决了吗？…解决了请说是或按1」
    resident.keys(intro + 3.0, "1")  # over 「…满意请说满意或按1」; then silent through the comment
    pcap = resident.write_pcap(work / "resident.pcap", SCRIPT_SECONDS)

    clock = RunningClock(OPENS)
    survey = SurveyServices(settings, prompts, CallLog(sessions), None, clock)  # keys only: no speech model needed
    config, _flow = line_config(settings.lines[0])
    line = Line(config)
    services = FollowupServices(survey, FollowUpCalls(sessions, settings), IncidentCalls(sessions, settings),
                                {config.name: line}.get)
    jobs = Jobs(settings, engine, dial_followup=lambda followup_id: call_followup(followup_id, services), clock=clock)

    limit = args.timeout_minutes * 60
    sipp = Sipp(work)
    phone = sipp.start("survey_resident", port=sipp_port, calls=args.count, timeout=limit + 600,
                       params={"pcap": pcap, "hold_ms": int(RESIDENT_HANGS_UP * 1000), "ring_ms": 100}).wait_ready()
    line.start()
    stopped_early = False
    try:
        jobs.start()  # the scheduler's owner: its stored 30 s tick runs too
        started = time.monotonic()
        next_report = started + PROGRESS_EVERY
        while True:
            if args.tick_seconds:
                jobs.followup_tick()
            time.sleep(args.tick_seconds or 1.0)
            now = time.monotonic()
            counts = statuses(sessions)
            calling = counts[followup.CALLING] + len(jobs.calls.in_flight)
            if not due_now(sessions, clock()) and not calling:
                break
            if now - started >= limit:
                stopped_early = True
                break
            if now >= next_report:
                next_report += PROGRESS_EVERY
                print(f"  {(now - started) / 60:5.1f} min: done {counts[followup.DONE]}, calling "
                      f"{counts[followup.CALLING]}, waiting {due_now(sessions, clock())}; peak RSS {peak_rss_mb():.0f} MB",
                      flush=True)
        elapsed = time.monotonic() - started
        cut_off = clock()
        if jobs.scheduler is not None:  # no more calls handed out; the ones under way finish
            jobs.scheduler.pause()
        deadline = time.monotonic() + RESIDENT_HANGS_UP + 30
        while jobs.calls.in_flight and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        jobs.stop()
        line.stop()
        phone.stop()

    with sessions() as session:
        records = [(r.called, aware(r.started_at), aware(r.answered_at), aware(r.ended_at), r.outcome)
                   for r in session.scalars(select(CallRecord).where(CallRecord.direction == "outbound"))]
        followed_up = session.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.status == Status.FOLLOWED_UP))
    ended = [r for r in records if r[3] is not None and r[3] <= cut_off]
    counts = statuses(sessions)
    rate = len(ended) / (elapsed / 60) if elapsed else 0.0
    lengths = [(r[3] - r[1]).total_seconds() for r in records if r[3] is not None]
    talk = [(r[3] - r[2]).total_seconds() for r in records if r[3] is not None and r[2] is not None]
    outcomes = Counter(r[4] for r in records)

    with sessions() as session:
        never_tried = session.scalar(select(func.count()).select_from(FollowUp).where(FollowUp.attempts == 0))
        retry_pending = session.scalar(select(func.count()).select_from(FollowUp).where(
            FollowUp.status == followup.SCHEDULED, FollowUp.attempts > 0))

    print()
    print(f"follow-ups scheduled:          {args.count}")
    print(f"completed (done):              {counts[followup.DONE]}   (tickets now 回访: {followed_up})")
    print(f"failed (回访失败):              {counts[followup.FAILED]}")
    print(f"retry pending (no contact):    {retry_pending}")
    print(f"opted out:                     {counts[followup.OPTED_OUT]}")
    print(f"never dialled (left at stop):  {never_tried}")
    print(f"call outcomes:                 {dict(outcomes)}")
    print(f"calls per minute:              {rate:.2f}  ({len(ended)} calls ended in {elapsed / 60:.2f} min, "
          f"{args.lines} lines)")
    if lengths:
        print(f"mean call length:              {statistics.mean(lengths):.1f} s dial to hang-up "
              f"(answered to hang-up {statistics.mean(talk):.1f} s; min {min(lengths):.1f}, max {max(lengths):.1f})")
    if not stopped_early:
        print(f"time to drain the backlog:     {elapsed / 60:.2f} min (measured)")
    elif ended:
        projected = args.count / rate
        print(f"time to drain the backlog:     {projected:.1f} min (PROJECTED from the rate: stopped after "
              f"{elapsed / 60:.2f} min with {len(ended)} of {args.count} called)")
    else:
        print("time to drain the backlog:     unknown (no call ended before the stop)")
    by_sipp = invites_per_number(phone.messages())
    by_records = Counter(r[0] for r in records)
    twice_sipp = sorted(n for n, c in by_sipp.items() if c > 1)
    twice_records = sorted(n for n, c in by_records.items() if c > 1)
    unknown = set(by_sipp) - set(phones)
    print(f"residents called more than once: {len(twice_sipp)}  (SIPp received {sum(by_sipp.values())} INVITEs "
          f"for {len(by_sipp)} numbers{'; unknown numbers: ' + str(len(unknown)) if unknown else ''}; "
          f"call records: {len(twice_records)} numbers twice, {len(records)} records for {len(by_records)} numbers)")
    if twice_sipp or twice_records:
        print(f"  called twice: {(twice_sipp or twice_records)[:20]}")
    if dial_failures:
        print(f"dials that failed ({len(dial_failures)}):")
        for line_text in dial_failures[:10]:
            print(f"  {line_text}")
    print(f"peak RSS:                      {peak_rss_mb():.1f} MB")
    print(f"(data in {work})")


if __name__ == "__main__":
    main()
