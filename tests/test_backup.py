"""``callcenter backup`` / ``restore`` (issue 16): backup -> a new machine -> restore gives the same
tickets and recordings; the copy is consistent while the service writes; a damaged backup or a
database in use is refused with nothing changed. SQLite file and PostgreSQL (recordings only)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from callcenter.backup import BackupError, backup, restore
from core import desk, migrate
from core.calls import CallLog
from core.desk import NewTicket
from core.settings import load_settings
from core.store import CallRecord, Ticket, make_engine, make_session_factory
from tests.support.tickets import CLERK

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def a_day_at_the_desk(sessions, settings, tickets: int = 5) -> None:
    """Tickets with events, and calls with their recordings on disk."""
    calls = CallLog(sessions)
    for n in range(tickets):
        with sessions() as session, session.begin():
            ticket = desk.create_ticket(session, NewTicket(description=f"厨房漏水 {n}", building="3", unit="2",
                                                           room=f"{1101 + n}", phone="13800138000"),
                                        CLERK, NOW + timedelta(minutes=n), settings)
            desk.add_note(session, ticket, "已电话联系住户", CLERK, NOW + timedelta(minutes=n, seconds=30))
            ticket_id = ticket.id
        path = Path("2026/11/23") / f"call-{n}.wav"
        (settings.recordings_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (settings.recordings_dir / path).write_bytes(os.urandom(16000 + n))
        record_id = calls.open(sip_call_id=f"c{n}@127.0.0.1", direction="inbound", line="hotline", caller="13800138000",
                               called="hotline", at=NOW + timedelta(minutes=n), ticket_id=ticket_id)
        calls.update(record_id, recording_path=str(path), outcome="completed", ended_at=NOW + timedelta(minutes=n + 1))


def snapshot(sessions, settings) -> dict:
    """What the desk would check: every ticket with its history, every call and its recording's bytes."""
    with sessions() as session:
        tickets = [(t.number, t.status, t.description, t.room, [(e.kind, e.note) for e in t.events])
                   for t in session.scalars(select(Ticket).order_by(Ticket.id))]
        calls = [(c.sip_call_id, c.ticket_id, c.outcome, c.recording_path,
                  (settings.recordings_dir / c.recording_path).read_bytes())
                 for c in session.scalars(select(CallRecord).order_by(CallRecord.id))]
    return {"tickets": tickets, "calls": calls}


def new_machine(tmp_path, settings, name="restored"):
    """The same configuration on an empty data directory (and, for SQLite, an empty database)."""
    fresh = replace(settings, data_dir=tmp_path / name)
    if settings.database_url.startswith("sqlite"):
        fresh = replace(fresh, database=replace(settings.database, url=""))
    return fresh


def test_backup_then_restore_on_a_new_machine_gives_the_same_tickets_and_recordings(tmp_path, sessions, settings):
    a_day_at_the_desk(sessions, settings)
    before = snapshot(sessions, settings)
    summary = backup(settings, tmp_path / "backup", config_file=None)
    assert summary.recordings == 5
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700  # personal data: the owner only
    manifest = json.loads((tmp_path / "backup" / "backup.json").read_text())

    if not settings.database_url.startswith("sqlite"):
        # PostgreSQL: the database is pg_dump's; recordings come back, the database is untouched.
        assert summary.database == "postgresql" and summary.tickets is None
        assert not (tmp_path / "backup" / "callcenter.db").exists()
        fresh = new_machine(tmp_path, settings)
        restored = restore(fresh, tmp_path / "backup")
        assert restored.recordings == 5 and restored.tickets is None
        for _, _, _, path, data in before["calls"]:
            assert (fresh.recordings_dir / path).read_bytes() == data
        return

    assert (summary.database, summary.tickets, manifest["tickets"], manifest["call_records"]) == ("sqlite", 5, 5, 5)
    with sessions() as session:
        assert manifest["schema"] == session.scalar(text("SELECT version_num FROM alembic_version"))
    fresh = new_machine(tmp_path, settings)
    restored = restore(fresh, tmp_path / "backup")
    assert (restored.tickets, restored.recordings) == (5, 5)
    engine = migrate.open_database(fresh.database_url)  # what serve does first: the schema is current
    try:
        assert snapshot(make_session_factory(engine), fresh) == before
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_copy_is_consistent_while_the_service_writes(tmp_path, sessions, settings):
    """A writer keeps adding tickets (each with its event, in one transaction) during the backup."""
    a_day_at_the_desk(sessions, settings, tickets=1)
    stop = threading.Event()

    def keep_writing():
        n = 0
        while not stop.is_set():
            with sessions() as session, session.begin():
                desk.create_ticket(session, NewTicket(description="楼道灯不亮" * 50, area="3号楼楼道"), CLERK,
                                   NOW + timedelta(seconds=n), settings)
            n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        backup(settings, tmp_path / "backup", config_file=None)
    finally:
        stop.set()
        writer.join()
    copy = sqlite3.connect(tmp_path / "backup" / "callcenter.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tickets, created = copy.execute("SELECT (SELECT count(*) FROM tickets), "
                                    "(SELECT count(*) FROM ticket_events WHERE kind = 'created')").fetchone()
    copy.close()
    with sessions() as session:
        written = session.scalar(select(func.count(Ticket.id)))
    assert 1 <= tickets <= written and created == tickets  # a moment's state: no ticket without its event
    assert not (tmp_path / "backup" / "callcenter.db-wal").exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_restore_refuses_a_damaged_backup_or_a_database_in_use_and_changes_nothing(tmp_path, sessions, settings):
    a_day_at_the_desk(sessions, settings, tickets=2)
    backup(settings, tmp_path / "backup", config_file=None)
    with pytest.raises(BackupError, match="empty or new"):
        backup(settings, tmp_path / "backup", config_file=None)

    before = snapshot(sessions, settings)
    with pytest.raises(BackupError, match="already holds tickets"):
        restore(settings, tmp_path / "backup")  # over the live data, without --force
    assert snapshot(sessions, settings) == before

    fresh = new_machine(tmp_path, settings)
    recording = next((tmp_path / "backup" / "recordings").rglob("*.wav"))
    recording.write_bytes(recording.read_bytes()[:-10])  # a copy cut short
    with pytest.raises(BackupError, match="incomplete"):
        restore(fresh, tmp_path / "backup")
    assert not fresh.data_dir.exists()  # nothing was written
    with pytest.raises(BackupError, match="not a backup directory"):
        restore(fresh, tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_commands_round_trip_with_the_settings_file(tmp_path, sessions, settings):
    a_day_at_the_desk(sessions, settings, tickets=3)
    before = snapshot(sessions, settings)
    config = tmp_path / "site.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\nproperty_name = "阳光花园物业服务中心"\n'
                      f'[database]\nurl = "{settings.database_url}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}

    def cli(*args, **extra):
        return subprocess.run([sys.executable, "-m", "callcenter.cli", *args], env=env | extra, capture_output=True,
                              text=True, timeout=120)

    made = cli("--config", str(config), "backup", str(tmp_path / "b"))
    assert made.returncode == 0, made.stderr
    assert "3 张维修单 / tickets，3 个录音 / recordings" in made.stdout
    assert (tmp_path / "b" / "settings.toml").read_text(encoding="utf-8") == config.read_text(encoding="utf-8")

    target = tmp_path / "new-machine"
    done = cli("restore", str(tmp_path / "b"), CALLCENTER_DATA_DIR=str(target))
    assert done.returncode == 0, done.stderr
    assert "the settings file was not replaced" in done.stdout
    again = cli("restore", str(tmp_path / "b"), CALLCENTER_DATA_DIR=str(target))
    assert again.returncode == 1 and "add --force" in again.stderr
    assert cli("restore", "--force", str(tmp_path / "b"), CALLCENTER_DATA_DIR=str(target)).returncode == 0

    restored = load_settings(environ={"CALLCENTER_DATA_DIR": str(target)})
    engine = make_engine(restored.database_url)
    try:
        assert snapshot(make_session_factory(engine), restored) == before
    finally:
        engine.dispose()
