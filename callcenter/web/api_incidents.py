"""/api/incidents: the desk declares a building's outage, sees who called about it, and closes it.

While an incident is open the hotline announces it to callers from its buildings and counts them
instead of writing tickets (``core.incidents``). Closing with ``call_back`` queues a call to every
counted number (「已恢复供水」), made on ``followup.line`` by the follow-up dialler.
"""

from __future__ import annotations

import logging

from aiohttp import web

from callcenter.web.context import (
    SETTINGS,
    allow,
    current_user,
    json_body,
    json_response,
    now,
    run_db,
)
from callcenter.web.live import FEED
from callcenter.web.local_time import local_iso
from core import desk, incidents
from core.desk import ValidationError
from core.incident_store import Incident
from core.tickets import Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
DESK_ROLES = (Role.FRONTDESK, Role.MANAGER)


def incident_json(incident: Incident, tz, with_callers: bool = False) -> dict:
    data = {
        "id": incident.id, "kind": incident.kind, "kind_name": incidents.KINDS[incident.kind],
        "buildings": incident.buildings, "area": incident.area, "action": incident.action,
        "action_name": incidents.ACTIONS[incident.action], "note": incident.note,
        "expected_end": local_iso(incident.expected_end, tz), "opened_at": local_iso(incident.opened_at, tz),
        "opened_by": incident.opened_by, "ticket_id": incident.ticket_id, "closed_at": local_iso(incident.closed_at, tz),
        "closed_by": incident.closed_by, "call_back": incident.call_back, "open": incident.closed_at is None,
        "caller_count": len(incident.callers),
    }
    if with_callers:
        data["callers"] = [{
            "id": c.id, "at": local_iso(c.at, tz), "phone": c.phone, "building": c.building, "unit": c.unit,
            "room": c.room, "words": c.words, "how": c.how, "ticket_id": c.ticket_id,
            "call_id": c.call_record_id,
            "recording": f"/api/calls/{c.call_record_id}/recording" if c.call_record_id else None,
            "call_back_state": c.call_back_state,
            "call_back_name": incidents.CALL_BACK_STATES.get(c.call_back_state, ""),
        } for c in incident.callers]
    return data


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["incident_id"])
    except ValueError:
        raise desk.NotFound(f"事件 {request.match_info['incident_id']} 不存在") from None


@routes.get("/api/incidents")
@allow(*DESK_ROLES)
async def list_incidents(request: web.Request) -> web.Response:
    tz, open_only = request.app[SETTINGS].tz, request.query.get("open", "") in ("1", "true")
    listed = await run_db(request, lambda s: [incident_json(i, tz) for i in incidents.listing(s, open_only)])
    return json_response({"incidents": listed, "kinds": incidents.KINDS, "actions": incidents.ACTIONS})


@routes.get("/api/incidents/{incident_id}")
@allow(*DESK_ROLES)
async def show_incident(request: web.Request) -> web.Response:
    tz, incident_id = request.app[SETTINGS].tz, _id(request)
    return json_response(await run_db(request, lambda s: incident_json(incidents.get(s, incident_id), tz, True)))


@routes.get("/api/tickets/{ticket_id}/incident-proposal")
@allow(*DESK_ROLES)
async def propose(request: web.Request) -> web.Response:
    """The form's starting point when the desk declares an incident from a ticket."""
    settings, at = request.app[SETTINGS], now(request)
    try:
        ticket_id = int(request.match_info["ticket_id"])
    except ValueError:
        raise desk.NotFound("维修单不存在") from None
    return json_response(await run_db(request, lambda s: incidents.proposal(desk.get_ticket(s, ticket_id), at,
                                                                            settings)))


@routes.post("/api/incidents")
@allow(*DESK_ROLES)
async def declare(request: web.Request) -> web.Response:
    settings, user, at, body = request.app[SETTINGS], current_user(request), now(request), await json_body(request)
    errors: dict[str, str] = {}
    expected_end = desk.parse_time(body.get("expected_end"), settings.tz, "expected_end", errors)
    buildings = body.get("buildings", [])
    if isinstance(buildings, str):
        buildings = buildings.replace("，", ",").split(",")
    if not isinstance(buildings, list) or not all(isinstance(b, (str, int)) for b in buildings):
        errors["buildings"] = "楼号应为列表，例如 [\"3\", \"5\"]"
    ticket_id = body.get("ticket_id")
    if ticket_id is not None and not isinstance(ticket_id, int):
        errors["ticket_id"] = "应为维修单编号（整数）"
    texts = {key: body.get(key, default) for key, default in (("kind", ""), ("area", ""), ("action", "repairing"),
                                                             ("note", ""))}
    errors |= {key: "应为文字" for key, value in texts.items() if not isinstance(value, str)}
    if "buildings" not in errors and all(isinstance(value, str) for value in texts.values()):
        named = [str(b).strip() for b in buildings if str(b).strip()]  # every mistake at once, for the form
        errors = incidents.check(texts["kind"], named, texts["area"].strip(), texts["action"], texts["note"],
                                 expected_end, at) | errors
    if errors:
        raise ValidationError(errors)

    def work(session):
        incident = incidents.declare(session, buildings=buildings, expected_end=expected_end, actor=user.actor,
                                     now=at, ticket_id=ticket_id, **texts)
        return incident_json(incident, settings.tz, True)

    declared = await run_db(request, work)
    log.info("incident %d declared by %s", declared["id"], user.username)
    request.app[FEED].poke()
    return json_response(declared, 201)


@routes.post("/api/incidents/{incident_id}/close")
@allow(*DESK_ROLES)
async def close(request: web.Request) -> web.Response:
    settings, user, at, incident_id = request.app[SETTINGS], current_user(request), now(request), _id(request)
    body = await json_body(request)
    call_back = body.get("call_back", False)
    if not isinstance(call_back, bool):
        raise ValidationError({"call_back": "应为 true 或 false"})

    def work(session):
        return incident_json(incidents.close(session, incident_id, user.actor, at, call_back), settings.tz, True)

    closed = await run_db(request, work)
    log.info("incident %d closed by %s (call back %s)", incident_id, user.username, call_back)
    request.app[FEED].poke()
    return json_response(closed)
