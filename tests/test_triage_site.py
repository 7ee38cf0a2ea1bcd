"""What a site configures about the triage: its own words, its time zone, its emergency policy."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from core.settings import Settings, SettingsError, TriageSettings, load_settings
from core.triage import EMERGENCY_KINDS, Triage, VocabularyError, load_vocabulary, triage
from tests.triage_cases import NOW

SITE_WORDS = """
# 阳光花园: the words our residents use
[category.appliance]
decisive = "足浴盆 净水机"
[category.public_facility]
decisive = ["充电桩", "快递柜"]
[places]
public_areas = "北区会所"
[subjects]
dangerous_falls = "招牌"
[emergency]
flooding = "发大水"
[summary]
fillers = "我跟你讲"
"""


def site(tmp_path, text=SITE_WORDS, **config) -> Settings:
    words = tmp_path / "words.toml"
    words.write_text(text, encoding="utf-8")
    return replace(Settings(), triage=TriageSettings(words_file=str(words), **config))


def test_a_site_file_adds_words_to_every_kind_of_list(tmp_path):
    settings = site(tmp_path)
    assert triage("足浴盆不出水了", NOW).category == "plumbing"  # without the site's words: the 不出水 of a tap
    assert triage("足浴盆不出水了", NOW, settings).category == "appliance"
    assert triage("快递柜打不开", NOW, settings).category == "public_facility"
    assert triage("北区会所的灯坏了", NOW, settings).address.area == "北区会所"
    flood = triage("我跟你讲，卫生间发大水了", NOW, settings)
    assert [w.kind for w in flood.emergency_words] == ["flooding"] and flood.summary == "卫生间发大水了"
    assert triage("门口的招牌要掉下来了", NOW, settings).is_emergency
    assert not triage("卫生间发大水了", NOW).is_emergency  # the packaged words alone do not know it


def test_the_site_words_are_added_not_replacing_the_packaged_ones(tmp_path):
    packaged, with_site = load_vocabulary(), load_vocabulary(site(tmp_path).triage.words_file)
    for key, words in packaged.lists.items():
        assert with_site.lists[key][:len(words)] == words
    assert with_site.words("category.appliance", "decisive")[-2:] == ("足浴盆", "净水机")


@pytest.mark.parametrize("text, message", [
    ("[subjects]\ndangerous_fall = '招牌'\n", r"unknown word list .*\[subjects\] dangerous_fall"),
    ("[category.lifts]\ndecisive = '扶梯'\n", r"unknown category \[category.lifts\]"),
    ("[category.elevator]\nheavy = '扶梯'\n", r"\[category.elevator\] heavy"),
    ("[emergency]\nmeteor = '陨石'\n", r"\[emergency\] meteor"),
    ("[emergency]\nflooding = 3\n", "must be a string of words or an array of strings"),
    ("subjects = 'x'\n", "must be a table"),
    ("[subjects\n", "invalid TOML"),
])
def test_a_bad_site_file_is_refused_with_the_file_and_the_list(tmp_path, text, message):
    settings = site(tmp_path, text)
    with pytest.raises(VocabularyError, match=message) as raised:
        Triage.for_settings(settings)
    assert settings.triage.words_file in str(raised.value)
    assert isinstance(raised.value, SettingsError)  # so the command line prints it as a configuration error


def test_the_settings_name_a_missing_word_file_when_they_load(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(f'[triage]\nwords_file = "{tmp_path / "nope.toml"}"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="nope.toml"):
        load_settings(config, environ={})
    defaults = load_settings(environ={}).triage
    assert defaults == TriageSettings(words_file="", lift_fault_is_emergency=True)
    from_env = load_settings(environ={"CALLCENTER_TRIAGE_LIFT_FAULT_IS_EMERGENCY": "false"})
    assert from_env.triage.lift_fault_is_emergency is False


@pytest.mark.parametrize("zone, start", [
    # 15:30 UTC is 23:30 in Shanghai (tomorrow is the 13th) but already 00:30 on the 13th in Tokyo.
    ("Asia/Shanghai", "2024-06-13T09:00:00+08:00"),
    ("Asia/Tokyo", "2024-06-14T09:00:00+09:00"),
    ("Europe/Berlin", "2024-06-13T09:00:00+02:00"),
])
def test_appointments_are_read_in_the_site_time_zone(zone, start):
    settings = replace(Settings(), timezone=zone)
    appointment = triage("明天上午来修空调", datetime(2024, 6, 12, 15, 30, tzinfo=UTC), settings).appointment
    assert appointment.start.isoformat() == start


def test_the_default_triage_is_the_default_site():
    assert Triage.default() is Triage.for_settings(Settings())
    assert str(Triage.default().zone) == "Asia/Shanghai"
    assert set(EMERGENCY_KINDS) >= {"burst_pipe", "gas_leak", "lift_trapped"}


def test_the_command_line_reads_with_the_site_words(tmp_path):
    settings = site(tmp_path)
    config = tmp_path / "site.toml"
    config.write_text(f'timezone = "Asia/Tokyo"\n[triage]\nwords_file = "{settings.triage.words_file}"\n',
                      encoding="utf-8")
    env = os.environ | {"CALLCENTER_CONFIG": str(config), "CALLCENTER_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "callcenter.cli", "triage", "--now", "2024-06-12T15:30+00:00", "--json",
               "足浴盆坏了，明天上午来"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    draft = json.loads(result.stdout)
    assert draft["category"] == "appliance" and draft["appointment"]["start"] == "2024-06-14T09:00:00+09:00"

    (tmp_path / "words.toml").write_text("[subjects]\npipe = '管'\n", encoding="utf-8")
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1 and "[subjects] pipe" in refused.stderr and not refused.stdout
