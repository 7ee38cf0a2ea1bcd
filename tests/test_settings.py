"""Configuration: embedded defaults, a TOML file, and an environment variable for every key."""

from datetime import date, time
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


def test_embedded_defaults_need_no_file(tmp_path):
    settings = load_settings(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert (settings.web.host, settings.web.port, settings.timezone) == ("127.0.0.1", 8080, "Asia/Shanghai")
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("callcenter.db")
    assert settings.sla.emergency_arrival_minutes == 30 and settings.sla.daily_report_time == "17:00"


def test_file_then_environment(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('data_dir = "/srv/cc"\nproperty_name = "阳光花园物业"\n[web]\nport = 9000\n'
                      '[sla]\nemergency_arrival_minutes = 15\n', encoding="utf-8")
    settings = load_settings(config, environ={"CALLCENTER_WEB_PORT": "9100",
                                              "CALLCENTER_DATABASE_URL": "postgresql://u@db/cc",
                                              "CALLCENTER_SLA_NOTIFY_MINUTES": "5",
                                              "CALLCENTER_WEB_COOKIE_SECURE": "true"})
    assert settings.data_dir == Path("/srv/cc") and settings.property_name == "阳光花园物业"
    assert settings.web.port == 9100 and settings.web.cookie_secure is True
    assert settings.sla.emergency_arrival_minutes == 15 and settings.sla.notify_minutes == 5
    assert settings.database_url == "postgresql://u@db/cc"


def test_config_file_from_the_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[web]\nport = 8123\n")
    assert load_settings(environ={"CALLCENTER_CONFIG": str(config)}).web.port == 8123


@pytest.mark.parametrize(("text", "environ", "message"), [
    ("[web]\nprot = 1\n", {}, "unknown setting: web.prot"),
    ("web = 3\n", {}, "must be a table"),
    ("[web]\nport = 'x'\n", {}, "web.port"),
    ("[web\n", {}, "invalid TOML"),
    ("", {"CALLCENTER_WEB_PORT": "eighty"}, "CALLCENTER_WEB_PORT"),
    ("", {"CALLCENTER_WEB_COOKIE_SECURE": "maybe"}, "CALLCENTER_WEB_COOKIE_SECURE"),
])
def test_bad_configuration_names_the_key(tmp_path, text, environ, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, environ=environ)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_lines_are_tables_whose_passwords_come_from_the_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[lines]]\nname = "hotline"\nmode = "trunk"\nlisten = "127.0.0.1:5070"\nallow = ["127.0.0.1"]\n'
                      '[[lines]]\nname = "out"\nmode = "register"\nserver = "127.0.0.1:5060"\nuser = "8001"\n')
    settings = load_settings(config, environ={"CALLCENTER_LINES_OUT_PASSWORD": "s3cret"})
    hotline, out = settings.lines
    assert hotline["allow"] == ["127.0.0.1"] and "password" not in hotline
    assert out["password"] == "s3cret" and out["user"] == "8001"
    assert load_settings(environ={}).lines == ()


@pytest.mark.parametrize("text", ['lines = "x"\n', '[[lines]]\nmode = "trunk"\n',
                                  '[[lines]]\nname = "a"\n[[lines]]\nname = "a"\n'])
def test_bad_lines_are_refused(tmp_path, text):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(config, environ={})


def test_follow_up_recordings_and_scheduler_settings(tmp_path):
    defaults = load_settings(environ={})
    assert defaults.followup.windows() == ((time(9), time(12)), (time(14), time(20)))
    assert (defaults.followup.delay_hours, defaults.followup.emergency_delay_hours) == (24, 4)
    assert (defaults.followup.max_attempts, defaults.followup.retry_minutes, defaults.followup.rest_days) == (3, 120, ())
    assert defaults.recordings.keep_days == 30 and defaults.scheduler.owner is True
    config = tmp_path / "c.toml"
    config.write_text('[followup]\nline = "pbx"\nrest_days = ["7", "2026-10-01"]\n[recordings]\nkeep_days = 90\n')
    settings = load_settings(config, environ={"CALLCENTER_FOLLOWUP_CALLING_HOURS": "09:30-11:30,15:00-19:00",
                                              "CALLCENTER_FOLLOWUP_DELAY_HOURS": "48",
                                              "CALLCENTER_SCHEDULER_OWNER": "false"})
    assert settings.followup.line == "pbx" and settings.followup.delay_hours == 48
    assert settings.followup.windows() == ((time(9, 30), time(11, 30)), (time(15), time(19)))
    assert settings.followup.rest_weekdays() == {7} and settings.followup.rest_dates() == {date(2026, 10, 1)}
    assert settings.recordings.keep_days == 90 and settings.scheduler.owner is False


@pytest.mark.parametrize(("environ", "message"), [
    ({"CALLCENTER_FOLLOWUP_CALLING_HOURS": "20:00-09:00"}, "followup.calling_hours"),
    ({"CALLCENTER_FOLLOWUP_CALLING_HOURS": "morning"}, "followup.calling_hours"),
    ({"CALLCENTER_FOLLOWUP_REST_DAYS": "8"}, "followup.rest_days"),
    ({"CALLCENTER_FOLLOWUP_REST_DAYS": "1-7"}, "followup.rest_days"),
    ({"CALLCENTER_FOLLOWUP_REST_DAYS": "1,2,3,4,5,6,7"}, "would never call anyone"),
    ({"CALLCENTER_FOLLOWUP_MAX_ATTEMPTS": "0"}, "followup.max_attempts"),
    ({"CALLCENTER_RECORDINGS_KEEP_DAYS": "0"}, "recordings.keep_days"),
])
def test_bad_follow_up_settings_name_the_key(environ, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=environ)


def test_desk_hours_are_read_like_calling_hours_when_settings_load(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[hotline]\ndesk_hours = ["8:30-12:00", "13:30-17:30"]\n')
    assert load_settings(config).hotline.desk_windows() == ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))
    assert load_settings(environ={"CALLCENTER_HOTLINE_DESK_HOURS": ""}).hotline.desk_windows() == ()  # never staffed


@pytest.mark.parametrize("hours", ["8:30", "17:30-08:30", "9-17", "08:30-24:00"])
def test_bad_desk_hours_stop_the_start_not_a_call(hours):
    with pytest.raises(SettingsError, match="hotline.desk_hours"):
        load_settings(environ={"CALLCENTER_HOTLINE_DESK_HOURS": hours})
