"""/api/ for everything around the tickets: meta, health, people, the fee standard, reports."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from callcenter.ivr.who_is_coming import make_name_prompt
from callcenter.web.auth import COOKIE, session_user
from callcenter.web.context import (
    HEALTH,
    SETTINGS,
    allow,
    current_user,
    json_body,
    json_response,
    now,
    public,
    run_db,
)
from callcenter.web.local_time import local_iso
from callcenter.web.passwords import PASSWORDS
from callcenter.web.security import client_address
from callcenter.web.serialize import engineer_json, fee_json, ticket_json, user_json
from core import accounts, audit, desk, reports
from core.base import NotFound, ValidationError
from core.store import DailyList, Engineer, FeeItem, User
from core.tickets import (
    CANCEL_REASONS,
    CATEGORY_NAMES,
    CHANNEL_NAMES,
    MATERIAL_CHECKS,
    RATINGS,
    ROLE_NAMES,
    STATUS_NAMES,
    URGENCY_NAMES,
    Role,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PUBLIC_AREAS = ["电梯", "车库", "大堂", "楼道", "大门", "楼顶", "花园", "其他公共区域"]


@routes.get("/api/health")
@public
async def health(request: web.Request) -> web.Response:
    """For monitoring: ``{"status"}`` to anyone: "ok", or "degraded" with 503 when the database is
    unreachable or a voice part's probe says ``"up": false`` (a telephone line not registered or
    listening). Logged-in staff also see why: the database and each voice part's state."""
    try:
        await run_db(request, lambda s: s.execute(select(1)).scalar())
        database = "ok"
    except Exception as error:  # report, don't raise: health must answer even when sick
        database = f"error: {type(error).__name__}"
    body: dict[str, Any] = {"database": database}
    for name, probe in request.app[HEALTH].items():
        body[name] = probe()
    healthy = database == "ok" and not any(isinstance(part, dict) and part.get("up") is False
                                           for part in body.values())
    body = {"status": "ok" if healthy else "degraded", **body}
    if database != "ok" or await session_user(request) is None:
        body = {"status": body["status"]}  # anonymous (or no database to tell): the state only
    return json_response(body, 200 if healthy else 503)


@routes.get("/api/meta")
async def meta(request: web.Request) -> web.Response:
    """The codes the API speaks with the Chinese names the pages show."""
    return json_response({
        "property_name": request.app[SETTINGS].property_name,
        "statuses": {k.value: v for k, v in STATUS_NAMES.items()},
        "urgencies": {k.value: v for k, v in URGENCY_NAMES.items()},
        "channels": {k.value: v for k, v in CHANNEL_NAMES.items()},
        "categories": CATEGORY_NAMES, "cancel_reasons": CANCEL_REASONS,
        "material_checks": MATERIAL_CHECKS, "ratings": list(RATINGS),
        "roles": {k.value: v for k, v in ROLE_NAMES.items()}, "areas": PUBLIC_AREAS,
    })


@routes.get("/api/engineers")
async def list_engineers(request: web.Request) -> web.Response:
    engineers = await run_db(request, lambda s: [
        engineer_json(e) for e in s.scalars(select(Engineer).order_by(Engineer.name))])
    return json_response(engineers)


@routes.post("/api/engineers")
@allow(Role.MANAGER)
async def save_engineer(request: web.Request) -> web.Response:
    """Add an engineer, or update one of the same name (as the CSV import does)."""
    from core.directory import DirectoryError, import_engineers

    body = await json_body(request)
    skills = body.get("skills", [])
    given = {"name": body.get("name"), "phone": body.get("phone") or body.get("sip_uri"),
             "skills": ";".join(skills) if isinstance(skills, list) else skills}
    if not all(isinstance(v, str) for v in given.values()):
        raise ValidationError({k: "应为文字" for k, v in given.items() if not isinstance(v, str)})
    row = {k: v.strip() for k, v in given.items() if isinstance(v, str)}  # all are, as checked above
    too_long = {k: f"不能超过 {limit} 个字" for k, limit in (("name", 64), ("phone", 128), ("skills", 200))
                if len(row[k]) > limit}
    if too_long:
        raise ValidationError(too_long)

    def work(session):
        try:
            import_engineers(session, [row])
        except DirectoryError as error:
            raise ValidationError({"phone" if row["name"] else "name": str(error).split(": ", 1)[-1]}) from None
        engineer = session.scalar(select(Engineer).where(Engineer.name == row["name"]))
        if body.get("active") is False:
            engineer.active = False
        return engineer_json(engineer)

    saved = await run_db(request, work)
    # Callers hear who is coming by name: spoken now, once (espeak-ng; without it the sentence has no name).
    await asyncio.to_thread(make_name_prompt, request.app[SETTINGS].data_dir, saved["name"])
    return json_response(saved, 201)


@routes.get("/api/residents")
@allow(Role.FRONTDESK, Role.MANAGER)
async def find_resident(request: web.Request) -> web.Response:
    phone = request.query.get("phone", "")

    def work(session):
        resident = desk.resident_by_phone(session, phone)
        if resident is None:
            raise NotFound("住户名录中没有这个号码")
        return {"phone": resident.phone, "name": resident.name, "building": resident.building,
                "unit": resident.unit, "room": resident.room}

    return json_response(await run_db(request, work))


# --- staff accounts (admin) -------------------------------------------------------


@routes.get("/api/users")
@allow()
async def list_users(request: web.Request) -> web.Response:
    return json_response(await run_db(request, lambda s: [
        user_json(u) for u in s.scalars(select(User).order_by(User.username))]))


@routes.post("/api/users")
@allow()
async def create_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    fields = {k: body.get(k, "") for k in ("username", "password", "role", "display_name", "engineer_name")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise ValidationError({k: "应为文字" for k, v in fields.items() if not isinstance(v, str)})
    problem = accounts.password_problem(fields["password"])
    if problem:
        raise ValidationError({"password": problem})
    admin, at = current_user(request), now(request)
    password_hash = await request.app[PASSWORDS].run(accounts.hash_password, fields["password"])

    def work(session):
        try:
            user = accounts.add_user(session, fields["username"], fields["password"], fields["role"], at,
                                     fields["display_name"], fields["engineer_name"], password_hash=password_hash)
        except accounts.AccountError as error:
            field = "engineer_name" if "维修人员" in str(error) else "username"
            raise ValidationError({field: str(error)}) from None
        audit.record(session, audit.USER_CREATED, at, username=admin.username, address=client_address(request),
                     target=f"user:{user.id}", detail={"username": user.username, "role": str(user.role),
                                                       "engineer_id": user.engineer_id})
        return user_json(user)

    user = await run_db(request, work)
    log.info("user %s (%s) created by %s", user["username"], user["role"], admin.username)
    return json_response(user, 201)


@routes.patch("/api/users/{user_id}")
@allow()
async def change_user(request: web.Request) -> web.Response:
    """``{active, role, engineer_name, password}``: any change logs that user out everywhere else."""
    body = await json_body(request)
    user_id = int(request.match_info["user_id"]) if request.match_info["user_id"].isdigit() else -1
    admin, at = current_user(request), now(request)
    errors: dict[str, str] = {}
    if "active" in body and not isinstance(body["active"], bool):
        errors["active"] = "应为 true 或 false"
    if "role" in body and body["role"] not in {r.value for r in Role}:
        errors["role"] = "未知角色"
    if "engineer_name" in body and not isinstance(body["engineer_name"], str):
        errors["engineer_name"] = "应为文字"
    if "password" in body and (problem := accounts.password_problem(body["password"])):
        errors["password"] = problem
    if errors:
        raise ValidationError(errors)
    password_hash = await request.app[PASSWORDS].run(accounts.hash_password, body["password"]) \
        if "password" in body else None

    def work(session):
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("用户不存在")
        if user.id == admin.id and (body.get("active") is False or body.get("role", Role.ADMIN) != Role.ADMIN):
            raise ValidationError({"role": "不能停用自己的账号或取消自己的管理员角色"})
        try:
            changes = accounts.change_user(session, user, active=body.get("active"), role=body.get("role"),
                                           engineer_name=body.get("engineer_name"), password_hash=password_hash,
                                           keep_token=request.cookies.get(COOKIE, "") if user.id == admin.id else "")
        except accounts.AccountError as error:
            raise ValidationError({"engineer_name": str(error)}) from None
        if changes:
            audit.record(session, audit.USER_CHANGED, at, username=admin.username, address=client_address(request),
                         target=f"user:{user.id}", detail={"username": user.username, **changes})
        return user_json(user), changes

    user, changes = await run_db(request, work)
    if changes:
        log.info("user %s changed by %s: %s", user["username"], admin.username, ", ".join(changes))
    return json_response(user)


# --- the fee standard (manager) ---------------------------------------------------


def parse_fee(body: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, required, limit in (("code", True, 24), ("name", True, 128), ("category", False, 24),
                                 ("unit", False, 16), ("note", False, 500)):
        value = body.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            errors[key] = "必填" if required else "应为文字"
        elif len(value.strip()) > limit:
            errors[key] = f"不能超过 {limit} 个字"
        else:
            values[key] = value.strip()
    if values.get("category") and values["category"] not in CATEGORY_NAMES:
        errors["category"] = "未知的报修类别"
    values["category"] = values.get("category") or "other"
    values["unit"] = values.get("unit") or "次"
    for key in ("material_fee", "labour_fee"):
        try:
            values[key] = round(float(body.get(key) or 0), 2)
            if values[key] < 0:
                raise ValueError
        except (TypeError, ValueError):
            errors[key] = "应为不小于 0 的数字"
    if errors:
        raise ValidationError(errors)
    return values


@routes.get("/api/fees")
async def list_fees(request: web.Request) -> web.Response:
    show_all = request.query.get("all") == "true"
    return json_response(await run_db(request, lambda s: [
        fee_json(f) for f in s.scalars(select(FeeItem).order_by(FeeItem.code)) if show_all or f.active]))


@routes.post("/api/fees")
@allow(Role.MANAGER)
async def create_fee(request: web.Request) -> web.Response:
    values = parse_fee(await json_body(request))

    def work(session):
        if session.scalar(select(FeeItem).where(FeeItem.code == values["code"])):
            raise ValidationError({"code": "编号已存在"})
        item = FeeItem(**values)
        session.add(item)
        session.flush()
        return fee_json(item)

    return json_response(await run_db(request, work), 201)


@routes.put("/api/fees/{fee_id}")
@allow(Role.MANAGER)
async def update_fee(request: web.Request) -> web.Response:
    values = parse_fee(await json_body(request))
    fee_id = int(request.match_info["fee_id"]) if request.match_info["fee_id"].isdigit() else -1

    def work(session):
        item = session.get(FeeItem, fee_id)
        if item is None:
            raise NotFound("收费项目不存在")
        clash = session.scalar(select(FeeItem).where(FeeItem.code == values["code"], FeeItem.id != fee_id))
        if clash:
            raise ValidationError({"code": "编号已存在"})
        for key, value in values.items():
            setattr(item, key, value)
        item.active = True
        return fee_json(item)

    return json_response(await run_db(request, work))


@routes.delete("/api/fees/{fee_id}")
@allow(Role.MANAGER)
async def retire_fee(request: web.Request) -> web.Response:
    """Retire, not delete: old tickets still name the item they were priced by."""
    fee_id = int(request.match_info["fee_id"]) if request.match_info["fee_id"].isdigit() else -1

    def work(session):
        item = session.get(FeeItem, fee_id)
        if item is None:
            raise NotFound("收费项目不存在")
        item.active = False

    await run_db(request, work)
    return web.Response(status=204)


# --- reports (manager) ------------------------------------------------------------


def _day(value: str, key: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError({key: "日期格式应为 YYYY-MM-DD"}) from None


@routes.get("/api/reports/tickets")
@allow(Role.MANAGER)
async def ticket_report(request: web.Request) -> web.Response:
    """Counts and rates for tickets reported between two local days (both included)."""
    settings = request.app[SETTINGS]
    today = now(request).astimezone(settings.tz).date()
    first = _day(request.query.get("from", ""), "from", today.replace(day=1))
    last = _day(request.query.get("to", ""), "to", today)
    if last < first:
        raise ValidationError({"to": "结束日期早于开始日期"})
    start = datetime.combine(first, time(0), tzinfo=settings.tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=settings.tz)
    return json_response(await run_db(request, lambda s: reports.ticket_report(s, start, end, settings.sla)))


@routes.get("/api/reports/daily")
@allow(Role.FRONTDESK, Role.MANAGER)
async def daily_report(request: web.Request) -> web.Response:
    """The 17:00 list: every ticket reported by the cut-off that is not done."""
    settings, at = request.app[SETTINGS], now(request)
    day = _day(request.query.get("day", ""), "day", at.astimezone(settings.tz).date())
    role = current_user(request).role

    def work(session):
        tickets = [ticket_json(t, settings.tz, at, role) for t in desk.daily_report(session, day, settings)]
        kept = session.get(DailyList, day)  # the list as it stood at the cut-off (core.jobs)
        return tickets, {"made_at": local_iso(kept.made_at, settings.tz), "numbers": kept.numbers} if kept else None

    tickets, kept = await run_db(request, work)
    return json_response({"day": day.isoformat(), "cutoff": settings.sla.daily_report_time, "tickets": tickets,
                          "kept": kept})
