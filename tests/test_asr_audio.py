"""callcenter.pcm: G.711 companding (checked against ITU-T G.711 / G.191 values) and WAV reading of every format."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import warnings
import wave
from itertools import pairwise

import pytest

from callcenter.asr.audio import AudioError, parse_wav, read_wav
from callcenter.pcm import ALAW_DECODE, ULAW_DECODE, alaw_to_pcm16, downmix, pcm16_to_alaw, pcm16_to_ulaw, rms, ulaw_to_pcm16

EVERY_SAMPLE = list(range(-32768, 32768))
EVERY_SAMPLE_PCM = struct.pack(f"<{len(EVERY_SAMPLE)}h", *EVERY_SAMPLE)


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples_of(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


# ---------------------------------------------------------------- G.711

def test_ulaw_decoding_matches_g711_table():
    # Code words are sent inverted: 0xFF and 0x7F are +0/-0, 0x80/0x00 the largest magnitudes.
    assert ULAW_DECODE[0xFF] == 0 and ULAW_DECODE[0x7F] == 0
    assert ULAW_DECODE[0x80] == 32124 and ULAW_DECODE[0x00] == -32124
    assert ULAW_DECODE[0xFE] == 8 and ULAW_DECODE[0x7E] == -8  # first step of segment 0 (2 in 14-bit units)
    assert ULAW_DECODE[0xF0] == 120  # end of segment 0
    assert ULAW_DECODE[0xEF] == 132 and ULAW_DECODE[0xEE] == 148  # segment 1: steps of 16
    assert all(ULAW_DECODE[code] == -ULAW_DECODE[code | 0x80] for code in range(128))


def test_alaw_decoding_matches_g711_table():
    # Even bits are inverted on the line: 0xD5/0x55 are the smallest magnitudes, 0xAA/0x2A the largest.
    assert ALAW_DECODE[0xD5] == 8 and ALAW_DECODE[0x55] == -8
    assert ALAW_DECODE[0xAA] == 32256 and ALAW_DECODE[0x2A] == -32256
    assert ALAW_DECODE[0xD4] == 24  # second step of segment 0: 16 apart
    assert all(ALAW_DECODE[code] == -ALAW_DECODE[code | 0x80] for code in range(128))


def test_encoding_extremes_and_zero():
    assert pcm16_to_ulaw(pcm(0, -1, 32767, -32768)) == bytes([0xFF, 0x7F, 0x80, 0x00])
    assert pcm16_to_alaw(pcm(0, -1, 32767, -32768)) == bytes([0xD5, 0x55, 0xAA, 0x2A])


@pytest.mark.parametrize("encode, decode, zeros", [
    (pcm16_to_ulaw, ulaw_to_pcm16, {0x7F: 0xFF}),  # negative zero decodes to 0, which encodes as +0
    (pcm16_to_alaw, alaw_to_pcm16, {}),
])
def test_every_code_survives_decode_then_encode(encode, decode, zeros):
    codes = bytes(range(256))
    assert encode(decode(codes)) == bytes(zeros.get(code, code) for code in codes)


@pytest.mark.parametrize("encode", [pcm16_to_ulaw, pcm16_to_alaw])
def test_negative_samples_use_ones_complement_as_g191(encode):
    """G.191 encodes x < 0 as the magnitude of ~x (= -x-1): so encode(~x) is encode(x) with the sign flipped."""
    positive = encode(EVERY_SAMPLE_PCM[65536:])  # 0 .. 32767
    negative = encode(pcm(*(~x for x in range(32768))))  # -1 .. -32768
    assert bytes(code ^ 0x80 for code in positive) == negative


@pytest.mark.parametrize("encode, decode, ignored", [(pcm16_to_ulaw, ULAW_DECODE, 3), (pcm16_to_alaw, ALAW_DECODE, 15)])
def test_every_sample_lies_in_the_interval_of_its_level(encode, decode, ignored):
    """Each level is the middle of its decision interval (one step wide: flipping the code's lowest
    mantissa bit moves one step), give or take the low bits G.711 ignores (2 for μ-law, 4 for
    A-law); beyond the top interval it clips; and levels never go backwards as the input rises."""
    top = max(decode)
    codes = encode(EVERY_SAMPLE_PCM)
    for x, code in zip(EVERY_SAMPLE, codes, strict=True):
        level, step = decode[code], abs(decode[code ^ 1] - decode[code])
        if abs(x) <= top + step // 2:
            assert abs(level - x) <= step // 2 + ignored, (x, level)
        else:
            assert abs(level) == top, (x, level)
    chosen = [decode[code] for code in codes]
    assert all(a <= b for a, b in pairwise(chosen))


def test_agrees_with_audioop_except_where_sun_code_differs_from_g191():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw_to_pcm16(codes) == audioop.alaw2lin(codes, 2)
    assert pcm16_to_alaw(EVERY_SAMPLE_PCM) == audioop.lin2alaw(EVERY_SAMPLE_PCM, 2)
    ours, sun = pcm16_to_ulaw(EVERY_SAMPLE_PCM), audioop.lin2ulaw(EVERY_SAMPLE_PCM, 2)
    assert ours[32768:] == sun[32768:]  # non-negative samples: identical
    # Negative: Sun negates (magnitude one 14-bit unit larger than G.191's one's complement),
    # so our code for x is Sun's code for x + 4.
    shifted = audioop.lin2ulaw(pcm(*(x + 4 for x in range(-32768, -4))), 2)
    assert ours[:32768 - 4] == shifted


def test_odd_length_pcm_is_refused():
    with pytest.raises(AudioError, match="even number"):
        pcm16_to_ulaw(b"\x00\x01\x02")


def test_rms_of_a_full_scale_square_wave_and_of_silence():
    assert rms(pcm(32767, -32767) * 80) == pytest.approx(32767) and rms(bytes(320)) == 0.0 and rms(b"") == 0.0
    assert rms(pcm(3000, -3000) + b"\x01") == pytest.approx(3000)  # a stray odd byte is ignored


def test_downmix_averages_channels():
    assert samples_of(downmix(pcm(1000, 3000, -2, -4, 32767, 32767), 2)) == [2000, -3, 32767]
    assert downmix(pcm(5, 6), 1) == pcm(5, 6)


# ---------------------------------------------------------------- WAV files

def write_pcm_wav(path, samples: list[int], rate=8000, channels=1):
    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm(*samples))
    return path


def riff(fmt_body: bytes, data: bytes, extra_chunks: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra_chunks
    chunks += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def fmt_chunk(tag, channels, rate, bits) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_reads_mono_pcm(tmp_path, rate):
    audio = read_wav(write_pcm_wav(tmp_path / "a.wav", [0, 100, -100, 32767], rate))
    assert audio.sample_rate == rate and samples_of(audio.pcm) == [0, 100, -100, 32767]
    assert audio.duration == pytest.approx(4 / rate)


def test_reads_stereo_pcm_as_the_average_of_both_sides(tmp_path):
    audio = read_wav(write_pcm_wav(tmp_path / "s.wav", [1000, 3000, -500, 500], 16000, channels=2))
    assert samples_of(audio.pcm) == [2000, 0]


def test_reads_ulaw_and_alaw_code_for_code():
    codes = bytes(range(256))
    ulaw = parse_wav(riff(fmt_chunk(7, 1, 8000, 8) + b"\x00\x00", codes,
                          extra_chunks=b"fact" + struct.pack("<II", 4, 256)))
    alaw = parse_wav(riff(fmt_chunk(6, 1, 8000, 8), codes, extra_chunks=b"LIST\x03\x00\x00\x00abc\x00"))
    assert samples_of(ulaw.pcm) == list(ULAW_DECODE) and ulaw.sample_rate == 8000
    assert samples_of(alaw.pcm) == list(ALAW_DECODE)


def test_reads_wave_format_extensible():
    guid_tail = bytes.fromhex("000000001000800000aa00389b71")
    body = fmt_chunk(0xFFFE, 2, 8000, 8) + struct.pack("<HHI", 22, 8, 3) + struct.pack("<H", 7) + guid_tail
    audio = parse_wav(riff(body, bytes([0x80, 0x80, 0x00, 0x00])))
    assert samples_of(audio.pcm) == [32124, -32124]


@pytest.mark.skipif(not shutil.which("sox"), reason="sox is not installed")
@pytest.mark.parametrize("encoding, channels", [("u-law", 1), ("a-law", 1), ("u-law", 2), ("signed-integer", 2)])
def test_reads_files_written_by_sox(tmp_path, encoding, channels):
    tone = [int(12000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(800)]
    source = write_pcm_wav(tmp_path / "tone.wav", tone, 8000)
    converted = tmp_path / "converted.wav"
    subprocess.run(["sox", "-D", str(source), "-e", encoding, "-c", str(channels), str(converted)], check=True)
    audio = read_wav(converted)
    assert audio.sample_rate == 8000 and len(audio.pcm) == 2 * len(tone)
    # Within G.711's quantisation error (at most 1/32 of the value at these levels) or exact for PCM.
    assert all(abs(a - b) <= abs(b) / 16 + 16 for a, b in zip(samples_of(audio.pcm), tone, strict=True))


def test_a_truncated_last_frame_is_dropped():
    audio = parse_wav(riff(fmt_chunk(1, 2, 8000, 16), pcm(10, 20, 30)))  # one and a half stereo frames
    assert samples_of(audio.pcm) == [15]


@pytest.mark.parametrize("data, message", [
    (b"", "not a WAV"),
    (b"hello world, this is text", "not a WAV"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt ' and 'data'"),
    (riff(fmt_chunk(1, 1, 8000, 16), b""), "no audio samples"),
    (riff(fmt_chunk(3, 1, 8000, 32), b"\x00" * 8), "unsupported WAV encoding IEEE float 32-bit"),
    (riff(fmt_chunk(1, 1, 8000, 8), b"\x80" * 8), "unsupported WAV encoding PCM 8-bit"),
    (riff(fmt_chunk(1, 1, 4000, 16), b"\x00" * 8), "sample rate 4000 Hz"),
    (riff(b"\x01\x00", b"\x00" * 8), "'fmt ' chunk is truncated"),
    (b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "before its 'fmt '"),
])
def test_unusable_audio_is_a_clear_audio_error(data, message):
    with pytest.raises(AudioError, match=message):
        parse_wav(data)


def test_unreadable_paths_are_audio_errors_naming_the_file(tmp_path):
    with pytest.raises(AudioError, match="cannot read .*missing.wav"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path)
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(AudioError, match=r"notes\.wav: not a WAV"):
        read_wav(tmp_path / "notes.wav")
