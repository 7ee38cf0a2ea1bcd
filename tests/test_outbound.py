"""The one outbound dial (callcenter/ivr/outbound.py): every attempt leaves a call record, and an
answered call whose record cannot be written is not left holding the line."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import OperationalError

from callcenter.ivr.lines import DialError
from callcenter.ivr.outbound import dial
from core.calls import CallLog
from core.store import CallRecord

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


@dataclass
class Config:
    user: str = "8001"


class Answered:
    call_id = "out-1"

    def __init__(self):
        self.hung_up = False

    def hangup(self) -> None:
        self.hung_up = True


@dataclass
class Line:
    answers: object  # the call that answers, or the DialError the dial ends with
    name: str = "out"
    config: Config = field(default_factory=Config)

    def dial(self, phone: str, timeout: float):
        if isinstance(self.answers, Exception):
            raise self.answers
        return self.answers


def records(sessions) -> list[tuple]:
    with sessions() as session:
        return [(r.direction, r.line, r.caller, r.called, r.ticket_id, r.outcome, r.answered_at is not None)
                for r in session.query(CallRecord).order_by(CallRecord.id)]


def test_a_dial_that_never_became_a_call_is_recorded_whole_with_why(sessions):
    dialled = dial(Line(DialError("busy here", 486)), "13800138000", CallLog(sessions), lambda: NOW, 30, ticket_id=None)
    assert (dialled.call, dialled.outcome) == (None, "busy")
    assert records(sessions) == [("outbound", "out", "8001", "13800138000", None, "busy", False)]


def test_an_answered_call_is_left_open_and_marked_answered(sessions):
    call = Answered()
    dialled = dial(Line(call), "13800138000", CallLog(sessions), lambda: NOW, 30)
    assert dialled.call is call and dialled.outcome is None and not call.hung_up
    assert records(sessions) == [("outbound", "out", "8001", "13800138000", None, "in_progress", True)]


def test_an_answered_call_whose_record_cannot_be_written_is_hung_up(sessions):
    class DatabaseAway(CallLog):
        def open(self, **fields):
            raise OperationalError("INSERT INTO call_records", {}, Exception("server closed the connection"))
    call = Answered()
    with pytest.raises(OperationalError):
        dial(Line(call), "13800138000", DatabaseAway(sessions), lambda: NOW, 30)
    assert call.hung_up
