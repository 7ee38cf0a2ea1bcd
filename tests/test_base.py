"""The shared base: clock-time windows as settings read them (calling hours and desk hours)."""

from datetime import time

import pytest

from core.base import WindowError, in_windows, parse_windows
from core.settings import SettingsError, load_settings


def test_windows_accept_one_digit_hours_and_seconds_and_sort():
    assert parse_windows(["14:00-20:00", "8:30-12:00"]) == ((time(8, 30), time(12)), (time(14), time(20)))
    assert parse_windows(["00:00-23:59:59"]) == ((time(0), time(23, 59, 59)),)


@pytest.mark.parametrize("span", ["17:30-08:30", "08:30-08:30", "morning", "8-17", "25:00-26:00", "08:30-17:61", ""])
def test_unreadable_windows_are_refused_naming_the_entry(span):
    with pytest.raises(WindowError, match="HH:MM"):
        parse_windows([span])


def test_no_window_at_all_is_refused():
    with pytest.raises(WindowError):
        parse_windows([])


def test_a_window_includes_its_start_not_its_end():
    windows = parse_windows(["08:30-17:30"])
    assert in_windows(windows, time(8, 30)) and in_windows(windows, time(17, 29, 59))
    assert not in_windows(windows, time(17, 30)) and not in_windows(windows, time(8, 29))


def test_desk_hours_as_people_write_them_load_and_are_read_the_same_way(tmp_path):
    config = tmp_path / "callcenter.toml"
    config.write_text('[hotline]\ndesk_hours = ["8:30-12:00", "13:30-17:30"]\n')
    settings = load_settings(config, environ={})
    assert settings.hotline.desk_windows() == ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))


def test_no_desk_hours_means_the_desk_is_never_staffed(tmp_path):
    config = tmp_path / "callcenter.toml"
    config.write_text("[hotline]\ndesk_hours = []\n")
    assert load_settings(config, environ={}).hotline.desk_windows() == ()


@pytest.mark.parametrize("hours", ['["8:30~17:30"]', '["17:30-08:30"]', '["8:30-17:30", "lunch"]'])
def test_bad_desk_hours_fail_when_settings_load_not_when_a_caller_presses_0(tmp_path, hours):
    config = tmp_path / "callcenter.toml"
    config.write_text(f"[hotline]\ndesk_hours = {hours}\n")
    with pytest.raises(SettingsError, match="hotline.desk_hours"):
        load_settings(config, environ={})
