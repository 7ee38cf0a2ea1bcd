"""/api/complaints and the two buttons of the watch over open tickets: a manager marks a
complaint (投诉) handled; the desk stops a late arrival's apology call before it goes out."""

from __future__ import annotations

import logging

from aiohttp import web

from callcenter.web.api_tickets import ticket_id_of
from callcenter.web.context import SETTINGS, allow, current_user, json_body, json_response, now, run_db
from callcenter.web.live import FEED
from callcenter.web.serialize import ticket_json
from callcenter.web.serialize_watch import complaint_json
from core import complaints, eta
from core.desk import ValidationError
from core.tickets import Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/api/complaints")
@allow(Role.FRONTDESK, Role.MANAGER)
async def list_complaints(request: web.Request) -> web.Response:
    """Open complaints first (earliest due on top), then the latest handled ones."""
    tz = request.app[SETTINGS].tz
    return json_response(await run_db(request, lambda session: [
        complaint_json(complaint, tz, with_ticket=True) for complaint in complaints.find(session)]))


@routes.post("/api/tickets/{ticket_id}/complaint/handled")
@allow(Role.MANAGER)
async def handle_complaint(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)
    note = (await json_body(request)).get("note", "")
    if not isinstance(note, str):
        raise ValidationError({"note": "应为文字"})

    def work(session):
        complaint = complaints.handle(session, ticket_id, user.actor, note, at)
        return ticket_json(complaint.ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    request.app[FEED].poke()
    return json_response(ticket)


@routes.post("/api/tickets/{ticket_id}/eta-call/stop")
@allow(Role.FRONTDESK, Role.MANAGER)
async def stop_slip_call(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)

    def work(session):
        slip = eta.stop(session, ticket_id, user.actor, at)
        return ticket_json(slip.ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    request.app[FEED].poke()
    return json_response(ticket)
