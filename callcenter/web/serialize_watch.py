"""Complaints (投诉) and arrival slips (到场超时) as the JSON the API speaks, inside a ticket's and
on their own lists."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from callcenter.web.local_time import local_iso
from core import eta
from core.complaints import ESCALATION_NAMES
from core.store import Ticket
from core.store_watch import Complaint, EtaSlip
from core.tickets import STATUS_NAMES, Status, address_text


def complaint_json(complaint: Complaint, tz: ZoneInfo, with_ticket: bool = False) -> dict[str, Any]:
    data = {
        "id": complaint.id, "ticket_id": complaint.ticket_id, "opened_at": local_iso(complaint.opened_at, tz),
        "reason": complaint.reason, "due_at": local_iso(complaint.due_at, tz),
        "escalate_at": local_iso(complaint.escalate_at, tz), "escalation": complaint.escalation,
        "escalation_name": ESCALATION_NAMES.get(complaint.escalation, complaint.escalation),
        "escalated_at": local_iso(complaint.escalated_at, tz), "escalation_result": complaint.escalation_result,
        "handled_at": local_iso(complaint.handled_at, tz), "handled_by": complaint.handled_by or None,
        "handled_note": complaint.handled_note, "open": complaint.handled_at is None,
        "call_id": complaint.call_record_id,
    }
    if with_ticket:
        ticket = complaint.ticket
        data.update(ticket_number=ticket.number, address=address_text(ticket),
                    ticket_status_name=STATUS_NAMES[Status(ticket.status)],
                    engineer_name=ticket.engineer.name if ticket.engineer else None)
    return data


def slip_json(slip: EtaSlip, tz: ZoneInfo) -> dict[str, Any]:
    return {"id": slip.id, "promised_at": local_iso(slip.promised_at, tz), "detected_at": local_iso(slip.detected_at, tz),
            "call_at": local_iso(slip.call_at, tz), "status": slip.status,
            "status_name": eta.STATUS_NAMES.get(slip.status, slip.status), "outcome": slip.outcome or None,
            "outcome_name": eta.OUTCOMES.get(slip.outcome), "stopped_by": slip.stopped_by or None,
            "call_id": slip.call_record_id, "can_stop": slip.status == eta.PENDING}


def watch_fields(ticket: Ticket, tz: ZoneInfo) -> dict[str, Any]:
    """``complaint`` (the latest, open or handled, else null), ``eta_slip`` (the latest, else null)
    and ``eta_late`` (the queue's highlight: the engineer is late and has not arrived)."""
    complaint = ticket.complaints[0] if ticket.complaints else None
    slip = ticket.eta_slips[0] if ticket.eta_slips else None
    return {"complaint": complaint_json(complaint, tz) if complaint else None,
            "eta_slip": slip_json(slip, tz) if slip else None, "eta_late": eta.is_late(ticket)}
