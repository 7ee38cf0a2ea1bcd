"""The audit log: who did what that matters for privacy and security, when, and from where.

Written in the same transaction as what it records (a playback is written before the file is
sent). Admins read it (``GET /api/audit``, the 账号管理 page). Nothing updates an entry; failed
logins are the only entries an outsider can cause, and they are pruned after
``FAILED_LOGIN_KEEP_DAYS`` (their growth is bounded anyway by the password executor's pace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.store import AuditEntry

LOGIN, LOGIN_FAILED, LOGOUT = "login", "login_failed", "logout"
RECORDING = "recording"  # a call's recording was played or downloaded
USER_CREATED, USER_CHANGED = "user_created", "user_changed"  # role, active flag, engineer link, password
ACTIONS = {
    LOGIN: "登录", LOGIN_FAILED: "登录失败", LOGOUT: "退出登录", RECORDING: "播放/下载录音",
    USER_CREATED: "新建账号", USER_CHANGED: "修改账号",
}
FAILED_LOGIN_KEEP_DAYS = 90


def record(session: Session, action: str, at: datetime, *, username: str = "", address: str = "",
           target: str = "", detail: dict[str, Any] | None = None) -> AuditEntry:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    entry = AuditEntry(at=at, action=action, username=username[:64], address=address[:64], target=target[:64],
                       detail=detail)
    session.add(entry)
    if action == LOGIN_FAILED:
        session.execute(delete(AuditEntry).where(
            AuditEntry.action == LOGIN_FAILED, AuditEntry.at < at - timedelta(days=FAILED_LOGIN_KEEP_DAYS)))
    return entry


@dataclass
class AuditFilter:
    action: str = ""
    username: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200
    offset: int = 0


def find(session: Session, wanted: AuditFilter) -> tuple[list[AuditEntry], int]:
    """Newest first, with the total for paging."""
    query = select(AuditEntry)
    if wanted.action:
        query = query.where(AuditEntry.action == wanted.action)
    if wanted.username:
        query = query.where(AuditEntry.username == wanted.username)
    if wanted.target:
        query = query.where(AuditEntry.target == wanted.target)
    if wanted.since:
        query = query.where(AuditEntry.at >= wanted.since)
    if wanted.until:
        query = query.where(AuditEntry.at < wanted.until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                           .limit(wanted.limit).offset(wanted.offset)).all()
    return list(rows), total


def failures_since(session: Session, *, username: str = "", address: str = "", since: datetime
                   ) -> tuple[int, datetime | None]:
    """Failed logins for this name (or from this address) after ``since`` and after its last
    successful login: how many, and the latest."""
    column, value = (AuditEntry.username, username) if username else (AuditEntry.address, address)
    last_ok = session.scalar(select(func.max(AuditEntry.at)).where(AuditEntry.action == LOGIN, column == value,
                                                                     AuditEntry.at > since))
    count, latest = session.execute(
        select(func.count(), func.max(AuditEntry.at))
        .where(AuditEntry.action == LOGIN_FAILED, column == value, AuditEntry.at > (last_ok or since))).one()
    return count, latest
