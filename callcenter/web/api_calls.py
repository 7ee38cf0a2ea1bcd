"""/api/calls: the call records and their recordings (personal data: logged-in staff only)."""

from __future__ import annotations

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, json_response, run_db
from callcenter.web.serialize import call_json
from core.calls import CallFilter, find_calls
from core.desk import NotFound, ValidationError
from core.store import CallRecord
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
    except ValueError:
        raise ValidationError({"_": "ticket_id、limit、offset 应为整数"}) from None
    calls = await run_db(request, lambda s: [call_json(c, tz) for c in find_calls(s, wanted)])
    return json_response({"calls": calls})


@routes.get("/api/calls/{call_id:\\d+}/recording")
async def recording(request: web.Request) -> web.FileResponse:
    call_id = int(request.match_info["call_id"])

    def work(session):
        record = session.get(CallRecord, call_id)
        if record is None:
            raise NotFound(f"通话 {call_id} 不存在")
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
