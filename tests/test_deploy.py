"""The systemd units in deploy/ (issue 16): systemd's own checker accepts them, they confine the
service as the README says, and the README's install guide names the same paths."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/callcenter/venv/bin/callcenter"


def directives(unit: Path) -> dict[str, list[str]]:
    """KEY -> every value it is given (a unit may repeat a key)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def units_here(tmp_path) -> Path:
    """The units with the program's path pointed at this machine's ``callcenter`` (systemd-analyze
    checks that ExecStart exists); nothing else changed."""
    program = Path(sys.executable).with_name("callcenter")
    if not program.exists():
        pytest.skip(f"no callcenter console script beside {sys.executable} (install the project)")
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text(encoding="utf-8").replace(INSTALLED, str(program)),
                                          encoding="utf-8")
    return tmp_path


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    return tool


def test_systemd_accepts_the_units(units_here):
    tool = systemd_analyze()
    names = sorted(unit.name for unit in UNITS.iterdir())
    assert names == ["callcenter-backup.service", "callcenter-backup.timer", "callcenter.service"]
    checked = subprocess.run([tool, "verify", *names], cwd=units_here, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr


def test_the_service_is_confined(units_here):
    tool = systemd_analyze()
    service = directives(UNITS / "callcenter.service")
    assert service["User"] == ["callcenter"] and service["ExecStart"] == [f"{INSTALLED} serve"]
    assert service["Restart"] == ["on-failure"] and service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"] and service["StateDirectory"] == ["callcenter"]
    assert service["EnvironmentFile"] == ["/etc/callcenter/secrets.env"]
    assert "CALLCENTER_DATA_DIR=/var/lib/callcenter" in service["Environment"]  # the one writable place
    assert service["CapabilityBoundingSet"] == [""]
    report = subprocess.run([tool, "security", "--offline=true", "callcenter.service"], cwd=units_here,
                            capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for callcenter.service: ([\d.]+)", report.stdout)
    assert score, report.stdout[-2000:] + report.stderr
    print(f"systemd-analyze security: exposure {score.group(1)} (0 = confined, 10 = exposed)")
    assert float(score.group(1)) <= 2.0


def test_the_install_guide_names_the_units_paths():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    guide = readme.split("## Install on a server", 1)[1].split("\n## ", 1)[0]
    for path in ("/opt/callcenter/venv", "/opt/callcenter/src", "/etc/callcenter/site.toml",
                 "/etc/callcenter/secrets.env", "/var/lib/callcenter", "/var/backups/callcenter",
                 "deploy/systemd/callcenter.service", "deploy/callcenter-admin", "cookie_secure = true"):
        assert path in guide, path
    admin = (ROOT / "deploy" / "callcenter-admin").read_text(encoding="utf-8")
    assert INSTALLED in admin and "/etc/callcenter/secrets.env" in admin and "setpriv --reuid=callcenter" in admin
