"""Closing an incident with a call-back: each counted resident is rung once on ``followup.line``
with 「您好，这里是物业服务中心。三号楼已恢复供水。感谢您的耐心等待，再见。」.

No dialler of its own: the follow-up scheduler's tick hands these out with the due follow-ups, to the
same pool of at most ``followup.max_calls`` calls, inside ``followup.calling_hours`` (core/jobs.py);
``dial_outbound`` is the pool's one dial function and tells the two apart. ``core.incidents``
claims each call-back before it is dialled, so no number is rung twice, whatever node dials.
"""

from __future__ import annotations

import logging

from callcenter.ivr.flows.dialogue import Dialogue, HungUp
from callcenter.ivr.followup_dialler import (
    RING_SECONDS,
    FollowupServices,
    call_followup,
)
from callcenter.ivr.lines import CallEnded
from callcenter.ivr.outbound import dial
from core import log_context

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
    claimed = services.incidents.claim_call_back(caller_id)  # committed before dialling: the call is ours
    if claimed is None:
        log.info("incident call-back %d: not ours to call (taken or done)", caller_id)
        return
    phone, prompts = claimed.phone, services.survey.prompts
    spoken = (prompts["incident.call_back_intro"]
              + prompts.address(claimed.building, "", "", "" if claimed.building else claimed.area)
              + prompts[f"incident.restored_{claimed.kind}"] + prompts["incident.call_back_end"])
    line = services.line(settings.followup.line)
    outcome, record_id = "failed", None
    if line is None:
        log.error("incident call-back %d: no line named %r (followup.line)", caller_id, settings.followup.line)
    else:
        dialled = dial(line, phone, calls, clock, RING_SECONDS, what=f"incident call-back {caller_id}")
        record_id, outcome = dialled.record_id, dialled.outcome or "called"
        if dialled.call is not None:
            try:
                Dialogue(dialled.call, None).say(spoken)
            except (HungUp, CallEnded):
                pass  # answered and hung up while it was said: told as far as they listened
            finally:
                dialled.call.hangup()
                calls.close(record_id, "completed", clock())
    state = {"busy": "no_answer", "no_answer": "no_answer", "called": "called"}.get(outcome, "failed")
    services.incidents.record_call_back(caller_id, state, record_id)
    log.info("incident call-back %d to %s: %s", caller_id, phone, state)
