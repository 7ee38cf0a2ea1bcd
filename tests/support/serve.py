"""``callcenter serve`` as an administrator runs it: a site.toml, the environment, its own process
(any Python: the test's, or a virtual environment of another version), and everything it writes
to standard output and standard error kept, line by line.

The site has one hotline trunk line on 127.0.0.1 that accepts calls from 127.0.0.1, SQLite in the
data directory, and the web console on a free port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import free_port
from tests.support.sip import LOOPBACK, _Output, free_udp_ports

RESIDENT = dict(phone="13800138000", name="王阿姨", building="3", unit="2", room="1101")


class ServeProcess:
    def __init__(self, tmp_path: Path, command: list[str] | None = None, environ: dict[str, str] | None = None,
                 extra_config: str = ""):
        # ``callcenter`` as a command: this Python's module by default, or an installed console script.
        self.command = command or [sys.executable, "-m", "callcenter.cli"]
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "site-data"
        self.web_port, self.sip_port, rtp = free_port(), free_udp_ports(), free_udp_ports(20)
        self.config = tmp_path / "site.toml"
        self.config.write_text(f"""data_dir = "{self.data_dir}"
{extra_config}
[web]
port = {self.web_port}

[[lines]]
name = "hotline"
mode = "trunk"
listen = "{LOOPBACK}:{self.sip_port}"
allow = ["{LOOPBACK}"]
rtp_ports = [{rtp}, {rtp + 19}]
""", encoding="utf-8")
        # Only what the site says: none of the test runner's own CALLCENTER_ variables.
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")} | (environ or {})
        self.process: subprocess.Popen | None = None
        self.output: _Output | None = None

    @property
    def sip_address(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    @property
    def database(self) -> str:
        return f"sqlite:///{self.data_dir / 'callcenter.db'}"

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Another ``callcenter`` command on the same site."""
        done = subprocess.run([*self.command, "--config", str(self.config), *args], cwd=self.tmp_path,
                              env=self.environ, input=stdin, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"callcenter {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def add_resident(self) -> None:
        csv = self.tmp_path / "residents.csv"
        csv.write_text("phone,name,building,unit,room\n" + ",".join(RESIDENT.values()) + "\n", encoding="utf-8")
        self.cli("residents", "import", str(csv))

    def start(self, ready: str = r"line hotline \(trunk\) on \S+: listening", timeout: float = 90.0) -> ServeProcess:
        self.process = subprocess.Popen([*self.command, "--config", str(self.config), "serve"],
                                        cwd=self.tmp_path, env=self.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.output = _Output(self.process)
        if not self.output.wait_for(ready, timeout):
            self.stop()
            raise AssertionError(f"serve did not get ready ({ready}) in {timeout} s:\n{self.output.text()[-4000:]}")
        return self

    def stop(self) -> list[str]:
        """SIGTERM, as systemd stops it; every line it wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.output._thread.join(5)
        return list(self.output.lines)
