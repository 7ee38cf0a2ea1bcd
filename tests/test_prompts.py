"""Prompts: every listed prompt has its file; numbers and addresses are said from pieces."""

import shutil
from datetime import datetime

import pytest

from callcenter.ivr.prompts import AUDIO_DIR, PromptError, Prompts, number_pieces


@pytest.fixture(scope="module")
def prompts():
    return Prompts()


TEXTS = Prompts().texts


def words(pieces):
    return "".join(TEXTS[p] for p in pieces)


@pytest.mark.parametrize(("value", "spoken"), [
    (0, "零"), (3, "三"), (10, "十"), (11, "十一"), (20, "二十"), (23, "二十三"), (102, "一百零二"),
    (110, "一百一十"), (1101, "一千一百零一"), (1002, "一千零二"), (2026, "二千零二十六"),
])
def test_numbers_are_counted_in_chinese(value, spoken):
    assert words(number_pieces(value)) == spoken


def test_hours_say_liang():
    assert words(number_pieces(2, two_as_liang=True)) == "两"


def test_every_prompt_is_8khz_audio_of_its_own(prompts):
    assert len(prompts.texts) > 100
    assert all(len(prompts[p]) > 800 for p in prompts.texts)  # > 50 ms of audio each


def test_composed_speech_is_the_pieces_joined(prompts):
    assert prompts.digits("20261122007") == b"".join(prompts[f"pieces.digit_{d}"] for d in "20261122007")
    address = prompts.address("3", "2", "1101")
    assert address == prompts.say("pieces.digit_3", "pieces.building", "pieces.digit_2", "pieces.unit",
                                  "pieces.digit_1", "pieces.digit_1", "pieces.digit_0", "pieces.digit_1")
    assert prompts.address("A", area="电梯") == prompts.say("pieces.letter_A", "pieces.block", "pieces.area_elevator")
    now = datetime(2026, 11, 23, 10, 0)
    assert prompts.when(datetime(2026, 11, 23, 15, 30), now) == prompts.say(
        "pieces.today", "pieces.afternoon", "pieces.digit_3", "pieces.hour", "pieces.half")
    assert prompts.when(datetime(2026, 11, 24, 9, 0), now).startswith(prompts["pieces.tomorrow"])


def test_days_are_said_relative_to_today_or_by_date(prompts):
    now = datetime(2026, 11, 23, 10, 0)
    assert prompts.day(datetime(2026, 11, 22, 18, 0), now) == prompts["pieces.yesterday"]
    date = [*number_pieces(11), "pieces.month", *number_pieces(20), "pieces.day"]
    assert words(date) == "十一月二十日" and prompts.day(datetime(2026, 11, 20, 9, 0), now) == prompts.say(*date)


def test_a_missing_prompt_stops_the_start_and_is_named(tmp_path):
    shutil.copytree(AUDIO_DIR, tmp_path / "audio")
    (tmp_path / "audio" / "hotline.goodbye.wav").unlink()
    (tmp_path / "audio" / "pieces.digit_7.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(PromptError) as error:
        Prompts(tmp_path / "audio")
    assert "hotline.goodbye.wav" in str(error.value) and "pieces.digit_7.wav" in str(error.value)
