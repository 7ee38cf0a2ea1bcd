"""The emergency call-out's scripts turn by turn: what the engineer hears and presses, and the
hotline caller's wait for them (``put_through``). A fake call on virtual time plays both; the
SIPp tests (test_callout_e2e.py) ring real peers through the runner.
"""

from __future__ import annotations

import threading
import wave
from dataclasses import dataclass, field

import pytest

from callcenter.ivr.flows import put_through
from callcenter.ivr.flows.callout import CalledOff, EngineerCall, Job, caller_words
from callcenter.ivr.flows.dialogue import Dialogue, HungUp
from callcenter.ivr.flows.put_through import hold_for_engineer
from core.callout_service import CallOutService
from core.callouts import ACCEPTED, EXHAUSTED, RINGING
from core.calls import CallLog
from core.dispatch import Outcome
from core.store import Ticket
from tests.support.fake_call import FakeCall, HangUp, Silence, press
from tests.support.flow_env import flow_sessions, flow_settings, labelled_prompts, migrated_database, virtual_time  # noqa: F401

JOB = Job(building="3", unit="2", room="501", category="plumbing", phone="13800138000",
          caller_words=b"(the caller's voice)")
ADDRESS = ["pieces.digit_3", "pieces.building", "pieces.digit_2", "pieces.unit", "pieces.digit_5", "pieces.digit_0",
           "pieces.digit_1"]
ANNOUNCEMENT = ["callout.alert", "callout.address_prefix", *ADDRESS, "callout.category_prefix", "pieces.cat_plumbing",
                "callout.caller_words"]
PHONE = ["pieces.digit_" + d for d in "13800138000"]


@pytest.fixture
def engineer(labelled_prompts, virtual_time):
    def engineer(*turns, job=JOB, called_off=None):
        call = FakeCall(list(turns), virtual_time, call_id="engineer")
        return call, EngineerCall(call, labelled_prompts, lambda: job, called_off or threading.Event())
    return engineer


# -- the offer ----------------------------------------------------------------------------------

def test_the_engineer_hears_the_job_and_the_callers_words_and_accepts_with_1(engineer):
    call, flow = engineer(press("1"))
    assert flow.offer() == Outcome.ACCEPTED
    assert call.played == ANNOUNCEMENT + ["callout.accept_menu"]
    assert call.audio_played[3].endswith(JOB.caller_words)  # the caller's own voice follows 「以下是报修人的原话」


def test_2_declines(engineer):
    call, flow = engineer(press("2"))
    assert flow.offer() == Outcome.DECLINED
    flow.tell_declined()
    assert call.played[-1] == "callout.declined"


def test_a_key_during_the_announcement_takes_effect_after_the_piece_being_played(engineer):
    call, flow = engineer(press("1", during="callout.alert"))
    assert flow.offer() == Outcome.ACCEPTED
    assert call.played == ["callout.alert"] and not flow.heard_it_all


def test_star_repeats_the_announcement_at_most_three_times(engineer):
    call, flow = engineer(press("*"), press("*"), press("*"), press("*"), press("1"))
    assert flow.offer() == Outcome.ACCEPTED
    assert call.played.count("callout.alert") == 4  # the first time and three repeats; the fourth * is ignored
    assert call.played[-2:] == ["callout.accept_menu", "callout.accept_menu"]


def test_another_key_asks_again(engineer):
    call, flow = engineer(press("5"), press("1"))
    assert flow.offer() == Outcome.ACCEPTED
    assert call.played.count("callout.accept_menu") == 2


def test_no_key_after_the_menu_twice_is_no_answer(engineer):
    call, flow = engineer(Silence(), Silence())
    assert flow.offer() == Outcome.NO_ANSWER
    assert call.played == ANNOUNCEMENT + ["callout.accept_menu", "callout.accept_menu"]


def test_a_hang_up_without_a_key_is_no_answer(engineer):
    call, flow = engineer(HangUp(during="callout.category_prefix"))
    assert flow.offer() == Outcome.NO_ANSWER
    assert call.played[-1] == "callout.category_prefix"


def test_a_job_without_an_address_or_words_is_announced_by_its_category(engineer):
    call, flow = engineer(press("1"), job=Job(category="gas"))
    flow.offer()
    assert call.played == ["callout.alert", "callout.category_prefix", "pieces.cat_gas", "callout.accept_menu"]


def test_the_announcement_reads_the_job_afresh_each_piece(engineer, labelled_prompts, virtual_time):
    """The caller may give the address only while the alert plays."""
    call = FakeCall([press("1")], virtual_time)
    job = lambda: JOB if "callout.alert" in call.played else Job(category="plumbing")  # noqa: E731
    EngineerCall(call, labelled_prompts, job, threading.Event()).offer()
    assert call.played == ANNOUNCEMENT + ["callout.accept_menu"]


def test_a_call_out_called_off_stops_the_offer(engineer):
    called_off = threading.Event()
    called_off.set()
    call, flow = engineer(Silence(), called_off=called_off)
    with pytest.raises(CalledOff):
        flow.offer()
    flow.tell_called_off()
    assert call.played[-1] == "callout.cancelled"


def test_telling_a_gone_engineer_anything_is_no_error(engineer):
    call, flow = engineer(HangUp())
    assert flow.offer() == Outcome.NO_ANSWER
    flow.tell_declined()
    flow.tell_called_off()
    assert "callout.declined" not in call.played


# -- after the acceptance -------------------------------------------------------------------------

@dataclass
class StubMeeting:
    """A Meeting as the engineer's side sees it."""

    caller_on_line: bool = True
    caller_comes: bool = True
    declined: bool = False
    joined: list = field(default_factory=list)

    def decline(self):
        self.declined = True

    def join(self, engineer, timeout):
        self.joined.append(engineer)
        return self.caller_comes


def test_an_engineer_who_accepted_before_the_address_hears_it_and_the_callers_number(engineer):
    call, flow = engineer(press("1", during="callout.alert"))
    flow.offer()
    flow.tell_taken(None)
    assert call.played[1:] == ["callout.accepted", "callout.address_prefix", *ADDRESS, "callout.caller_number_prefix",
                               *PHONE]


def test_an_engineer_who_heard_it_all_is_not_told_the_address_again(engineer):
    call, flow = engineer(press("1"))
    flow.offer()
    flow.tell_taken(StubMeeting(caller_on_line=False))
    assert call.played[len(ANNOUNCEMENT) + 1:] == ["callout.accepted", "callout.caller_number_prefix", *PHONE]


def test_1_puts_the_engineer_through_to_the_caller_still_on_the_line(engineer):
    meeting = StubMeeting()
    call, flow = engineer(press("1"), press("1"))
    flow.offer()
    flow.tell_taken(meeting)
    assert call.played[-2:] == ["callout.bridge_offer", "callout.connecting"] and meeting.joined == [call]


def test_a_caller_who_does_not_come_is_said_to_be_unavailable(engineer):
    meeting = StubMeeting(caller_comes=False)
    call, flow = engineer(press("1"), press("1"))
    flow.offer()
    flow.tell_taken(meeting)
    assert call.played[-1] == "callout.caller_unavailable"


@pytest.mark.parametrize("turn", [press("2"), Silence(), HangUp()])
def test_an_engineer_who_does_not_press_1_declines_to_talk(engineer, turn):
    meeting = StubMeeting()
    call, flow = engineer(press("1"), turn)
    flow.offer()
    flow.tell_taken(meeting)
    assert meeting.declined and meeting.joined == []


# -- the caller's words, from the hotline call's recording ---------------------------------------

def test_the_callers_words_are_cut_from_the_hotline_recording(flow_settings, flow_sessions, clock):
    with flow_sessions() as session, session.begin():
        ticket = Ticket(number="T1", status="received", status_changed_at=clock(), channel="phone",
                        urgency="emergency", description="漏水", reported_at=clock(), updated_at=clock())
        session.add(ticket)
    calls = CallLog(flow_sessions)
    record_id = calls.open(sip_call_id="c1", direction="inbound", line="hotline", caller="x", called="y",
                           at=clock(), ticket_id=ticket.id)
    path = flow_settings.recordings_dir / "2026/11/23/1-c1.wav"
    path.parent.mkdir(parents=True)
    with wave.open(str(path), "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(8000)
        recording.writeframes(b"".join(second.to_bytes(2, "little") * 8000 for second in range(10)))
    calls.update(record_id, recording_path="2026/11/23/1-c1.wav", transcript={"utterances": [
        {"step": "address", "text": "三号楼", "keys": "", "words": [], "start": 1.0, "end": 2.0},
        {"step": "problem", "text": "漏水", "keys": "", "words": [], "start": 5.0, "end": 6.0}]})
    words = caller_words(CallOutService(flow_sessions, flow_settings).job(ticket.id), flow_settings)
    samples = [int.from_bytes(words[i:i + 2], "little") for i in range(0, len(words), 2)]
    assert len(samples) == int((6.0 + 0.3 - (5.0 - 1.5)) * 8000)  # 1.5 s before the words to 0.3 s after
    assert set(samples) == {3, 4, 5, 6}  # the seconds 3.5 to 6.3 of the recording: no address in it


# -- the hotline caller waiting for the engineer (put_through) ------------------------------------

@dataclass
class StubCallerMeeting:
    """A Meeting as the hotline caller's side sees it."""

    engineer: object = None
    engineer_withdrawn: bool = False
    closed: bool = False

    def take_engineer(self, timeout):
        put_through.time.sleep(timeout)
        return self.engineer

    def close(self):
        self.closed = True


@pytest.fixture
def caller(labelled_prompts, virtual_time):
    def caller(*turns, states=(), meeting=None):
        call = FakeCall(list(turns), virtual_time)
        states = list(states)
        meeting = meeting or StubCallerMeeting()
        def state():
            return states.pop(0) if len(states) > 1 else states[0]
        try:
            talked = hold_for_engineer(Dialogue(call, None), labelled_prompts, meeting, state)
        except HungUp:
            talked = "hung up"
        return call, talked, meeting
    return caller


def test_a_caller_who_does_not_press_1_is_not_held(caller):
    call, talked, _ = caller(Silence(), states=[RINGING])
    assert talked is False and call.played == ["hotline.offer_engineer"]


def test_a_caller_who_holds_is_put_through_to_the_engineer(caller, monkeypatch, virtual_time):
    bridged = []
    monkeypatch.setattr(put_through, "bridge", lambda a, b: bridged.append((a, b)))
    engineer = FakeCall([], virtual_time, call_id="engineer")
    call, talked, meeting = caller(press("1"), states=[RINGING], meeting=StubCallerMeeting(engineer=engineer))
    assert talked is True and bridged == [(call, engineer)] and meeting.closed
    assert call.played == ["hotline.offer_engineer", "hotline.hold_for_engineer", "callout.engineer_coming_prefix",
                           "callout.engineer_coming_suffix"]


def test_a_caller_holding_hears_the_notice_again_while_the_engineer_is_rung(caller):
    call, talked, _ = caller(press("1"), states=[RINGING] * 20 + [EXHAUSTED])
    assert talked is False and call.played.count("hotline.hold_for_engineer") == 2
    assert call.played[-1] == "hotline.engineer_unreached"


def test_an_engineer_who_accepted_and_would_not_talk_is_on_the_way(caller):
    call, talked, _ = caller(press("1"), states=[ACCEPTED], meeting=StubCallerMeeting(engineer_withdrawn=True))
    assert talked is False and call.played[-1] == "hotline.engineer_on_the_way"


def test_an_engineer_who_accepted_and_never_joins_is_on_the_way_after_a_while(caller):
    call, talked, _ = caller(press("1"), states=[ACCEPTED])
    assert talked is False and call.played[-1] == "hotline.engineer_on_the_way"
    assert call.played.count("hotline.hold_for_engineer") >= 3  # 45 s of holding, told every 15 s


def test_a_caller_who_hangs_up_while_holding(caller):
    call, talked, _ = caller(press("1"), HangUp(during="hotline.hold_for_engineer"), states=[RINGING])
    assert talked == "hung up"
