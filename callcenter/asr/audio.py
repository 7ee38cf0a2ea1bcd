"""Audio as the recogniser wants it: mono signed 16-bit little-endian PCM, with its sample rate.

Pure functions only (no files held open, no threads): WAV parsing and G.711 companding.
The G.711 code is also what the SIP media path uses for PCMU/PCMA, so it follows the
ITU-T reference implementation (G.191 Software Tool Library, ``g711.c``) bit for bit rather
than the older Sun code that ``audioop`` copies: the two differ for negative μ-law samples,
where G.191 takes the one's complement (so -1 encodes as "negative zero" 0x7F and decodes to 0)
and Sun negates (so -1 encodes as 0x7E and decodes to -8).
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

# Sample rates the recogniser can take: telephone narrowband up to studio audio.
MIN_RATE, MAX_RATE = 8000, 48000

# WAVE format tags (RFC 2361). WAVE_FORMAT_EXTENSIBLE carries the real tag in its sub-format GUID.
_PCM, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0006, 0x0007, 0xFFFE
_FORMAT_NAMES = {_PCM: "PCM", 0x0003: "IEEE float", _ALAW: "A-law", _MULAW: "μ-law", 0x0011: "IMA ADPCM"}


class AudioError(Exception):
    """Audio that cannot be used: not a WAV file, an unsupported encoding, or no samples."""


@dataclass(frozen=True)
class Audio:
    pcm: bytes  # mono, signed 16-bit little-endian
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


# ---------------------------------------------------------------- G.711 (ITU-T G.711, G.191 g711.c)

def _ulaw_expand(code: int) -> int:
    """One μ-law code to a 16-bit sample (14 bits left-justified, as G.191 ulaw_expand)."""
    inverted = ~code & 0xFF  # μ-law codes are transmitted with all bits inverted
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    # ((1 mantissa 1) << exponent) minus the bias of 33 (in 14-bit units; 132 = 33 * 4 here)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return magnitude if code & 0x80 else -magnitude


def _alaw_expand(code: int) -> int:
    """One A-law code to a 16-bit sample (13 bits left-justified, as G.191 alaw_expand)."""
    toggled = (code ^ 0x55) & 0x7F  # even bits are inverted on the line
    exponent = toggled >> 4
    mantissa = toggled & 0x0F
    if exponent > 0:
        mantissa += 16  # the implicit leading 1
    magnitude = (mantissa << 4) + 8  # plus half a quantisation step
    if exponent > 1:
        magnitude <<= exponent - 1
    return magnitude if code & 0x80 else -magnitude


def _ulaw_compress(sample: int) -> int:
    """A 16-bit sample to its μ-law code (G.191 ulaw_compress: 14 most significant bits used)."""
    magnitude = ((~sample if sample < 0 else sample) >> 2) + 33  # one's complement for negatives
    magnitude = min(magnitude, 0x1FFF)
    segment = (magnitude >> 6).bit_length() + 1
    low_nibble = 0x0F - ((magnitude >> segment) & 0x0F)
    code = ((8 - segment) << 4) | low_nibble
    return code | 0x80 if sample >= 0 else code


def _alaw_compress(sample: int) -> int:
    """A 16-bit sample to its A-law code (G.191 alaw_compress: 12 most significant bits used)."""
    value = (~sample if sample < 0 else sample) >> 4
    if value > 15:
        exponent = 1
        while value > 31:
            value >>= 1
            exponent += 1
        value = (value - 16) + (exponent << 4)
    if sample >= 0:
        value |= 0x80
    return value ^ 0x55


# Encoding depends only on the top 14 (μ-law) or 12 (A-law) bits, so the tables are indexed by
# the shifted sample: 16384 and 4096 entries instead of 65536.
ULAW_DECODE = tuple(_ulaw_expand(code) for code in range(256))
ALAW_DECODE = tuple(_alaw_expand(code) for code in range(256))
_ULAW_ENCODE = bytes(_ulaw_compress(top << 2) for top in range(-8192, 8192))
_ALAW_ENCODE = bytes(_alaw_compress(top << 4) for top in range(-2048, 2048))
_ULAW_PCM = tuple(struct.pack("<h", value) for value in ULAW_DECODE)
_ALAW_PCM = tuple(struct.pack("<h", value) for value in ALAW_DECODE)


def ulaw_to_pcm16(data: bytes) -> bytes:
    return b"".join(map(_ULAW_PCM.__getitem__, data))


def alaw_to_pcm16(data: bytes) -> bytes:
    return b"".join(map(_ALAW_PCM.__getitem__, data))


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    return bytes(_ULAW_ENCODE[(sample >> 2) + 8192] for sample in _samples(pcm))


def pcm16_to_alaw(pcm: bytes) -> bytes:
    return bytes(_ALAW_ENCODE[(sample >> 4) + 2048] for sample in _samples(pcm))


# ---------------------------------------------------------------- PCM helpers

def _samples(pcm: bytes) -> array:
    if len(pcm) % 2:
        raise AudioError("16-bit PCM must have an even number of bytes")
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _to_bytes(samples: array) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def downmix(pcm: bytes, channels: int) -> bytes:
    """Interleaved 16-bit PCM of N channels to mono by averaging (a call recording's two sides
    both matter, so neither channel is dropped)."""
    if channels == 1:
        return pcm
    samples = _samples(pcm)
    frames = len(samples) // channels
    columns = [samples[channel:frames * channels:channels] for channel in range(channels)]
    return _to_bytes(array("h", (sum(frame) // channels for frame in zip(*columns))))


# ---------------------------------------------------------------- WAV (RIFF) parsing

def read_wav(path: str | Path) -> Audio:
    """A WAV file (16-bit PCM, μ-law or A-law; any channel count) as mono 16-bit PCM."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise AudioError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return parse_wav(data)
    except AudioError as error:
        raise AudioError(f"{path}: {error}") from None


def parse_wav(data: bytes) -> Audio:
    fmt, payload = _riff_chunks(data)
    tag, channels, rate, block_align, bits = fmt
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"sample rate {rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
    if channels < 1:
        raise AudioError("the WAV header says it has no channels")
    sample_bytes = {(_PCM, 16): 2, (_MULAW, 8): 1, (_ALAW, 8): 1}.get((tag, bits))
    if sample_bytes is None:
        name = _FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
        raise AudioError(f"unsupported WAV encoding {name} {bits}-bit; expected 16-bit PCM, μ-law or A-law")
    frame_bytes = sample_bytes * channels
    # A recorder killed mid-write leaves a partial last frame (or a too-large size): keep whole frames.
    payload = payload[: len(payload) - len(payload) % frame_bytes]
    if not payload:
        raise AudioError("the file contains no audio samples")
    if tag == _MULAW:
        payload = ulaw_to_pcm16(payload)
    elif tag == _ALAW:
        payload = alaw_to_pcm16(payload)
    return Audio(downmix(payload, channels), rate)


def _riff_chunks(data: bytes) -> tuple[tuple[int, int, int, int, int], bytes]:
    """The 'fmt ' fields (tag, channels, rate, block align, bits) and the 'data' bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a WAV file (no RIFF/WAVE header)")
    fmt = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8: offset + 8 + size]  # may be short: streaming writers leave size unset
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError("WAV 'data' chunk comes before its 'fmt ' chunk")
            return fmt, body
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    raise AudioError("WAV file has no 'fmt ' and 'data' chunks" if fmt is None else "WAV file has no 'data' chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int, int]:
    if len(body) < 16:
        raise AudioError("WAV 'fmt ' chunk is truncated")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise AudioError("WAV extensible 'fmt ' chunk is truncated")
        # The sub-format GUID starts with the ordinary format tag (KSDATAFORMAT_SUBTYPE_*).
        (tag,) = struct.unpack_from("<H", body, 24)
    return tag, channels, rate, block_align, bits
