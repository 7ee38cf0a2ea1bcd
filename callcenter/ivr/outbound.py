"""Dialling a resident and keeping the call record: the one way every short outbound call does it
(follow-ups, consent, the eta apology, an incident's call-back, who is coming).

Every attempt leaves a call record: one that never became a call is written whole at once with why
(busy, no_answer or failed); an answered one is opened, marked answered, and left for the caller of
``dial`` to close once the call is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callcenter.ivr.lines import Call, DialError, Line
from core import log_context
from core.calls import CallLog
from core.outcomes import CallOutcome, dial_failure

log = logging.getLogger("callcenter.ivr")


@dataclass(frozen=True)
class Dialled:
    record_id: int  # the call record, answered or not
    call: Call | None = None  # the answered call (its record still open); None: it never became one
    outcome: CallOutcome | None = None  # then why: busy, no_answer or failed


def dial(line: Line, phone: str, calls: CallLog, clock: Callable[[], datetime], ring_seconds: float,
         ticket_id: int | None = None, what: str = "outbound call") -> Dialled:
    """Dial ``phone`` on ``line`` for up to ``ring_seconds``; ``what`` names the call in the log."""
    record: dict[str, Any] = dict(direction="outbound", line=line.name, caller=line.config.user or line.name, called=phone,
                  at=clock(), ticket_id=ticket_id)
    try:
        call = line.dial(phone, timeout=ring_seconds)
    except Exception as error:  # whatever went wrong: an attempt that did not reach the resident
        outcome = dial_failure(error.outcome) if isinstance(error, DialError) else CallOutcome.FAILED
        log.info("%s to %s: %s (%s)", what, phone, outcome, error)
        return Dialled(calls.record_finished(sip_call_id="", **record, outcome=outcome, ended_at=clock()),
                       outcome=outcome)
    log_context.note(call_id=call.call_id, line=line.name)
    try:
        record_id = calls.open(sip_call_id=call.call_id, **record)
        calls.update(record_id, answered_at=clock())
    except Exception:  # the database is away: nobody would run or close this call, so it ends here
        call.hangup()
        raise
    return Dialled(record_id, call)
