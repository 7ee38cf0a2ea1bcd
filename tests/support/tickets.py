"""Tickets as the tests need them: walked through the desk's ordinary moves to 完成."""

from __future__ import annotations

from datetime import datetime, timedelta

from core import desk, moves
from core.base import Actor
from core.desk import NewTicket
from core.tickets import Role, Status, TransitionRequest, Urgency

CLERK = Actor("desk1", Role.FRONTDESK)
PHONE = "13800138000"


def completed_ticket(sessions, settings, engineer_id: int, completed: datetime, phone: str = PHONE,
                     urgency: Urgency = Urgency.NORMAL, category: str = "plumbing") -> int:
    """A ticket the desk dispatched and the engineer completed at ``completed``; its id."""
    fixer = Actor("engineer", Role.ENGINEER, engineer_id)
    steps = [(CLERK, TransitionRequest(Status.DISPATCHED, engineer_id=engineer_id)),
             (fixer, TransitionRequest(Status.ACCEPTED)), (fixer, TransitionRequest(Status.ON_SITE)),
             (fixer, TransitionRequest(Status.COMPLETED, actual_item="更换角阀"))]
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, NewTicket(description="厨房漏水", building="3", unit="2", room="1101",
                                                       phone=phone, urgency=urgency, category=category),
                                    CLERK, completed - timedelta(hours=2), settings)
        for minutes, (actor, step) in enumerate(steps, start=1 - len(steps)):
            moves.move_ticket(session, ticket, step, actor, completed + timedelta(minutes=minutes), settings)
        return ticket.id
