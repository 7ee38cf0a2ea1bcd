"""Several hotline nodes for the cluster tests and bench/cluster.py, all on this machine: real
``callcenter serve`` processes on one database, Kamailio's dispatcher (as ``callcenter
kamailio-config`` writes it) in front, and each node's console reached over HTTP like a browser.

Addresses: the dispatcher listens on 127.0.0.2 (so that the nodes, which take calls from it only,
refuse a caller on 127.0.0.1 who calls them directly); the nodes and callers use 127.0.0.1.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port
from tests.support.sip import LOOPBACK, _Output, free_udp_ports, require

ROOT = Path(__file__).resolve().parents[2]
DISPATCHER_IP = "127.0.0.2"
STAFF = ("desk", "correct horse battery")  # a front-desk account the tests add to the database


class Console:
    """A logged-in staff member's browser on one node, as far as the JSON API goes."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Origin": self.base}  # as the console's own pages send it (non-GET requests need it)
        if data:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def login(self, username: str = STAFF[0], password: str = STAFF[1]) -> Console:
        status, body = self.request("POST", "/api/login", {"username": username, "password": password})
        assert status == 200, f"login on {self.base}: {status} {body[:200]!r}"
        return self

    def stream(self) -> LiveStream:
        return LiveStream(self)


class LiveStream:
    """/api/stream read on a thread: every message with the time it arrived."""

    def __init__(self, console: Console):
        self.messages: queue.Queue[tuple[float, dict]] = queue.Queue()
        request = urllib.request.Request(console.base + "/api/stream")
        self.response = console.opener.open(request, timeout=300)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    self.messages.put((time.monotonic(), json.loads(line[5:])))
        except (OSError, ValueError):
            pass

    def ticket_ids(self) -> set[int]:
        """Every ticket id announced so far (drains what arrived)."""
        seen: set[int] = set()
        while True:
            try:
                _, message = self.messages.get_nowait()
            except queue.Empty:
                return seen
            seen |= set(message.get("ids") or [])

    def close(self) -> None:
        self.response.close()


@dataclass
class Node:
    """One ``callcenter serve`` process: its hotline trunk line takes calls from the dispatcher only."""

    name: str
    workdir: Path
    database_url: str
    data_dir: Path
    sip_port: int = field(default_factory=free_udp_ports)
    web_port: int = field(default_factory=free_port)
    cluster: dict = field(default_factory=dict)
    allow: str = DISPATCHER_IP
    max_calls: int = 20
    extra_config: str = ""
    process: subprocess.Popen | None = None
    _staff: Console | None = None  # logged in to read /api/health's details

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def config(self) -> Path:
        rtp = free_udp_ports(2 * self.max_calls + 20)
        cluster = "\n".join(f"{key} = {value}" for key, value in self.cluster.items())
        path = self.workdir / f"{self.name}.toml"
        path.write_text(f"""data_dir = "{self.data_dir}"
node_name = "{self.name}"
[database]
url = "{self.database_url}"
[web]
port = {self.web_port}
[cluster]
{cluster}
{self.extra_config}
[[lines]]
name = "hotline"
mode = "trunk"
listen = "{self.address}"
allow = ["{self.allow}"]
rtp_ports = [{rtp}, {rtp + 2 * self.max_calls + 19}]
max_calls = {self.max_calls}
""", encoding="utf-8")
        return path

    def start(self, command: list[str] | None = None) -> Node:
        """Start the process (``command`` instead of ``python -m callcenter.cli`` for the bench)."""
        environment = {key: value for key, value in os.environ.items() if not key.startswith("CALLCENTER_")}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([*(command or [sys.executable, "-m", "callcenter.cli"]), "--config",
                                         str(self.config()), "serve"], env=environment, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        log.close()
        return self

    def status(self) -> str | None:
        """/api/health's status as anyone sees it ("ok": the database answers and the line listens)."""
        try:
            with urllib.request.urlopen(self.base + "/api/health", timeout=2) as response:
                return json.loads(response.read())["status"]
        except urllib.error.HTTPError as error:
            return json.loads(error.read()).get("status")
        except (OSError, ValueError, KeyError):
            return None

    def health(self) -> dict | None:
        """/api/health as staff see it (the details: lines, scheduler, node); None while it does not answer."""
        try:
            if self._staff is None:
                self._staff = self.console()
            status, body = self._staff.request("GET", "/api/health", timeout=2)
            return json.loads(body) if status in (200, 503) else None
        except (OSError, ValueError, AssertionError):
            self._staff = None  # restarted or gone: log in again next time
            return None

    def wait_ready(self, timeout: float = 60.0) -> Node:
        """Until the console answers and the line listens; fails with the node's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"node {self.name} exited ({self.process.returncode}):\n{self.log()}"
            if self.status() == "ok":  # "degraded" while the line is not listening
                return self
            time.sleep(0.2)
        raise AssertionError(f"node {self.name} not ready after {timeout} s:\n{self.log()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def console(self) -> Console:
        return Console(self.base).login()

    def kill(self) -> None:
        """SIGKILL: the machine dies; nothing is cleaned up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""


def sip_options_answered(host: str, port: int, timeout: float) -> bool:
    """An OPTIONS keep-alive from 127.0.0.1 gets 200 within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        while time.monotonic() < deadline:
            probe = "\r\n".join([
                f"OPTIONS sip:{host}:{port} SIP/2.0",
                f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bKprobe{random.getrandbits(32)}",
                f"From: <sip:probe@{LOOPBACK}>;tag=p", f"To: <sip:{host}:{port}>",
                f"Call-ID: probe{random.getrandbits(32)}", "CSeq: 1 OPTIONS", "Max-Forwards: 5",
                "Content-Length: 0", "", ""])
            sock.sendto(probe.encode(), (host, port))
            try:
                if sock.recv(4096).startswith(b"SIP/2.0 200"):
                    return True
            except OSError:
                pass
    return False


class Dispatcher:
    """Kamailio with the configuration ``callcenter kamailio-config`` writes, in the foreground."""

    def __init__(self, workdir: Path, nodes: list[Node], allow: str = LOOPBACK, algorithm: str = "least-loaded",
                 probe_seconds: int = 1):
        require("kamailio")
        self.workdir, self.nodes = workdir / "dispatcher", nodes
        self.port = free_udp_ports()
        self.allow, self.algorithm, self.probe_seconds = allow, algorithm, probe_seconds
        self.process: subprocess.Popen | None = None
        self.output: _Output | None = None

    @property
    def address(self) -> str:
        return f"{DISPATCHER_IP}:{self.port}"

    def write_config(self) -> Path:
        command = [sys.executable, "-m", "callcenter.cli", "kamailio-config", "--listen", self.address,
                   "--allow", self.allow, "--algorithm", self.algorithm, "--probe-seconds", str(self.probe_seconds),
                   "--out", str(self.workdir)]
        for node in self.nodes:
            command += ["--node", node.address]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={
            **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        assert done.returncode == 0, done.stderr
        return self.workdir / "kamailio.cfg"

    def start(self) -> Dispatcher:
        config = self.write_config()
        rundir = self.workdir / "run"
        rundir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(["kamailio", "-f", str(config), "-Y", str(rundir), "-w", str(rundir),
                                         "-DD", "-E", "-m", "32", "-M", "4"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.output = _Output(self.process)
        if not sip_options_answered(DISPATCHER_IP, self.port, timeout=10):
            self.stop()
            raise RuntimeError(f"kamailio did not start:\n{self.output.text()[-3000:]}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
