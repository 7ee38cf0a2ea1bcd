"""Staff accounts and login sessions. Passwords are kept only as salted scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.store import Engineer, User, WebSession
from core.tickets import Role

# scrypt parameters (RFC 7914): n=2**14, r=8 costs ~16 MB and ~50 ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                            p=int(p), dklen=32)
    return hmac.compare_digest(actual, base64.b64decode(digest))


def add_user(session: Session, username: str, password: str, role: str, now: datetime,
             display_name: str = "", engineer_name: str = "") -> User:
    username = username.strip()
    if not username or len(username) > 64:
        raise AccountError("用户名不能为空，且不超过 64 个字符")
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"未知角色 {role!r}，可选：{', '.join(r.value for r in Role)}") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    if session.scalar(select(User).where(User.username == username)):
        raise AccountError(f"用户 {username} 已存在")
    engineer_id = None
    if engineer_name:
        engineer = session.scalar(select(Engineer).where(Engineer.name == engineer_name))
        if engineer is None:
            raise AccountError(f"维修人员 {engineer_name} 不存在，请先导入维修人员")
        engineer_id = engineer.id
    user = User(username=username, display_name=display_name or username, role=role,
                password_hash=hash_password(password), engineer_id=engineer_id, created_at=now)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    if user is None:
        hash_password(password)  # spend the same time, so a wrong name is not told apart
        return None
    return user if verify_password(password, user.password_hash) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, now: datetime, hours: int) -> str:
    token = secrets.token_urlsafe(32)
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                           expires_at=now + timedelta(hours=hours)))
    return token


def user_for_token(session: Session, token: str, now: datetime) -> User | None:
    login = session.get(WebSession, _token_hash(token))
    if login is None or login.expires_at < now:
        return None
    user = session.get(User, login.user_id)
    return user if user is not None and user.active else None


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _token_hash(token)))
