"""/api/followups and /api/reports/followups: the follow-up calls (回访), asking for one, the month's figures."""

from __future__ import annotations

import csv
import io
import logging
from datetime import date
from typing import Any

from aiohttp import web

from callcenter.web.context import SETTINGS, allow, current_user, json_body, json_response, now, run_db
from callcenter.web.live import FEED
from callcenter.web.serialize import followup_json
from core import desk, followup
from core.base import ValidationError, parse_time
from core.followup import FOLLOWUP_STATUS_NAMES
from core.followup_report import FollowupFilter, find_followups
from core.reports import monthly_report
from core.tickets import DESK, Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
CSV_COLUMNS = ("完成数", "回访数", "回访率", "满意数", "满意率", "返修数", "返修率")


def parse_filter(query, tz) -> FollowupFilter:
    errors: dict[str, str] = {}
    wanted = FollowupFilter(statuses=[s for s in query.get("status", "").split(",") if s])
    unknown = [s for s in wanted.statuses if s not in FOLLOWUP_STATUS_NAMES]
    if unknown:
        errors["status"] = f"未知状态 {'、'.join(unknown)}，应为 {'、'.join(FOLLOWUP_STATUS_NAMES)}"
    wanted.due_from = parse_time(query.get("from"), tz, "from", errors)
    wanted.due_to = parse_time(query.get("to"), tz, "to", errors)
    if query.get("needs_person", "false") not in ("true", "false"):
        errors["needs_person"] = "应为 true 或 false"
    wanted.needs_person = query.get("needs_person") == "true"
    try:
        wanted.limit = int(query.get("limit", wanted.limit))
        if not 1 <= wanted.limit <= 2000:
            raise ValueError
    except ValueError:
        errors["limit"] = "应为 1 到 2000 之间的整数"
    if errors:
        raise ValidationError(errors)
    return wanted


@routes.get("/api/followups")
@allow(*DESK)
async def list_followups(request: web.Request) -> web.Response:
    tz = request.app[SETTINGS].tz
    wanted = parse_filter(request.query, tz)
    return json_response(await run_db(request, lambda s: [followup_json(f, tz) for f in find_followups(s, wanted)]))


@routes.post("/api/tickets/{ticket_id:\\d+}/followup")
@allow(*DESK)
async def schedule_followup(request: web.Request) -> web.Response:
    """``{"at": ISO}``: call then (agreed with the resident); without it, at the policy's time."""
    settings, at_now = request.app[SETTINGS], now(request)
    ticket_id = int(request.match_info["ticket_id"])
    errors: dict[str, str] = {}
    at = parse_time((await json_body(request)).get("at"), settings.tz, "at", errors)
    if errors:
        raise ValidationError(errors)

    def work(session):
        ticket = desk.get_ticket(session, ticket_id)
        return followup_json(followup.schedule_for(session, ticket, at_now, settings, at=at), settings.tz)

    scheduled = await run_db(request, work)
    log.info("followup %s of ticket %s for %s, asked by %s", scheduled["id"], scheduled["ticket_number"],
             scheduled["due_at"], current_user(request).username)
    request.app[FEED].poke()
    return json_response(scheduled, 201)


@routes.get("/api/reports/followups")
@allow(Role.MANAGER)
async def followup_report(request: web.Request) -> web.Response:
    """The month's 回访率, 满意率, 返修率, per category and engineer; CSV for ``Accept: text/csv``."""
    settings = request.app[SETTINGS]
    month = _month(request.query.get("month", ""), now(request).astimezone(settings.tz).date())
    report = await run_db(request, lambda s: monthly_report(s, month, settings))
    wants_csv = "text/csv" in request.headers.get("Accept", "") or request.query.get("format") == "csv"
    if not wants_csv:
        return json_response(report)
    return web.Response(body=report_csv(report), content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="followups-{report["month"]}.csv"'})


def _month(value: str, today: date) -> date:
    if not value:
        return today.replace(day=1)
    try:
        return date.fromisoformat(f"{value}-01")
    except ValueError:
        raise ValidationError({"month": "月份格式应为 YYYY-MM，例如 2026-11"}) from None


def report_csv(report: dict[str, Any]) -> bytes:
    """One row for the month, then one per category and per engineer. UTF-8 with a BOM: without
    it Excel reads the Chinese as gibberish."""
    def row(scope: str, name: str, figures: dict[str, Any]) -> list[str]:
        return [scope, csv_text(name), *(_cell(figures[column]) for column in CSV_COLUMNS)]

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["范围", "名称", *CSV_COLUMNS])
    writer.writerow(row("合计", report["month"], report))
    writer.writerows(row("类别", entry["name"], entry) for entry in report["by_category"])
    writer.writerows(row("维修人员", entry["name"], entry) for entry in report["by_engineer"])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# A spreadsheet takes a cell starting with one of these for a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets an apostrophe."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value * 100:.1f}%" if isinstance(value, float) else str(value)
