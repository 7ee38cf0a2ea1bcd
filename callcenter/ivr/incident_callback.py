"""Closing an incident with a call-back: each counted resident is rung once on ``followup.line``
with 「您好，这里是物业服务中心。三号楼已恢复供水。感谢您的耐心等待，再见。」.

No dialler of its own: the follow-up scheduler's tick hands these out with the due follow-ups, to the
same pool of at most ``followup.max_calls`` calls, inside ``followup.calling_hours`` (core/jobs.py);
``dial_outbound`` is the pool's one dial function and tells the two apart. ``core.incidents``
claims each call-back before it is dialled, so no number is rung twice, whatever node dials.
"""

from __future__ import annotations

import logging
from typing import Any

from callcenter.ivr.flows.dialogue import Dialogue, HungUp
from callcenter.ivr.followup_dialler import (
    RING_SECONDS,
    FollowupServices,
    call_followup,
)
from callcenter.ivr.lines import CallEnded, DialError
from core import incidents, log_context

log = logging.getLogger("callcenter.ivr")
INCIDENT = "incident"  # the pool's item for an incident call-back: ("incident", incident caller id)


def dial_outbound(item, services: FollowupServices) -> None:
    """The follow-up pool's dial: a follow-up id, or ("incident", caller id)."""
    if isinstance(item, tuple) and item[0] == INCIDENT:
        call_back(item[1], services)
    else:
        call_followup(item, services)


@log_context.scoped
def call_back(caller_id: int, services: FollowupServices) -> None:
    settings, clock, calls = services.survey.settings, services.survey.clock, services.survey.calls
    with services.sessions() as session, session.begin():
        caller = incidents.claim_call_back(session, caller_id)
        if caller is None:
            log.info("incident call-back %d: not ours to call (taken or done)", caller_id)
            return
        phone, incident = caller.phone, caller.incident
        kind, building, area = incident.kind, caller.building, incident.area
    prompts = services.survey.prompts
    spoken = (prompts["incident.call_back_intro"] + prompts.address(building, "", "", "" if building else area)
              + prompts[f"incident.restored_{kind}"] + prompts["incident.call_back_end"])
    line = services.line(settings.followup.line)
    outcome, record_id = "failed", None
    if line is None:
        log.error("incident call-back %d: no line named %r (followup.line)", caller_id, settings.followup.line)
    else:
        record: dict[str, Any] = dict(direction="outbound", line=line.name, caller=line.config.user or line.name, called=phone,
                      at=clock())
        try:
            call = line.dial(phone, timeout=RING_SECONDS)
        except Exception as error:
            outcome = error.outcome if isinstance(error, DialError) else "failed"
            record_id = calls.record_finished(sip_call_id="", **record, outcome=outcome, ended_at=clock())
        else:
            log_context.note(call_id=call.call_id, line=line.name)
            record_id = calls.open(sip_call_id=call.call_id, **record)
            calls.update(record_id, answered_at=clock())
            try:
                Dialogue(call, None).say(spoken)
                outcome = "called"
            except (HungUp, CallEnded):
                outcome = "called"  # answered and hung up while it was said: told as far as they listened
            finally:
                call.hangup()
                calls.close(record_id, "completed", clock())
    state = {"busy": "no_answer", "no_answer": "no_answer", "called": "called"}.get(outcome, "failed")
    with services.sessions() as session, session.begin():
        incidents.record_call_back(session, caller_id, state, record_id)
    log.info("incident call-back %d to %s: %s", caller_id, phone, state)
