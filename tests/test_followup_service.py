"""The follow-up dialler's storage methods (core/followup_service.py), on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.followup import FollowUpError, SurveyAnswers
from core.followup_service import FollowUpCalls
from core.outcomes import CallOutcome
from core.store import FollowUp, Ticket
from tests.support.tickets import PHONE, completed_ticket
from tests.test_followup import at


def scheduled(sessions, ticket_id) -> FollowUp:
    with sessions() as session:
        return session.scalars(select(FollowUp).where(FollowUp.ticket_id == ticket_id)).one()


def test_a_claimed_follow_up_says_whom_to_call_and_about_which_repair(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10, 0))
    calls, due = FollowUpCalls(sessions, settings), scheduled(sessions, ticket_id).due_at
    assert calls.claim(scheduled(sessions, ticket_id).id, at(23, 11, 0)) is None  # not due yet
    claimed = calls.claim(scheduled(sessions, ticket_id).id, due)
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        expected = (PHONE, ticket.id, ticket.number, ticket.category, ticket.building, ticket.unit, ticket.room)
    assert (claimed.phone, claimed.ticket_id, claimed.number, claimed.category, claimed.building, claimed.unit,
            claimed.room) == expected
    assert calls.claim(scheduled(sessions, ticket_id).id, due) is None  # ours already: nobody dials it twice


def test_a_busy_phone_is_tried_again_and_answers_close_it(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10, 0))
    calls = FollowUpCalls(sessions, settings)
    followup = scheduled(sessions, ticket_id)
    calls.claim(followup.id, followup.due_at)
    calls.record_call(followup.id, None, CallOutcome.BUSY, None, followup.due_at)
    retry = scheduled(sessions, ticket_id)
    assert (retry.status, retry.attempts, retry.last_outcome) == ("scheduled", 1, "busy")
    calls.claim(followup.id, retry.due_at)
    calls.record_call(followup.id, SurveyAnswers(resolved=True, rating="满意"), None, None, retry.due_at)
    assert scheduled(sessions, ticket_id).status == "done"
    with pytest.raises(FollowUpError):  # recorded already (say, by a clerk meanwhile)
        calls.record_call(followup.id, SurveyAnswers(resolved=True, rating="满意"), None, None, retry.due_at)


def test_a_voicemail_counts_as_nobody_reached(sessions, settings, engineer):
    ticket_id = completed_ticket(sessions, settings, engineer, at(23, 10, 0))
    calls, followup = FollowUpCalls(sessions, settings), scheduled(sessions, ticket_id)
    calls.claim(followup.id, followup.due_at)
    calls.record_call(followup.id, SurveyAnswers(reached=False), None, None, followup.due_at)
    assert scheduled(sessions, ticket_id).last_outcome == "voicemail"
