"""The audio of one call as pure pieces: RTP packets in and out, G.711 <-> 16-bit PCM, telephone
events (DTMF), barge-in, prompt frames and the caller recording.

No sockets, no threads, no clocks (the shape of Home Assistant's voip-utils ``rtp_audio.py``):
the RTP stream in ``callcenter/sip/rtp.py`` moves bytes between the network and these objects, and the tests
feed them canned packets. Audio is always mono signed 16-bit little-endian PCM at 8 kHz, cut in
20 ms frames of 160 samples (320 bytes), the G.711 packetisation of RFC 3551 §4.5.
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from callcenter.pcm import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, rms, ulaw_to_pcm16

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
FRAME_BYTES = 2 * FRAME_SAMPLES
SILENCE = bytes(FRAME_BYTES)


class MediaError(ValueError):
    """A packet or audio buffer that cannot be used."""


# ---------------------------------------------------------------- codecs (RFC 3551 §4.5.14)

@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int  # static payload type, RFC 3551 table 4
    decode: Callable[[bytes], bytes]  # G.711 bytes -> 16-bit PCM
    encode: Callable[[bytes], bytes]  # 16-bit PCM -> G.711 bytes


PCMU = Codec("PCMU", 0, ulaw_to_pcm16, pcm16_to_ulaw)
PCMA = Codec("PCMA", 8, alaw_to_pcm16, pcm16_to_alaw)
CODECS = {codec.name: codec for codec in (PCMU, PCMA)}
CODECS_BY_PAYLOAD_TYPE = {codec.payload_type: codec for codec in (PCMU, PCMA)}


# ---------------------------------------------------------------- RTP packets (RFC 3550 §5.1)

@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """See: RFC 3550 §5.1 "RTP Fixed Header Fields" (CSRC list, §5.3.1 extension, padding)."""
        if len(data) < 12:
            raise MediaError(f"RTP packet of {len(data)} bytes is shorter than its 12-byte header")
        first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        if first >> 6 != 2:
            raise MediaError(f"RTP version {first >> 6}, expected 2")
        offset = 12 + 4 * (first & 0x0F)  # CSRC identifiers
        if first & 0x10:  # header extension: 16-bit profile id, 16-bit length in 32-bit words
            if len(data) < offset + 4:
                raise MediaError("RTP header extension is truncated")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding: the last octet counts the padding octets
            end -= data[-1]
        if offset > end:
            raise MediaError("RTP header is longer than the packet")
        return cls(second & 0x7F, sequence, timestamp, ssrc, data[offset:end], bool(second & 0x80))

    def to_bytes(self) -> bytes:
        second = (0x80 if self.marker else 0) | self.payload_type
        return struct.pack("!BBHII", 0x80, second, self.sequence, self.timestamp, self.ssrc) + self.payload


# ---------------------------------------------------------------- DTMF (RFC 4733, which obsoletes RFC 2833)

EVENT_KEYS = "0123456789*#ABCD"  # RFC 4733 §3.2, events 0-15


@dataclass
class TelephoneEventDecoder:
    """One digit per key press from RFC 4733 telephone-event payloads.

    A sender repeats an event's packets while the key is held and sends the final packet (E bit
    set) three times; every packet of one event carries the same RTP timestamp (RFC 4733 §2.5.1.2,
    §2.5.1.4). So a digit is reported on the first packet with a new timestamp, start or end."""

    _last_timestamp: int | None = None

    def process_event(self, payload: bytes, timestamp: int) -> str | None:
        # See: RFC 4733 §2.3: event (8 bits), E (1), R (1), volume (6), duration (16)
        if len(payload) < 4:
            raise MediaError(f"telephone-event payload of {len(payload)} bytes, expected 4")
        if timestamp == self._last_timestamp:
            return None
        self._last_timestamp = timestamp
        event = payload[0]
        return EVENT_KEYS[event] if event < len(EVENT_KEYS) else None


# ---------------------------------------------------------------- caller side: RTP -> PCM frames and digits

@dataclass
class Received:
    frames: list[bytes] = field(default_factory=list)  # complete 20 ms frames of 16-bit PCM
    digit: str | None = None


@dataclass
class RtpAudioInput:
    """RTP packets from the caller -> 20 ms frames of 16-bit PCM decoded straight from the G.711
    payload, and telephone-event digits.

    No jitter buffer: packets are taken in arrival order; duplicates and late packets are dropped,
    and a timestamp gap (lost packets, silence suppression) of up to ``max_gap_ms`` is filled with
    silence so the recogniser and the recording keep real time. Given the arrival time (``now``,
    seconds), the audio handed out never runs more than ``max_ahead_ms`` ahead of the wall clock
    since the first packet: whatever a sender claims in its timestamps, a call cannot produce more
    audio (gap fill included) than it lasts."""

    codecs: dict[int, Codec]
    event_payload_type: int | None = 101
    max_gap_ms: int = 1000
    max_ahead_ms: int = 2000
    _events: TelephoneEventDecoder = field(default_factory=TelephoneEventDecoder)
    _pending: bytes = b""
    _ssrc: int | None = None
    _sequence: int | None = None
    _next_timestamp: int | None = None
    _first_arrival: float | None = None
    _handed_out: int = 0  # samples

    def process_packet(self, data: bytes, now: float | None = None) -> Received:
        packet = RtpPacket.parse(data)
        if packet.payload_type == self.event_payload_type:
            return Received(digit=self._events.process_event(packet.payload, packet.timestamp))
        codec = self.codecs.get(packet.payload_type)
        if codec is None or not self._in_order(packet):
            return Received()  # comfort noise (RFC 3389), an unnegotiated codec, or a late packet
        pcm = self._gap_before(packet) + codec.decode(packet.payload)
        self._next_timestamp = (packet.timestamp + len(packet.payload)) & 0xFFFFFFFF
        if now is not None:
            pcm = self._within_real_time(pcm, now)
        return Received(frames=self._split(pcm))

    def _within_real_time(self, pcm: bytes, now: float) -> bytes:
        """Cut from the front (gap fill first) whatever would run ahead of the clock."""
        if self._first_arrival is None:
            self._first_arrival = now
        allowed = int((now - self._first_arrival) * SAMPLE_RATE) + self.max_ahead_ms * SAMPLE_RATE // 1000
        room = max(0, allowed - self._handed_out)
        if len(pcm) // 2 > room:
            pcm = pcm[len(pcm) - 2 * room:] if room else b""
        self._handed_out += len(pcm) // 2
        return pcm

    def _in_order(self, packet: RtpPacket) -> bool:
        # A new source (re-INVITE, media server switch), or the first packet: start afresh.
        if packet.ssrc != self._ssrc or self._sequence is None:
            self._ssrc, self._sequence, self._next_timestamp = packet.ssrc, packet.sequence, None
            return True
        # See: RFC 3550 appendix A.1: sequence numbers compared modulo 2^16
        ahead = (packet.sequence - self._sequence) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:
            return False
        self._sequence = packet.sequence
        return True

    def _gap_before(self, packet: RtpPacket) -> bytes:
        if self._next_timestamp is None:
            return b""
        gap = (packet.timestamp - self._next_timestamp) & 0xFFFFFFFF
        if 0 < gap <= self.max_gap_ms * SAMPLE_RATE // 1000:
            return bytes(2 * gap)
        return b""

    def _split(self, pcm: bytes) -> list[bytes]:
        pcm = self._pending + pcm
        whole = len(pcm) - len(pcm) % FRAME_BYTES
        self._pending = pcm[whole:]
        return [pcm[i:i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]


# ---------------------------------------------------------------- our side: PCM frames -> RTP

@dataclass
class RtpAudioOutput:
    """20 ms frames of 16-bit PCM -> RTP packets in the negotiated codec (PCMA really A-law)."""

    codec: Codec
    ssrc: int
    sequence: int = 0
    timestamp: int = 0
    _first: bool = True

    def process_frame(self, pcm: bytes) -> bytes:
        payload = self.codec.encode(pcm)
        packet = RtpPacket(self.codec.payload_type, self.sequence, self.timestamp, self.ssrc,
                           payload, marker=self._first)  # RFC 3551 §4.1: marker on the first packet
        self._first = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        return packet.to_bytes()


# ---------------------------------------------------------------- energy, barge-in, prompts

@dataclass
class BargeInDetector:
    """Caller speech over a prompt: ``min_speech_ms`` of frames with energy above ``threshold_rms``,
    where quiet stretches shorter than ``max_gap_ms`` do not start the count again. The default
    threshold (≈ -28 dBFS) is above line noise and a phone's residual echo of our own prompt, below
    normal speech; 240 ms ignores clicks and coughs. The gap allowance is for a short word like
    「知道了」: its syllables dip below the threshold between them, and a lost packet is a frame of
    silence, so counting strictly in a row would never let it barge in."""

    threshold_rms: float = 1300.0
    min_speech_ms: int = 240
    max_gap_ms: int = 100
    _speech_ms: int = 0
    _gap_ms: int = 0

    def process_frame(self, pcm: bytes) -> bool:
        ms = len(pcm) * 1000 // (2 * SAMPLE_RATE)
        if rms(pcm) >= self.threshold_rms:
            self._speech_ms += ms
            self._gap_ms = 0
        else:
            self._gap_ms += ms
            if self._gap_ms >= self.max_gap_ms:
                self._speech_ms = 0
        return self._speech_ms >= self.min_speech_ms


class PlayOutcome(StrEnum):
    DONE = "done"
    BARGED_IN = "barged_in"
    HUNG_UP = "hung_up"


@dataclass
class PromptPlayer:
    """A prompt as 20 ms frames (the last one padded with silence) that stop coming once the caller
    barges in: a key press, or speech the detector accepts. Only when ``barge_in`` is allowed."""

    audio: bytes
    barge_in: bool = False
    detector: BargeInDetector = field(default_factory=BargeInDetector)
    barged_in: bool = False

    def __post_init__(self) -> None:
        if len(self.audio) % 2:
            raise MediaError("16-bit PCM must have an even number of bytes")

    def frames(self) -> Iterator[bytes]:
        for start in range(0, len(self.audio), FRAME_BYTES):
            if self.barged_in:
                return
            frame = self.audio[start:start + FRAME_BYTES]
            yield frame + bytes(FRAME_BYTES - len(frame))

    def hear(self, caller_frame: bytes) -> None:
        if self.barge_in and self.detector.process_frame(caller_frame):
            self.barged_in = True

    def key_pressed(self) -> None:
        if self.barge_in:
            self.barged_in = True


# ---------------------------------------------------------------- recording

class WavRecorder:
    """The caller's audio to an 8 kHz mono 16-bit WAV. ``wave`` rewrites the header sizes on every
    write, so the file is complete at any moment: a caller who hangs up mid-sentence (or a process
    that dies) leaves every frame received so far in a playable file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self.samples = 0

    def write(self, pcm: bytes) -> None:
        self._wav.writeframes(pcm)
        self.samples += len(pcm) // 2

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def close(self) -> None:
        self._wav.close()
