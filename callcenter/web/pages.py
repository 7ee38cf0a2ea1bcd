"""The console's pages: static HTML that reads and writes through the JSON API."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, current_user, public
from core.tickets import Role

STATIC = Path(__file__).with_name("static")
routes = web.RouteTableDef()


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    role = current_user(request).role
    raise web.HTTPFound("/engineer" if role == Role.ENGINEER else "/desk")


@routes.get("/site.js")
@public
async def site_script(request: web.Request) -> web.Response:
    """The site's own settings the pages need, as a module (``import { TZ } from '/site.js'``): times
    are shown in the site's timezone, not the browser's and not a fixed one. Nothing secret."""
    text = f"export const TZ = {json.dumps(request.app[SETTINGS].timezone)};\n"
    return web.Response(text=text, content_type="text/javascript", headers={"Cache-Control": "no-cache"})


@routes.get("/login")
@public
async def login_page(request: web.Request) -> web.FileResponse:
    return _page("login.html")


@routes.get("/desk")
@allow(Role.FRONTDESK, Role.MANAGER)
async def desk_page(request: web.Request) -> web.FileResponse:
    return _page("desk.html")


@routes.get("/tickets/{ticket_id:\\d+}")
async def ticket_page(request: web.Request) -> web.FileResponse:
    return _page("ticket.html")


@routes.get("/tickets/{ticket_id:\\d+}/print")
async def print_page(request: web.Request) -> web.FileResponse:
    return _page("print.html")


@routes.get("/engineer")
async def engineer_page(request: web.Request) -> web.FileResponse:
    return _page("engineer.html")


@routes.get("/manager")
@allow(Role.MANAGER)
async def manager_page(request: web.Request) -> web.FileResponse:
    return _page("manager.html")
