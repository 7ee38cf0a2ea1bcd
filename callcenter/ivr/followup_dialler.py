"""One follow-up call, as the scheduler makes it: claim it, dial the resident, run the survey, store.

``call_followup`` is what a scheduled job runs (``core/jobs.py``), on a thread of its own: it
blocks for the whole call. The policy's records are ``core.followup``'s: ``claim`` first, so no two
processes (or a job run twice after a restart) call a resident for the same follow-up; then the
answers, or why nobody could be reached, for the policy to retry, reopen or close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from callcenter.ivr.flows.survey import RepairFacts, SurveyServices, run_survey
from callcenter.ivr.lines import Line
from callcenter.ivr.outbound import dial
from callcenter.metrics import NO_METRICS, Metrics
from core import followup, log_context
from core.followup import SurveyAnswers
from core.followup_service import ClaimedFollowUp, FollowUpCalls
from core.incident_service import IncidentCalls
from core.outcomes import CallOutcome
from core.store import Ticket

log = logging.getLogger("callcenter.ivr")

RING_SECONDS = 30  # a resident who has not answered by then is not going to


@dataclass
class FollowupServices:
    survey: SurveyServices
    followups: FollowUpCalls
    incidents: IncidentCalls  # the incident call-backs that share the pool (incident_callback.py)
    line: Callable[[str], Line | None]  # a configured line by name (Telephony.line)
    metrics: Metrics = NO_METRICS


@dataclass
class SurveyCallResult:
    record_id: int | None  # the call record, answered or not (None: there was no line to dial)
    answers: SurveyAnswers | None  # None: nobody answered
    no_contact: CallOutcome | None = None  # then why: busy, no_answer or failed


@log_context.scoped
def call_followup(followup_id: int, services: FollowupServices) -> None:
    settings, clock = services.survey.settings, services.survey.clock
    store = services.followups
    claimed = store.claim(followup_id, clock())  # committed before dialling: the call is ours
    if claimed is None:
        log.info("follow-up %s: not ours to call (taken, done or no longer needed)", followup_id)
        return
    phone, ticket_id, repair = claimed.phone, claimed.ticket_id, repair_facts(claimed)
    log_context.note(ticket=claimed.number)
    line = services.line(settings.followup.line)
    if line is None:
        log.error("follow-up %s: no line named %r to dial from (followup.line)", followup_id, settings.followup.line)
        result = SurveyCallResult(record_id=None, answers=None, no_contact=CallOutcome.FAILED)
    else:
        result = survey_call(line, phone, ticket_id, repair, services.survey)
    try:
        status = store.record_call(followup_id, result.answers, result.no_contact, result.record_id, clock())
        services.metrics.followups.labels(status).inc()  # what the call left: done, scheduled again ...
    except followup.FollowUpError as error:  # a clerk recorded this follow-up by hand during the call
        log.warning("follow-up %s: call result not stored: %s (call record %s)", followup_id, error,
                    result.record_id)


def survey_call(line: Line, phone: str, ticket_id: int, repair: RepairFacts, services: SurveyServices,
                ring_seconds: float = RING_SECONDS) -> SurveyCallResult:
    """Dial ``phone`` and, once answered, run the survey; every attempt leaves a call record."""
    dialled = dial(line, phone, services.calls, services.clock, ring_seconds, ticket_id, "follow-up call")
    if dialled.call is None:  # busy, no_answer or failed, as core.followup.record_no_contact takes them
        return SurveyCallResult(dialled.record_id, None, dialled.outcome)
    return SurveyCallResult(dialled.record_id, run_survey(dialled.call, services, repair, dialled.record_id))


def repair_facts(ticket: Ticket | ClaimedFollowUp) -> RepairFacts:
    return RepairFacts(reported_at=ticket.reported_at, category=ticket.category, building=ticket.building,
                       unit=ticket.unit, room=ticket.room, area=ticket.area)
