"""The follow-up call (回访) end to end: our line dials a resident on 127.0.0.1 (SIPp answering, with
espeak-ng Mandarin through G.711 and RFC 4733 keys), and what a manager would check is read back
from the database: the answers, the call record (outcome, transcript, recording) and the ticket.

Speech: a scripted stand-in recogniser (tests/support/hotline_caller.py) whose finals are timed
from the resident's real speech onset, so barge-in, endpointing, recording and the flow all run
on the real audio. The real Vosk engine in a call is tested once, in test_hotline_e2e.py.

A survey call lasts 25-50 s, most of it our own prompts: one after another this module's calls
would take six minutes. So every call is dialled at once when the module starts, each with its
own database, line and SIPp resident on a thread of its own, and each test collects its call and
checks it. A test names its resident with ``@dialling``; the resident's script is right above it.

SIPp plays the residents' pcaps through a raw socket: run as root. Missing tools skip these
tests, or fail them with CALLCENTER_REQUIRE_SIP=1.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from callcenter.ivr.flows.survey import RepairFacts, SurveyServices, introduction
from callcenter.ivr.followup_dialler import RING_SECONDS, FollowupServices, SurveyCallResult, call_followup, repair_facts, survey_call
from callcenter.ivr.lines import Line, LineConfig
from callcenter.ivr.prompts import Prompts
from callcenter.metrics import Metrics
from core import desk, followup, migrate, moves
from core.base import Actor
from core.calls import CallLog
from core.desk import NewTicket
from core.followup import SurveyAnswers
from core.followup_service import FollowUpCalls
from core.incident_service import IncidentCalls
from core.settings import DatabaseSettings, load_settings
from core.store import CallRecord, Engineer, FollowUp, Ticket, TicketEvent, make_engine, make_session_factory
from core.tickets import Role, Status, TransitionRequest
from tests.support.e2e import RECORDING_OFFSET, located, one, plain, prompts, time_limit, voices  # noqa: F401
from tests.support.hotline_caller import CallerScript, SpokenScripts, read_recording, utterance_script
from tests.support.sip import LOOPBACK, REQUIRE_SIP, Sipp, free_udp_ports, require

SHANGHAI = ZoneInfo("Asia/Shanghai")
PHONE = "13800138000"
REPORTED = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)  # 卫生间水龙头滴水, reported on a Monday morning
# The follow-up the completion (11:30) scheduled for a day later is due: the next afternoon.
CALLED = datetime(2026, 11, 24, 14, 30, tzinfo=SHANGHAI)
REPAIR = RepairFacts(reported_at=REPORTED, category="plumbing", building="3", unit="2", room="1101")
# The resident's clock starts at the answer; ours says all this first, without barge-in.
INTRO = sum(len(part) for part in introduction(Prompts(), REPAIR, CALLED)) / 16000
CALL_LIMIT = 100  # seconds for any one call, dialling to hang-up


# ---------------------------------------------------------------- the resident and the call

@dataclass
class Resident:
    """A resident's phone for one follow-up call."""

    script: CallerScript = field(default_factory=CallerScript)  # what they send from the answer on
    speech: SpokenScripts = field(default_factory=SpokenScripts)  # what the stand-in hears in it
    length: float = 80.0  # seconds of the script sent
    hang_up_at: float = CALL_LIMIT  # they hang up themselves this long after the answer (unless we do first)
    scenario: str = "survey_resident"  # or a phone that is not answered: callee_refuses, callee_rings
    params: dict = field(default_factory=dict)
    ring_seconds: float = RING_SECONDS


def dialling(resident: Callable[..., Resident], scheduled: bool = False):
    """The test checks the call to ``resident`` (made from voices): straight through ``survey_call``,
    or ``scheduled`` as a follow-up the scheduler runs (``call_followup``)."""
    def mark(test):
        test.follow_up = (resident, scheduled)
        return test
    return mark


class RunningClock:
    """The site's time, running from CALLED: the repair was yesterday, whenever the tests run."""

    def __init__(self, start: datetime):
        self.start, self.began = start, time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


class FollowupCall:
    """One follow-up call of this module, dialled in the background: its own database holding the
    completed repair, our line, and a SIPp resident."""

    def __init__(self, directory: Path, prompts: Prompts, resident: Resident, scheduled: bool):
        self.directory, self.resident, self.scheduled = directory, resident, scheduled
        self.metrics = Metrics(process=False)  # what /metrics would show (callcenter/metrics.py)
        base = load_settings(environ={"CALLCENTER_DATA_DIR": str(directory / "data")})
        self.settings = replace(base, database=DatabaseSettings(url=f"sqlite:///{directory / 'callcenter.db'}"),
                                followup=replace(base.followup, line="followup"))
        self.engine = make_engine(self.settings.database_url)
        migrate.upgrade(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.clock = RunningClock(CALLED)
        self.services = SurveyServices(self.settings, prompts, CallLog(self.sessions), resident.speech, self.clock)
        self.ticket_id, self.engineer_id = completed_repair(self.sessions, self.settings)
        self.result: SurveyCallResult | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self, sipp: Sipp) -> None:
        resident, port = self.resident, free_udp_ports()
        params = dict(resident.params)
        if resident.scenario == "survey_resident":
            pcap = resident.script.write_pcap(self.directory / "resident.pcap", resident.length)
            params.update(pcap=pcap, hold_ms=int(resident.hang_up_at * 1000))
        self.phone = sipp.start(resident.scenario, port=port, timeout=CALL_LIMIT + 20, params=params).wait_ready()
        rtp = free_udp_ports(4)
        self.line = Line(LineConfig(name="followup", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}",
                                    server=f"{LOOPBACK}:{port}", allow=[LOOPBACK], rtp_ports=(rtp, rtp + 3)))
        self.line.start()
        self.dialled = time.monotonic()
        threading.Thread(target=self._dial, name=f"follow-up {self.directory.name}", daemon=True).start()

    def _dial(self) -> None:
        try:
            if self.scheduled:
                store = FollowUpCalls(self.sessions, self.settings)
                call_followup(self.followup_id, FollowupServices(self.services, store, IncidentCalls(self.sessions, self.settings),
                                                                 {"followup": self.line}.get, self.metrics))
            else:
                with self.sessions() as session:
                    repair = repair_facts(session.get(Ticket, self.ticket_id))
                self.result = survey_call(self.line, PHONE, self.ticket_id, repair, self.services,
                                          ring_seconds=self.resident.ring_seconds)
        except BaseException as error:  # handed to the test
            self.error = error
        finally:
            self.seconds = time.monotonic() - self.dialled
            self.done.set()

    @property
    def followup_id(self) -> int:
        """The follow-up that completing the repair scheduled."""
        with self.sessions() as session:
            return followup.open_followup(session, self.ticket_id).id

    def collect(self) -> FollowupCall:
        assert self.done.wait(CALL_LIMIT), f"the follow-up call is still going after {CALL_LIMIT} s"
        if self.error:
            raise self.error
        code = self.phone.wait(30)
        assert code == 0, f"the resident's phone failed:\n{self.phone.report()}"
        return self

    def stop(self) -> None:
        if hasattr(self, "phone"):
            self.phone.stop()
            self.line.stop()
        self.engine.dispose()

    # -- what a manager sees

    @property
    def answers(self) -> SurveyAnswers | None:
        return self.result.answers

    def call_record(self) -> SimpleNamespace:
        with self.sessions() as session:
            return one((plain(r) for r in session.scalars(select(CallRecord))), "call record")

    def recording(self) -> bytes:
        record = self.call_record()
        path = self.settings.recordings_dir / record.recording_path
        assert record.recording_path and path.exists(), f"no recording at {path}"
        return read_recording(path)

    def ticket(self) -> SimpleNamespace:
        with self.sessions() as session:
            return plain(session.get(Ticket, self.ticket_id))

    def stored_followup(self) -> SimpleNamespace:
        with self.sessions() as session:
            return one((plain(f) for f in session.scalars(select(FollowUp))), "follow-up")

    def events(self) -> list[SimpleNamespace]:
        with self.sessions() as session:
            return [plain(e) for e in session.scalars(
                select(TicketEvent).where(TicketEvent.ticket_id == self.ticket_id).order_by(TicketEvent.id))]

    def steps(self) -> list[tuple[str, str, str]]:
        """(step, what was said, keys) of each utterance in the call record's transcript."""
        return [(u["step"], u["text"], u["keys"]) for u in self.call_record().transcript["utterances"]]


def completed_repair(sessions, settings) -> tuple[int, int]:
    """A leaking tap at 3-2-1101, reported yesterday morning and fixed by 张工 the same day (which
    schedules its follow-up); the ticket's id and 张工's."""
    clerk = Actor("desk1", Role.FRONTDESK)
    with sessions() as session, session.begin():
        engineer = Engineer(name="张工", phone="13800000001")
        session.add(engineer)
        session.flush()
        fixer = Actor("zhang", Role.ENGINEER, engineer.id)
        ticket = desk.create_ticket(session, NewTicket(description="卫生间水龙头滴水", phone=PHONE, reporter_name="王阿姨",
                                                       building="3", unit="2", room="1101", category="plumbing"),
                                    clerk, REPORTED, settings)
        steps = [(clerk, TransitionRequest(Status.DISPATCHED, engineer_id=engineer.id)),
                 (fixer, TransitionRequest(Status.ACCEPTED)), (fixer, TransitionRequest(Status.ON_SITE)),
                 (fixer, TransitionRequest(Status.COMPLETED, actual_item="更换水龙头阀芯", labour_fee=20,
                                           customer_confirmed=True))]
        for minutes, (actor, step) in enumerate(steps, start=1):
            moves.move_ticket(session, ticket, step, actor, REPORTED + timedelta(minutes=30 * minutes), settings)
        return ticket.id, engineer.id


@pytest.fixture(scope="module")
def follow_up_calls(request, tmp_path_factory, prompts, voices):
    """Every follow-up call of the tests collected from this module, dialled at once."""
    require("sipp", "espeak-ng", "sox")
    if os.geteuid() != 0:
        reason = "SIPp plays pcap audio through a raw socket: run the SIP tests as root"
        pytest.fail(reason) if REQUIRE_SIP else pytest.skip(reason)
    sipp = Sipp(tmp_path_factory.mktemp("residents"))
    calls = {item.name: FollowupCall(tmp_path_factory.mktemp(item.name), prompts, item.function.follow_up[0](voices),
                                     item.function.follow_up[1])
             for item in request.session.items
             if item.module is request.module and hasattr(item.function, "follow_up")}
    try:
        for call in calls.values():
            call.start(sipp)
        yield calls
    finally:
        for call in calls.values():
            call.stop()


@pytest.fixture
def follow_up(request, follow_up_calls) -> FollowupCall:
    """This test's call, once it is over."""
    return follow_up_calls[request.node.name].collect()


# ---------------------------------------------------------------- (a) two keys: fixed, 满意

def presses_1_then_1(voices) -> Resident:
    resident = Resident()
    resident.script.keys(INTRO + 1.0, "1")  # over 「问题解决了吗？…解决了请说是或按1」
    resident.script.keys(INTRO + 3.0, "1")  # over 「…满意请说满意或按1」; then silent through the comment
    return resident


@dialling(presses_1_then_1)
def test_resident_who_presses_1_then_1_is_satisfied_and_the_call_is_recorded(follow_up):
    assert follow_up.answers == SurveyAnswers(resolved=True, rating="满意", reached=True,
                                              transcript=follow_up.answers.transcript)
    record = follow_up.call_record()
    assert (record.direction, record.outcome, record.line) == ("outbound", "completed", "followup")
    assert (record.called, record.ticket_id) == (PHONE, follow_up.ticket_id)
    assert record.started_at <= record.answered_at < record.ended_at
    assert follow_up.steps() == [("resolved", "", "1"), ("rating", "", "1")]
    assert [u.to_json() for u in follow_up.answers.transcript] == record.transcript["utterances"]
    # The whole call is recorded: from the answer until we hung up, after the thanks.
    assert abs(len(follow_up.recording()) / 16000 - (record.ended_at - record.answered_at).total_seconds()) < 1.0
    assert len(follow_up.phone.received("BYE")) == 1


# ---------------------------------------------------------------- (b) not fixed, 不满意, a comment

UNHAPPY = "不满意"
COMMENT = "维修师傅来得太晚了"


def unhappy_with_a_comment(voices) -> Resident:
    unhappy, comment = voices(UNHAPPY), voices(COMMENT)
    resident = Resident(speech=SpokenScripts(utterance_script("不 满意", len(unhappy) / 16000),
                                             utterance_script("维修 师傅 来 得 太 晚 了", len(comment) / 16000)))
    resident.script.keys(INTRO + 1.0, "2")  # not fixed
    resident.script.speak(INTRO + 3.0, unhappy, "rating")  # over the rating question
    # after 「请在提示音后说出您的意见或建议」 and the beep (the rating's final comes 0.8 s after the word)
    resident.script.speak(INTRO + 3.0 + len(unhappy) / 16000 + 0.8 + 9.5, comment, "comment")
    return resident


@dialling(unhappy_with_a_comment)
def test_unhappy_resident_leaves_a_comment_that_is_transcribed_and_in_the_recording(follow_up):
    answers = follow_up.answers
    assert (answers.resolved, answers.rating, answers.comment, answers.reached) == (False, "不满意", COMMENT, True)
    record = follow_up.call_record()
    assert record.outcome == "completed"
    assert follow_up.steps() == [("resolved", "", "2"), ("rating", "不满意", ""), ("comment", COMMENT, "")]
    comment = follow_up.resident.script.spoken("comment")
    at = located(follow_up.recording(), comment.pcm)
    assert abs(at - comment.start) < RECORDING_OFFSET  # the recording starts at the answer
    assert abs(answers.comment_start - at) < 0.3  # the console's ▶ plays the comment
    assert follow_up.resident.speech.left == 0


# ---------------------------------------------------------------- (c) nobody answers

def busy(voices) -> Resident:
    return Resident(scenario="callee_refuses", params={"code": 486})


def rings_and_rings(voices) -> Resident:
    return Resident(scenario="callee_rings", ring_seconds=2)


@dialling(busy)
def test_a_busy_resident_is_no_contact_with_a_call_record(follow_up):
    assert (follow_up.answers, follow_up.result.no_contact) == (None, "busy")
    record = follow_up.call_record()
    assert (record.direction, record.outcome, record.answered_at, record.recording_path) == ("outbound", "busy",
                                                                                            None, "")


@dialling(rings_and_rings)
def test_a_phone_nobody_picks_up_is_given_up_after_the_ring_time(follow_up):
    assert (follow_up.answers, follow_up.result.no_contact) == (None, "no_answer")
    assert follow_up.seconds < 2 + 3
    assert len(follow_up.phone.received("CANCEL")) == 1
    assert follow_up.call_record().outcome == "no_answer"


# ---------------------------------------------------------------- (d) answered, but nobody there

def says_nothing(voices) -> Resident:
    return Resident()


GREETING = "您好，您拨打的电话暂时无人接听，请在提示音后留言。"


def voicemail(voices) -> Resident:
    resident = Resident()
    resident.script.speak(0.3, voices(GREETING), "greeting")
    return resident


@dialling(says_nothing)
def test_silence_after_the_answer_is_not_reaching_the_resident(follow_up):
    assert follow_up.answers == SurveyAnswers(reached=False)
    record = follow_up.call_record()
    assert (record.outcome, record.transcript["utterances"]) == ("no_input", [])
    assert len(follow_up.phone.received("BYE")) == 1  # asked twice, then we hung up


@dialling(voicemail)
def test_a_voicemail_greeting_is_not_reaching_the_resident(follow_up):
    assert follow_up.answers == SurveyAnswers(reached=False)
    record = follow_up.call_record()
    assert record.outcome == "voicemail"
    # The question was asked once; no second try into the mailbox.
    assert (record.ended_at - record.answered_at).total_seconds() < INTRO + 9 + 5 + 2


# ---------------------------------------------------------------- (f) opting out

def presses_9(voices) -> Resident:
    resident = Resident()
    resident.script.keys(INTRO + 0.5, "9")  # after 「如果不希望再接到回访电话，请按9」
    return resident


STOP = "别再打了"


def says_stop_calling(voices) -> Resident:
    stop = voices(STOP)
    resident = Resident(speech=SpokenScripts(utterance_script("别 再 打 了", len(stop) / 16000)))
    resident.script.speak(INTRO + 1.0, stop, "stop")  # over 「问题解决了吗？」
    return resident


@dialling(presses_9)
def test_resident_who_presses_9_opts_out(follow_up):
    assert follow_up.answers.opted_out and follow_up.answers.resolved is None
    assert (follow_up.call_record().outcome, follow_up.steps()) == ("opted_out", [("resolved", "", "9")])
    assert len(follow_up.phone.received("BYE")) == 1  # told 「以后不再给您打回访电话」, then we hung up


@dialling(says_stop_calling)
def test_resident_who_says_stop_calling_opts_out(follow_up):
    assert follow_up.answers.opted_out and follow_up.answers.resolved is None
    assert (follow_up.call_record().outcome, follow_up.steps()) == ("opted_out", [("resolved", STOP, "")])


# ---------------------------------------------------------------- a resident who hangs up mid-way

def hangs_up_during_the_rating(voices) -> Resident:
    resident = Resident(hang_up_at=INTRO + 4.0)
    resident.script.keys(INTRO + 1.0, "1")
    return resident


@dialling(hangs_up_during_the_rating)
def test_resident_who_hangs_up_mid_way_leaves_what_they_answered(follow_up):
    assert follow_up.answers == SurveyAnswers(resolved=True, transcript=follow_up.answers.transcript)
    record = follow_up.call_record()
    assert (record.outcome, record.ended_at is not None) == ("caller_hung_up", True)
    assert abs(len(follow_up.recording()) / 16000 - (INTRO + 4.0)) < 1.0
    assert follow_up.phone.received("BYE") == []  # the resident hung up, not us


# ---------------------------------------------------------------- through the scheduler: the ticket moves on

@dialling(presses_1_then_1, scheduled=True)
def test_a_scheduled_follow_up_rated_satisfied_makes_the_ticket_followed_up(follow_up):
    ticket, done = follow_up.ticket(), follow_up.stored_followup()
    assert (ticket.status, ticket.rating) == ("followed_up", "满意")  # 回访, ready for 归档
    assert (done.status, done.attempts, done.resolved, done.rating) == ("done", 1, True, "满意")
    record = follow_up.call_record()
    assert (done.call_record_id, record.ticket_id, record.outcome) == (record.id, ticket.id, "completed")
    assert follow_up.metrics.registry.get_sample_value("callcenter_followups_total", {"status": "done"}) == 1


@dialling(busy, scheduled=True)
def test_a_scheduled_follow_up_to_a_busy_phone_is_tried_again_later(follow_up):
    retry = follow_up.stored_followup()
    assert (retry.status, retry.attempts, retry.last_outcome) == ("scheduled", 1, "busy")
    assert retry.due_at >= CALLED + timedelta(minutes=follow_up.settings.followup.retry_minutes)
    assert follow_up.metrics.registry.get_sample_value("callcenter_followups_total", {"status": "scheduled"}) == 1
    assert follow_up.ticket().status == "completed"


@dialling(unhappy_with_a_comment, scheduled=True)
def test_a_scheduled_follow_up_rated_unsatisfied_reopens_the_ticket_and_alerts_the_manager(follow_up):
    ticket, done = follow_up.ticket(), follow_up.stored_followup()
    assert (ticket.status, ticket.engineer_id) == ("dispatched", follow_up.engineer_id)  # 返修, same engineer
    assert (done.status, done.resolved, done.rating, done.comment) == ("done", False, "不满意", COMMENT)
    alert = one((e for e in follow_up.events() if e.kind == "alert"), "alert for the manager")
    assert COMMENT in alert.note
    assert done.call_record_id == follow_up.call_record().id  # its recording, one click away
