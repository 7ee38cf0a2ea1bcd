"""The console's pages: static HTML that reads and writes through the JSON API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from callcenter.web.context import allow, current_user, public
from core.tickets import Role

STATIC = Path(__file__).with_name("static")
routes = web.RouteTableDef()


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    role = current_user(request).role
    raise web.HTTPFound("/engineer" if role == Role.ENGINEER else "/desk")


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
