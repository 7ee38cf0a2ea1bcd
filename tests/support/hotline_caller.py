"""A resident on the phone to the hotline, for the end-to-end tests and bench/calls.py.

``CallerScript`` is what the resident does after the call is answered, on one clock (seconds after
SIPp's ACK): speak a sentence (espeak-ng, through G.711 like a phone line), press keys (RFC 4733),
and keep a phone line's low noise in between. It becomes ONE pcap that SIPp's ``play_pcap_audio``
replays in real time, one RTP stream (one SSRC, one sequence) from the first packet to the last, as
a phone sends it; separate pcaps would restart the sequence numbers, and the hotline rightly drops
packets that go backwards.

``SpokenScripts`` is the stand-in speech recogniser for flow tests when there is no Chinese model:
each time the caller starts speaking in a ``listen`` (frame energy, real audio from the call), it
takes the next utterance's script and replays it with times counted from that onset, so scripted
partials and finals line up with the real audio whatever the buffering in front of the recogniser.
It never reads the words in the audio: it must not stand in for a recogniser under test.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import subprocess
import threading
import wave
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.asr.stream import Event, Recognizer
from callcenter.ivr.media import CODECS, EVENT_KEYS, FRAME_BYTES, FRAME_SAMPLES, RtpPacket, rms
from tests.support.rtp_pcap import EVENT_PAYLOAD_TYPE, pcap_bytes
from tests.support.scripted_recognizer import ScriptedRecognizer, ScriptLine
from tests.support.sip import require

FRAME_SECONDS = FRAME_SAMPLES / 8000
LOUD_RMS = 700.0  # the hotline's energy endpointer threshold; espeak speech frames are far above it


# ---------------------------------------------------------------- voices

def voice(text: str, directory: Path, language: str = "cmn", speed: int = 150) -> bytes:
    """espeak-ng speech as 8 kHz 16-bit mono PCM, leading and trailing silence cut (cached by text)."""
    require("espeak-ng", "sox")
    name = hashlib.sha1(f"{language}|{speed}|{text}".encode()).hexdigest()[:16]
    target = directory / f"{language}-{name}.wav"
    if not target.exists():
        raw = directory / f"{name}.espeak.wav"
        subprocess.run(["espeak-ng", "-v", language, "-s", str(speed), "-w", str(raw), text], check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["sox", "-D", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                        str(target)], check=True, capture_output=True, timeout=30)
    with wave.open(str(target), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    return trim(pcm)


def trim(pcm: bytes, threshold: float = LOUD_RMS) -> bytes:
    """Cut the quiet 20 ms frames at both ends."""
    frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - len(pcm) % 2, FRAME_BYTES)]
    loud = [index for index, frame in enumerate(frames) if rms(frame) >= threshold]
    if not loud:
        return b""
    return b"".join(frames[loud[0]:loud[-1] + 1])


def speech_spans(pcm: bytes, threshold: float = LOUD_RMS, min_gap: float = 1.0) -> list[tuple[float, float]]:
    """(start, end) seconds of the loud stretches of 16-bit 8 kHz PCM; gaps under ``min_gap`` are joined."""
    spans: list[list[float]] = []
    for index in range(0, len(pcm) // FRAME_BYTES):
        if rms(pcm[index * FRAME_BYTES:(index + 1) * FRAME_BYTES]) >= threshold:
            at = index * FRAME_SECONDS
            if spans and at - spans[-1][1] < min_gap:
                spans[-1][1] = at + FRAME_SECONDS
            else:
                spans.append([at, at + FRAME_SECONDS])
    return [(round(a, 2), round(b, 2)) for a, b in spans]


def read_recording(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        return wav.readframes(wav.getnframes())


# ---------------------------------------------------------------- the caller's side of the call

@dataclass
class Said:
    label: str
    start: float  # seconds after the ACK
    end: float
    pcm: bytes


@dataclass
class CallerScript:
    """What the caller sends, on the clock of the call (0 = SIPp's ACK, which is when the hotline
    starts talking). Actions must not overlap; ``speak``/``keys`` return the time they end."""

    codec: str = "PCMU"
    noise_rms: float = 40.0  # a quiet line, far below every threshold
    seed: int = 2833
    said: list[Said] = field(default_factory=list)
    _actions: list[tuple[float, str, object]] = field(default_factory=list)

    def speak(self, at: float, pcm: bytes, label: str = "") -> float:
        end = at + len(pcm) / 16000
        self._actions.append((at, "speech", pcm))
        self.said.append(Said(label or f"speech@{at}", at, end, pcm))
        return end

    def keys(self, at: float, digits: str) -> float:
        self._actions.append((at, "keys", digits))
        return at + 0.2 * len(digits)

    def spoken(self, label: str) -> Said:
        return next(s for s in self.said if s.label == label)

    def packets(self, length: float) -> list[tuple[float, bytes]]:
        """(send time, RTP packet) for ``length`` seconds: the actions, and the line's noise around them."""
        codec = CODECS[self.codec]
        rng = random.Random(self.seed)
        ssrc, sequence, timestamp = 0x5EED0000 | rng.getrandbits(16), rng.getrandbits(15), rng.getrandbits(31)
        slots = int(length / FRAME_SECONDS)
        audio: dict[int, bytes] = {}
        keys: dict[int, str] = {}
        for at, kind, what in sorted(self._actions, key=lambda action: action[0]):
            first = round(at / FRAME_SECONDS)
            if kind == "speech":
                for index in range(0, len(what), FRAME_BYTES):
                    audio[first + index // FRAME_BYTES] = what[index:index + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
            else:
                for offset, key in enumerate(what):
                    keys[first + 10 * offset] = key  # 100 ms of tone, 100 ms apart
        line_noise = [noise(rng, self.noise_rms) for _ in range(250)]  # 5 s of it, over and over
        packets: list[tuple[float, bytes]] = []
        slot = 0
        while slot < slots:
            at = slot * FRAME_SECONDS
            if slot in keys:  # RFC 4733 §2.5: start packet (marker), updates, the end packet three times
                event, start = EVENT_KEYS.index(keys[slot]), timestamp
                for step in range(1, 6):
                    packets.append((at + (step - 1) * FRAME_SECONDS, RtpPacket(
                        EVENT_PAYLOAD_TYPE, sequence, start, ssrc,
                        struct.pack("!BBH", event, 10, step * FRAME_SAMPLES), step == 1).to_bytes()))
                    sequence = (sequence + 1) & 0xFFFF
                for _ in range(3):
                    packets.append((at + 4 * FRAME_SECONDS, RtpPacket(
                        EVENT_PAYLOAD_TYPE, sequence, start, ssrc,
                        struct.pack("!BBH", event, 0x80 | 10, 5 * FRAME_SAMPLES)).to_bytes()))
                    sequence = (sequence + 1) & 0xFFFF
                timestamp = (timestamp + 5 * FRAME_SAMPLES) & 0xFFFFFFFF
                slot += 5
                continue
            frame = audio.get(slot) or line_noise[slot % len(line_noise)]
            packet = RtpPacket(codec.payload_type, sequence, timestamp, ssrc, codec.encode(frame))
            packets.append((at, packet.to_bytes()))
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
            slot += 1
        return packets

    def write_pcap(self, path: Path, length: float) -> Path:
        path.write_bytes(pcap_bytes(self.packets(length)))
        return path


def noise(rng: random.Random, level: float) -> bytes:
    return array("h", (max(-32768, min(32767, round(rng.gauss(0, level)))) for _ in range(FRAME_SAMPLES))).tobytes()


def silence_pcm(seconds: float) -> bytes:
    return bytes(2 * int(8000 * seconds))


# ---------------------------------------------------------------- scripted stand-in recogniser

class OnsetScripted(Recognizer):
    """A ScriptedRecognizer that starts its clock when the caller starts speaking (by energy).

    Frames before the onset are not fed to it; the ``script`` (seconds after the onset) is taken
    from ``next_script`` at the onset, so a listen that only hears keys or silence takes none."""

    sample_rate = 8000

    def __init__(self, next_script: Callable[[], Sequence[ScriptLine]], threshold: float = LOUD_RMS,
                 onset_ms: int = 60):
        self._next_script = next_script
        self._threshold, self._onset_frames = threshold, max(1, onset_ms // 20)
        self._loud: list[bytes] = []
        self._inner: ScriptedRecognizer | None = None

    def accept(self, pcm16: bytes) -> list[Event]:
        if self._inner is not None:
            return self._inner.accept(pcm16)
        if rms(pcm16) < self._threshold:
            self._loud.clear()
            return []
        self._loud.append(pcm16)
        if len(self._loud) < self._onset_frames:
            return []
        self._inner = ScriptedRecognizer(self._next_script())
        return self._inner.accept(b"".join(self._loud))

    def finish(self) -> list[Event]:
        return self._inner.finish() if self._inner else []


class SpokenScripts:
    """The hotline's ``new_recognizer`` for a flow test: the caller's utterances in order, each a
    script [(seconds after the caller starts speaking, "partial" | "final", text)]."""

    def __init__(self, *scripts: Sequence[ScriptLine]):
        self._scripts = list(scripts)
        self._lock = threading.Lock()
        self.grammars: list[list[str] | None] = []
        self.used = 0

    def _next(self) -> Sequence[ScriptLine]:
        with self._lock:
            if not self._scripts:
                return []
            self.used += 1
            return self._scripts.pop(0)

    def __call__(self, grammar: list[str] | None) -> Recognizer:
        self.grammars.append(grammar)
        return OnsetScripted(self._next)

    @property
    def left(self) -> int:
        return len(self._scripts)


def utterance_script(text: str, seconds: float, partial_every: float = 0.8, final_after: float = 0.8
                     ) -> list[ScriptLine]:
    """What a streaming recogniser gives for ``text`` (words separated by spaces, as Vosk's Chinese
    models write them) spoken for ``seconds``: growing partials while it is said, the final
    ``final_after`` seconds after it ends (Vosk's endpointing plus ours)."""
    words = text.split()
    steps = max(1, int(seconds / partial_every))
    script: list[ScriptLine] = []
    for step in range(1, steps + 1):
        shown = words[:max(1, math.ceil(len(words) * step / (steps + 1)))]
        script.append((round(step * partial_every, 2), "partial", " ".join(shown)))
    script.append((round(seconds + final_after, 2), "final", text))
    return script
