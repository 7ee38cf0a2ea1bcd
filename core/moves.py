"""Moving a ticket, with everything a move brings along: the one entry point for every move that
a person (the web console) or the call-out makes.

``core.desk.apply_move`` checks the rules and changes the ticket; ``core.followup.after_transition``
keeps its follow-up call in step (完成 schedules one, a 回访 by hand records it, a 返修 by hand
withdraws the call nobody needs). They happen here together, in the caller's transaction. The
follow-up's own moves (its actor is ``FOLLOWUP``) have no such consequences and use
``apply_move`` directly, so neither of the two modules needs the other's. A paid repair (有偿)
is completed only with the resident's consent to the price (``core.consent``), checked here first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core import desk, followup
from core.base import Actor
from core.consent import standing_consent
from core.settings import Settings
from core.store import Ticket
from core.tickets import Status, TransitionRequest, require_paid_consent, rule_for


def move_ticket(session: Session, ticket: Ticket, request: TransitionRequest, actor: Actor,
                now: datetime, settings: Settings, seen_version: int | None = None) -> Ticket:
    """Move a ticket if the rules allow it (else TransitionError, or Conflict if it changed since
    it was read) and bring its follow-up in step."""
    before = Status(ticket.status)
    rule = rule_for(before, request, actor.role)
    if rule.needs_paid_consent and ticket.is_paid:
        consent = standing_consent(session, ticket)
        require_paid_consent(rule, True, consent.amount_fen if consent else None, request)
    desk.apply_move(session, ticket, request, actor, now, settings, seen_version=seen_version)
    followup.after_transition(session, ticket, before, actor, now, settings)
    return ticket
