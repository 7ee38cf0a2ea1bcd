"""/api/callbacks: the call-back list (回拨) of callers who gave up (core.callback_list).

Numbers and recordings are personal data: the desk and managers only (admins always).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from callcenter.web.context import SETTINGS, allow, current_user, json_body, json_response, now, run_db
from callcenter.web.local_time import local_iso
from callcenter.web.serialize import recording_url
from core import callback_list
from core.callback_list import CALLED_BACK, NOT_NEEDED, STATUS_NAMES, CallbackItem, stage_name
from core.desk import NotFound, ValidationError
from core.store import CallRecord
from core.tickets import Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
DESK_ROLES = (Role.FRONTDESK, Role.MANAGER)
RESOLVED_SHOWN_FOR = timedelta(hours=24)  # the list also shows what was handled in the last day, and by whom


@routes.get("/api/callbacks")
@allow(*DESK_ROLES)
async def list_callbacks(request: web.Request) -> web.Response:
    tz, at = request.app[SETTINGS].tz, now(request)

    def work(session) -> dict[str, Any]:
        waiting = callback_list.open_items(session)
        done = callback_list.recently_resolved(session, at - RESOLVED_SHOWN_FOR)
        calls = callback_list.calls_of(session, [item.id for item in waiting + done])
        records = {r.id: r for r in session.scalars(select(CallRecord).where(
            CallRecord.id.in_([c.call_id for each in calls.values() for c in each])))}
        shown = lambda item: item_json(item, calls[item.id], records, tz)  # noqa: E731
        return {"open": [shown(item) for item in waiting], "resolved": [shown(item) for item in done]}

    return json_response(await run_db(request, work))


@routes.post("/api/callbacks/{item_id:\\d+}")
@allow(*DESK_ROLES)
async def resolve_callback(request: web.Request) -> web.Response:
    """``{"outcome": "called_back" | "not_needed"}``; 409 if somebody else marked it first."""
    item_id, user, at, tz = int(request.match_info["item_id"]), current_user(request), now(request), \
        request.app[SETTINGS].tz
    outcome = (await json_body(request)).get("outcome")
    if outcome not in (CALLED_BACK, NOT_NEEDED):
        raise ValidationError({"outcome": f"应为 {CALLED_BACK}（已回拨）或 {NOT_NEEDED}（无需回拨）"})

    def work(session):
        item = callback_list.resolve(session, item_id, outcome, user.username, at)
        if item is None:
            raise NotFound(f"回拨记录 {item_id} 不存在")
        calls = callback_list.calls_of(session, [item.id])[item.id]
        records = {r.id: r for r in session.scalars(select(CallRecord).where(
            CallRecord.id.in_([c.call_id for c in calls])))}
        return item_json(item, calls, records, tz)

    resolved = await run_db(request, work)
    log.info("callback item %s (%s) marked %s by %s", item_id, resolved["number"] or "withheld", outcome,
             user.username)
    return json_response(resolved)


def item_json(item: CallbackItem, calls: list, records: dict[int, CallRecord], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": item.id, "number": item.number, "withheld": not item.number,
        "first_call_at": local_iso(item.first_call_at, tz), "last_call_at": local_iso(item.last_call_at, tz),
        "stage": item.stage, "stage_name": stage_name(item.stage),
        "status": item.status, "status_name": STATUS_NAMES[item.status],
        "resolved_by": item.resolved_by, "resolved_at": local_iso(item.resolved_at, tz),
        "calls": [{"call_id": c.call_id, "at": local_iso(c.at, tz), "stage_name": stage_name(c.stage),
                   "recording_url": recording_url(records.get(c.call_id))} for c in calls],
    }
