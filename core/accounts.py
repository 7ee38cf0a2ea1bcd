"""Staff accounts and login sessions. Passwords are kept only as salted scrypt hashes.

Rules an account keeps: an engineer account is linked to an engineer of the directory (it sees
that engineer's tickets and nothing else; a link to an engineer who was deactivated sees
nothing); changing a password, role, active flag or link ends that user's other sessions.
Hashing is slow on purpose, so the web console runs it on an executor of its own
(``callcenter.web.passwords``); ``hash_password`` and ``check_password`` are the only slow calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.store import Engineer, User, WebSession
from core.tickets import Role


class ScryptCost(NamedTuple):
    n: int
    r: int
    p: int


# OWASP Password Storage Cheat Sheet (2025): scrypt with N = 2^17, r = 8, p = 1. That is 128 MiB and
# about half a second of one core per check; hashes made with a smaller cost are redone at the next login.
CURRENT_COST = ScryptCost(2**17, 8, 1)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256  # a longer "password" only makes the hash work longer


class AccountError(ValueError):
    pass


def _memory(cost: ScryptCost) -> int:
    return 128 * cost.n * cost.r * cost.p + 2**20  # what OpenSSL needs, and a little more


def hash_password(password: str, cost: ScryptCost | None = None) -> str:
    cost = cost or CURRENT_COST
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, dklen=32,
                            maxmem=_memory(cost))
    encode = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${cost.n}${cost.r}${cost.p}${encode(salt)}${encode(digest)}"


def _parse(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return None
        return ScryptCost(int(n), int(r), int(p)), base64.b64decode(salt), base64.b64decode(digest)
    except ValueError:
        return None


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    cost, salt, digest = parsed
    actual = hashlib.scrypt(password.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, dklen=32,
                            maxmem=_memory(cost))
    return hmac.compare_digest(actual, digest)


def needs_rehash(stored: str) -> bool:
    """Made with less than today's cost: redone (with the password the user just gave) at login."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] != CURRENT_COST


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    new_hash: str | None = None  # set when the stored hash was weaker than today's and the password was right


def check_password(password: str, stored: str | None) -> PasswordCheck:
    """The slow part of a login, for the password executor. ``stored`` None (no such user) still
    spends the same time, so a wrong name cannot be told from a wrong password."""
    if stored is None or len(password) > MAX_PASSWORD_LENGTH:
        hash_password(password[:MAX_PASSWORD_LENGTH])
        return PasswordCheck(False)
    if not verify_password(password, stored):
        return PasswordCheck(False)
    return PasswordCheck(True, hash_password(password) if needs_rehash(stored) else None)


def password_problem(password: str) -> str | None:
    """Why this password cannot be used (Chinese), or None."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        return f"密码至少 {MIN_PASSWORD_LENGTH} 位"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"密码不能超过 {MAX_PASSWORD_LENGTH} 位"
    return None


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"未知角色 {role!r}，可选：{', '.join(r.value for r in Role)}") from None


def _engineer_link(session: Session, role: Role, engineer_name: str) -> int | None:
    """The engineer an account of this role is linked to: required for, and only for, engineers."""
    if role != Role.ENGINEER:
        if engineer_name:
            raise AccountError("只有维修人员账号可以关联维修人员")
        return None
    if not engineer_name:
        raise AccountError("维修人员账号必须关联一位维修人员（--engineer 姓名）")
    engineer = session.scalar(select(Engineer).where(Engineer.name == engineer_name))
    if engineer is None:
        raise AccountError(f"维修人员 {engineer_name} 不存在，请先导入维修人员")
    if not engineer.active:
        raise AccountError(f"维修人员 {engineer_name} 已停用")
    return engineer.id


def add_user(session: Session, username: str, password: str, role: str, now: datetime,
             display_name: str = "", engineer_name: str = "", *, password_hash: str | None = None) -> User:
    """A new account. ``password_hash``: the password already hashed (the web console hashes on its
    own executor); the password itself is still checked against the rules."""
    username = username.strip()
    if not username or len(username) > 64:
        raise AccountError("用户名不能为空，且不超过 64 个字符")
    if len(display_name) > 64:
        raise AccountError("姓名不超过 64 个字符")
    role = _role(role)
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    if session.scalar(select(User).where(User.username == username)):
        raise AccountError(f"用户 {username} 已存在")
    engineer_id = _engineer_link(session, role, engineer_name.strip())
    user = User(username=username, display_name=display_name or username, role=role,
                password_hash=password_hash or hash_password(password), engineer_id=engineer_id, created_at=now)
    session.add(user)
    session.flush()
    return user


def change_user(session: Session, user: User, *, active: bool | None = None, role: str | None = None,
                engineer_name: str | None = None, password_hash: str | None = None,
                keep_token: str = "") -> dict[str, object]:
    """Change an account; returns what changed (for the audit log). Any change ends the user's
    sessions but the one whose token is ``keep_token`` (the admin changing their own account)."""
    changes: dict[str, object] = {}
    if active is not None and active != user.active:
        changes["active"] = {"from": user.active, "to": active}
        user.active = active
    new_role = _role(role) if role is not None else Role(user.role)
    if engineer_name is not None or new_role != user.role:
        name = engineer_name if engineer_name is not None else _engineer_name(session, user.engineer_id)
        engineer_id = _engineer_link(session, new_role, (name or "").strip() if new_role == Role.ENGINEER else "")
        if new_role != user.role:
            changes["role"] = {"from": str(user.role), "to": new_role.value}
            user.role = new_role
        if engineer_id != user.engineer_id:
            changes["engineer_id"] = {"from": user.engineer_id, "to": engineer_id}
            user.engineer_id = engineer_id
    if password_hash is not None:
        changes["password"] = "changed"
        user.password_hash = password_hash
    if changes:
        end_sessions(session, user.id, keep_token)
    return changes


def _engineer_name(session: Session, engineer_id: int | None) -> str:
    engineer = session.get(Engineer, engineer_id) if engineer_id is not None else None
    return engineer.name if engineer is not None else ""


def login_candidate(session: Session, username: str) -> User | None:
    """The active account a login names, if any (its hash is checked off the database's threads)."""
    return session.scalar(select(User).where(User.username == username, User.active.is_(True)))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """Check a password in one go (command line, tests); the web console splits this up."""
    user = login_candidate(session, username)
    return user if check_password(password, user.password_hash if user else None).ok else None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, now: datetime, hours: int) -> str:
    token = secrets.token_urlsafe(32)
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_hash=token_hash(token), user_id=user.id, created_at=now,
                           expires_at=now + timedelta(hours=hours)))
    return token


def user_for_token(session: Session, token: str, now: datetime) -> User | None:
    login = session.get(WebSession, token_hash(token))
    if login is None or login.expires_at < now:
        return None
    user = session.get(User, login.user_id)
    return user if user is not None and user.active else None


def linked_engineer(session: Session, user: User) -> int | None:
    """The engineer whose tickets this account sees: None for an unlinked account or a link to an
    engineer who was deactivated (such an engineer account sees nothing)."""
    if user.engineer_id is None:
        return None
    engineer = session.get(Engineer, user.engineer_id)
    return engineer.id if engineer is not None and engineer.active else None


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def end_sessions(session: Session, user_id: int, keep_token: str = "") -> int:
    """Log the user out everywhere (but the session of ``keep_token``); returns how many ended."""
    query = delete(WebSession).where(WebSession.user_id == user_id)
    if keep_token:
        query = query.where(WebSession.token_hash != token_hash(keep_token))
    return affected_rows(session.execute(query))
