"""The nodes sharing one database: each process's heartbeat, and the calls of a node that died.

Every ``callcenter serve`` process is one run of its node (``node_runs``): it writes a heartbeat
every ``cluster.heartbeat_seconds`` and marks a clean stop. Each call record names the run that
took it. A run is gone when it stopped, when it has been silent for ``cluster.node_lost_seconds``,
or when its node started again after its last heartbeat and it missed two beats since (a restart
after a crash: its calls are closed within seconds, not minutes). A call still
"in progress" on a run that is gone can never end by itself: the scheduler's holder closes it as
``node_lost`` (``close_lost_calls``), keeping everything the call saved (the draft ticket, the
recording so far), and says so on the ticket.

Recordings: every node writes them under the one recordings directory that all nodes share
(a shared file system) and the database keeps their paths relative to it. Each run leaves a mark
there (``.nodes/<node>``) and looks for the marks of the other live nodes: a node that does not
see them is not sharing the directory, and says so loudly (log, /api/health), since the calls it
takes could not be played on the others.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from core import desk
from core.db import utcnow
from core.node_store import NodeRun
from core.outcomes import CallOutcome
from core.settings import ClusterSettings
from core.store import CallRecord, Ticket

log = logging.getLogger(__name__)
LOST = CallOutcome.NODE_LOST
# A cleanly stopped process hangs up its calls while it stops; give their records this long to close.
STOPPED_GRACE_SECONDS = 30


class NodeHeartbeat:
    """This process as a run of its node: registered at ``start``, alive every heartbeat, stopped at ``stop``."""

    def __init__(self, sessions: sessionmaker, node: str, cluster: ClusterSettings,
                 recordings_dir: Path | None = None, clock: Callable[[], datetime] = utcnow):
        self.sessions, self.node, self.cluster, self.clock = sessions, node, cluster, clock
        self.recordings_dir = recordings_dir
        self.run_id: int | None = None
        self.unshared: list[str] = []  # live nodes whose recordings this node cannot see
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> int:
        """A row for this run; warns when another run of the same node name looks alive."""
        now = self.clock()
        with self.sessions() as session, session.begin():
            alive = alive_runs(session, now, self.cluster, node=self.node)
            run = NodeRun(node=self.node, host=socket.gethostname()[:64], pid=os.getpid(), started_at=now, seen_at=now)
            session.add(run)
            session.flush()
            self.run_id = run.id
        self.check_recordings()
        for other in alive:
            log.warning("node %s: another run (%s, pid %d) beat %.0f s ago; if it is still running, give each "
                        "process its own node_name", self.node, other.host, other.pid,
                        (now - other.seen_at).total_seconds())
        log.info("node %s: run %d started", self.node, self.run_id)
        return self.run_id

    def beat(self) -> None:
        with self.sessions() as session, session.begin():
            session.execute(update(NodeRun).where(NodeRun.id == self.run_id).values(seen_at=self.clock()))
        self.check_recordings()

    def check_recordings(self) -> None:
        """Leave this node's mark in the recordings directory; find the other live nodes' marks."""
        if self.recordings_dir is None:
            return
        marks = self.recordings_dir / ".nodes"
        try:
            marks.mkdir(parents=True, exist_ok=True)
            (marks / self.node).touch()
        except OSError as error:  # calls cannot be recorded either: say so, and keep answering them
            log.error("node %s: cannot write to the recordings directory %s: %s", self.node, self.recordings_dir, error)
            return
        with self.sessions() as session:
            nodes = {run.node for run in alive_runs(session, self.clock(), self.cluster)}
        unshared = sorted(node for node in nodes if not (marks / node).exists())
        if unshared and unshared != self.unshared:
            log.error("node %s: recordings directory %s is not shared with node(s) %s: their recordings cannot "
                      "be played here, nor ours there (README: Several processes)", self.node,
                      self.recordings_dir, ", ".join(unshared))
        self.unshared = unshared

    def start(self) -> None:
        """Register (if not yet) and beat on a thread of its own until ``stop``."""
        if self.run_id is None:
            self.register()
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.cluster.heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # a database or file system hiccup: try again next beat
                log.exception("node %s: heartbeat failed", self.node)

    def stop(self) -> None:
        """A clean stop: the other nodes know at once that this run's calls are over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.run_id is not None:
            with self.sessions() as session, session.begin():
                session.execute(update(NodeRun).where(NodeRun.id == self.run_id).values(stopped_at=self.clock()))
            log.info("node %s: run %d stopped", self.node, self.run_id)


def alive_runs(session: Session, now: datetime, cluster: ClusterSettings, node: str | None = None) -> list[NodeRun]:
    """Runs that beat within ``node_lost_seconds`` and did not stop (of one node, if given)."""
    query = select(NodeRun).where(NodeRun.stopped_at.is_(None),
                                  NodeRun.seen_at >= now - timedelta(seconds=cluster.node_lost_seconds))
    if node is not None:
        query = query.where(NodeRun.node == node)
    return list(session.scalars(query.order_by(NodeRun.node, NodeRun.id)))


def gone_runs_condition(now: datetime, cluster: ClusterSettings):
    """SQL: the NodeRun is gone (stopped, silent too long, or its node restarted since)."""
    later = aliased(NodeRun)
    restarted = exists().where(later.node == NodeRun.node, later.id > NodeRun.id, later.started_at > NodeRun.seen_at)
    # Two live processes given one name by mistake: each beats, so neither is taken for a restart.
    missed_beats = NodeRun.seen_at < now - timedelta(seconds=2 * cluster.heartbeat_seconds)
    return or_(NodeRun.stopped_at < now - timedelta(seconds=STOPPED_GRACE_SECONDS),
               NodeRun.seen_at < now - timedelta(seconds=cluster.node_lost_seconds),
               restarted & missed_beats)


def close_lost_calls(session: Session, now: datetime, cluster: ClusterSettings) -> list[int]:
    """Close every call still in progress on a run that is gone (``node_lost``); its draft ticket and
    recording stay as they were saved. Returns the call record ids."""
    lost = session.execute(
        select(CallRecord, NodeRun).join(NodeRun, CallRecord.node_run_id == NodeRun.id)
        .where(CallRecord.outcome == CallOutcome.IN_PROGRESS, CallRecord.ended_at.is_(None),
               gone_runs_condition(now, cluster))
        .order_by(CallRecord.id).with_for_update(of=CallRecord, skip_locked=True)).all()
    for record, run in lost:
        # It ended at the latest when its process last gave a sign of life.
        ended = max(min(run.stopped_at or run.seen_at, now), record.started_at)
        record.outcome, record.ended_at = LOST, ended
        ticket = session.get(Ticket, record.ticket_id) if record.ticket_id is not None else None
        if ticket is not None:
            desk.record_event(ticket, desk.HOTLINE, now, "call",
                              note=f"通话中断：处理该通话的节点 {run.node} 已失联，已保存的内容和录音均已保留",
                              data={"call_id": record.id, "node": run.node})
        log.warning("call %s (record %d, ticket %s): node %s is gone (run %d, last heartbeat %s); closed as %s",
                    record.sip_call_id, record.id, record.ticket_id, run.node, run.id,
                    run.seen_at.isoformat(timespec="seconds"), LOST)
    return [record.id for record, _ in lost]

