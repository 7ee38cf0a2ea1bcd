"""The consent call (有偿服务电话确认): a short automated call asking the resident to agree to a price.

The engineer (or the desk) asks for it from the ticket (``POST /api/tickets/{id}/consent-call``);
``ConsentCalls.place`` checks it can be made and hands it to a thread of its own; the call goes
out on ``followup.line``, the same outbound line and dialling as the follow-up calls
(``outbound.dial``, as every short outbound call: every attempt leaves a call record). Once answered:
who calls and that the call is recorded (the hotline's greeting), then
「本次维修为有偿服务，报价X元，同意请按1，不同意请按2」, by key or by word, asked twice at most. A 1 or
2 is stored by ``core.consent.record`` (method ``phone``, the number that answered, the call
record); anything else stores nothing, so the engineer still needs a signature.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from callcenter.asr.grammar import Choices
from callcenter.asr.stream import Recognizer
from callcenter.ivr.flows.call_record import FlowRecord
from callcenter.ivr.flows.dialogue import Dialogue, Heard, HungUp
from callcenter.ivr.lines import CallEnded, Line
from callcenter.ivr.outbound import dial
from callcenter.ivr.prompts import Prompts
from core import consent, log_context
from core.calls import CallLog
from core.settings import Settings
from core.ticket_call_service import TicketCallService

log = logging.getLogger("callcenter.ivr")

RING_SECONDS = 30
MAX_CALLS = 2  # consent calls at once per node: a few a day, never a flood on the follow-up line
# The prompt counts whole yuan from recorded pieces (prompts.number: up to 9999).
MAX_PHONE_FEN = 10_000 * 100 - 1
RECORDED_BY = "consent-call"
ANSWER_WORDS: Choices = {
    "agree": ("同意", "我同意", "可以", "好的", "行", "没问题", "一"),
    "refuse": ("不同意", "不行", "不可以", "太贵了", "不要", "二"),
}
ANSWER_KEYS = {"1": "agree", "2": "refuse"}


@dataclass
class ConsentCallServices:
    settings: Settings
    prompts: Prompts
    tickets: TicketCallService
    calls: CallLog
    line: Callable[[str], Line | None]  # a configured line by name (Telephony.line)
    new_recognizer: Callable[[list[str] | None], Recognizer] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass
class ConsentCallResult:
    record_id: int | None
    answer: str | None  # agree | refuse | None (nobody answered, or no clear answer)
    outcome: str  # the call record's outcome: completed, no_answer, busy, failed, caller_hung_up ...
    consent_id: int | None = None


def quote_prompt(prompts: Prompts, amount_fen: int) -> bytes:
    """「本次维修为有偿服务，报价一百二十点五零元，同意请按1，不同意请按2。」"""
    yuan, fen = divmod(amount_fen, 100)
    amount = prompts.number(yuan, two_as_liang=False)
    if fen:
        amount += prompts["consent.point"] + prompts.digits(f"{fen:02d}")
    return prompts["consent.quote_prefix"] + amount + prompts["consent.quote_suffix"]


class ConsentCalls:
    """The consent calls of this node: ``place`` returns at once, each call runs on its own thread."""

    def __init__(self, services: ConsentCallServices, max_calls: int = MAX_CALLS):
        self.services = services
        self.executor = ThreadPoolExecutor(max_calls, thread_name_prefix="consent-call")
        self.slots = threading.BoundedSemaphore(max_calls)  # a queue nobody can fill: busy means busy

    def place(self, ticket_id: int, amount_fen: int, asked_by: str) -> None:
        """Raises ValueError (Chinese) when the call cannot be made now."""
        if amount_fen > MAX_PHONE_FEN:
            raise ValueError("电话确认的报价不能超过 9999.99 元，请现场签字确认")
        if self.services.line(self.services.settings.followup.line) is None:
            raise ValueError("没有配置外呼线路（followup.line），请现场签字确认")
        if not self.slots.acquire(blocking=False):
            raise ValueError("外呼线路正忙，请稍后再试或现场签字确认")
        try:
            self.executor.submit(self._run, ticket_id, amount_fen, asked_by)
        except RuntimeError:  # shutting down
            self.slots.release()
            raise ValueError("服务正在停止，请稍后再试") from None

    def _run(self, ticket_id: int, amount_fen: int, asked_by: str) -> None:
        try:
            call_for_consent(ticket_id, amount_fen, asked_by, self.services)
        except Exception:
            log.exception("consent call for ticket %s failed", ticket_id)
        finally:
            self.slots.release()

    def stop(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@log_context.scoped
def call_for_consent(ticket_id: int, amount_fen: int, asked_by: str, services: ConsentCallServices,
                     ring_seconds: float = RING_SECONDS) -> ConsentCallResult:
    """Dial the ticket's phone, ask, store the answer; the result says what happened."""
    ticket = services.tickets.contact(ticket_id)
    phone = ticket.phone
    log_context.note(ticket=ticket.number)
    line = services.line(services.settings.followup.line)
    if line is None or not phone:
        log.error("consent call for ticket %s: no line %r or no phone", ticket_id, services.settings.followup.line)
        return ConsentCallResult(None, None, "failed")
    log.info("consent call for ticket %s to %s for %s fen, asked by %s", ticket_id, phone, amount_fen, asked_by)
    dialled = dial(line, phone, services.calls, services.clock, ring_seconds, ticket_id, "consent call")
    if dialled.call is None:
        return ConsentCallResult(dialled.record_id, None, dialled.outcome or "failed")
    answer, outcome = ask_for_consent(dialled.call, services, amount_fen, dialled.record_id)
    result = ConsentCallResult(dialled.record_id, answer, outcome)
    if answer is not None:
        result.consent_id = store_answer(services, ticket_id, amount_fen, answer == "agree", phone, dialled.record_id)
    return result


def ask_for_consent(call, services: ConsentCallServices, amount_fen: int, record_id: int) -> tuple[str | None, str]:
    """Run the conversation on an answered call; (the answer or None, the call's outcome). Hangs up."""
    p = services.prompts
    dialogue = Dialogue(call, services.new_recognizer, services.settings.asr.end_silence_seconds)
    flow = FlowRecord(services.calls, record_id, services.settings, services.clock)
    answer, outcome = None, "error"
    try:
        flow.start_recording(call, dialogue)
        dialogue.say(p["hotline.greeting"])  # who calls, and that it is recorded, before anything is asked

        def note(heard: Heard) -> None:
            flow.note("consent", heard)

        answer = dialogue.ask(quote_prompt(p, amount_fen), ANSWER_WORDS, ANSWER_KEYS, tries=2,
                              again=p["hotline.ask_again"], on_heard=note)
        dialogue.say(p[{"agree": "consent.agreed", "refuse": "consent.refused"}.get(answer or "", "consent.unclear")])
        outcome = "completed"
    except (HungUp, CallEnded):
        outcome = "completed" if answer is not None else "caller_hung_up"
    except Exception:
        log.exception("call %s: consent flow failed", call.call_id)
    finally:
        call.hangup()
        flow.close(outcome, consent={"amount_fen": amount_fen, "answer": answer})
        log.info("call %s: consent call ended (%s): %s", call.call_id, outcome, answer)
    return answer, outcome


def store_answer(services: ConsentCallServices, ticket_id: int, amount_fen: int, agreed: bool, phone: str,
                 record_id: int) -> int | None:
    try:
        return services.tickets.record_consent(ticket_id, agreed=agreed, amount_fen=amount_fen, phone=phone,
                                               recorded_by=RECORDED_BY, call_record_id=record_id,
                                               now=services.clock())
    except consent.ConsentError as error:  # closed or made free meanwhile: the call's record keeps the answer
        log.warning("ticket %s: consent answer not stored: %s (call record %s)", ticket_id, error, record_id)
        return None
