"""/api/tickets: the queue, new tickets, one ticket with its history, moves, corrections, notes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
from callcenter.web.serialize import ticket_json
from core import desk, moves
from core.base import NotFound, ValidationError, parse_time
from core.desk import TicketFilter
from core.tickets import DESK, Channel, Status, TransitionRequest, Urgency

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# An emergency taken on the console: tell the caller who is coming (set by callcenter.app; a no-op without
# a telephone side). Takes the ticket id, returns at once.
# (A Callable is no class for AppKey's second argument: the key is typed by its annotation.)
WHO_IS_COMING: web.AppKey[Callable[[int], object]] = web.AppKey("who_is_coming")
TEXT_LIMITS = {"note": desk.NOTE_LIMIT, "reason": 500, "actual_item": 500}


def parse_filter(query, user) -> TicketFilter:
    errors: dict[str, str] = {}
    wanted = TicketFilter()
    for code in filter(None, query.get("status", "").split(",")):
        try:
            wanted.statuses.append(Status(code))
        except ValueError:
            errors["status"] = f"未知状态 {code}"
    for key, enum_type in (("urgency", Urgency), ("channel", Channel)):
        if query.get(key):
            try:
                setattr(wanted, key, enum_type(query[key]))
            except ValueError:
                errors[key] = f"未知取值 {query[key]}"
    wanted.building = query.get("building", "").strip()
    wanted.search = query.get("q", "").strip()[:64]
    overdue = query.get("overdue", "")
    if overdue:
        if overdue not in ("true", "false"):
            errors["overdue"] = "应为 true 或 false"
        wanted.overdue = overdue == "true"
    for key, top in (("limit", 1000), ("offset", 10**9)):
        if query.get(key):
            try:
                value = int(query[key])
                if not 0 <= value <= top:
                    raise ValueError
                setattr(wanted, key, value)
            except ValueError:
                errors[key] = f"应为 0 到 {top} 之间的整数"
    if query.get("mine") == "true":  # an engineer sees only their own anyway (desk.find_tickets)
        wanted.engineer_id = user.engineer_id if user.engineer_id is not None else -1
    if errors:
        raise ValidationError(errors)
    return wanted


@routes.get("/api/tickets")
async def list_tickets(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = parse_filter(request.query, user)
    settings, at = request.app[SETTINGS], now(request)

    def work(session):
        tickets, total = desk.find_tickets(session, wanted, at, seen_by=user.actor)
        return {"tickets": [ticket_json(t, settings.tz, at, user.role) for t in tickets], "total": total}

    return json_response(await run_db(request, work))


@routes.post("/api/tickets")
@allow(*DESK)
async def create_ticket(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    new = desk.parse_new_ticket(await json_body(request), settings.tz)

    def work(session):
        ticket = desk.create_ticket(session, new, user.actor, at, settings)
        return ticket_json(ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    log.info("ticket %s created by %s (%s)", ticket["number"], user.username, ticket["urgency"])
    request.app[FEED].poke()
    return json_response(ticket, 201)


def visible_ticket(session, ticket_id: int, user):
    """The ticket, if this user may see it (an engineer only their own); else NotFound, as if absent."""
    ticket = desk.get_ticket(session, ticket_id)
    if not desk.can_see(ticket, user.actor):
        raise NotFound(f"维修单 {ticket_id} 不存在")
    return ticket


def seen_version(body: dict[str, Any]) -> int | None:
    """The ticket's ``version`` as the page showed it: the change is refused (409) if it moved on."""
    version = body.pop("version", None)
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValidationError({"version": "应为整数"})
    return version


def ticket_id_of(request: web.Request) -> int:
    try:
        return int(request.match_info["ticket_id"])
    except ValueError:
        raise NotFound(f"维修单 {request.match_info['ticket_id']} 不存在") from None


@routes.get("/api/tickets/{ticket_id}")
async def get_ticket(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        return ticket_json(ticket, settings.tz, at, user.role, with_events=True)

    return json_response(await run_db(request, work))


def parse_transition(body: dict[str, Any], tz) -> TransitionRequest:
    errors: dict[str, str] = {}
    to = body.get("to")
    try:
        if not isinstance(to, str):
            raise ValueError(to)
        request = TransitionRequest(to=Status(to))
    except ValueError:
        raise ValidationError({"to": "目标状态无效"}) from None
    for key in ("note", "reason", "actual_item", "rating", "material_check"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            errors[key] = "应为文字"
        elif value is not None and len(value.strip()) > TEXT_LIMITS.get(key, 16):
            errors[key] = f"不能超过 {TEXT_LIMITS.get(key, 16)} 个字"
        elif value is not None:
            setattr(request, key, value.strip() if key in ("note", "reason", "actual_item") else value)
    request.rating = request.rating or None
    request.material_check = request.material_check or None
    engineer = body.get("engineer_id")
    if engineer not in (None, ""):
        try:
            request.engineer_id = int(engineer)
        except (TypeError, ValueError):
            errors["engineer_id"] = "维修人员无效"
    for key in ("material_fee", "labour_fee"):
        value = body.get(key)
        if value in (None, ""):
            continue
        try:
            setattr(request, key, round(float(value), 2))
        except (TypeError, ValueError):
            errors[key] = "费用应为数字"
    confirmed = body.get("customer_confirmed", False)
    if not isinstance(confirmed, bool):
        errors["customer_confirmed"] = "应为 true 或 false"
    request.customer_confirmed = confirmed is True
    request.postponed_until = parse_time(body.get("postponed_until"), tz, "postponed_until", errors)
    if errors:
        raise ValidationError(errors)
    return request


@routes.post("/api/tickets/{ticket_id}/transitions")
async def move_ticket(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)
    body = await json_body(request)
    seen = seen_version(body)
    move = parse_transition(body, settings.tz)

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        before = ticket.status
        moves.move_ticket(session, ticket, move, user.actor, at, settings, seen_version=seen)
        log.info("ticket %s %s -> %s by %s", ticket.number, before, ticket.status, user.username)
        return ticket_json(ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    request.app[FEED].poke()
    if move.to == Status.ACCEPTED and ticket["urgency"] == Urgency.EMERGENCY:
        request.app[WHO_IS_COMING](ticket_id)  # the caller hears who is coming (callcenter.ivr.who_is_coming)
    return json_response(ticket)


@routes.patch("/api/tickets/{ticket_id}")
@allow(*DESK)
async def correct_ticket(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)
    changes = await json_body(request)
    seen = seen_version(changes)

    def work(session):
        ticket = desk.get_ticket(session, ticket_id)
        desk.edit_ticket(session, ticket, changes, user.actor, at, settings, seen_version=seen)
        return ticket_json(ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    request.app[FEED].poke()
    return json_response(ticket)


@routes.post("/api/tickets/{ticket_id}/notes")
async def add_note(request: web.Request) -> web.Response:
    settings, user, at = request.app[SETTINGS], current_user(request), now(request)
    ticket_id = ticket_id_of(request)
    note = (await json_body(request)).get("note")
    if not isinstance(note, str):
        raise ValidationError({"note": "备注应为文字"})

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        desk.add_note(session, ticket, note, user.actor, at)
        return ticket_json(ticket, settings.tz, at, user.role, with_events=True)

    ticket = await run_db(request, work)
    request.app[FEED].poke()
    return json_response(ticket, 201)
