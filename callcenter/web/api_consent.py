"""/api/tickets/{id}/consents: the resident's consent to a paid repair's price (有偿服务).

Signed on the engineer's page (a canvas PNG, sent as a data URL), or asked on a short automated
call to the resident (``/consent-call``: the call is placed on ``followup.line`` by this node's
telephone side, which records the answer itself). Whoever may work the ticket may record it:
the engineer it is assigned to, the front desk, a manager.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable

from aiohttp import web
from sqlalchemy import select

from callcenter.web.api_tickets import ticket_id_of, visible_ticket
from callcenter.web.context import (
    allow,
    current_user,
    json_body,
    json_response,
    now,
    run_db,
)
from callcenter.web.live import FEED
from core import consent, desk
from core.consent import ConsentError, Method, PaidConsent
from core.desk import ValidationError
from core.tickets import CLOSED, Role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
FIELD_ROLES = (Role.ENGINEER, Role.FRONTDESK, Role.MANAGER)
# Places the automated consent call: (ticket id, amount in fen, who asked). It returns at once (the
# call runs on a thread of its own) and raises ValueError with a Chinese reason when it cannot call.
# None on a node without a telephone side or without ``followup.line``.
CONSENT_CALLS = web.AppKey("consent_calls", object)
PlaceConsentCall = Callable[[int, int, str], None]
DATA_URL_PREFIX = "data:image/png;base64,"


def parse_signature(raw: object) -> bytes:
    if not isinstance(raw, str) or not raw.startswith(DATA_URL_PREFIX):
        raise ConsentError({"signature": "请业主在签名框内签字"})
    try:
        png = base64.b64decode(raw[len(DATA_URL_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ConsentError({"signature": "签名图片无效"}) from None
    return consent.check_signature(png)


def parse_consent(body: dict) -> dict:
    """A signed answer from the page: agreed (bool), amount (yuan), consented_by, signature."""
    errors: dict[str, str] = {}
    agreed = body.get("agreed")
    if not isinstance(agreed, bool):
        errors["agreed"] = "应为 true（同意）或 false（不同意）"
    parsed: dict = {"agreed": agreed}
    for key, parse in (("amount_fen", lambda: consent.parse_amount(body.get("amount"))),
                       ("signature_png", lambda: parse_signature(body.get("signature")))):
        try:
            parsed[key] = parse()
        except ConsentError as error:
            errors.update(error.errors)
    name = body.get("consented_by")
    if not isinstance(name, str) or not name.strip():
        errors["consented_by"] = "请填写同意人（业主姓名）"
    elif len(name.strip()) > 64:
        errors["consented_by"] = "不能超过 64 个字"
    else:
        parsed["consented_by"] = name.strip()
    if errors:
        raise ValidationError(errors)
    return parsed


@routes.get("/api/tickets/{ticket_id:\\d+}/consents")
@allow(*FIELD_ROLES)
async def list_consents(request: web.Request) -> web.Response:
    user, ticket_id = current_user(request), ticket_id_of(request)

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        answers = session.scalars(select(PaidConsent).where(PaidConsent.ticket_id == ticket.id)
                                  .order_by(PaidConsent.id))
        standing = consent.standing_consent(session, ticket)
        return {"is_paid": ticket.is_paid, "quoted_fee": ticket.quoted_fee,
                "consented": standing is not None, "consents": [consent.summary(a) for a in answers]}

    return json_response(await run_db(request, work))


@routes.post("/api/tickets/{ticket_id:\\d+}/consents")
@allow(*FIELD_ROLES)
async def sign_consent(request: web.Request) -> web.Response:
    user, ticket_id, at = current_user(request), ticket_id_of(request), now(request)
    answer = parse_consent(await json_body(request))

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        stored = consent.record(session, ticket, method=Method.SIGNATURE, recorded_by=user.username, now=at,
                                **answer)
        log.info("ticket %s: consent to %s fen %s, signed (%s)", ticket.number, stored.amount_fen,
                 "given" if stored.agreed else "refused", user.username)
        return consent.summary(stored)

    stored = await run_db(request, work)
    request.app[FEED].poke()
    return json_response(stored, 201)


@routes.get("/api/tickets/{ticket_id:\\d+}/consents/{consent_id:\\d+}/signature")
@allow(*FIELD_ROLES)
async def signature_image(request: web.Request) -> web.Response:
    user, ticket_id = current_user(request), ticket_id_of(request)
    consent_id = int(request.match_info["consent_id"])

    def work(session):
        visible_ticket(session, ticket_id, user)
        stored = session.get(PaidConsent, consent_id)
        if stored is None or stored.ticket_id != ticket_id or stored.signature_png is None:
            raise desk.NotFound(f"签名 {consent_id} 不存在")
        return stored.signature_png

    png = await run_db(request, work)
    # A resident's signature is personal data: never kept by a shared cache.
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-store"})


@routes.post("/api/tickets/{ticket_id:\\d+}/consent-call")
@allow(*FIELD_ROLES)
async def request_consent_call(request: web.Request) -> web.Response:
    """``{"amount": "65"}``: phone the resident now and ask 「同意请按1，不同意请按2」."""
    user, ticket_id = current_user(request), ticket_id_of(request)
    amount_fen = consent.parse_amount((await json_body(request)).get("amount"))

    def work(session):
        ticket = visible_ticket(session, ticket_id, user)
        if not ticket.is_paid:
            raise ConsentError({"ticket": "该维修单不是有偿服务，无需业主同意报价"})
        if ticket.status in CLOSED:
            raise ConsentError({"ticket": "维修单已完成或已撤单，不能再记录业主同意"})
        if not ticket.phone:
            raise ConsentError({"phone": "维修单没有联系电话，无法电话确认"})
        return ticket.number

    number = await run_db(request, work)
    place: PlaceConsentCall | None = request.app.get(CONSENT_CALLS)  # type: ignore[assignment]
    if place is None:
        return json_response({"error": "本节点没有可用的外呼线路（followup.line），请现场签字确认"}, 503)
    try:
        place(ticket_id, amount_fen, user.username)
    except ValueError as error:
        raise ConsentError({"amount": str(error)}) from None
    log.info("ticket %s: consent call for %s fen asked by %s", number, amount_fen, user.username)
    return json_response({"calling": True, "amount": consent.yuan_text(amount_fen)}, 202)
