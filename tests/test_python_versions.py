"""The Python versions people have (issue 16): Debian 12 ships 3.11 (CI runs everything on it);
Debian 13 and current Ubuntu ship 3.13, which removed ``audioop`` (pyVoIP, which the project no
longer uses, imported it). For each newer interpreter found on this machine, a virtual
environment gets the project installed by pip as an administrator would (dependencies resolved from
pyproject.toml's markers), and its ``callcenter serve`` answers a real SIP call (SIPp on 127.0.0.1)
that leaves a draft ticket. ``requires-python`` says what these tests cover.

The environments are kept in build/test-venvs/ (about 110 MB each), one per interpreter and
pyproject.toml, so a run after the first costs one call, about 12 s, per version; building one takes
about 35 s more on 2 cores with pip's cache warm. No such interpreter: skipped, saying so.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from tests.support.e2e import time_limit  # noqa: F401 (fixture)
from tests.support.hotline_caller import CallerScript
from tests.support.serve import RESIDENT, ServeProcess
from tests.support.sip import sipp  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "build" / "test-venvs"
VERSIONS = ("3.12", "3.13")
TEST_TIME_LIMIT = 420  # a first build of the environment included


def find_python(version: str) -> str | None:
    """python3.X on PATH, or a pyenv installation of it; None if this machine has none that runs."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    for candidate in filter(None, candidates):
        found = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
    return None


def environment_for(python: str, version: str) -> Path:
    """A virtual environment of that Python with the project installed (kept between runs)."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = VENVS / f"py{version}-{key}"
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    for old in VENVS.glob(f"py{version}-*"):  # made for an earlier pyproject.toml
        shutil.rmtree(old, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, f"pip install on Python {version} failed:\n{install.stdout}\n{install.stderr}"
    stamp.touch()
    return venv


def test_requires_python_names_what_is_tested():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.11,<3.14"  # 3.11 in CI, 3.12 and 3.13 below
    assert not any(dependency.lower().startswith(("pyvoip", "audioop")) for dependency in project["dependencies"])


@pytest.mark.parametrize("version", VERSIONS)
def test_a_newer_python_installs_the_project_and_answers_a_call(version, tmp_path, sipp):
    python = find_python(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine (CI's Debian 12 has 3.11 only)")
    venv = environment_for(python, version)
    interpreter = str(venv / "bin" / "python")
    # Nothing the service loads needs audioop, which 3.13 removed from the standard library.
    loaded = subprocess.run([interpreter, "-c", "import sys, callcenter.app, callcenter.cli; print(sorted(sys.modules))"],
                            capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "'audioop'" not in loaded and "'pyVoIP'" not in loaded

    # This checkout, installed as pip installs it (the package, its prompts, its migrations), run from
    # elsewhere with none of the checkout on the path: what an administrator's server runs.
    install = subprocess.run([interpreter, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    environ = {"PYTHONPATH": ""}
    site = ServeProcess(tmp_path, command=[str(venv / "bin" / "callcenter")], environ=environ)
    site.add_resident()
    site.start()
    try:
        caller = CallerScript()
        caller.keys(1.0, "1")  # 报修
        caller.keys(2.2, "1101#")  # 「为核实身份，请输入或说出您的房号」: the directory's room
        run = sipp.start("hotline_caller_hangs_up", site.sip_address, timeout=40,
                         params={"pcap": caller.write_pcap(tmp_path / "caller.pcap", 10), "caller": RESIDENT["phone"],
                                 "hold_ms": 8000, "bye_timeout_ms": 40000})
        assert run.wait(40) == 0, run.report()
        assert site.output.wait_for(r"ended \(caller_hung_up\)", 20), site.output.text()[-3000:]
    finally:
        output = "\n".join(site.stop())
    assert "Traceback" not in output, output[-3000:]
    engine = create_engine(site.database)
    with engine.connect() as connection:
        from core.store import CallRecord, Ticket

        ticket = connection.execute(select(Ticket.status, Ticket.building, Ticket.unit, Ticket.room)).one()
        record = connection.execute(select(CallRecord.outcome, CallRecord.recording_path)).one()
    engine.dispose()
    assert tuple(ticket) == ("draft", "3", "2", "1101")
    assert record.outcome == "caller_hung_up" and (site.data_dir / "recordings" / record.recording_path).stat().st_size
