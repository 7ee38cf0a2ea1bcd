"""Tickets and events as the JSON the API speaks (codes) with the names the pages show."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.web.local_time import local_iso
from callcenter.web.serialize_watch import watch_fields
from core.audit import ACTIONS as AUDIT_ACTIONS
from core.callouts import STATE_NAMES, CallOutState
from core.dispatch import OUTCOME_NAMES, Outcome, Step
from core.followup import FOLLOWUP_STATUS_NAMES, NO_CONTACT, FollowUpState
from core.outcomes import CALL_OUTCOME_NAMES
from core.settings import Settings
from core.store import AuditEntry, CallOut, CallRecord, Engineer, FeeItem, FollowUp, Ticket, TicketEvent, User
from core.tickets import (
    CANCEL_REASONS,
    CATEGORY_NAMES,
    CHANNEL_NAMES,
    STATUS_NAMES,
    URGENCY_NAMES,
    Role,
    Status,
    address_text,
    allowed_moves,
)

# The models keep outcomes as plain strings, where an unknown one is shown as it is: the name tables
# keyed by those strings (a StrEnum member is its value, so each looks up exactly as before).
_CALL_OUTCOME_NAMES: dict[str, str] = {str(outcome): name for outcome, name in CALL_OUTCOME_NAMES.items()}
_NO_CONTACT_NAMES: dict[str, str] = {str(outcome): name for outcome, name in NO_CONTACT.items()}

TICKET_FIELDS = (
    "id", "number", "status", "urgency", "channel", "category", "reporter_name", "phone",
    "building", "unit", "room", "area", "description", "received_by", "is_vip", "is_paid",
    "fee_item_id", "quoted_fee", "engineer_id", "actual_item", "material_fee", "labour_fee",
    "material_check", "customer_confirmed", "rating", "cancel_reason", "remarks", "version",
)
TICKET_TIMES = (
    "reported_at", "appointment_start", "appointment_end", "dispatched_at", "accepted_at",
    "arrived_at", "completed_at", "postponed_until", "due_at", "updated_at",
)


def ticket_json(ticket: Ticket, tz: ZoneInfo, now: datetime, role: Role | None = None,
                with_events: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {key: getattr(ticket, key) for key in TICKET_FIELDS}
    data.update({key: local_iso(getattr(ticket, key), tz) for key in TICKET_TIMES})
    status = Status(ticket.status)
    data.update(
        status=status.value,
        status_name=STATUS_NAMES[status],
        urgency_name=URGENCY_NAMES.get(ticket.urgency, ticket.urgency),
        channel_name=CHANNEL_NAMES.get(ticket.channel, ticket.channel),
        category_name=CATEGORY_NAMES.get(ticket.category, ticket.category),
        cancel_reason_name=CANCEL_REASONS.get(ticket.cancel_reason or ""),
        engineer_name=ticket.engineer.name if ticket.engineer else None,
        address=address_text(ticket),
        overdue=bool(ticket.due_at and ticket.due_at < now),
    )
    data.update(watch_fields(ticket, tz))  # complaint, eta_slip, eta_late
    if role is not None:
        data["actions"] = [
            {"to": to.value, "label": rule.label, "needs_engineer": rule.needs_engineer,
             "needs_reason": rule.needs_reason, "needs_cancel_reason": rule.needs_cancel_reason,
             "needs_rating": rule.needs_rating, "needs_completion": rule.needs_completion}
            for to, rule in allowed_moves(status, role)
        ]
    if with_events:
        data["events"] = [event_json(event, tz) for event in ticket.events]
        data["calls"] = [call_json(call, tz) for call in ticket.calls]
    return data


def event_json(event: TicketEvent, tz: ZoneInfo) -> dict[str, Any]:
    name = lambda code: STATUS_NAMES.get(Status(code)) if code else None  # noqa: E731
    return {
        "id": event.id, "at": local_iso(event.at, tz), "actor": event.actor, "kind": event.kind,
        "from_status": event.from_status, "to_status": event.to_status,
        "from_name": name(event.from_status), "to_name": name(event.to_status),
        "note": event.note, "reason": event.reason, "data": event.data,
    }


def engineer_json(engineer: Engineer) -> dict[str, Any]:
    return {"id": engineer.id, "name": engineer.name, "phone": engineer.phone,
            "sip_uri": engineer.sip_uri, "skills": engineer.skills, "active": engineer.active}


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "role": user.role, "engineer_id": user.engineer_id, "active": user.active}


def audit_json(entry: AuditEntry, tz: ZoneInfo) -> dict[str, Any]:
    return {"id": entry.id, "at": local_iso(entry.at, tz), "action": entry.action,
            "action_name": AUDIT_ACTIONS.get(entry.action, entry.action), "username": entry.username,
            "address": entry.address, "target": entry.target, "detail": entry.detail}


def fee_json(item: FeeItem) -> dict[str, Any]:
    return {"id": item.id, "code": item.code, "name": item.name, "category": item.category,
            "unit": item.unit, "material_fee": item.material_fee, "labour_fee": item.labour_fee,
            "note": item.note, "active": item.active}


def call_json(call: CallRecord, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": call.id, "sip_call_id": call.sip_call_id, "direction": call.direction, "line": call.line,
        "caller": call.caller, "called": call.called, "started_at": local_iso(call.started_at, tz),
        "answered_at": local_iso(call.answered_at, tz), "ended_at": local_iso(call.ended_at, tz),
        "outcome": call.outcome, "outcome_name": _CALL_OUTCOME_NAMES.get(call.outcome, call.outcome),
        "ticket_id": call.ticket_id, "transcript": call.transcript, "recording_url": recording_url(call),
        "node": call.node,
    }


def recording_url(call: CallRecord | None) -> str | None:
    """Where staff play a call's recording; None once it is deleted (recordings.keep_days) or if none."""
    return f"/api/calls/{call.id}/recording" if call is not None and call.recording_path else None


def followup_json(followup: FollowUp, tz: ZoneInfo) -> dict[str, Any]:
    ticket = followup.ticket
    return {
        "id": followup.id, "ticket_id": followup.ticket_id, "phone": followup.phone,
        "due_at": local_iso(followup.due_at, tz), "status": followup.status,
        "attempts": followup.attempts, "resolved": followup.resolved, "rating": followup.rating,
        "comment": followup.comment, "recording_url": recording_url(followup.call),
        "status_name": FOLLOWUP_STATUS_NAMES[FollowUpState(followup.status)],
        "last_outcome": followup.last_outcome or None,
        "last_outcome_name": _NO_CONTACT_NAMES.get(followup.last_outcome, "已接通" if followup.last_outcome else None),
        "comment_start": followup.comment_start, "recorded_by": followup.recorded_by or None,
        "completed_at": local_iso(followup.completed_at, tz), "updated_at": local_iso(followup.updated_at, tz),
        "ticket_number": ticket.number, "ticket_status": ticket.status,
        "ticket_status_name": STATUS_NAMES[Status(ticket.status)], "address": address_text(ticket),
        "category": ticket.category, "category_name": CATEGORY_NAMES.get(ticket.category, ticket.category),
        "engineer_name": ticket.engineer.name if ticket.engineer else None,
    }


def callout_json(callout: CallOut, settings: Settings) -> dict[str, Any]:
    """A call-out as the contract of GET /api/tickets/{id}/callout, with names for the ticket page."""
    tz, chain = settings.tz, callout.chain
    names = {link["engineer_id"]: link["name"] for link in chain}

    def attempt_json(attempt) -> dict[str, Any]:
        step = Step(attempt.round, attempt.position, attempt.contact, 0, attempt.engineer_id,
                    names.get(attempt.engineer_id, ""))
        outcome = Outcome(attempt.outcome) if attempt.outcome else None
        return {"engineer_id": attempt.engineer_id, "name": step.name, "step": step.describe(),
                "contact": attempt.contact, "round": attempt.round, "started_at": local_iso(attempt.started_at, tz),
                "outcome": outcome.value if outcome else None,
                "outcome_name": OUTCOME_NAMES[outcome] if outcome else "振铃中",
                "rang_seconds": attempt.rang_seconds}

    return {
        "id": callout.id, "ticket_id": callout.ticket_id, "state": callout.state,
        "state_name": STATE_NAMES[CallOutState(callout.state)], "engineer_id": callout.engineer_id,
        "engineer_name": names.get(callout.engineer_id), "skill": callout.skill, "shift": callout.shift_name,
        "started_at": local_iso(callout.started_at, tz), "started_by": callout.started_by,
        "ended_at": local_iso(callout.ended_at, tz), "stopped_by": callout.stopped_by, "note": callout.note,
        "chain": [{"engineer_id": link["engineer_id"], "name": link["name"], "contact": link["contact"],
                   "ring_seconds": link["ring_seconds"]} for link in chain],
        "attempts": [attempt_json(attempt) for attempt in callout.attempts],
        # No line to dial out on: nobody will be rung; the page says so loudly.
        "line_configured": any(line.get("name") == settings.callout.line for line in settings.lines),
    }
