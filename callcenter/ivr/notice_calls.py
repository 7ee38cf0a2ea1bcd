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
from typing import Any

from sqlalchemy.orm import sessionmaker

from callcenter.ivr.callout_runner import CalloutRunner
from callcenter.ivr.lines import DialError, Line
from callcenter.ivr.prompts import Prompts
from core import complaints, eta, log_context
from core.calls import CallLog
from core.settings import Settings
from core.watch_jobs import NoticeCalls

log = logging.getLogger("callcenter.ivr")

RING_SECONDS = 30  # a resident who has not answered by then is not going to


@dataclass
class NoticeServices:
    settings: Settings
    sessions: sessionmaker
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


def complaint_message(prompts: Prompts, ticket) -> bytes:
    """「住户投诉超时无人处理……」 and the home, as the call-out's alert says it."""
    return (prompts["complaint.escalation"] + prompts["callout.address_prefix"]
            + prompts.address(ticket.building, ticket.unit, ticket.room, ticket.area))


@log_context.scoped
def ring_complaint(complaint_id: int, services: NoticeServices) -> None:
    settings, clock = services.settings, services.clock
    with services.sessions() as session, session.begin():  # committed before dialling: the call is ours
        complaint = complaints.claim_escalation(session, complaint_id, clock())
        if complaint is None:
            log.info("complaint %s: not ours to escalate (handled, taken or not due)", complaint_id)
            return
        ticket_id, message = complaint.ticket_id, complaint_message(services.prompts, complaint.ticket)
        log_context.note(ticket=complaint.ticket.number)
    rung = services.callouts.ring_contacts(ticket_id, settings.callout.alert_contacts, message)
    with services.sessions() as session, session.begin():
        complaints.record_escalation(session, complaint_id, [complaints.Ring(c, a) for c, a in rung], clock())


@log_context.scoped
def call_eta_slip(slip_id: int, services: NoticeServices, ring_seconds: float = RING_SECONDS) -> None:
    settings, clock = services.settings, services.clock
    with services.sessions() as session, session.begin():
        slip = eta.claim(session, slip_id, clock(), settings)
        if slip is None:
            log.info("slip %s: not ours to call (stopped, taken or no longer needed)", slip_id)
            return
        phone, ticket_id = slip.phone, slip.ticket_id
        log_context.note(ticket=slip.ticket.number)
    outcome, record_id = _apologise(services, phone, ticket_id, ring_seconds)
    with services.sessions() as session, session.begin():
        eta.record_call(session, slip_id, outcome, record_id, clock())


def _apologise(services: NoticeServices, phone: str, ticket_id: int, ring_seconds: float) -> tuple[str, int | None]:
    """Dial the resident, say the sentence, hang up: the outcome and the call record."""
    line = services.line(services.settings.followup.line)
    started = services.clock()
    if line is None:
        log.error("slip call to %s: no line named %r (followup.line)", phone, services.settings.followup.line)
        return "failed", None
    record: dict[str, Any] = dict(direction="outbound", line=line.name, caller=line.config.user or line.name, called=phone,
                  at=started, ticket_id=ticket_id)
    try:
        call = line.dial(phone, timeout=ring_seconds)
    except Exception as error:  # busy, no answer, failed: said on the ticket, not retried
        outcome = error.outcome if isinstance(error, DialError) else "failed"
        log.info("slip call to %s: %s (%s)", phone, outcome, error)
        return outcome, services.calls.record_finished(sip_call_id="", **record, outcome=outcome,
                                                       ended_at=services.clock())
    log_context.note(call_id=call.call_id, line=line.name)
    record_id = services.calls.open(sip_call_id=call.call_id, **record)
    services.calls.update(record_id, answered_at=services.clock())
    try:
        call.play(slip_message(services.prompts, services.settings.sla.eta_slip_minutes))
    finally:
        call.hangup()
        services.calls.close(record_id, "completed", services.clock())
    log.info("slip call to %s: apology played", phone)
    return "answered", record_id
