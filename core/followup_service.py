"""The follow-up call's storage as the dialler uses it: claim a due follow-up, store what the call
got. Each is its own short transaction (the claim is committed before anybody dials), so the
telephone side holds no database session of its own. The rules are ``core.followup``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from core import followup
from core.followup import SurveyAnswers
from core.outcomes import CallOutcome
from core.settings import Settings
from core.store import FollowUp


@dataclass(frozen=True)
class ClaimedFollowUp:
    """A follow-up this process now calls, and what the call says about the repair."""

    phone: str
    ticket_id: int
    number: str  # the ticket's
    reported_at: datetime
    category: str
    building: str
    unit: str
    room: str
    area: str


class FollowUpCalls:
    def __init__(self, sessions: sessionmaker, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    def claim(self, followup_id: int, now: datetime) -> ClaimedFollowUp | None:
        """Take a due follow-up for dialling (``followup.claim``); None: not ours to call."""
        with self.sessions() as session, session.begin():
            claimed = followup.claim(session, followup_id, now)
            if claimed is None:
                return None
            ticket = claimed.ticket
            return ClaimedFollowUp(claimed.phone, ticket.id, ticket.number, ticket.reported_at, ticket.category,
                                   ticket.building, ticket.unit, ticket.room, ticket.area)

    def record_call(self, followup_id: int, answers: SurveyAnswers | None, no_contact: CallOutcome | None,
                    call_record_id: int | None, now: datetime) -> str:
        """What the call got: the answers of a resident reached (an opt-out among them), else why
        nobody was (``no_contact``, or a voicemail). Raises ``followup.FollowUpError`` if a clerk
        recorded this follow-up by hand meanwhile. Returns the follow-up's status after it."""
        with self.sessions() as session, session.begin():
            if answers is None:
                followup.record_no_contact(session, followup_id, no_contact or CallOutcome.FAILED, now, self.settings)
            elif not answers.reached:
                followup.record_no_contact(session, followup_id, CallOutcome.VOICEMAIL, now, self.settings)
            else:
                followup.record_answers(session, followup_id, answers, call_record_id, now, self.settings)
            return session.get(FollowUp, followup_id, populate_existing=True).status
