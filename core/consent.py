"""The resident's consent to the price of a paid repair (有偿服务: 业主同意报价后方可施工).

PROCESS.md: at 到场 the engineer confirms the item and shows the fee; the resident agrees or
refuses before any work starts. A consent says who agreed, when, how (a signature on the
engineer's page, or a key pressed on a short automated call) and to which amount. Completing a
paid ticket without one is refused by the rule in ``core.tickets.require_paid_consent``.

Amounts are integer fen (分), never floats: 「120.50」 yuan is 12050 fen.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.base import Actor, ValidationError
from core.db import Base
from core.desk import record_event
from core.store import Ticket
from core.tickets import CLOSED, Role

MAX_AMOUNT_FEN = 10_000_000  # 十万元: far above any in-home repair; a typo beyond it is refused
# Bytes of one PNG signature: a 600x200 canvas of pen strokes is 5-20 KB; base64 in a JSON body must
# stay under the API's 64 KB (callcenter.web.context.MAX_JSON_BYTES).
SIGNATURE_LIMIT = 40 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_YUAN = re.compile(r"^\d{1,9}(\.\d{1,2})?$")


class Method(enum.StrEnum):
    SIGNATURE = "signature"  # signed on the engineer's page
    PHONE = "phone"  # pressed 1 (or 2) on the automated consent call


METHOD_NAMES = {Method.SIGNATURE: "现场签字", Method.PHONE: "电话确认"}


class ConsentError(ValidationError):
    """Bad consent input, per field in Chinese (a ValidationError: the API answers 422)."""


class PaidConsent(Base):
    """One answer of the resident to a quoted price: agreed or refused, and how it was given."""

    __tablename__ = "paid_consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    agreed: Mapped[bool] = mapped_column(Boolean)
    amount_fen: Mapped[int] = mapped_column(Integer)
    method: Mapped[Method] = mapped_column(String(12))
    consented_by: Mapped[str] = mapped_column(String(64))  # the resident's name, or the number that answered
    at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(64))  # the engineer's username, or "consent-call"
    signature_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id"))


def parse_amount(raw: object) -> int:
    """A yuan amount as typed («120», «120.5», «120.50», or a number) to integer fen; a clear error else."""
    if isinstance(raw, bool) or raw is None:
        raise ConsentError({"amount": "请填写报价金额（元）"})
    if isinstance(raw, (int, float)):
        text = format(Decimal(str(raw)), "f")
    elif isinstance(raw, str):
        text = raw.strip().removeprefix("¥").removesuffix("元").strip()
    else:
        raise ConsentError({"amount": "报价金额应为数字（元）"})
    if not _YUAN.match(text):
        raise ConsentError({"amount": "报价金额应为不超过两位小数的正数（元），如 120 或 120.50"})
    try:
        fen = int(Decimal(text) * 100)
    except InvalidOperation:
        raise ConsentError({"amount": "报价金额无效"}) from None
    if fen <= 0:
        raise ConsentError({"amount": "报价金额应大于 0"})
    if fen > MAX_AMOUNT_FEN:
        raise ConsentError({"amount": f"报价金额不能超过 {MAX_AMOUNT_FEN // 100} 元"})
    return fen


def yuan_text(fen: int) -> str:
    """12050 -> «120.50», 12000 -> «120»: how pages and prompts say an amount."""
    whole, cents = divmod(fen, 100)
    return f"{whole}.{cents:02d}" if cents else str(whole)


def check_signature(png: bytes | None) -> bytes:
    if not png:
        raise ConsentError({"signature": "请业主在签名框内签字"})
    if len(png) > SIGNATURE_LIMIT:
        raise ConsentError({"signature": f"签名图片过大（上限 {SIGNATURE_LIMIT // 1024} KB）"})
    if not png.startswith(PNG_MAGIC):
        raise ConsentError({"signature": "签名应为 PNG 图片"})
    return png


def record(session: Session, ticket: Ticket, *, agreed: bool, amount_fen: int, method: Method,
           consented_by: str, recorded_by: str, now: datetime, signature_png: bytes | None = None,
           call_record_id: int | None = None) -> PaidConsent:
    """Store the resident's answer to the quoted amount, and leave a ticket event that says it."""
    if not ticket.is_paid:
        raise ConsentError({"ticket": "该维修单不是有偿服务，无需业主同意报价"})
    if ticket.status in CLOSED:
        raise ConsentError({"ticket": "维修单已完成或已撤单，不能再记录业主同意"})
    if not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise ConsentError({"amount": "报价金额无效"})
    consented_by = consented_by.strip()[:64]
    if not consented_by:
        raise ConsentError({"consented_by": "请填写同意人（业主姓名）"})
    if method == Method.SIGNATURE:
        check_signature(signature_png)
    consent = PaidConsent(ticket_id=ticket.id, agreed=agreed, amount_fen=amount_fen, method=method,
                          consented_by=consented_by, at=now, recorded_by=recorded_by,
                          signature_png=signature_png, call_record_id=call_record_id)
    session.add(consent)
    session.flush()
    answer = "同意" if agreed else "不同意"
    record_event(ticket, Actor(recorded_by, Role.FRONTDESK), now, "consent",
                 note=f"业主{answer}有偿服务报价 {yuan_text(amount_fen)} 元（{METHOD_NAMES[method]}，{consented_by}）",
                 data={"consent": summary(consent)})
    ticket.updated_at = now
    return consent


def latest(session: Session, ticket_id: int) -> PaidConsent | None:
    """The resident's last answer: a later refusal withdraws an earlier consent."""
    return session.scalars(select(PaidConsent).where(PaidConsent.ticket_id == ticket_id)
                           .order_by(PaidConsent.at.desc(), PaidConsent.id.desc()).limit(1)).first()


def standing_consent(session: Session, ticket: Ticket) -> PaidConsent | None:
    """The consent that lets paid work go on, or None (never asked, or the last answer was no)."""
    last = latest(session, ticket.id)
    return last if last is not None and last.agreed else None


def summary(consent: PaidConsent) -> dict:
    """What pages and ticket events show (the signature itself is fetched separately)."""
    return {
        "id": consent.id, "agreed": consent.agreed, "amount_fen": consent.amount_fen,
        "amount": yuan_text(consent.amount_fen), "method": str(consent.method),
        "method_name": METHOD_NAMES[Method(consent.method)], "consented_by": consent.consented_by,
        "at": consent.at.isoformat(), "recorded_by": consent.recorded_by,
        "has_signature": consent.signature_png is not None, "call_record_id": consent.call_record_id,
    }
