"""The two short calls the scheduled watch makes (``core.watch_jobs``), each on a thread of its own:

``ring_complaint``  a complaint nobody acted on within ``followup.complaint_minutes``: the managers
                    on ``callout.alert_contacts`` are rung with the call-out runner's alert ring
                    (``CalloutRunner.ring_contacts``, on ``callout.line``) and hear which home it is.
``call_eta_slip``   an accepted ticket's engineer is late: the resident is phoned on ``followup.line``
                    and hears 「维修人员预计晚到约二十分钟，给您带来不便，敬请谅解」, the minutes counted
                    from the recorded pieces (``Prompts.number``), so no sentence is synthesised at call time.

Both first claim the call in the database (``core.complaints`` / ``core.eta``: committed before
dialling), then store the outcome on the ticket; every attempt leaves a call record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from callcenter.ivr.callout_runner import CalloutRunner
from callcenter.ivr.lines import Line
from callcenter.ivr.outbound import dial
from callcenter.ivr.prompts import Prompts
from core import log_context
from core.calls import CallLog
from core.notice_service import Escalation, NoticeCallService
from core.settings import Settings
from core.watch_jobs import NoticeCalls

log = logging.getLogger("callcenter.ivr")

RING_SECONDS = 30  # a resident who has not answered by then is not going to


@dataclass
class NoticeServices:
    settings: Settings
    store: NoticeCallService
    prompts: Prompts
    calls: CallLog
    line: Callable[[str], Line | None]  # a configured line by name (Telephony.line)
    callouts: CalloutRunner
    clock: Callable[[], datetime]

    def as_notice_calls(self) -> NoticeCalls:
        """For core.jobs: the slip call only where residents can be phoned (``followup.line``)."""
        slip = (lambda slip_id: call_eta_slip(slip_id, self)) if self.settings.followup.line else None
        return NoticeCalls(ring_complaint=lambda complaint_id: ring_complaint(complaint_id, self), call_eta_slip=slip)


def slip_message(prompts: Prompts, minutes: int) -> bytes:
    """「维修人员预计晚到约」 + the minutes in Chinese + 「分钟，给您带来不便，敬请谅解。」"""
    return prompts["eta.late_prefix"] + prompts.number(minutes) + prompts["eta.late_suffix"]


def complaint_message(prompts: Prompts, ticket: Escalation) -> bytes:
    """「住户投诉超时无人处理……」 and the home, as the call-out's alert says it."""
    return (prompts["complaint.escalation"] + prompts["callout.address_prefix"]
            + prompts.address(ticket.building, ticket.unit, ticket.room, ticket.area))


@log_context.scoped
def ring_complaint(complaint_id: int, services: NoticeServices) -> None:
    settings, clock = services.settings, services.clock
    escalation = services.store.claim_escalation(complaint_id, clock())  # committed before dialling: ours
    if escalation is None:
        log.info("complaint %s: not ours to escalate (handled, taken or not due)", complaint_id)
        return
    log_context.note(ticket=escalation.number)
    message = complaint_message(services.prompts, escalation)
    rung = services.callouts.ring_contacts(escalation.ticket_id, settings.callout.alert_contacts, message)
    services.store.record_escalation(complaint_id, rung, clock())


@log_context.scoped
def call_eta_slip(slip_id: int, services: NoticeServices, ring_seconds: float = RING_SECONDS) -> None:
    clock = services.clock
    slip = services.store.claim_slip(slip_id, clock())  # committed before dialling: the call is ours
    if slip is None:
        log.info("slip %s: not ours to call (stopped, taken or no longer needed)", slip_id)
        return
    log_context.note(ticket=slip.number)
    outcome, record_id = _apologise(services, slip.phone, slip.ticket_id, ring_seconds)
    services.store.record_slip_call(slip_id, outcome, record_id, clock())


def _apologise(services: NoticeServices, phone: str, ticket_id: int, ring_seconds: float) -> tuple[str, int | None]:
    """Dial the resident, say the sentence, hang up: the outcome and the call record."""
    line = services.line(services.settings.followup.line)
    if line is None:
        log.error("slip call to %s: no line named %r (followup.line)", phone, services.settings.followup.line)
        return "failed", None
    dialled = dial(line, phone, services.calls, services.clock, ring_seconds, ticket_id, "slip call")
    if dialled.call is None:  # busy, no answer, failed: said on the ticket, not retried
        return dialled.outcome or "failed", dialled.record_id
    try:
        dialled.call.play(slip_message(services.prompts, services.settings.sla.eta_slip_minutes))
    finally:
        dialled.call.hangup()
        services.calls.close(dialled.record_id, "completed", services.clock())
    log.info("slip call to %s: apology played", phone)
    return "answered", dialled.record_id
