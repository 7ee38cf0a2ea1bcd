"""Login, the session cookie, the role check on every route, and errors as JSON."""

from __future__ import annotations

import logging
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
from core import accounts
from core.desk import NotFound, ValidationError
from core.tickets import TransitionError

log = logging.getLogger(__name__)
COOKIE = "callcenter_session"
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


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Every route needs a logged-in user unless marked public; ``allow`` narrows the roles."""
    target = getattr(handler, "__wrapped__", handler)
    if getattr(target, "public", False) or request.path.startswith("/static/"):
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    user = await run_db(request, lambda s: _load_user(s, token, now(request))) if token else None
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


def _load_user(session, token: str, at) -> CurrentUser | None:
    user = accounts.user_for_token(session, token, at)
    if user is None:
        return None
    return CurrentUser(user.id, user.username, user.display_name, user.role, user.engineer_id)


@routes.post("/api/login")
@public
async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ValidationError({"username": "请输入用户名和密码"})
    settings = request.app[SETTINGS]

    def check(session):
        user = accounts.authenticate(session, username, password)
        if user is None:
            return None, None
        token = accounts.open_session(session, user, now(request), settings.web.session_hours)
        return token, {"id": user.id, "username": user.username, "display_name": user.display_name,
                       "role": user.role, "engineer_id": user.engineer_id}

    token, user = await run_db(request, check)
    if token is None:
        log.info("login refused for %r from %s", username, request.remote)
        return json_response({"error": "用户名或密码错误"}, 401)
    log.info("login %s (%s)", user["username"], user["role"])
    response = json_response(user)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=settings.web.cookie_secure, max_age=settings.web.session_hours * 3600)
    return response


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE, "")
    await run_db(request, lambda s: accounts.close_session(s, token))
    response = json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    user = current_user(request)
    return json_response({"id": user.id, "username": user.username, "display_name": user.display_name,
                          "role": user.role, "engineer_id": user.engineer_id})
