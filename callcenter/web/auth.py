"""Login, the session cookie, the role check on every route, and errors as JSON.

A login is checked in three steps so that guessing costs the guesser, not the console: the
throttle (``core.login_throttle``: 429 with Retry-After, before any hashing), the password on
its own executor (``passwords``), then the session and the audit log entry.
"""

from __future__ import annotations

import collections
import logging
import math
from urllib.parse import quote

from aiohttp import web

from callcenter.web.context import (
    SETTINGS,
    USER_KEY,
    CurrentUser,
    current_user,
    json_body,
    json_response,
    now,
    public,
    run_db,
)
from callcenter.web.local_time import local_iso
from callcenter.web.passwords import PASSWORDS, PasswordsBusy
from callcenter.web.security import client_address
from core import accounts, audit, login_throttle
from core.base import NotFound, ValidationError
from core.claims import Conflict
from core.store import User
from core.tickets import STATUS_NAMES, TransitionError

log = logging.getLogger(__name__)
COOKIE = "callcenter_session"
# Logins whose password is being checked right now, by ("account", name) and ("address", address):
# the throttle counts them as failures already, so twenty guesses at once are not twenty tries.
CHECKING = web.AppKey("logins_checking", collections.Counter)
routes = web.RouteTableDef()


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Domain errors become the status codes the API promises, with a Chinese message."""
    try:
        return await handler(request)
    except ValidationError as error:
        return json_response({"error": "输入有误", "fields": error.errors}, 422)
    except Conflict as error:
        return json_response(conflict_json(error, request), 409)
    except TransitionError as error:
        return json_response({"error": str(error)}, 409)
    except NotFound as error:
        if _is_api(request):
            return json_response({"error": str(error)}, 404)
        raise web.HTTPNotFound(text=str(error)) from None
    except web.HTTPException as error:
        if _is_api(request) and error.status >= 400 and error.content_type != "application/json":
            return json_response({"error": error.reason}, error.status)
        raise


def conflict_json(error: Conflict, request: web.Request) -> dict:
    """409: the ticket changed since it was read; what it is now and the last change made to it."""
    tz = request.app[SETTINGS].tz
    last = error.last_change
    changed = None if last is None else {
        "at": local_iso(last["at"], tz), "actor": last["actor"], "kind": last["kind"], "note": last["note"],
        "to_status": last["to_status"], "to_name": STATUS_NAMES.get(last["to_status"]) if last["to_status"] else None}
    message = str(error)
    if changed:
        message += f"（{changed['actor']} 于 {changed['at'][11:16]}）"
    return {"error": message, "current": {"id": error.ticket_id, "status": error.status.value,
                                          "status_name": STATUS_NAMES[error.status], "version": error.version,
                                          "updated_at": local_iso(error.updated_at, tz), "last_change": changed}}


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Every route needs a logged-in user unless marked public; ``allow`` narrows the roles."""
    target = getattr(handler, "__wrapped__", handler)
    if getattr(target, "public", False) or request.path.startswith("/static/"):
        return await handler(request)
    user = await session_user(request)
    if user is None:
        if _is_api(request):
            return json_response({"error": "请先登录"}, 401)
        raise web.HTTPFound(f"/login?next={quote(request.path_qs)}")
    roles = getattr(target, "allowed_roles", None)
    if roles is not None and user.role not in roles:
        if _is_api(request):
            return json_response({"error": "无权访问"}, 403)
        raise web.HTTPForbidden(text="无权访问此页面")
    request[USER_KEY] = user
    return await handler(request)


async def session_user(request: web.Request) -> CurrentUser | None:
    """The logged-in user of this request's cookie, or None (also for public routes that say more
    to staff, such as /api/health)."""
    token = request.cookies.get(COOKIE, "")
    return await run_db(request, lambda s: _load_user(s, token, now(request))) if token else None


def _load_user(session, token: str, at) -> CurrentUser | None:
    user = accounts.user_for_token(session, token, at)
    if user is None:
        return None
    return CurrentUser(user.id, user.username, user.display_name, user.role, accounts.linked_engineer(session, user))


def _too_many(seconds: float, message: str) -> web.Response:
    response = json_response({"error": message, "retry_after": math.ceil(seconds)}, 429)
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def me_json(user: User, engineer_id: int | None) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "engineer_id": engineer_id}


@routes.post("/api/login")
@public
async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ValidationError({"username": "请输入用户名和密码"})
    settings, at, address = request.app[SETTINGS], now(request), client_address(request)
    username = username.strip()[:64]

    # Claimed before anything is awaited, so that simultaneous guesses see each other.
    checking, keys = request.app[CHECKING], (("account", username), ("address", address))
    under_way = [checking[key] for key in keys]
    checking.update(keys)
    try:
        outcome = await _check_login(request, username, password, address, at, under_way)
    finally:
        for key in keys:
            checking[key] -= 1
            if checking[key] <= 0:
                del checking[key]  # only logins under way are kept: outsiders cannot grow it
    if isinstance(outcome, web.Response):
        return outcome  # refused: 401, or 429 not tried now
    token, user = outcome
    log.info("login %s (%s) from %s", user["username"], user["role"], address)
    response = json_response(user)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=settings.web.cookie_secure, max_age=settings.web.session_hours * 3600)
    return response


async def _check_login(request: web.Request, username: str, password: str, address: str, at,
                       under_way: list[int]) -> tuple[str, dict] | web.Response:
    """(session token, user) for the right password, else the answer to give (401, or 429 when it
    may not be tried now). ``under_way``: the account's and the address's other logins being checked."""
    settings = request.app[SETTINGS]

    def look(session):
        wait = login_throttle.wait_seconds(session, username, address, at, *under_way)
        if wait > 0:
            return wait, None
        user = accounts.login_candidate(session, username)
        return 0.0, (user.id, user.password_hash) if user is not None else None

    wait, candidate = await run_db(request, look)
    if wait > 0:
        log.warning("login throttled for %r from %s: %.0f s to wait", username, address, wait)
        return _too_many(wait, f"登录失败次数过多，请 {math.ceil(wait)} 秒后再试")
    try:
        check = await request.app[PASSWORDS].run(accounts.check_password, password,
                                                 candidate[1] if candidate else None)
    except PasswordsBusy:
        log.warning("login refused for %r from %s: too many password checks queued", username, address)
        return _too_many(2, "登录请求过多，请稍后再试")

    def finish(session):
        user = session.get(User, candidate[0]) if candidate and check.ok else None
        if user is None or not user.active:
            audit.record(session, audit.LOGIN_FAILED, at, username=username, address=address)
            return None, None
        if check.new_hash and user.password_hash == candidate[1]:
            user.password_hash = check.new_hash  # made with an older, weaker cost
        token = accounts.open_session(session, user, at, settings.web.session_hours)
        audit.record(session, audit.LOGIN, at, username=user.username, address=address, target=f"user:{user.id}",
                     detail={"rehashed": True} if check.new_hash else None)
        return token, me_json(user, accounts.linked_engineer(session, user))

    token, user = await run_db(request, finish)
    if token is None:
        log.info("login refused for %r from %s", username, address)
        return json_response({"error": "用户名或密码错误"}, 401)
    return token, user


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    token, user, at = request.cookies.get(COOKIE, ""), current_user(request), now(request)

    def work(session):
        accounts.close_session(session, token)
        audit.record(session, audit.LOGOUT, at, username=user.username, address=client_address(request),
                     target=f"user:{user.id}")

    await run_db(request, work)
    response = json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    user = current_user(request)
    return json_response({"id": user.id, "username": user.username, "display_name": user.display_name,
                          "role": user.role, "engineer_id": user.engineer_id})
