"""「维修人员张师傅已接单，预计二十分钟内到达」: engineers' names spoken by the real espeak-ng at import, and
the sentence without the name when espeak-ng is missing or fails."""

import logging
import shutil
import wave
from datetime import UTC, datetime, timedelta

import pytest

from callcenter.ivr import who_is_coming
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.who_is_coming import make_name_prompt, name_audio, name_prompt_path
from core.settings import SlaSettings
from core.tickets import Channel, Urgency, expected_arrival_minutes

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                  reason="espeak-ng and sox are not installed")


@needs_espeak
def test_a_name_is_spoken_into_the_lines_format_in_the_data_directory(tmp_path):
    path = make_name_prompt(tmp_path, "张师傅")
    assert path == name_prompt_path(tmp_path, "张师傅") and path.parent == tmp_path / "prompts" / "engineers"
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / 8000
    assert 0.3 < seconds < 3.0, f"three syllables should take about a second, not {seconds:.2f} s"
    pcm = name_audio(tmp_path, "张师傅")
    assert len(pcm) == round(seconds * 8000) * 2
    assert max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)) > 2000
    other = make_name_prompt(tmp_path, "李师傅")
    assert other != path and other.read_bytes() != path.read_bytes()


@needs_espeak
def test_the_sentence_carries_the_name_between_its_pieces(tmp_path):
    prompts = Prompts()
    make_name_prompt(tmp_path, "张师傅")
    name = name_audio(tmp_path, "张师傅")
    sentence = who_is_coming.who_is_coming(prompts, name, 20)
    expected = (prompts["who_is_coming.prefix"] + name + prompts["who_is_coming.accepted"]
                + prompts.say("pieces.digit_2", "pieces.num_10") + prompts["who_is_coming.minutes"])
    assert sentence == expected


def test_without_espeak_no_file_is_made_and_the_sentence_has_no_name(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with caplog.at_level(logging.WARNING, logger="callcenter.ivr"):
        assert make_name_prompt(tmp_path, "张师傅") is None
    assert "espeak-ng and sox not installed" in caplog.text or "espeak-ng not installed" in caplog.text
    assert not name_prompt_path(tmp_path, "张师傅").exists()
    assert name_audio(tmp_path, "张师傅") == b""
    prompts = Prompts()
    assert who_is_coming.who_is_coming(prompts, b"", 30) == (
        prompts["who_is_coming.prefix"] + prompts["who_is_coming.accepted"]
        + prompts.say("pieces.digit_3", "pieces.num_10") + prompts["who_is_coming.minutes"])


def test_a_failing_espeak_leaves_no_file_and_no_half_written_one(tmp_path, monkeypatch, caplog):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, script in (("espeak-ng", "#!/bin/sh\necho 'voice cmn: no such voice' >&2\nexit 1\n"),
                         ("sox", "#!/bin/sh\nexit 0\n")):
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with caplog.at_level(logging.WARNING, logger="callcenter.ivr"):
        assert make_name_prompt(tmp_path / "data", "张师傅") is None
    assert "no such voice" in caplog.text
    assert list((tmp_path / "data" / "prompts" / "engineers").iterdir()) == []
    assert name_audio(tmp_path / "data", "张师傅") == b""


def test_a_broken_name_file_falls_back_to_the_sentence_without_the_name(tmp_path):
    path = name_prompt_path(tmp_path, "张师傅")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF not really")
    assert name_audio(tmp_path, "张师傅") == b""


class Facts:
    def __init__(self, reported_at, urgency=Urgency.EMERGENCY):
        self.reported_at, self.urgency, self.channel = reported_at, urgency, Channel.PHONE
        self.area, self.appointment_start, self.is_paid, self.accepted_at = "", None, False, None


@pytest.mark.parametrize("minutes_since_report, said", [(2, 30), (10, 20), (11, 20), (26, 5), (29, 5), (45, 30)])
def test_the_minutes_said_count_down_to_the_arrival_limit_in_fives(minutes_since_report, said):
    reported = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    now = reported + timedelta(minutes=minutes_since_report)
    assert expected_arrival_minutes(Facts(reported), SlaSettings(), now) == said


@needs_espeak
async def test_adding_an_engineer_in_the_console_speaks_the_name(api, settings):
    boss = await api("boss")
    response = await boss.post("/api/engineers", json={"name": "王师傅", "phone": "13700000009", "skills": ["水电"]})
    assert response.status == 201, await response.text()
    assert len(name_audio(settings.data_dir, "王师傅")) > 8000  # more than half a second of speech


async def test_an_emergency_taken_on_the_console_tells_the_caller_and_a_normal_one_does_not(
        settings, sessions, clock, people, aiohttp_client):
    from callcenter.web.api_tickets import WHO_IS_COMING
    from callcenter.web.app import create_app
    from tests.conftest import STAFF_PASSWORD, console_client

    app = create_app(settings, sessions, clock)
    told: list[int] = []
    app[WHO_IS_COMING] = told.append  # what callcenter.app wires to the call-out runner
    client = await console_client(aiohttp_client, app)
    assert (await client.post("/api/login", json={"username": "desk", "password": STAFF_PASSWORD})).status == 200
    ids = []
    for urgency in ("emergency", "normal"):
        ticket = await (await client.post("/api/tickets", json={
            "description": "厨房水管爆了", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101",
            "urgency": urgency})).json()
        url = f"/api/tickets/{ticket['id']}/transitions"
        assert (await client.post(url, json={"to": "dispatched", "engineer_id": people["张工"]})).status == 200
        assert (await client.post(url, json={"to": "accepted"})).status == 200
        ids.append(ticket["id"])
    assert told == [ids[0]]
