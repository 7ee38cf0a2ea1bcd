"""``callcenter backup DIR`` and ``callcenter restore DIR``: the database, the call recordings and
the settings file, as one consistent copy.

SQLite: the database is copied with SQLite's online backup API, which gives a consistent
snapshot while the service keeps writing (WAL included), then checked (``PRAGMA
integrity_check``). Recordings are copied after the snapshot, so every recording the copied
database names is there (a call still under way may be cut short; its record says so).
PostgreSQL: the database is the operator's to back up with ``pg_dump`` (and to restore with
``pg_restore``); these commands copy the recordings and the settings file only, and say so.

A backup directory holds ``callcenter.db`` (SQLite), ``recordings/``, ``settings.toml`` (the
configuration file, if one is used; secrets belong in the environment, not in it) and
``backup.json``: what was copied, the schema revision, counts, and every file's size, which
``restore`` checks before it changes anything. The directory is readable by its owner only:
recordings and phone numbers are personal data.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from core.settings import Settings

MANIFEST = "backup.json"
DATABASE_FILE = "callcenter.db"
RECORDINGS = "recordings"
SETTINGS_FILE = "settings.toml"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why (nothing was changed)."""


@dataclass(frozen=True)
class Summary:
    directory: Path
    database: str  # "sqlite" or "postgresql"
    tickets: int | None  # None: the database was not copied (PostgreSQL)
    recordings: int
    settings_file: bool

    def describe(self) -> str:
        tickets = f"{self.tickets} 张维修单 / tickets" if self.tickets is not None else "数据库未复制 / database not copied"
        return f"{tickets}，{self.recordings} 个录音 / recordings，配置文件 / settings file: " \
               f"{'有 / yes' if self.settings_file else '无 / none'}"


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite database file, or None for PostgreSQL."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if url.database is None:
        raise BackupError(f"database.url {settings.database_url!r} names no SQLite file (in memory): nothing to copy")
    return Path(url.database)


def postgres_hint(settings: Settings, directory: Path) -> str:
    url = make_url(settings.database_url).set(password=None, drivername="postgresql")
    return (f"数据库为 PostgreSQL：请另用 pg_dump 备份，恢复用 pg_restore / the database is PostgreSQL: back it up "
            f"with pg_dump -Fc -f {directory / 'callcenter.dump'} '{url.render_as_string()}' (restore: pg_restore)")


# --- backup ------------------------------------------------------------------------------------------


def backup(settings: Settings, directory: Path, config_file: Path | None) -> Summary:
    directory = directory.expanduser().resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"备份目录须为空或不存在 / the backup directory must be empty or new: {directory}")
    database = sqlite_path(settings)
    if database is not None and not database.is_file():
        raise BackupError(f"数据库文件不存在 / no database file at {database}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    manifest: dict = {"format": FORMAT, "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "node": settings.node_name, "database": "sqlite" if database else "postgresql"}
    if database is not None:
        copy = directory / DATABASE_FILE
        _sqlite_copy(database, copy)
        manifest.update(_describe_database(copy))
    recordings = _copy_tree(settings.recordings_dir, directory / RECORDINGS)
    if config_file is not None:
        shutil.copy2(config_file, directory / SETTINGS_FILE)
    manifest["files"] = {str(path.relative_to(directory)): path.stat().st_size
                         for path in sorted(directory.rglob("*")) if path.is_file()}
    (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return Summary(directory, manifest["database"], manifest.get("tickets"), recordings, config_file is not None)


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while other connections write."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        with dst:
            # In one step: a single read transaction, which in WAL mode does not hold up the service's
            # writers (a copy in steps would start over after each of their commits).
            src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        if dst.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"备份的数据库未通过完整性检查 / the copied database fails its integrity check: {target}")
    finally:
        src.close()
        dst.close()


def _describe_database(path: Path) -> dict:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        def first(query: str):
            return connection.execute(query).fetchone()[0]
        return {"schema": first("SELECT version_num FROM alembic_version"),
                "tickets": first("SELECT count(*) FROM tickets"), "call_records": first("SELECT count(*) FROM call_records")}


def _copy_tree(source: Path, target: Path) -> int:
    """Copy the files under ``source`` (none is fine); how many."""
    copied = 0
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
                copied += 1
    return copied


# --- restore -----------------------------------------------------------------------------------------


def restore(settings: Settings, directory: Path, force: bool = False) -> Summary:
    """Put a backup back: the database (SQLite), then the recordings. The backup is checked first and
    a database that already holds tickets is only replaced with ``force``. Stop the service first."""
    directory = directory.expanduser().resolve()
    manifest = _checked_manifest(directory)
    database = sqlite_path(settings)
    if manifest["database"] == "sqlite" and database is None:
        raise BackupError("这是 SQLite 的备份，而当前配置使用 PostgreSQL / this backup holds a SQLite database but "
                          "database.url names PostgreSQL")
    tickets = None
    if manifest["database"] == "sqlite" and database is not None:  # None: refused just above
        if not force and _holds_tickets(database):
            raise BackupError(f"数据库已有维修单；确认要覆盖请加 --force / {database} already holds tickets: "
                              "add --force to replace it")
        database.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{directory / DATABASE_FILE}?mode=ro", uri=True)
        dst = sqlite3.connect(database, timeout=30)
        try:
            with dst:
                src.backup(dst)
        finally:
            src.close()
            dst.close()
        tickets = manifest["tickets"]
    recordings = _copy_tree(directory / RECORDINGS, settings.recordings_dir)
    return Summary(directory, manifest["database"], tickets, recordings, (directory / SETTINGS_FILE).is_file())


def _checked_manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"不是备份目录（没有 {MANIFEST}）/ not a backup directory: {directory}") from None
    except ValueError as error:
        raise BackupError(f"{MANIFEST} 已损坏 / is damaged: {error}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"不认识的备份格式 / unknown backup format {manifest.get('format')!r}")
    for name, size in manifest["files"].items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            raise BackupError(f"备份不完整：{name} 缺失或大小不符 / the backup is incomplete: {name} is missing or "
                              "has changed; nothing was restored")
    return manifest


def _holds_tickets(database: Path) -> bool:
    if not database.is_file():
        return False
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        try:
            return connection.execute("SELECT 1 FROM tickets LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:  # no schema yet
            return False
