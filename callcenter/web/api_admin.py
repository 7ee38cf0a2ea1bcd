"""/api/ for everything around the tickets: meta, health, people, the fee standard, reports."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

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
from callcenter.web.serialize import engineer_json, fee_json, local_iso, ticket_json, user_json
from core import accounts, desk
from core.desk import NotFound, ValidationError
from core.store import DailyList, Engineer, FeeItem, User
from core.tickets import (
    CATEGORY_NAMES,
    CANCEL_REASONS,
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
    """For monitoring: is the database reachable, and what state is each voice part in. A part
    whose probe says ``"up": false`` (a telephone line not registered or listening) makes the
    whole "degraded" and the answer 503, with the body saying why."""
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
    return json_response({"status": "ok" if healthy else "degraded", **body}, 200 if healthy else 503)


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
    row = {"name": body.get("name"), "phone": body.get("phone") or body.get("sip_uri"),
           "skills": ";".join(skills) if isinstance(skills, list) else skills}
    if not all(isinstance(v, str) for v in row.values()):
        raise ValidationError({k: "应为文字" for k, v in row.items() if not isinstance(v, str)})
    row = {k: v.strip() for k, v in row.items()}

    def work(session):
        try:
            import_engineers(session, [row])
        except DirectoryError as error:
            raise ValidationError({"phone" if row["name"] else "name": str(error).split(": ", 1)[-1]}) from None
        engineer = session.scalar(select(Engineer).where(Engineer.name == row["name"]))
        if body.get("active") is False:
            engineer.active = False
        return engineer_json(engineer)

    return json_response(await run_db(request, work), 201)


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

    def work(session):
        try:
            user = accounts.add_user(session, fields["username"], fields["password"], fields["role"],
                                     now(request), fields["display_name"], fields["engineer_name"])
        except accounts.AccountError as error:
            raise ValidationError({"username": str(error)}) from None
        return user_json(user)

    user = await run_db(request, work)
    log.info("user %s (%s) created by %s", user["username"], user["role"], current_user(request).username)
    return json_response(user, 201)


@routes.patch("/api/users/{user_id}")
@allow()
async def change_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    user_id = int(request.match_info["user_id"]) if request.match_info["user_id"].isdigit() else -1

    def work(session):
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("用户不存在")
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise ValidationError({"active": "应为 true 或 false"})
            user.active = body["active"]
        if "role" in body:
            if body["role"] not in {r.value for r in Role}:
                raise ValidationError({"role": "未知角色"})
            user.role = Role(body["role"])
        if "password" in body:
            password = body["password"]
            if not isinstance(password, str) or len(password) < accounts.MIN_PASSWORD_LENGTH:
                raise ValidationError({"password": f"密码至少 {accounts.MIN_PASSWORD_LENGTH} 位"})
            user.password_hash = accounts.hash_password(password)
        return user_json(user)

    return json_response(await run_db(request, work))


# --- the fee standard (manager) ---------------------------------------------------


def parse_fee(body: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, required in (("code", True), ("name", True), ("category", False), ("unit", False), ("note", False)):
        value = body.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            errors[key] = "必填" if required else "应为文字"
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
    return json_response(await run_db(request, lambda s: desk.ticket_report(s, start, end, settings.sla)))


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
