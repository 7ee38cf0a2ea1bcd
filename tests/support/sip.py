"""Real SIP peers for the line tests, all on 127.0.0.1: Kamailio as registrar/proxy, SIPp as caller
or callee, espeak-ng and sox for a voice. Each peer gets free ports and a directory of its own;
nothing listens on or sends to any other address.

Missing binaries skip the tests that need them, or fail them when ``CALLCENTER_REQUIRE_SIP=1``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent
SCENARIOS = SUPPORT / "sipp"
REQUIRE_SIP = os.environ.get("CALLCENTER_REQUIRE_SIP") == "1"
LOOPBACK = "127.0.0.1"


def require(*binaries: str) -> None:
    """Skip (or fail, with CALLCENTER_REQUIRE_SIP=1) unless every binary is on PATH."""
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        reason = f"not installed: {', '.join(missing)} (Debian packages kamailio, sip-tester, espeak-ng, sox)"
        if REQUIRE_SIP:
            pytest.fail(f"CALLCENTER_REQUIRE_SIP=1 but {reason}")
        pytest.skip(reason)


def free_udp_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1 right now."""
    for _ in range(200):
        base = random.randrange(21000, 59000, 2)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports on {LOOPBACK}")


class _Output:
    """A process's merged output, collected by a thread, searchable while it runs."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for(self, pattern: str, timeout: float, times: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.lines if re.search(pattern, line)) < times:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)


class Kamailio:
    """``kamailio`` in the foreground with tests/support/kamailio.cfg, on a free loopback port, with
    its own runtime directory; ``defines`` are its -A options (see the config's header)."""

    def __init__(self, workdir: Path, *defines: str, port: int | None = None):
        require("kamailio")
        self.workdir, self.defines = workdir, defines
        self.port = port or free_udp_ports()
        self.process: subprocess.Popen | None = None
        self.output: _Output | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> Kamailio:
        rundir = self.workdir / f"kamailio-{self.port}-run"
        rundir.mkdir(parents=True, exist_ok=True)
        command = ["kamailio", "-f", str(SUPPORT / "kamailio.cfg"), "-l", f"udp:{LOOPBACK}:{self.port}",
                   "-Y", str(rundir), "-DD", "-E", "-a", "no", "-m", "32", "-M", "4", "-w", str(rundir)]
        for define in self.defines:
            command += ["-A", define]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.output = _Output(self.process)
        if not self._answers(timeout):
            self.stop()
            raise RuntimeError(f"kamailio did not answer on {self.address}:\n{self.output.text()[-3000:]}")
        return self

    def _answers(self, timeout: float) -> bool:
        """An OPTIONS keep-alive to the proxy itself gets 200 once it is up."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(0.2)
            local = sock.getsockname()[1]
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                probe = "\r\n".join([
                    f"OPTIONS sip:{self.address} SIP/2.0",
                    f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bKprobe{random.getrandbits(32)}",
                    f"From: <sip:probe@{LOOPBACK}>;tag=p", f"To: <sip:{self.address}>",
                    f"Call-ID: probe{random.getrandbits(32)}", "CSeq: 1 OPTIONS", "Max-Forwards: 5",
                    "Content-Length: 0", "", ""])
                sock.sendto(probe.encode(), (LOOPBACK, self.port))
                try:
                    if sock.recv(4096).startswith(b"SIP/2.0 200"):
                        return True
                except OSError:
                    pass
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def restart(self) -> Kamailio:
        """A PBX restart: same port, empty location table."""
        self.stop()
        return self.start()


@dataclass
class SippRun:
    process: subprocess.Popen
    workdir: Path
    output: _Output
    port: int

    def wait_ready(self, timeout: float = 5.0) -> SippRun:
        """Return once SIPp holds its SIP port (a callee is ready for our INVITE)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((LOOPBACK, self.port))
                except OSError:
                    return self
            time.sleep(0.02)
        raise AssertionError(f"sipp is not listening on {self.port}:\n{self.report()}")

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"sipp still running after {timeout} s:\n{self.report()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def messages(self) -> str:
        path = self.workdir / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def received(self, method_or_code: str) -> list[str]:
        """The messages of this type SIPp received ("ACK", "BYE", "200", ...), each as text."""
        blocks = re.split(r"-{20,}.*\n", self.messages())
        wanted = []
        for block in blocks:
            body = block.split("\n", 1)[1] if block.startswith(("UDP message received", "UDP message sent")) else ""
            if block.startswith("UDP message received") and re.match(
                    rf"(SIP/2.0 {method_or_code}\b|{method_or_code} )", body.lstrip()):
                wanted.append(body.strip())
        return wanted

    def wait_received(self, method_or_code: str, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not self.received(method_or_code) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received(method_or_code)

    def sent(self, method_or_code: str) -> list[str]:
        blocks = re.split(r"-{20,}.*\n", self.messages())
        return [block.split("\n", 1)[1].strip() for block in blocks
                if block.startswith("UDP message sent") and re.match(
                    rf"(SIP/2.0 {method_or_code}\b|{method_or_code} )", block.split("\n", 1)[1].lstrip())]

    def response_times_ms(self) -> list[float]:
        """INVITE -> 200 OK times traced by SIPp (rtd "answer" in the scenario, -trace_rtt)."""
        times = []
        for path in self.workdir.glob("*_rtt.csv"):
            for line in path.read_text().splitlines()[1:]:
                fields = line.split(";")
                if len(fields) >= 3 and fields[2].strip() == "answer":
                    times.append(float(fields[1]))
        return times

    def report(self) -> str:
        errors = "".join(path.read_text(errors="replace")[-2000:] for path in self.workdir.glob("*errors*"))
        return f"exit {self.process.returncode}\n{self.output.text()[-2000:]}\n{errors}\n{self.messages()[-4000:]}"


class Sipp:
    """SIPp runs from tests/support/sipp/*.xml, each in its own directory with its own ports."""

    def __init__(self, workdir: Path):
        require("sipp")
        self.workdir = workdir
        self._runs = 0

    def render(self, scenario: str, params: dict[str, object], directory: Path) -> Path:
        text = (SCENARIOS / f"{scenario}.xml").read_text()
        for key, value in params.items():
            text = text.replace("{{" + key + "}}", str(value))
        left = re.findall(r"\{\{(\w+)\}\}", text)
        if left:
            raise ValueError(f"scenario {scenario} needs values for {sorted(set(left))}")
        path = directory / f"{scenario}.xml"
        path.write_text(text)
        return path

    def start(self, scenario: str, target: str | None = None, *, service: str = "hotline", calls: int = 1,
              timeout: float = 30.0, port: int | None = None, params: dict[str, object] | None = None,
              variables: dict[str, str] | None = None) -> SippRun:
        """Run SIPp in the background: as a caller when ``target`` ("ip:port") is given, else as a callee
        listening on ``port``. ``variables`` become SIPp's ``[$name]`` (values SIPp would otherwise read
        as keywords, such as an IPv6 literal in brackets)."""
        self._runs += 1
        directory = self.workdir / f"sipp-{self._runs}-{scenario}"
        directory.mkdir(parents=True)
        media, port = free_udp_ports(4), port or free_udp_ports()
        defaults = {"media_ip": "[media_ip]", "media_port": "[media_port]", "codec_pt": 0, "codec_name": "PCMU",
                    "hold_ms": 1000, "quiet_ms": 1500, "ring_ms": 100, "to_tag": "engineer-phone-7",
                    "bye_timeout_ms": 20000, "extra_header": ""}
        path = self.render(scenario, {**defaults, **(params or {})}, directory)
        command = ["sipp", *([target] if target else []), "-sf", str(path), "-s", service,
                   "-i", LOOPBACK, "-p", str(port), "-bind_local",
                   "-mi", LOOPBACK, "-mp", str(media), "-ci", LOOPBACK, "-cp", str(free_udp_ports()),
                   "-m", str(calls), "-l", str(calls), "-r", "50", "-nostdin", "-nd",
                   "-timeout", f"{int(timeout)}s", "-timeout_error", "-max_retrans", "3",
                   "-trace_msg", "-message_file", str(directory / "messages.log"),
                   "-trace_err", "-error_file", str(directory / "errors.log"),
                   "-trace_rtt", "-rtt_freq", "1"]
        for name, value in (variables or {}).items():
            command += ["-set", name, value]
        process = subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        return SippRun(process, directory, _Output(process), port)

    def run(self, scenario: str, target: str | None = None, **kwargs) -> SippRun:
        """Run SIPp to the end and insist that every call succeeded."""
        run = self.start(scenario, target, **kwargs)
        code = run.wait(kwargs.get("timeout", 30.0) + 10)
        assert code == 0, f"sipp {scenario} failed:\n{run.report()}"
        return run


def speech_wav(text: str, path: Path) -> Path:
    """A Mandarin sentence from espeak-ng, as a phone line carries it: 8 kHz mono 16-bit."""
    require("espeak-ng", "sox")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "cmn", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(path)],
                   check=True, capture_output=True)
    return path


# ---------------------------------------------------------------- fixtures (import them into a test module)

@pytest.fixture
def sipp(tmp_path) -> Sipp:
    """SIPp runs in the test's directory. SIPp sends pcap audio through a raw socket: root only."""
    require("sipp")
    if os.geteuid() != 0:
        reason = "SIPp plays pcap audio through a raw socket: run the SIP tests as root"
        pytest.fail(reason) if REQUIRE_SIP else pytest.skip(reason)
    return Sipp(tmp_path)


@pytest.fixture
def kamailio(tmp_path):
    """kamailio(*defines) -> a started Kamailio on a free port; every one stopped after the test."""
    started: list[Kamailio] = []

    def start(*defines: str) -> Kamailio:
        proxy = Kamailio(tmp_path, *defines).start()
        started.append(proxy)
        return proxy
    yield start
    for proxy in started:
        proxy.stop()
