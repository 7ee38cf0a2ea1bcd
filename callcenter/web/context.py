"""What every handler reaches: typed app keys, the clock, the current user, and units of work.

Database work is synchronous SQLAlchemy; it runs in a worker thread so one slow query
never stalls the event loop that also carries the live updates.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from core.desk import Actor, ValidationError
from core.settings import Settings
from core.tickets import Role

T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
SESSIONS = web.AppKey("sessions", sessionmaker)
CLOCK = web.AppKey("clock", Callable[[], datetime])
# Extra facts for /api/health from the voice side (speech model, lines): name -> callable.
HEALTH = web.AppKey("health", dict)
# Tells the call-out runner of this process to look at the database now (a no-op without telephony).
WAKE_CALLOUTS = web.AppKey("wake_callouts", Callable[[], None])

def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    display_name: str
    role: Role
    engineer_id: int | None

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role, self.engineer_id)


USER_KEY = web.RequestKey("user", CurrentUser)


def current_user(request: web.Request) -> CurrentUser:
    return request[USER_KEY]


def now(request: web.Request) -> datetime:
    return request.app[CLOCK]()


async def run_db(request: web.Request | web.Application, work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` as one transaction in a worker thread; commit if it returns."""
    app = request.app if isinstance(request, web.Request) else request
    factory = app[SESSIONS]

    def unit() -> T:
        with factory() as session, session.begin():
            return work(session)

    return await asyncio.to_thread(unit)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 422 that says what is wrong with it."""
    if request.content_type != "application/json":
        # Also our CSRF guard: a cross-site form cannot send application/json without CORS.
        raise ValidationError({"_": "请求内容类型应为 application/json"})
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError({"_": "请求内容不是有效的 JSON"}) from None
    if not isinstance(body, dict):
        raise ValidationError({"_": "请求内容应为 JSON 对象"})
    return body


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def allow(*roles: Role):
    """Mark a handler as reachable only by these roles (admin always is)."""

    def mark(handler):
        handler.allowed_roles = frozenset(roles) | {Role.ADMIN}
        return handler

    return mark


def public(handler):
    """Mark a handler as reachable without logging in."""
    handler.public = True
    return handler
