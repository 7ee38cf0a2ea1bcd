"""/api/tickets/{id}/callout: the front desk starts, watches and stops an emergency call-out (紧急派单).

Starting one only stores it (``core.callouts``); the telephony side's runner dials. It is woken
through ``WAKE_CALLOUTS`` when it runs in this process, and finds call-outs started elsewhere by
polling the database, so a console-only process works against a shared database too.
"""

from __future__ import annotations

import logging

from aiohttp import web

from callcenter.web.api_tickets import ticket_id_of
from callcenter.web.context import SETTINGS, WAKE_CALLOUTS, allow, current_user, json_response, now, run_db
from callcenter.web.live import FEED
from callcenter.web.serialize import callout_json
from core import callouts, desk
from core.base import NotFound
from core.tickets import DESK

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/api/tickets/{ticket_id}/callout")
@allow(*DESK)
async def start_callout(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)

    def work(session):
        callout = callouts.start_callout(session, ticket_id, user.actor, at, settings)
        session.flush()
        return callout_json(callout, settings)

    started = await run_db(request, work)
    log.info("ticket %d: call-out %d started by %s", ticket_id, started["id"], user.username)
    request.app[WAKE_CALLOUTS]()
    request.app[FEED].poke()
    return json_response(started, 202)


@routes.get("/api/tickets/{ticket_id}/callout")
@allow(*DESK)
async def show_callout(request: web.Request) -> web.Response:
    settings, ticket_id = request.app[SETTINGS], ticket_id_of(request)

    def work(session):
        desk.get_ticket(session, ticket_id)
        callout = callouts.latest_callout(session, ticket_id)
        if callout is None:
            raise NotFound("该维修单没有紧急呼叫")
        return callout_json(callout, settings)

    return json_response(await run_db(request, work))


@routes.delete("/api/tickets/{ticket_id}/callout")
@allow(*DESK)
async def stop_callout(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id, reason = ticket_id_of(request), request.query.get("reason", "")[:200]

    def work(session):
        desk.get_ticket(session, ticket_id)
        running = callouts.running_callout(session, ticket_id)
        if running is None:
            raise callouts.CallOutError("该维修单没有正在进行的紧急呼叫")
        return callout_json(callouts.stop_callout(session, running.id, user.actor, at, reason), settings)

    stopped = await run_db(request, work)
    log.info("ticket %d: call-out %d stopped by %s", ticket_id, stopped["id"], user.username)
    request.app[WAKE_CALLOUTS]()  # the runner hangs up on whoever is ringing now
    request.app[FEED].poke()
    return json_response(stopped)
