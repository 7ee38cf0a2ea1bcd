"""What every handler reaches: typed app keys, the clock, the current user, and units of work.

Database work is synchronous SQLAlchemy; it runs in a worker thread so one slow query
never stalls the event loop that also carries the live updates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from core.base import Actor, ValidationError
from core.settings import Settings
from core.tickets import Role

T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
SESSIONS = web.AppKey("sessions", sessionmaker)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")  # a Callable is no class: typed by annotation
# Extra facts for /api/health from the voice side (speech model, lines): name -> callable.
HEALTH = web.AppKey("health", dict)
# Tells the call-out runner of this process to look at the database now (a no-op without telephony).
WAKE_CALLOUTS: web.AppKey[Callable[[], None]] = web.AppKey("wake_callouts")

def system_clock() -> datetime:
    return datetime.now(UTC)


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


# Every body the API takes is a small flat object (a list of skills at most): anything bigger or
# deeper is not ours, and is refused before it costs anything.
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 4


def bad_request(message: str) -> web.HTTPBadRequest:
    """400 with the API's JSON error body."""
    return web.HTTPBadRequest(text=json.dumps({"error": message}, ensure_ascii=False),
                              content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 when it is too big or too deeply nested, 422 when it is not
    a JSON object (with what is wrong)."""
    if request.content_type != "application/json":
        # A cross-site form cannot send application/json without CORS (and see web.security).
        raise ValidationError({"_": "请求内容类型应为 application/json"})
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise bad_request(f"请求内容过大（不超过 {MAX_JSON_BYTES // 1024} KB）")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):  # a body with no length is counted too
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise bad_request(f"请求内容过大（不超过 {MAX_JSON_BYTES // 1024} KB）")
    try:
        body = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise bad_request("请求内容嵌套过深") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError({"_": "请求内容不是有效的 JSON"}) from None
    if not isinstance(body, dict):
        raise ValidationError({"_": "请求内容应为 JSON 对象"})
    if _depth(body) > MAX_JSON_DEPTH:
        raise bad_request("请求内容嵌套过深")
    return body


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a flat object is 1); without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


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
