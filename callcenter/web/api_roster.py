"""/api/oncall and /api/roster: who is on duty, the weekly pattern, overrides and empty slots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, current_user, json_body, json_response, now, run_db
from callcenter.web.local_time import local_iso
from core import roster_store
from core.base import ValidationError, parse_time
from core.roster import Roster, ShiftPattern, on_duty, weekdays_text
from core.store import Engineer, RosterOverride
from core.tickets import Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/api/oncall")
async def who_is_on_call(request: web.Request) -> web.Response:
    """Who is on duty at ``at`` (default: now) for ``skill`` (default: any), in the order to ring them."""
    settings = request.app[SETTINGS]
    errors: dict[str, str] = {}
    at = parse_time(request.query.get("at"), settings.tz, "at", errors) or now(request)
    if errors:
        raise ValidationError(errors)
    skill = request.query.get("skill", "").strip()
    duty = await run_db(request, lambda s: on_duty(roster_store.load_roster(s, settings, since=at), at, skill))
    return json_response({"shift": duty.shift, "chain": [
        {"engineer_id": link.engineer_id, "name": link.name, "contact": link.contact} for link in duty.chain]})


@routes.get("/api/roster")
@allow(Role.FRONTDESK, Role.MANAGER)
async def show_roster(request: web.Request) -> web.Response:
    """The manager's page: the weekly pattern, overrides not yet over, and the next 7 days' empty slots."""
    settings, moment = request.app[SETTINGS], now(request)

    def work(session):
        roster = roster_store.load_roster(session, settings, since=moment)
        names = {person.id: person.name for person in roster.people.values()}
        overrides = roster_store.current_overrides(session, moment)
        return {
            "shifts": [shift_json(shift, roster) for shift in roster.shifts],
            "overrides": [override_json(override, names, settings.tz) for override in overrides],
            "gaps": [{"skill": gap.skill, "from": local_iso(gap.starts_at, settings.tz),
                      "to": local_iso(gap.ends_at, settings.tz), "shift": gap.shift}
                     for gap in roster_store.upcoming_gaps(roster, moment, settings)],
        }

    return json_response(await run_db(request, work))


@routes.post("/api/roster/overrides")
@allow(Role.MANAGER)
async def add_override(request: web.Request) -> web.Response:
    """``{"from", "to", "replace_id", "with_id" (null: nobody stands in), "note"}``."""
    settings, body = request.app[SETTINGS], await json_body(request)
    errors: dict[str, str] = {}
    starts = parse_time(body.get("from"), settings.tz, "from", errors)
    ends = parse_time(body.get("to"), settings.tz, "to", errors)
    for key, value in (("from", starts), ("to", ends)):
        if value is None:
            errors.setdefault(key, "请填写时间")
    replace_id, with_id, note = body.get("replace_id"), body.get("with_id"), body.get("note") or ""
    if not _is_id(replace_id):
        errors["replace_id"] = "请选择被替换的维修人员"
    if with_id is not None and not _is_id(with_id):
        errors["with_id"] = "顶班人员无效"
    if not isinstance(note, str) or len(note) > 500:
        errors["note"] = "备注应为不超过 500 字的文字"
    if errors:
        raise ValidationError(errors)
    user = current_user(request)

    def work(session):
        replaced = session.get(Engineer, replace_id)
        substitute = session.get(Engineer, with_id) if with_id else None
        if replaced is None or (with_id and substitute is None):
            raise ValidationError({"replace_id" if replaced is None else "with_id": "维修人员不存在"})
        try:
            override = roster_store.add_override(session, starts, ends, replaced, substitute, user.actor,
                                                 now(request), note)
        except roster_store.RosterError as error:
            raise ValidationError({"_": str(error)}) from None
        names = {e.id: e.name for e in (replaced, substitute) if e is not None}
        return override_json(override, names, settings.tz)

    override = await run_db(request, work)
    log.info("roster override %s by %s: %s stands in for %s from %s to %s", override["id"], user.username,
             override["with_name"] or "nobody", override["replaced_name"], override["from"], override["to"])
    return json_response(override, 201)


@routes.delete("/api/roster/overrides/{override_id}")
@allow(Role.MANAGER)
async def remove_override(request: web.Request) -> web.Response:
    raw = request.match_info["override_id"]
    override_id = int(raw) if raw.isdigit() else -1
    await run_db(request, lambda s: roster_store.remove_override(s, override_id, current_user(request).actor))
    return web.Response(status=204)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def shift_json(shift: ShiftPattern, roster: Roster) -> dict[str, Any]:
    def person(engineer_id: int, ring: int | None) -> dict[str, Any]:
        who = roster.people.get(engineer_id)
        return {"engineer_id": engineer_id, "name": who.name if who else "?", "contact": who.contact if who else "",
                "active": bool(who and who.active), "ring_seconds": ring or roster.ring_seconds}

    return {"id": shift.id, "name": shift.name, "skill": shift.skill, "weekdays": sorted(shift.weekdays),
            "weekdays_text": weekdays_text(shift.weekdays), "start": shift.start.strftime("%H:%M"),
            "end": shift.end.strftime("%H:%M"), "crosses_midnight": shift.end <= shift.start,
            "chain": [person(link.engineer_id, link.ring_seconds) for link in shift.chain]}


def override_json(override: RosterOverride, names: Mapping[int, str], tz) -> dict[str, Any]:
    return {"id": override.id, "from": local_iso(override.starts_at, tz), "to": local_iso(override.ends_at, tz),
            "replace_id": override.replaced_id, "replaced_name": names.get(override.replaced_id),
            "with_id": override.substitute_id,
            "with_name": names.get(override.substitute_id) if override.substitute_id is not None else None,
            "note": override.note, "created_by": override.created_by}
