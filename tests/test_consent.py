"""Consent to a paid repair (有偿服务): recorded before the work, required to complete it."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import consent, desk, moves
from core.consent import ConsentError, Method, PaidConsent
from core.desk import Actor, NewTicket
from core.store import Engineer, FeeItem
from core.tickets import Role, Status, TransitionError, TransitionRequest

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLERK = Actor("desk1", Role.FRONTDESK)
START = datetime(2026, 11, 22, 9, 0, tzinfo=SHANGHAI)
# The smallest valid PNG header is enough for the storage rules (the page sends a real canvas PNG).
PNG = consent.PNG_MAGIC + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.mark.parametrize("raw, fen", [
    ("120", 12000), ("120.5", 12050), ("120.50", 12050), (" ¥65元 ", 6500), (65, 6500), (0.01, 1),
    (19.99, 1999), ("0.3", 30),
])
def test_amounts_in_yuan_become_integer_fen(raw, fen):
    assert consent.parse_amount(raw) == fen


@pytest.mark.parametrize("raw", ["", "abc", "-5", "0", "0.00", "1.234", "1e3", "12,000", None, True, [], "100001"])
def test_bad_amounts_are_refused_with_a_chinese_message(raw):
    with pytest.raises(ConsentError) as refused:
        consent.parse_amount(raw)
    assert "金额" in refused.value.errors["amount"]


def test_amounts_are_said_without_float_noise():
    assert [consent.yuan_text(f) for f in (12000, 12050, 5, 1999)] == ["120", "120.50", "0.05", "19.99"]


@pytest.fixture
def paid_on_site(sessions, settings):
    """A paid ticket (快修 item 65 元) with 张工 at the door, and 张工 himself as an actor."""
    with sessions() as session, session.begin():
        item = FeeItem(code="P01", name="更换水龙头", material_fee=45, labour_fee=20)
        zhang = Engineer(name="张工", phone="13800000001")
        session.add_all([item, zhang])
        session.flush()
        ticket = desk.create_ticket(session, NewTicket(description="水龙头坏了", building="3", unit="2", room="1101",
                                                       is_paid=True, fee_item_id=item.id), CLERK, START, settings)
        engineer = Actor("zhang", Role.ENGINEER, zhang.id)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=zhang.id), CLERK,
                        START + timedelta(minutes=1), settings)
        for minutes, to in ((2, Status.ACCEPTED), (10, Status.ON_SITE)):
            moves.move_ticket(session, ticket, TransitionRequest(to), engineer, START + timedelta(minutes=minutes), settings)
        return ticket.id, engineer


def complete(session, ticket_id, engineer, settings, at, **fees):
    ticket = desk.get_ticket(session, ticket_id)
    request = TransitionRequest(Status.COMPLETED, actual_item="更换水龙头", customer_confirmed=True, **fees)
    return moves.move_ticket(session, ticket, request, engineer, at, settings)


def test_a_paid_ticket_cannot_be_completed_without_consent(sessions, settings, paid_on_site):
    ticket_id, engineer = paid_on_site
    with sessions() as session, session.begin():
        with pytest.raises(TransitionError, match="有偿服务须先取得业主对报价的同意"):
            complete(session, ticket_id, engineer, settings, START + timedelta(minutes=40))
    with sessions() as session:
        assert desk.get_ticket(session, ticket_id).status == Status.ON_SITE


def test_signed_consent_is_recorded_and_lets_the_work_be_completed(sessions, settings, paid_on_site):
    ticket_id, engineer = paid_on_site
    signed_at = START + timedelta(minutes=12)
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        consent.record(session, ticket, agreed=True, amount_fen=6500, method=Method.SIGNATURE,
                       consented_by="王女士", recorded_by="zhang", now=signed_at, signature_png=PNG)
    with sessions() as session, session.begin():
        done = complete(session, ticket_id, engineer, settings, START + timedelta(minutes=40),
                        material_fee=45, labour_fee=20)
        assert done.status == Status.COMPLETED
    with sessions() as session:
        stored = session.scalars(select(PaidConsent)).one()
        assert (stored.agreed, stored.amount_fen, stored.method, stored.consented_by, stored.recorded_by) == (
            True, 6500, "signature", "王女士", "zhang")
        assert stored.at == signed_at and stored.signature_png == PNG
        event = [e for e in desk.get_ticket(session, ticket_id).events if e.kind == "consent"][0]
        assert event.note == "业主同意有偿服务报价 65 元（现场签字，王女士）"
        assert event.data["consent"]["amount_fen"] == 6500


def test_a_later_refusal_withdraws_consent_and_fees_above_the_agreed_price_are_refused(
        sessions, settings, paid_on_site):
    ticket_id, engineer = paid_on_site
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        consent.record(session, ticket, agreed=True, amount_fen=6500, method=Method.PHONE,
                       consented_by="13900000000", recorded_by="consent-call", now=START + timedelta(minutes=11))
    with sessions() as session, session.begin():
        with pytest.raises(TransitionError, match="实际费用 80.00 元超过业主同意的报价 65.00 元"):
            complete(session, ticket_id, engineer, settings, START + timedelta(minutes=40),
                     material_fee=60, labour_fee=20)
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        consent.record(session, ticket, agreed=False, amount_fen=8000, method=Method.PHONE,
                       consented_by="13900000000", recorded_by="consent-call", now=START + timedelta(minutes=20))
    with sessions() as session, session.begin():
        with pytest.raises(TransitionError, match="有偿服务须先取得业主对报价的同意"):
            complete(session, ticket_id, engineer, settings, START + timedelta(minutes=40), labour_fee=20)


def test_consent_needs_a_paid_ticket_a_name_and_a_real_signature(sessions, settings, paid_on_site):
    ticket_id, _ = paid_on_site
    with sessions() as session, session.begin():
        ticket = desk.get_ticket(session, ticket_id)
        attempts = {
            "signature": dict(method=Method.SIGNATURE, consented_by="王女士", signature_png=None),
            "consented_by": dict(method=Method.SIGNATURE, consented_by="  ", signature_png=PNG),
        }
        for field, attempt in attempts.items():
            with pytest.raises(ConsentError) as refused:
                consent.record(session, ticket, agreed=True, amount_fen=6500, recorded_by="zhang", now=START, **attempt)
            assert field in refused.value.errors
        with pytest.raises(ConsentError, match="PNG"):
            consent.check_signature(b"GIF89a" + b"\x00" * 10)
        with pytest.raises(ConsentError, match="过大"):
            consent.check_signature(PNG + b"\x00" * consent.SIGNATURE_LIMIT)
        ticket.is_paid = False
        with pytest.raises(ConsentError, match="不是有偿服务"):
            consent.record(session, ticket, agreed=True, amount_fen=6500, method=Method.SIGNATURE,
                           consented_by="王女士", recorded_by="zhang", now=START, signature_png=PNG)
        assert session.scalars(select(PaidConsent)).all() == []


def test_free_work_needs_no_consent(sessions, settings, paid_on_site):
    ticket_id, engineer = paid_on_site
    with sessions() as session, session.begin():
        desk.get_ticket(session, ticket_id).is_paid = False
    with sessions() as session, session.begin():
        assert complete(session, ticket_id, engineer, settings, START + timedelta(minutes=40)).status == Status.COMPLETED
