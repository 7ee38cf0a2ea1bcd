"""Clean-up of what a call leaves that is personal: the recording, the transcript, the phone numbers.

All of it is kept ``recordings.keep_days`` and no longer. The call record itself stays (its
direction, line, times, outcome and ticket), so the counts the reports need do not change.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import null, or_, select, update
from sqlalchemy.orm import Session

from core import callback_list
from core.db import affected_rows
from core.store import CallRecord

log = logging.getLogger(__name__)


def delete_old_recordings(session: Session, recordings_dir: Path, now: datetime, keep_days: int) -> int:
    """Delete the WAVs of calls older than ``keep_days`` and clear their call records' paths;
    also WAVs no record names (a call cut off before its record was updated). Returns how many."""
    cutoff = now - timedelta(days=keep_days)
    root = recordings_dir.resolve()
    deleted = 0
    old = session.scalars(select(CallRecord).where(CallRecord.recording_path != "", CallRecord.started_at < cutoff))
    for record in old:
        deleted += _delete(root, root / record.recording_path)
        record.recording_path = ""
    if root.is_dir():
        for orphan in root.rglob("*.wav"):
            if orphan.stat().st_mtime < cutoff.timestamp():
                deleted += _delete(root, orphan)
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()  # the empty day folders (YYYY/MM/DD) left behind
    if deleted:
        log.info("deleted %d recordings older than %d days", deleted, keep_days)
    forget_old_calls(session, cutoff)
    return deleted


def forget_old_calls(session: Session, cutoff: datetime) -> int:
    """Clear the transcripts and the callers' and called numbers of calls started before ``cutoff``;
    returns how many records were cleared."""
    cleared = affected_rows(session.execute(
        update(CallRecord)
        .where(CallRecord.started_at < cutoff,
               or_(CallRecord.transcript.is_not(None), CallRecord.caller != "", CallRecord.called != ""))
        .values(transcript=null(), caller="", called="")
        .execution_options(synchronize_session=False)))
    if cleared:
        log.info("cleared the transcripts and phone numbers of %d call records older than %s", cleared,
                 cutoff.date().isoformat())
    callback_list.forget_before(session, cutoff)
    return cleared


def _delete(root: Path, path: Path) -> int:
    path = path.resolve()
    if root not in path.parents or not path.is_file():  # only files under the recordings directory
        return 0
    path.unlink()
    return 1
