"""The service's files are private to the user it runs as: residents' data, recordings, the model.

``callcenter`` runs with umask 077, so whatever it creates is readable by its own user only.
Files an older version left readable by others (the database was 0644) are fixed at start,
with a log line naming how many; files owned by another user are left alone and said so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from core.settings import Settings

log = logging.getLogger(__name__)

UMASK = 0o077


def private_umask() -> None:
    os.umask(UMASK)


def sqlite_files(url: str) -> list[Path]:
    """The database file of a SQLite URL and its journal files; none for a server database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return []
    database = Path(parsed.database)
    return [database, *(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def private_paths(settings: Settings) -> list[Path]:
    """Where the service keeps what only it may read: the data directory (database, recordings,
    installed model), a SQLite database kept elsewhere, and a configured model directory."""
    paths = [settings.data_dir, *sqlite_files(settings.database_url)]
    if settings.asr.model_path:
        paths.append(Path(settings.asr.model_path))
    return paths


def make_private(settings: Settings) -> int:
    """Take group and other permissions away from every file and directory under the private
    paths; returns how many were changed. The data directory is created (private) if missing."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed, foreign = 0, []
    for root in private_paths(settings):
        for path in _walk(root):
            result = _restrict(path)
            if result is None:
                foreign.append(path)
            changed += result or 0
    if changed:
        log.warning("made %d files and directories private to this user (group and others could read them); "
                    "under %s", changed, ", ".join(str(p) for p in private_paths(settings) if p.exists()))
    for path in foreign[:5]:
        log.warning("%s belongs to another user and is readable by others; fix its owner or mode", path)
    return changed


def _walk(root: Path):
    if not root.exists() and not root.is_symlink():
        return
    yield root
    if root.is_dir() and not root.is_symlink():
        for directory, subdirectories, files in os.walk(root):
            for name in subdirectories + files:
                yield Path(directory) / name


def _restrict(path: Path) -> int | None:
    """1 if the mode was changed, 0 if it was private already, None if not ours to change."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return 0
    if info.st_uid != os.geteuid():
        return None
    path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    return 1
