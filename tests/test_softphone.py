"""The README's softphone walk-through, done with baresip 1.0 as Debian ships it (issue 16).

baresip starts once to write its default configuration, then gets exactly the README's two
changes (the account line, ``sip_listen``), dials the hotline of a real ``callcenter serve`` and
follows the walk-through without the speech model: 1, the address by keypad, a spoken
description ended with #, 1 to confirm. What the desk sees is read from the database; what the
caller heard is baresip's own decoded audio (its ``sndfile`` module), compared with the prompts.

The only changes not in the README are the machine's: no sound card here, so baresip's audio comes
from a file (``aufile``: silence, then espeak-ng's voice when the caller describes the problem) and
goes nowhere (ALSA's null device); and free ports instead of 5060/5070. All on 127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import wave
from array import array
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from callcenter.ivr.media import PCMU
from callcenter.ivr.prompts import Prompts
from core.store import CallRecord, Ticket
from tests.support.e2e import time_limit  # noqa: F401 (fixture)
from tests.support.hotline_caller import read_recording
from tests.support.serve import ServeProcess
from tests.support.sip import REQUIRE_SIP, _Output, free_udp_ports, speech_wav

TEST_TIME_LIMIT = 150
ROOT = Path(__file__).resolve().parent.parent
DESCRIPTION = "厨房的水龙头一直滴水"


def readme_walkthrough() -> dict[str, str]:
    """The lines the README tells a baresip user to add, and the trunk line it calls."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = readme[readme.index("**Try it with a softphone**"):readme.index("### Logs and alerts")]
    return {"account": re.search(r"^<sip:[^>]+>;regint=0$", text, re.M).group(0),
            "sip_listen": re.search(r"^sip_listen\s+127\.0\.0\.1:5060$", text, re.M).group(0),
            "dial": re.search(r"`(/dial sip:hotline@127\.0\.0\.1:5070)`", text).group(1)}


def share_recorded(recording: bytes, pcm: bytes) -> float:
    """How much of the phone's ``pcm`` is in our ``recording`` (which keeps the RTP timeline, so it
    stays aligned): aligned on its loudest sample, the share of samples within one μ-law step (the
    phone's G.711 encoder may round quiet samples apart from ours)."""
    sent, got = array("h", PCMU.decode(PCMU.encode(pcm))), array("h", recording)
    peak = max(range(len(sent)), key=lambda i: abs(sent[i]))
    best = 0.0
    for at in (i for i, sample in enumerate(got) if sample == sent[peak]):
        offset = at - peak
        if 0 <= offset and offset + len(sent) <= len(got):
            close = sum(1 for i, sample in enumerate(sent) if abs(got[offset + i] - sample) <= 8)
            best = max(best, close / len(sent))
    return best


def share_heard(heard: bytes, pcm: bytes, frame: int = 160) -> float:
    """How much of our ``pcm`` the phone ``heard``: the share of its 20 ms frames (those with sound in
    them) found there bit for bit as G.711 carries them (we encode, the phone decodes). Frame by
    frame, because a phone's jitter buffer drops or repeats a frame now and then (CI, loaded), which
    shifts everything after it."""
    sent, got = PCMU.encode(pcm), PCMU.encode(heard)  # two decoders may differ within one μ-law step
    frames = [sent[at:at + frame] for at in range(0, len(sent) - frame + 1, frame)]
    sounding = [f for f in frames if len(set(f)) > 8]
    return sum(1 for f in sounding if f in got) / len(sounding)


class Baresip:
    """baresip with a configuration directory of its own, typed at through standard input."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.output: _Output | None = None

    def first_start(self) -> None:
        """What a new user's first ``baresip`` does: write the default config and accounts files."""
        subprocess.run(["baresip", "-f", str(self.directory), "-t", "1"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
        assert (self.directory / "config").exists() and (self.directory / "accounts").exists()

    def start(self) -> None:
        self.process = subprocess.Popen(["baresip", "-f", str(self.directory)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.output = _Output(self.process)
        assert self.output.wait_for("baresip is ready", 15), self.output.text()

    def type(self, keys: str) -> None:
        self.process.stdin.write(keys)
        self.process.stdin.flush()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.type("q")
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.output.text()


def configure(baresip: Baresip, walkthrough: dict[str, str], port: int, silence: Path, dumps: Path) -> None:
    """The README's two changes (with a free port), then this machine's audio (none)."""
    (baresip.directory / "accounts").write_text(
        (baresip.directory / "accounts").read_text() + walkthrough["account"] + "\n")
    config = (baresip.directory / "config").read_text()
    config, replaced = re.subn(r"^#sip_listen\s.*$", walkthrough["sip_listen"].replace(":5060", f":{port}"),
                               config, flags=re.M)
    assert replaced == 1, "baresip's default config has no '#sip_listen' line to replace"
    config = re.sub(r"^audio_(player|alert)\s.*$", r"audio_\1\t\talsa,null", config, flags=re.M)
    config = re.sub(r"^audio_source\s.*$", f"audio_source\t\taufile,{silence}", config, flags=re.M)
    config += f"\nmodule\t\t\taufile.so\nmodule\t\t\tsndfile.so\nsnd_path\t\t{dumps}\n"
    (baresip.directory / "config").write_text(config)


def test_the_readme_walkthrough_with_baresip(tmp_path):
    if shutil.which("baresip") is None:
        reason = "baresip not installed (Debian package baresip)"
        pytest.fail(f"CALLCENTER_REQUIRE_SIP=1 but {reason}") if REQUIRE_SIP else pytest.skip(reason)
    walkthrough = readme_walkthrough()
    prompts = Prompts()
    silence = tmp_path / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", "120"], check=True)
    spoken = speech_wav(DESCRIPTION, tmp_path / "spoken.wav")
    speech = tmp_path / "description.wav"  # the words, then quiet while the caller reaches for #
    subprocess.run(["sox", str(spoken), str(silence), str(speech), "trim", "0", "60"], check=True)
    with wave.open(str(spoken)) as words:
        voice = words.readframes(words.getnframes())

    site = ServeProcess(tmp_path)  # the README's trunk line: name hotline, trunk, allow 127.0.0.1
    site.start()
    phone = Baresip(tmp_path / "baresip")
    phone.directory.mkdir()
    dumps = tmp_path / "heard"
    dumps.mkdir()
    try:
        phone.first_start()
        configure(phone, walkthrough, free_udp_ports(), silence, dumps)
        phone.start()
        phone.type(walkthrough["dial"].replace("127.0.0.1:5070", site.sip_address) + "\n")
        assert site.output.wait_for(r"call \S+: recording to", 15), phone.output.text()[-3000:]
        log = site.output
        time.sleep(7.5)  # the greeting (6.3 s), into the menu
        phone.type("1")
        assert log.wait_for(r"keys '1'", 10)
        for keys in ("3#", "2#", "1101#"):  # 楼号, 单元号, 房号, each over its prompt
            time.sleep(1.5)
            phone.type(keys)
        time.sleep(7.0)  # 「请在提示音后描述问题，说完按井号键结束…」
        phone.type(f"/ausrc aufile,{speech}\n")
        time.sleep(len(voice) / 16000 + 1.5)
        phone.type("#")
        time.sleep(2.0)  # into 「我们记录的是：…正确请按1」
        phone.type("1")
        assert log.wait_for(r"ended \(completed\)", 60), log.text()[-3000:]
        assert phone.output.wait_for("terminated", 10)  # the hotline hung up after the goodbye
    finally:
        said = phone.stop()
        site.stop()
    assert "403 Forbidden" not in said and "ua_connect failed" not in said

    engine = create_engine(site.database)
    with engine.connect() as connection:
        ticket = connection.execute(select(Ticket)).one()
        record = connection.execute(select(CallRecord)).one()
    engine.dispose()
    assert (ticket.status, ticket.channel, ticket.building, ticket.unit, ticket.room) == ("draft", "phone", "3", "2",
                                                                                       "1101")
    assert (ticket.phone, record.caller, record.outcome) == ("13800138000", "13800138000", "completed")
    recording = read_recording(site.data_dir / "recordings" / record.recording_path)
    assert share_recorded(recording, voice) > 0.9  # the description is in the recording for the desk

    [dump] = dumps.glob("*-dec.wav")  # what the caller's phone decoded from the hotline
    with wave.open(str(dump)) as heard_file:
        heard = heard_file.readframes(heard_file.getnframes())
    assert share_heard(heard, prompts["hotline.greeting"]) > 0.9
    number = prompts.say("hotline.ticket_number_prefix") + prompts.digits(ticket.number)
    assert share_heard(heard, number) > 0.9, "the caller did not hear the ticket number"
    # The phone drops what is still in its jitter buffer when the BYE comes: the hotline waits a
    # moment after the goodbye's last packet (dialogue.GOODBYE_PAUSE), so 「再见」 is heard whole.
    assert share_heard(heard, prompts["hotline.goodbye"]) > 0.9
