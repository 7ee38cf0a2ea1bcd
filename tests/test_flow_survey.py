"""The follow-up call (回访) script turn by turn: every prompt and branch, every way to rate.

A fake call (tests/support/fake_call.py) plays the resident on virtual time; the answers the
script returns and the call record it keeps are what the dialler stores (core.followup). The
SIPp tests (test_survey_e2e.py) dial the same script over real SIP and RTP.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from callcenter.ivr.flows.survey import RepairFacts, SurveyServices, run_survey
from core.calls import CallLog
from core.store import CallRecord
from tests.support.fake_call import FakeCall, HangUp, Silence, press, say
from tests.support.flow_env import flow_sessions, flow_settings, labelled_prompts, migrated_database, virtual_time  # noqa: F401

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
REPAIR = RepairFacts(reported_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC), category="plumbing",
                     building="3", unit="2", room="501")
INTRO = ["survey.intro_prefix", "pieces.yesterday", "survey.intro_suffix", "pieces.cat_plumbing", "pieces.digit_3",
         "pieces.building", "pieces.digit_2", "pieces.unit", "pieces.digit_5", "pieces.digit_0", "pieces.digit_1",
         "survey.opt_out_hint"]
COMMENT = ["survey.ask_comment", "hotline.beep"]


@pytest.fixture
def run(flow_settings, flow_sessions, labelled_prompts, virtual_time):
    def run(*turns, speech=True, repair=REPAIR):
        call = FakeCall(list(turns), virtual_time, caller="sip:followup@127.0.0.1", called="sip:13800138000@127.0.0.2")
        calls = CallLog(flow_sessions)
        record_id = calls.open(sip_call_id=call.call_id, direction="outbound", line="followup",
                               caller="followup", called="13800138000", at=NOW)
        services = SurveyServices(flow_settings, labelled_prompts, calls,
                                  call.new_recognizer if speech else None, clock=lambda: NOW)
        answers = run_survey(call, services, repair, record_id)
        with flow_sessions() as session:
            record = session.scalars(select(CallRecord)).one()
            session.expunge(record)
        assert call.hung_up_by_flow or not call.is_active
        return call, answers, record

    return run


def test_resolved_and_satisfied_by_keys_then_no_comment(run):
    call, answers, record = run(press("1"), press("1"), Silence())
    assert call.played == INTRO + ["survey.ask_resolved", "survey.ask_rating"] + COMMENT + ["survey.thanks"]
    assert (answers.reached, answers.resolved, answers.rating, answers.comment) == (True, True, "满意", "")
    assert not answers.opted_out and record.outcome == "completed" and call.hung_up_by_flow
    assert [u["step"] for u in record.transcript["utterances"]] == ["resolved", "rating"]
    assert [u.to_json() for u in answers.transcript] == record.transcript["utterances"]


def test_a_report_of_another_day_names_its_date(run):
    repair = RepairFacts(reported_at=datetime(2026, 11, 10, 1, 0, tzinfo=UTC), category="gas", area="车库")
    call, _, _ = run(press("1"), press("1"), Silence(), repair=repair)
    assert call.played[:10] == ["survey.intro_prefix", "pieces.num_10", "pieces.num_1", "pieces.month",
                                "pieces.num_10", "pieces.day", "survey.intro_suffix", "pieces.cat_gas",
                                "pieces.area_garage", "survey.opt_out_hint"]


@pytest.mark.parametrize("key, rating", [("1", "满意"), ("2", "基本满意"), ("3", "不满意")])
def test_each_rating_by_its_key(run, key, rating):
    _, answers, _ = run(press("1"), press(key), Silence())
    assert answers.rating == rating


@pytest.mark.parametrize("words, rating", [
    ("满意", "满意"), ("非常满意", "满意"), ("基本满意", "基本满意"), ("还行", "基本满意"), ("不满意", "不满意"),
    ("太差了", "不满意"),
    ("一", "满意"), ("二", "基本满意"), ("三", "不满意"),  # the menu's numbers, said instead of keyed
    ("五分", "满意"), ("四星", "满意"), ("五", "满意"), ("四", "满意"),  # scores out of five
    ("三分", "基本满意"), ("两分", "不满意"), ("一星", "不满意"),
])
def test_each_rating_by_voice(run, words, rating):
    _, answers, record = run(say("是"), say(words), Silence())
    assert (answers.resolved, answers.rating) == (True, rating)
    assert record.transcript["utterances"][1]["text"] == words


@pytest.mark.parametrize("turn, resolved", [(say("是的"), True), (say("没有"), False), (press("2"), False)])
def test_resolved_by_voice_or_key(run, turn, resolved):
    _, answers, _ = run(turn, press("1"), Silence())
    assert answers.resolved is resolved


def test_an_unclear_answer_is_asked_again(run):
    call, answers, _ = run(say("什么"), press("2"), say("嗯嗯啊"), press("7"), Silence())
    assert call.played[len(INTRO):] == ["survey.ask_resolved", "survey.ask_again", "survey.ask_resolved",
                                        "survey.ask_rating", "survey.ask_again", "survey.ask_rating"] + COMMENT \
        + ["survey.thanks"]
    assert (answers.resolved, answers.rating, answers.reached) == (False, None, True)


def test_a_rating_unclear_twice_is_left_unanswered_and_the_comment_still_invited(run):
    _, answers, record = run(press("1"), press("5"), say("不知道"), say("师傅人很好"))
    assert (answers.resolved, answers.rating, answers.comment) == (True, None, "师傅人很好")
    assert record.outcome == "completed"


def test_a_spoken_comment_is_kept_with_where_it_starts_in_the_recording(run):
    _, answers, record = run(press("2"), press("3"), say("修了三次还是漏水", seconds=3))
    assert (answers.resolved, answers.rating, answers.comment) == (False, "不满意", "修了三次还是漏水")
    assert answers.comment_start is not None and answers.comment_start >= 0
    assert record.transcript["utterances"][-1]["step"] == "comment"


def test_without_a_speech_model_the_comment_is_only_recorded(run):
    _, answers, record = run(press("1"), press("1"), say("", seconds=4), speech=False)
    assert answers.comment == "" and answers.rating == "满意"
    comment = record.transcript["utterances"][-1]
    assert comment["step"] == "comment" and comment["end"] > comment["start"]


def test_silence_from_the_answer_on_reaches_nobody(run):
    call, answers, record = run(Silence(), Silence())
    assert call.played == INTRO + ["survey.ask_resolved", "survey.ask_again", "survey.ask_resolved"]
    assert not answers.reached and record.outcome == "no_input" and answers.resolved is None


def test_a_voicemail_greeting_reaches_nobody_and_is_not_asked_again(run):
    call, answers, record = run(say("", seconds=6, during="survey.intro_prefix"), Silence())
    assert call.played == INTRO + ["survey.ask_resolved"]
    assert not answers.reached and record.outcome == "voicemail"


def test_a_person_who_says_hello_over_the_introduction_is_not_a_voicemail(run):
    _, answers, record = run(say("", seconds=1, during="survey.intro_prefix"), Silence(), press("1"), press("1"),
                             Silence())
    assert answers.reached and answers.resolved is True and record.outcome == "completed"


def test_9_at_the_first_question_opts_out(run):
    call, answers, record = run(press("9"))
    assert call.played[-2:] == ["survey.ask_resolved", "survey.opted_out"]
    assert answers.opted_out and answers.resolved is None and record.outcome == "opted_out"


def test_stop_calling_at_the_rating_opts_out_with_what_was_answered(run):
    call, answers, record = run(press("1"), say("别再打了"))
    assert call.played[-1] == "survey.opted_out"
    assert answers.opted_out and answers.resolved is True and answers.rating is None
    assert record.outcome == "opted_out"


def test_stop_calling_as_the_comment_opts_out_after_the_rating(run):
    call, answers, record = run(press("1"), press("2"), say("以后别打了"))
    assert call.played[-1] == "survey.opted_out" and "survey.thanks" not in call.played
    assert answers.opted_out and answers.rating == "基本满意" and record.outcome == "opted_out"


def test_9_as_the_comment_opts_out(run):
    _, answers, _ = run(press("1"), press("1"), press("9"))
    assert answers.opted_out


def test_a_resident_who_hangs_up_mid_way_leaves_what_they_answered(run):
    call, answers, record = run(press("1"), HangUp())
    assert answers.resolved is True and answers.rating is None and answers.reached
    assert record.outcome == "caller_hung_up" and call.played[-1] == "survey.ask_rating"


def test_a_resident_who_hangs_up_during_the_introduction_answered_nothing(run):
    call, answers, record = run(HangUp(during="survey.intro_prefix"))
    assert record.outcome == "caller_hung_up" and call.played == ["survey.intro_prefix"]
    assert answers.resolved is None and answers.rating is None


def test_hanging_up_when_invited_to_comment_is_the_normal_end(run):
    _, answers, record = run(press("1"), press("1"), HangUp())
    assert record.outcome == "completed" and answers.rating == "满意"


def test_a_comment_cut_off_by_the_hang_up_keeps_its_words(run):
    _, answers, record = run(press("1"), press("1"), say("", partials=("师傅很准时",), hang_up=True))
    assert answers.comment == "师傅很准时" and record.outcome == "completed"
