"""Two hotline nodes behind Kamailio's dispatcher, on one PostgreSQL, end to end (issue 13).

Everything is real and on this machine: two ``callcenter serve`` processes (no speech model: the
address is confirmed by key and the description kept in the recording), one throwaway PostgreSQL
database, Kamailio with the configuration ``callcenter kamailio-config`` writes, and residents
calling through it with SIPp (RFC 4733 keys, espeak-ng speech). The nodes share one data
directory, as nodes share it over NFS. What the front desk would check is read through the
survivor's own console (its JSON API) and the database.

The cluster's timers are shortened so that the test takes a minute, not minutes: a heartbeat every
second, the scheduler's lease 4 s, a node silent 6 s is lost.

SIPp plays pcaps through a raw socket: run as root. Missing tools skip these tests, or fail them
with CALLCENTER_REQUIRE_SIP=1 (PostgreSQL: CALLCENTER_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import io
import itertools
import os
import random
import time
import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import migrate
from core.accounts import add_user
from core.store import Lease, Resident, make_engine, make_session_factory
from tests.support.cluster import STAFF, Dispatcher, Node
from tests.support.e2e import located, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript
from tests.support.sip import Sipp, sipp  # noqa: F401 (fixture)

pytestmark = pytest.mark.serial  # measures timing and failover: needs the machine to itself

TEST_TIME_LIMIT = 240
FAST = {"heartbeat_seconds": 1, "lease_seconds": 4, "node_lost_seconds": 6}
RESIDENT = dict(phone="13800138000", name="王阿姨", building="3", unit="2", room="1101")
LEAK = "卫生间的水龙头一直滴水"
_databases = itertools.count()


@pytest.fixture
def database(postgres_server):
    """An empty PostgreSQL database of its own; its URL."""
    name = f"cluster_{os.getpid()}_{next(_databases)}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def site(database, tmp_path):
    """The property company's database, ready: a desk account and 王阿姨 in the resident directory."""
    engine = make_engine(database)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions() as session, session.begin():
        add_user(session, *STAFF, "frontdesk", datetime.now(UTC))
        session.add(Resident(**RESIDENT))
    yield sessions
    engine.dispose()


@pytest.fixture
def cluster(database, site, tmp_path):
    """Two nodes on the one database and data directory, and the dispatcher in front of them."""
    data = tmp_path / "shared-data"
    nodes = [Node(name, tmp_path, database, data, cluster=FAST) for name in ("node-1", "node-2")]
    dispatcher = Dispatcher(tmp_path, nodes)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        dispatcher.start()
        yield dispatcher, nodes
    finally:
        dispatcher.stop()
        for node in nodes:
            node.stop()


def caller_pcap(directory: Path, speech: bytes | None, length: float) -> Path:
    """王阿姨: 1 (report) over the greeting, her room number (the caller ID is confirmed); then she describes the problem
    again and again (the hotline, without a speech model, records it for the desk)."""
    script = CallerScript()
    script.keys(1.0, "1")
    script.keys(2.2, "1101#")
    if speech is not None:
        at = 8.0
        while at + len(speech) / 16000 < length - 1:
            script.speak(at, speech, "problem")
            at += len(speech) / 16000 + 1.0
    return script.write_pcap(directory / f"caller-{random.getrandbits(32):08x}.pcap", length)


def call(sipp: Sipp, dispatcher: Dispatcher, pcap: Path, *, calls: int = 1, hang_up_at: float):
    """``calls`` residents call the hotline through the dispatcher and hang up ``hang_up_at`` s after the answer."""
    return sipp.start("hotline_caller_hangs_up", dispatcher.address, calls=calls, timeout=120,
                      params={"pcap": pcap, "caller": RESIDENT["phone"], "hold_ms": int(hang_up_at * 1000),
                              "bye_timeout_ms": 90000})


def new_calls(console, after_id: int, count: int, closed: bool = True) -> list[dict] | None:
    """The call records after ``after_id`` (oldest first) once there are ``count`` of them (all
    closed, if ``closed``); None before."""
    records = [r for r in console.get("/api/calls?limit=1000")["calls"] if r["id"] > after_id][::-1]
    if len(records) < count or closed and any(r["outcome"] == "in_progress" for r in records):
        return None
    return records


def wait_for(what: str, found, timeout: float = 30.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(every)
    return result


def test_two_nodes_share_the_calls_and_one_takes_over_when_the_other_dies(cluster, sipp, site, voices, tmp_path):
    dispatcher, nodes = cluster
    by_name = {node.name: node for node in nodes}
    consoles = {node.name: node.console() for node in nodes}
    streams = {name: console.stream() for name, console in consoles.items()}
    leak = voices(LEAK)

    # The scheduler runs on exactly one node.
    owners = wait_for("a scheduler holder", lambda: [n.name for n in nodes if n.health()["scheduler"]["owner"]])
    assert len(owners) == 1
    victim, survivor = by_name[owners[0]], next(n for n in nodes if n.name != owners[0])
    assert survivor.health()["scheduler"]["holder"] == victim.name

    # Nodes take calls from the dispatcher only: a caller who rings a node directly is refused.
    desk = consoles[survivor.name]
    direct = sipp.start("caller_refused", victim.address, timeout=20, params={"code": 403})
    assert direct.wait(20) == 0, direct.report()
    # A stranger's INVITE costs no row: it is counted on the line (and refused at a bounded rate).
    assert wait_for("the stranger counted", lambda: victim.health()["telephony"]["lines"]["hotline"]["hostile_packets"])
    assert desk.get("/api/calls?limit=10")["calls"] == []

    # Four residents at once: the calls land on both nodes, each leaves a draft with the confirmed address.
    first = call(sipp, dispatcher, caller_pcap(tmp_path, None, 8), calls=4, hang_up_at=6.0)
    assert first.wait(60) == 0, first.report()
    records = wait_for("four closed call records", lambda: new_calls(desk, 0, 4))
    assert {r["node"] for r in records} == {"node-1", "node-2"}, records
    assert all(r["outcome"] == "caller_hung_up" and r["ticket_id"] for r in records), records
    # Each node's console saw the other node's tickets appear, live.
    seen: dict[str, set[int]] = {name: set() for name in streams}

    def each_saw_the_others() -> bool:
        for name, stream in streams.items():
            seen[name] |= stream.ticket_ids()
        return all({r["ticket_id"] for r in records if r["node"] != name} <= seen[name] for name in streams)
    wait_for("each console's live view of the other node's tickets", each_saw_the_others, timeout=5)

    # Two residents describe their problem at length: one call on each node.
    before = max(r["id"] for r in records)
    long_calls = call(sipp, dispatcher, caller_pcap(tmp_path, leak, 60), calls=2, hang_up_at=58.0)
    talking = wait_for("a call on each node with its draft saved", lambda: (
        rs if len(rs := new_calls(desk, before, 2, closed=False) or []) == 2 and all(r["ticket_id"] for r in rs)
        else None))
    assert {r["node"] for r in talking} == {"node-1", "node-2"}, talking
    lost_call = next(r for r in talking if r["node"] == victim.name)
    recordings = tmp_path / "shared-data" / "recordings"
    wait_for("the description in the victim's recording", lambda: _recorded_seconds(recordings, lost_call["id"]) > 12)

    # The scheduler's node dies in the middle of the call.
    victim.kill()
    killed_at = time.monotonic()

    # The next residents are all answered, by the survivor.
    after = call(sipp, dispatcher, caller_pcap(tmp_path, None, 8), calls=3, hang_up_at=5.0)
    assert after.wait(60) == 0, after.report()
    later = wait_for("the three calls after the kill", lambda: new_calls(desk, max(r["id"] for r in talking), 3))
    assert {(r["node"], r["outcome"]) for r in later} == {(survivor.name, "caller_hung_up")}, later

    # The lease moves to the survivor; the lost call is closed there, its draft and recording kept.
    wait_for("the survivor running the scheduler", lambda: survivor.health()["scheduler"]["running"], timeout=15)
    took_over = time.monotonic() - killed_at
    closed = wait_for("the lost call closed", lambda: next(
        (r for r in consoles[survivor.name].get(f"/api/calls?ticket_id={lost_call['ticket_id']}")["calls"]
         if r["outcome"] == "node_lost"), None), timeout=30)
    assert closed["node"] == victim.name and closed["ended_at"]
    ticket = consoles[survivor.name].get(f"/api/tickets/{lost_call['ticket_id']}")
    assert ticket["status"] == "draft" and (ticket["building"], ticket["unit"], ticket["room"]) == ("3", "2", "1101")
    assert any("已失联" in event["note"] for event in ticket["events"])
    with site() as session:
        assert session.get(Lease, "scheduler").holder.startswith(survivor.name + "/")

    # The survivor's console plays the dead node's recordings: the lost call's, up to the kill.
    status, wav = consoles[survivor.name].request("GET", closed["recording_url"])
    assert status == 200
    with wave.open(io.BytesIO(wav)) as played:
        heard = played.readframes(played.getnframes())
    located(heard, leak)  # the resident's description, intact
    assert len(heard) / 16000 > 12
    for record in records:
        if record["node"] == victim.name:
            status, _ = consoles[survivor.name].request("GET", record["recording_url"])
            assert status == 200
    long_calls.stop()
    print(f"scheduler taken over {took_over:.1f} s after the kill")


def _recorded_seconds(recordings: Path, record_id: int) -> float:
    files = list(recordings.rglob(f"{record_id}-*.wav"))
    return (files[0].stat().st_size - 44) / 16000 if files else 0.0


def test_two_nodes_started_at_the_same_moment_ten_times_both_run(database, tmp_path):
    """Twice on an empty database, then on the one they made: migrations, the first admin and the
    scheduler are each done once, by one node, and neither node crashes."""
    data = tmp_path / "shared-data"
    for attempt in range(10):
        if attempt == 5:  # half the rounds on a fresh database, the rest on the one they made
            _empty(database)
        nodes = [Node(f"node-{n}", tmp_path, database, data, cluster=FAST) for n in (1, 2)]
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_ready(60)
            holder = wait_for("one scheduler holder", lambda: _lease_holder(database), timeout=15)
            assert holder.split("/")[0] in {"node-1", "node-2"}, f"round {attempt}: {holder}"
            running = wait_for("the holder running the jobs", lambda nodes=nodes: [
                n.name for n in nodes if "scheduler started" in n.log()], timeout=15)
            assert running == [holder.split("/")[0]], f"round {attempt}: {running}"
            assert all(node.alive() for node in nodes)
        finally:
            for node in nodes:
                node.stop()
        for node in nodes:
            assert node.process.returncode in (0, -15), f"round {attempt}: {node.name}\n{node.log()}"
            assert "Traceback" not in node.log(), node.log()
            node.log_path.unlink()


def _lease_holder(url: str) -> str | None:
    """Who holds the scheduler's lease now (the database has no staff account to read /api/health's
    details with: the rounds start on an empty one)."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            lease = session.get(Lease, "scheduler")
            return lease.holder if lease and lease.holder and lease.expires_at > datetime.now(UTC) else None
    finally:
        engine.dispose()


def _empty(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()

