"""Telephone audio at the sample level, for both the recogniser (``asr/``) and the calls (``ivr/``,
``sip/``): mono signed 16-bit little-endian PCM, and G.711 companding to and from it.

Pure functions only (no files, sockets or threads). The G.711 code follows the ITU-T reference
implementation (G.191 Software Tool Library, ``g711.c``) bit for bit rather than the older Sun code
that ``audioop`` copies: the two differ for negative μ-law samples, where G.191 takes the one's
complement (so -1 encodes as "negative zero" 0x7F and decodes to 0) and Sun negates (so -1 encodes
as 0x7E and decodes to -8). Nothing here needs ``audioop`` (removed in Python 3.13).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array


class AudioError(ValueError):
    """Audio that cannot be used: not a WAV file, an unsupported encoding, an odd byte count ..."""


# ---------------------------------------------------------------- 16-bit PCM

def samples(pcm: bytes) -> array:
    """16-bit little-endian PCM as an array of ints (native order)."""
    if len(pcm) % 2:
        raise AudioError("16-bit PCM must have an even number of bytes")
    values = array("h", pcm)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def to_bytes(values: array) -> bytes:
    if sys.byteorder == "big":
        values = array("h", values)
        values.byteswap()
    return values.tobytes()


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit PCM (full scale 32767 ≈ 0 dBFS; -30 dBFS ≈ 1036); a trailing odd
    byte is ignored."""
    values = samples(pcm[: len(pcm) - len(pcm) % 2])
    if not values:
        return 0.0
    return math.sqrt(sum(s * s for s in values) / len(values))


def downmix(pcm: bytes, channels: int) -> bytes:
    """Interleaved 16-bit PCM of N channels to mono by averaging (a call recording's two sides
    both matter, so neither channel is dropped)."""
    if channels == 1:
        return pcm
    values = samples(pcm)
    frames = len(values) // channels
    columns = [values[channel:frames * channels:channels] for channel in range(channels)]
    return to_bytes(array("h", (sum(frame) // channels for frame in zip(*columns, strict=True))))


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
    return bytes(_ULAW_ENCODE[(sample >> 2) + 8192] for sample in samples(pcm))


def pcm16_to_alaw(pcm: bytes) -> bytes:
    return bytes(_ALAW_ENCODE[(sample >> 4) + 2048] for sample in samples(pcm))
