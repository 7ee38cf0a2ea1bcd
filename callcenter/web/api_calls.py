"""/api/calls: the call records and their recordings (personal data: logged-in staff only)."""

from __future__ import annotations

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, current_user, json_response, now, run_db
from callcenter.web.security import client_address
from callcenter.web.serialize import call_json
from core import audit
from core.base import NotFound, ValidationError
from core.calls import CallFilter, find_calls
from core.desk import can_see
from core.store import CallRecord, Ticket
from core.tickets import Role

routes = web.RouteTableDef()


@routes.get("/api/calls")
@allow(Role.FRONTDESK, Role.MANAGER)
async def list_calls(request: web.Request) -> web.Response:
    query, tz = request.query, request.app[SETTINGS].tz
    wanted = CallFilter(direction=query.get("direction", ""))
    if wanted.direction not in ("", "inbound", "outbound"):
        raise ValidationError({"direction": "应为 inbound 或 outbound"})
    try:
        if query.get("ticket_id"):
            wanted.ticket_id = int(query["ticket_id"])
        wanted.limit = min(int(query.get("limit", 200)), 1000)
        wanted.offset = int(query.get("offset", 0))
        if wanted.limit < 0 or wanted.offset < 0:
            raise ValueError
    except ValueError:
        raise ValidationError({"_": "ticket_id、limit、offset 应为不小于 0 的整数"}) from None
    calls = await run_db(request, lambda s: [call_json(c, tz) for c in find_calls(s, wanted)])
    return json_response({"calls": calls})


@routes.get("/api/calls/{call_id:\\d+}/recording")
async def recording(request: web.Request) -> web.FileResponse:
    """The desk, managers and admins hear every call; an engineer only the calls of tickets assigned
    to them. Every playback and download is written to the audit log first (a player's later range
    requests, to seek, are not playbacks of their own)."""
    call_id, user, at = int(request.match_info["call_id"]), current_user(request), now(request)
    starts = request.method == "GET" and _starts_at_the_beginning(request.headers.get("Range", ""))

    def work(session):
        record = session.get(CallRecord, call_id)
        ticket = session.get(Ticket, record.ticket_id) if record is not None and record.ticket_id else None
        if record is None or (user.role == Role.ENGINEER and (ticket is None or not can_see(ticket, user.actor))):
            raise NotFound(f"通话 {call_id} 不存在")
        if record.recording_path and starts:
            audit.record(session, audit.RECORDING, at, username=user.username, address=client_address(request),
                         target=f"call:{call_id}", detail={"ticket_id": record.ticket_id,
                                                           "range": request.headers.get("Range", "")[:32] or None})
        return record.recording_path

    stored = await run_db(request, work)
    root = request.app[SETTINGS].recordings_dir.resolve()
    if not stored:
        raise NotFound("这通电话没有录音")
    path = (root / stored).resolve()
    # Only files under the recordings directory, whatever the database says.
    if root not in path.parents or not path.is_file():
        raise NotFound("录音文件不存在")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"})


def _starts_at_the_beginning(range_header: str) -> bool:
    """No Range, or one from byte 0 (how players start): a playback or a download."""
    value = range_header.replace(" ", "").lower()
    return not value or value.startswith("bytes=0-")
