"""What a resident's words mean in the follow-up call, and how a voicemail greeting is told from a
person answering; no call needed (the calls themselves: test_survey_e2e.py)."""

import pytest

from callcenter.asr.grammar import match_answer
from callcenter.ivr.flows.survey import GREETING_SECONDS, RATING_WORDS, RESOLVED_WORDS, LongestSpeech
from callcenter.ivr.media import FRAME_BYTES
from tests.support.hotline_caller import silence_pcm, voice


@pytest.mark.parametrize(("said", "rating"), [
    ("满意", "满意"), ("非常满意", "满意"), ("打五分", "满意"), ("四分吧", "满意"), ("五星", "满意"),
    ("基本满意", "基本满意"), ("还行吧", "基本满意"), ("一般", "基本满意"), ("三分", "基本满意"),
    ("不满意", "不满意"), ("不太满意", "不满意"), ("一分", "不满意"), ("两星", "不满意"),
    # the menu's own numbers said instead of keyed: 「满意请按1 … 不满意请按3」
    ("一", "满意"), ("幺", "满意"), ("二", "基本满意"), ("三", "不满意"),
    ("别再打了", "opt_out"), ("以后不要再打电话了", "opt_out"),
    ("满意也不满意", None), ("今天天气不错", None),
])
def test_what_a_rating_answer_means(said, rating):
    assert match_answer(said, RATING_WORDS) == rating


@pytest.mark.parametrize(("said", "answer"), [
    ("是的", "yes"), ("解决了，是", "yes"), ("没有", "no"), ("不是", "no"),
    ("不要再打了", "opt_out"),  # not 不要 (no): the longer phrase wins
    ("别再打了", "opt_out"),
])
def test_what_an_answer_to_was_it_fixed_means(said, answer):
    assert match_answer(said, RESOLVED_WORDS) == answer


def longest_speech(pcm: bytes) -> float:
    speech = LongestSpeech()
    for index in range(0, len(pcm), FRAME_BYTES):
        speech.feed(pcm[index:index + FRAME_BYTES])
    return speech.longest


def test_a_voicemail_greeting_is_one_long_stretch_of_speech_and_a_person_saying_hello_is_not(tmp_path):
    def say(text):
        return voice(text, tmp_path)
    greeting = say("您好") + silence_pcm(0.3) + say("您拨打的电话暂时无人接听") + silence_pcm(0.3) + say("请留言")
    assert longest_speech(greeting) >= GREETING_SECONDS
    hello_twice = say("喂，你好") + silence_pcm(2) + say("喂，听得到吗")
    assert longest_speech(hello_twice) < GREETING_SECONDS
