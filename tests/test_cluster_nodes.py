"""Nodes on both databases: each process a run of its node with a heartbeat, every call record
naming its node, and the calls of a node that died closed by a survivor with everything saved
kept (issue 13)."""

import socket
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.calls import CallLog
from core.intake import DraftFacts, PhoneDrafts
from core.nodes import NodeHeartbeat, alive_runs, close_lost_calls
from core.settings import ClusterSettings, SettingsError, load_settings
from core.store import CallRecord, NodeRun, Ticket, TicketEvent
from tests.conftest import Clock

CLUSTER = ClusterSettings()  # heartbeat 10 s, node lost after 90 s


def a_call_in_progress(sessions, settings, heartbeat: NodeHeartbeat, clock: Clock, room: str = "1101") -> int:
    """A hotline call on ``heartbeat``'s node that got as far as a draft with the address; its record id."""
    calls = CallLog(sessions, heartbeat.node, heartbeat.run_id)
    record_id = calls.open(sip_call_id=f"call-{room}@127.0.0.1", direction="inbound", line="hotline",
                           caller="13800138000", called="hotline", at=clock())
    calls.update(record_id, answered_at=clock(), recording_path=f"2026/11/23/{record_id}-call.wav")
    facts = DraftFacts(phone="13800138000", building="3", unit="2", room=room, confirmed={"address"})
    ticket_id, _ = PhoneDrafts(sessions, settings).save(None, facts, clock(), "来电号码匹配住户，已确认地址")
    calls.update(record_id, ticket_id=ticket_id)
    return record_id


def node(sessions, name: str, clock: Clock) -> NodeHeartbeat:
    heartbeat = NodeHeartbeat(sessions, name, CLUSTER, clock=clock)
    heartbeat.register()
    return heartbeat


def record(sessions, record_id: int) -> CallRecord:
    with sessions() as session:
        return session.get(CallRecord, record_id)


def test_the_calls_of_a_node_silent_too_long_are_closed_with_their_draft_and_recording_kept(sessions, settings):
    clock = Clock()
    first, second = node(sessions, "node-1", clock), node(sessions, "node-2", clock)
    lost = a_call_in_progress(sessions, settings, first, clock, "1101")
    alive = a_call_in_progress(sessions, settings, second, clock, "1201")
    clock.advance(seconds=30)
    first.beat()  # node-1's last sign of life
    last_seen = clock()
    for _ in range(12):  # node-2 beats on; node-1 is silent
        clock.advance(seconds=10)
        second.beat()
        with sessions() as session, session.begin():
            closed = close_lost_calls(session, clock(), CLUSTER)
        if closed:
            break
    assert closed == [lost]
    assert CLUSTER.node_lost_seconds < (clock() - last_seen).total_seconds() <= CLUSTER.node_lost_seconds + 10
    gone = record(sessions, lost)
    assert (gone.outcome, gone.ended_at, gone.node) == ("node_lost", last_seen, "node-1")
    assert gone.recording_path == f"2026/11/23/{lost}-call.wav"  # the recording so far stays the desk's to play
    with sessions() as session:
        ticket = session.get(Ticket, gone.ticket_id)
        assert (ticket.status, ticket.building, ticket.unit, ticket.room) == ("draft", "3", "2", "1101")
        note = session.scalars(select(TicketEvent.note).where(TicketEvent.ticket_id == ticket.id)
                               .order_by(TicketEvent.id.desc())).first()
        assert "node-1" in note and "已失联" in note
    assert record(sessions, alive).outcome == "in_progress"  # node-2 is alive: its call goes on
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == []  # once


def test_a_node_that_restarted_after_a_crash_has_its_old_calls_closed_at_once(sessions, settings):
    clock = Clock()
    crashed = node(sessions, "node-1", clock)
    lost = a_call_in_progress(sessions, settings, crashed, clock)
    clock.advance(seconds=5)
    restarted = node(sessions, "node-1", clock)  # the same node, a new process, seconds later
    current = a_call_in_progress(sessions, settings, restarted, clock, "1201")
    clock.advance(seconds=2 * CLUSTER.heartbeat_seconds - 6)
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == []  # it might be a second process of that name
    clock.advance(seconds=2)  # the old run missed two beats: a restart it was
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == [lost]
    assert record(sessions, current).outcome == "in_progress"


def test_a_node_that_stopped_cleanly_leaves_no_open_call_behind(sessions, settings):
    clock = Clock()
    stopping = node(sessions, "node-1", clock)
    left_open = a_call_in_progress(sessions, settings, stopping, clock)
    stopping.stop()  # a call whose record the stop did not close (its thread was cut off)
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == []  # its thread may still be closing it
    clock.advance(seconds=31)
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == [left_open]


def test_two_live_runs_with_one_node_name_are_told_apart(sessions, settings, caplog):
    clock = Clock()
    first = node(sessions, "node-1", clock)
    mine = a_call_in_progress(sessions, settings, first, clock)
    second = node(sessions, "node-1", clock)  # a second process given the same name by mistake
    assert "give each process its own node_name" in caplog.text
    for _ in range(3):  # both alive: neither is taken for a restart of the other
        clock.advance(seconds=CLUSTER.heartbeat_seconds)
        first.beat()
        second.beat()
        with sessions() as session, session.begin():
            assert close_lost_calls(session, clock(), CLUSTER) == []
    with sessions() as session, session.begin():
        assert close_lost_calls(session, clock(), CLUSTER) == []
        assert [run.id for run in alive_runs(session, clock(), CLUSTER)] == [first.run_id, second.run_id]
    assert record(sessions, mine).outcome == "in_progress"


async def test_the_calls_api_says_which_node_took_each_call(api, sessions, settings, clock):
    heartbeat = node(sessions, "node-2", clock)
    record_id = a_call_in_progress(sessions, settings, heartbeat, clock)
    calls = await (await (await api("desk")).get("/api/calls")).json()
    assert [(c["id"], c["node"]) for c in calls["calls"]] == [(record_id, "node-2")]


def test_a_node_that_does_not_share_the_recordings_directory_says_so(sessions, settings, tmp_path, caplog):
    clock = Clock()
    shared, local = tmp_path / "nfs" / "recordings", tmp_path / "local" / "recordings"
    first = NodeHeartbeat(sessions, "node-1", CLUSTER, shared, clock)
    second = NodeHeartbeat(sessions, "node-2", CLUSTER, shared, clock)
    first.register()
    second.register()
    first.beat()
    assert first.unshared == second.unshared == []
    third = NodeHeartbeat(sessions, "node-3", CLUSTER, local, clock)
    third.register()
    assert third.unshared == ["node-1", "node-2"]
    assert "not shared with node(s) node-1, node-2" in caplog.text
    first.beat()
    assert first.unshared == ["node-3"]


def test_the_heartbeat_thread_keeps_a_run_alive(sessions, settings):
    fast = replace(CLUSTER, heartbeat_seconds=0.05)
    heartbeat = NodeHeartbeat(sessions, "node-1", fast)
    heartbeat.start()
    try:
        with sessions() as session:
            started = session.get(NodeRun, heartbeat.run_id).seen_at
        time.sleep(0.3)
        with sessions() as session:
            assert session.get(NodeRun, heartbeat.run_id).seen_at - started >= timedelta(seconds=0.1)
    finally:
        heartbeat.stop()
    with sessions() as session:
        assert session.get(NodeRun, heartbeat.run_id).stopped_at is not None


def test_node_name_cluster_timers_and_the_recordings_directory_are_settings(tmp_path):
    defaults = load_settings(environ={})
    assert defaults.node_name == socket.gethostname().split(".")[0]
    assert (defaults.cluster.heartbeat_seconds, defaults.cluster.lease_seconds,
            defaults.cluster.node_lost_seconds) == (10, 30, 90)
    assert defaults.recordings_dir == defaults.data_dir / "recordings"
    settings = load_settings(environ={"CALLCENTER_NODE_NAME": "node-2", "CALLCENTER_CLUSTER_LEASE_SECONDS": "45",
                                      "CALLCENTER_RECORDINGS_DIRECTORY": str(tmp_path / "nfs")})
    assert (settings.node_name, settings.cluster.lease_seconds) == ("node-2", 45)
    assert settings.recordings_dir == tmp_path / "nfs"
    with pytest.raises(SettingsError, match="node_name"):
        load_settings(environ={"CALLCENTER_NODE_NAME": "node 2"})
    with pytest.raises(SettingsError, match="lease_seconds"):
        load_settings(environ={"CALLCENTER_CLUSTER_LEASE_SECONDS": "15"})  # under two heartbeats
