"""The recogniser streams of a node: the default limit, reservations at admission, one stream per
call held until the call ends on every path, and who gets 503 when all are taken."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from callcenter.asr import capacity
from callcenter.asr.capacity import StreamSlots, default_max_streams, max_streams_for, speech_for_call
from callcenter.ivr.flows.hotline import HotlineCall, HotlineServices
from callcenter.ivr.lines import CallEnded, Invitation
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.service import admission
from callcenter.kamailio_config import NEXT_NODE_HEADER
from core.settings import Settings, SettingsError, load_settings


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_default_comes_from_the_cores_and_the_models_real_time_factor():
    # floor(cores x 0.75 / 0.26): 2 cores -> 5, what bench/calls.py measured as clean on 2 cores
    assert [default_max_streams(cores) for cores in (1, 2, 4, 8)] == [2, 5, 11, 23]
    assert default_max_streams(1, real_time_factor=2.0) == 1  # a model slower than real time still takes one
    assert max_streams_for(3) == 3 and max_streams_for(0) == default_max_streams()
    with pytest.raises(ValueError):
        max_streams_for(-1)


def test_the_setting_takes_an_integer_from_the_file_or_the_environment(tmp_path):
    assert load_settings(environ={}).asr.max_streams == 0
    assert load_settings(environ={"CALLCENTER_ASR_MAX_STREAMS": "7"}).asr.max_streams == 7
    for bad in ("-2", "many"):
        with pytest.raises(SettingsError, match="max_streams|ASR_MAX_STREAMS"):
            load_settings(environ={"CALLCENTER_ASR_MAX_STREAMS": bad})


def test_a_reservation_becomes_the_calls_stream_and_nobody_gets_more_than_the_limit():
    slots = StreamSlots(2, clock=Clock())
    assert slots.reserve("a") and slots.reserve("a")  # a retransmitted INVITE does not take a second one
    assert slots.reserve("b") and not slots.reserve("c")
    first = slots.take("a")
    assert first is not None and slots.in_use == 2 and slots.full
    assert slots.take("c") is None  # a call nobody reserved for, with both taken
    first.release()
    first.release()  # twice is once
    assert slots.in_use == 1
    assert slots.take("c") is not None and slots.take("b") is not None  # b's reservation was kept for it
    assert slots.in_use == 2


def test_a_reservation_whose_call_never_starts_lapses_and_a_refused_invite_cancels_its_own():
    clock = Clock()
    slots = StreamSlots(1, clock=clock)
    assert slots.reserve("lost")
    assert not slots.reserve("next")
    clock.now += capacity.RESERVATION_SECONDS + 0.1
    assert slots.reserve("next") and slots.in_use == 1
    slots.cancel("next")
    assert slots.in_use == 0


def test_full_refuses_with_503_only_when_the_dispatcher_has_another_node():
    slots = StreamSlots(1, clock=Clock())
    admit = admission(slots)

    def invitation(call_id, **headers):
        return Invitation(call_id, "13800138000", "hotline", {k.lower(): v for k, v in headers.items()})

    assert admit(invitation("one", **{NEXT_NODE_HEADER: "1"})) is None  # a free stream: reserved, it rings
    assert admit(invitation("two", **{NEXT_NODE_HEADER: "1"})) == 503
    # the last node the dispatcher tries, or no dispatcher at all: answered anyway (keys and recording)
    assert admit(invitation("three")) is None
    assert slots.refused == 1 and slots.take("three") is None


def test_refusals_while_full_are_counted_each_and_logged_once_a_minute(caplog):
    clock = Clock()
    slots = StreamSlots(1, clock=clock)
    held = slots.take("talking")
    with caplog.at_level(logging.INFO, logger="callcenter.asr"):
        for _ in range(500):
            slots.note_refused()
        clock.now += capacity.SUMMARY_SECONDS
        for _ in range(3):
            slots.note_refused()
        held.release()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "503" in lines[0] and "1 recognisers busy" in lines[0].replace("all ", "")
    assert "500 calls refused" in lines[1]  # the 499 after the first line and the one that wrote it
    assert "2 more calls were refused" in lines[2]
    assert slots.health() == {"max_streams": 1, "in_use": 0, "refused_full": 503, "answered_without_speech": 0}


# ---------------------------------------------------------------- the hotline call holds its stream until it ends

@pytest.fixture
def hotline_services():
    slots = StreamSlots(1)
    settings = Settings()
    services = HotlineServices(settings, Prompts(), drafts=None, calls=None, new_recognizer=lambda grammar: None,
                               streams=slots)
    return services, slots


def hotline_call(services, call_id="call-1"):
    return HotlineCall(SimpleNamespace(call_id=call_id, caller="13800138000"), services)


@pytest.mark.parametrize("ending", ["completed", CallEnded("hung up"), RuntimeError("database gone"),
                                    TimeoutError("no RTP")])
def test_the_call_gives_its_stream_back_however_it_ends(hotline_services, monkeypatch, ending):
    services, slots = hotline_services
    seen = {}

    def run_call(self):
        seen["in_use"], seen["speech"] = slots.in_use, self.dialogue.has_speech
        if isinstance(ending, Exception):
            raise ending

    monkeypatch.setattr(HotlineCall, "run_call", run_call)
    call = hotline_call(services)
    if isinstance(ending, Exception):
        with pytest.raises(type(ending)):
            call.run()
    else:
        call.run()
    assert seen == {"in_use": 1, "speech": True}
    assert slots.in_use == 0


def test_a_call_that_finds_every_stream_taken_runs_without_speech_and_takes_none(hotline_services, monkeypatch):
    services, slots = hotline_services
    held = slots.take("another call")
    seen = {}
    monkeypatch.setattr(HotlineCall, "run_call", lambda self: seen.update(busy=self.recognisers_busy,
                                                                          speech=self.dialogue.has_speech))
    hotline_call(services, "call-2").run()
    assert seen == {"busy": True, "speech": False}
    assert slots.in_use == 1 and slots.without_speech == 1
    held.release()
    assert slots.in_use == 0


def test_without_a_limit_or_a_model_the_factory_is_passed_through():
    factory = object()
    assert speech_for_call(None, "x", factory) == (None, factory)
    assert speech_for_call(StreamSlots(1), "x", None) == (None, None)


@pytest.mark.parametrize("ending", ["completed", RuntimeError("database gone"), CallEnded("hung up")])
def test_a_follow_up_call_shares_the_streams_and_gives_its_own_back(monkeypatch, ending):
    from callcenter.ivr.flows import survey
    from callcenter.ivr.flows.call_record import FlowRecord

    slots = StreamSlots(1)
    services = survey.SurveyServices(Settings(), Prompts(), calls=None, new_recognizer=lambda grammar: None,
                                     streams=slots)
    seen = {}

    def converse(self):
        seen["in_use"], seen["speech"] = slots.in_use, self.dialogue.has_speech
        if isinstance(ending, Exception):
            raise ending
        return ending

    monkeypatch.setattr(survey.SurveyCall, "converse", converse)
    monkeypatch.setattr(FlowRecord, "start_recording", lambda self, call, dialogue: None)
    monkeypatch.setattr(FlowRecord, "close", lambda self, outcome, **transcript: seen.update(outcome=outcome))
    call = SimpleNamespace(call_id="followup-1", hangup=lambda: None)
    survey.SurveyCall(call, services, repair=None, record_id=1).run()
    assert (seen["in_use"], seen["speech"]) == (1, True) and slots.in_use == 0
    held = slots.take("a hotline call")  # all taken: the next follow-up is asked on keys only
    survey.SurveyCall(SimpleNamespace(call_id="followup-2", hangup=lambda: None), services, None, 2).run()
    assert (seen["in_use"], seen["speech"]) == (1, False) and slots.in_use == 1
    held.release()
