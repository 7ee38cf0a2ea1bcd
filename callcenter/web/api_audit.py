"""/api/audit: the audit log for admins (logins, failed logins, account changes, recordings played)."""

from __future__ import annotations

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, json_response, run_db
from callcenter.web.serialize import audit_json
from core import audit
from core.base import ValidationError, parse_time

routes = web.RouteTableDef()


@routes.get("/api/audit")
@allow()
async def audit_log(request: web.Request) -> web.Response:
    """``?action=&username=&target=&from=ISO&to=ISO&limit=&offset=``: newest first, with the total."""
    query, tz = request.query, request.app[SETTINGS].tz
    errors: dict[str, str] = {}
    wanted = audit.AuditFilter(action=query.get("action", ""), username=query.get("username", "")[:64],
                               target=query.get("target", "")[:64])
    if wanted.action and wanted.action not in audit.ACTIONS:
        errors["action"] = f"应为 {'、'.join(audit.ACTIONS)} 之一"
    wanted.since = parse_time(query.get("from"), tz, "from", errors)
    wanted.until = parse_time(query.get("to"), tz, "to", errors)
    for key, top in (("limit", 1000), ("offset", 10**9)):
        try:
            value = int(query.get(key, getattr(wanted, key)))
            if not 0 <= value <= top:
                raise ValueError
            setattr(wanted, key, value)
        except ValueError:
            errors[key] = f"应为 0 到 {top} 之间的整数"
    if errors:
        raise ValidationError(errors)

    def work(session):
        entries, total = audit.find(session, wanted)
        return {"entries": [audit_json(entry, tz) for entry in entries], "total": total,
                "actions": audit.ACTIONS}

    return json_response(await run_db(request, work))
