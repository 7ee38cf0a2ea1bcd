"""Disk (issue 14, item 1): the service runs with umask 077; the data directory, the database, the
recordings and the model are its user's alone; files an older version left readable by others are
fixed when ``callcenter serve`` starts, and its log says so. The real command, on a real port."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.postgres import free_port

CLI = [sys.executable, "-m", "callcenter.cli"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def login_shell_umask():
    """As a login shell leaves it (022); what this process had is put back after."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def old_install(tmp_path):
    """A data directory as an older version left it: everything readable by every local user."""
    data = tmp_path / "data"
    env = os.environ | {"CALLCENTER_DATA_DIR": str(data)}
    subprocess.run(CLI + ["db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    recording = data / "recordings" / "2026" / "11" / "23" / "call.wav"
    model = data / "models" / "vosk-model-small-cn-0.22" / "am" / "final.mdl"
    for path in (recording, model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return data, env


def test_serve_makes_an_old_data_directory_private_and_says_so(old_install):
    data, env = old_install
    port = free_port()
    server = subprocess.Popen(CLI + ["serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as response:
                    assert json.loads(response.read()) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "serve did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    everything = [data, *data.rglob("*")]
    assert {p.relative_to(data).as_posix(): oct(mode(p)) for p in everything if mode(p) & 0o077} == {}
    assert mode(data / "callcenter.db") == 0o600 and mode(data / "recordings") == 0o700
    assert mode(data / "models" / "vosk-model-small-cn-0.22" / "am" / "final.mdl") == 0o600
    assert (data / "initial-admin-password").exists()  # written by this start: private from the first byte
    assert "made" in output and "files and directories private" in output and str(data) in output


def test_what_a_command_creates_is_private_from_the_start(tmp_path):
    data = tmp_path / "fresh"
    env = os.environ | {"CALLCENTER_DATA_DIR": str(data)}
    result = subprocess.run(CLI + ["user", "add", "qian", "--role", "frontdesk"], input="long-enough-1\n", env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    created = [data, *data.rglob("*")]
    assert {p.name for p in created} >= {"fresh", "callcenter.db"}
    assert all(mode(p) & 0o077 == 0 for p in created), {p.name: oct(mode(p)) for p in created}
