"""Audio as the recogniser wants it: mono signed 16-bit little-endian PCM, with its sample rate.

Pure functions only (no files held open, no threads): WAV parsing. The samples and G.711 are
``callcenter.pcm``'s, shared with the calls.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from callcenter.pcm import AudioError, alaw_to_pcm16, downmix, ulaw_to_pcm16

__all__ = ["Audio", "AudioError", "parse_wav", "read_wav"]

# Sample rates the recogniser can take: telephone narrowband up to studio audio.
MIN_RATE, MAX_RATE = 8000, 48000

# WAVE format tags (RFC 2361). WAVE_FORMAT_EXTENSIBLE carries the real tag in its sub-format GUID.
_PCM, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0006, 0x0007, 0xFFFE
_FORMAT_NAMES = {_PCM: "PCM", 0x0003: "IEEE float", _ALAW: "A-law", _MULAW: "μ-law", 0x0011: "IMA ADPCM"}


@dataclass(frozen=True)
class Audio:
    pcm: bytes  # mono, signed 16-bit little-endian
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


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
