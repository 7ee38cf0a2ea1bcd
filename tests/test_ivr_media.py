"""The pure audio pieces of a call (callcenter/ivr/media.py): canned packets in, bytes out, no clock."""

from __future__ import annotations

import math
import struct
import wave
from array import array

import pytest

from callcenter.ivr.media import (
    FRAME_BYTES,
    PCMA,
    PCMU,
    BargeInDetector,
    MediaError,
    PromptPlayer,
    RtpAudioInput,
    RtpAudioOutput,
    RtpPacket,
    TelephoneEventDecoder,
    WavRecorder,
    rms,
)
from tests.support.rtp_pcap import rtp_stream


def tone(frequency: float, seconds: float, amplitude: float) -> bytes:
    count = int(8000 * seconds)
    return array("h", (round(amplitude * math.sin(2 * math.pi * frequency * i / 8000)) for i in range(count))).tobytes()


def samples(pcm: bytes) -> list[int]:
    return list(array("h", pcm))


def packet(payload: bytes, sequence: int, timestamp: int, payload_type: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type, sequence, timestamp, ssrc, payload).to_bytes()


# ---------------------------------------------------------------- G.711 (ITU-T G.711 values)

def test_g711_decodes_the_itu_reference_values():
    assert samples(PCMU.decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xEF]))) == [0, 0, 32124, -32124, 132]
    assert samples(PCMA.decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))) == [8, -8, 32256, -32256]


def test_g711_round_trip_of_every_code_is_exact():
    for codec in (PCMU, PCMA):
        codes = bytes(range(256))
        decoded = codec.decode(codes)
        assert codec.decode(codec.encode(decoded)) == decoded, codec.name


def test_pcma_encodes_a_law_not_mu_law():
    pcm = tone(1000, 0.02, 8000)
    assert PCMA.encode(pcm) != PCMU.encode(pcm)
    for codec in (PCMA, PCMU):
        decoded = samples(codec.decode(codec.encode(pcm)))
        error = max(abs(a - b) for a, b in zip(decoded, samples(pcm), strict=True))
        assert error < 8000 * 0.04, codec.name  # within one quantisation step of the segment
    # A-law read as μ-law is noise: the tone's samples come back far off
    wrong = samples(PCMU.decode(PCMA.encode(pcm)))
    assert max(abs(a - b) for a, b in zip(wrong, samples(pcm), strict=True)) > 8000


# ---------------------------------------------------------------- RTP packets (RFC 3550)

def test_rtp_packet_round_trip_and_header_fields():
    data = RtpPacket(8, 65535, 4_000_000_000, 0xDEADBEEF, b"\x01\x02", marker=True).to_bytes()
    parsed = RtpPacket.parse(data)
    assert (parsed.payload_type, parsed.sequence, parsed.timestamp, parsed.ssrc, parsed.marker, parsed.payload) == \
        (8, 65535, 4_000_000_000, 0xDEADBEEF, True, b"\x01\x02")


def test_rtp_packet_skips_csrc_extension_and_padding():
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0, 1, 160, 9)  # P, X, one CSRC
    data = header + b"CSRC" + struct.pack("!HH", 0xBEDE, 1) + b"EXT!" + b"audio" + b"\x00\x00\x03"
    assert RtpPacket.parse(data).payload == b"audio"


@pytest.mark.parametrize("data", [b"", b"\x80\x00", b"\x40" + bytes(15), struct.pack("!BBHII", 0x9F, 0, 0, 0, 0)])
def test_rtp_packet_rejects_what_is_not_rtp(data):
    with pytest.raises(MediaError):
        RtpPacket.parse(data)


# ---------------------------------------------------------------- caller audio: RTP -> 16-bit frames

def test_caller_audio_is_16_bit_decoded_from_the_payload():
    quiet = tone(300, 0.02, 60)  # a quiet caller: all of it lies below 8-bit PCM's first step (256)
    received = RtpAudioInput({0: PCMU}).process_packet(packet(PCMU.encode(quiet), 1, 0))
    [frame] = received.frames
    assert frame == PCMU.decode(PCMU.encode(quiet))
    assert len(frame) == FRAME_BYTES and max(map(abs, samples(frame))) < 256 and rms(frame) > 30


def test_caller_audio_reframes_30_ms_packets_into_20_ms_frames():
    audio = RtpAudioInput({8: PCMA})
    payload = PCMA.encode(tone(440, 0.03, 4000))
    first = audio.process_packet(packet(payload, 1, 0, payload_type=8))
    second = audio.process_packet(packet(payload, 2, 240, payload_type=8))
    assert [len(f) for f in first.frames + second.frames] == [FRAME_BYTES] * 3


def test_caller_audio_drops_duplicates_and_late_packets_and_fills_gaps_with_silence():
    audio = RtpAudioInput({0: PCMU})
    loud = PCMU.encode(tone(440, 0.02, 4000))
    assert len(audio.process_packet(packet(loud, 10, 1600)).frames) == 1
    assert audio.process_packet(packet(loud, 10, 1600)).frames == []  # duplicate
    assert audio.process_packet(packet(loud, 9, 1440)).frames == []  # late
    after_gap = audio.process_packet(packet(loud, 13, 2080)).frames  # 12 and 11 lost: 40 ms of silence first
    assert [rms(f) for f in after_gap[:2]] == [0.0, 0.0] and rms(after_gap[2]) > 1000
    assert len(audio.process_packet(packet(loud, 0, 0, ssrc=99)).frames) == 1  # a new source starts afresh
    assert audio.process_packet(packet(b"\x01", 1, 160, payload_type=13)).frames == []  # comfort noise ignored


# ---------------------------------------------------------------- DTMF (RFC 4733)

def test_telephone_events_give_one_digit_per_key_press():
    packets = rtp_stream(tone(440, 0.2, 2000), "PCMU", digits="1#1", digits_at=0.1)
    audio = RtpAudioInput({0: PCMU}, event_payload_type=101)
    digits = [audio.process_packet(data).digit for _, data in packets]
    assert "".join(d for d in digits if d) == "1#1"  # end packets sent 3 times count once; "1" twice counts twice


def test_telephone_event_decoder_reports_an_event_seen_only_by_its_end_packets():
    decoder = TelephoneEventDecoder()
    end = struct.pack("!BBH", 5, 0x80 | 10, 800)
    assert [decoder.process_event(end, 4000) for _ in range(3)] == ["5", None, None]
    with pytest.raises(MediaError):
        decoder.process_event(b"\x05", 8000)


# ---------------------------------------------------------------- our audio: frames -> RTP

def test_audio_output_packets_carry_the_codec_and_wrap_the_sequence():
    output = RtpAudioOutput(PCMA, ssrc=1, sequence=65535, timestamp=2**32 - 160)
    first, second = (RtpPacket.parse(output.process_frame(tone(440, 0.02, 3000))) for _ in range(2))
    assert (first.payload_type, first.marker, first.sequence, second.sequence) == (8, True, 65535, 0)
    assert (second.timestamp, second.marker, len(second.payload)) == (0, False, 160)
    assert first.payload == PCMA.encode(tone(440, 0.02, 3000))


# ---------------------------------------------------------------- barge-in and prompts

def test_barge_in_needs_speech_energy_for_the_whole_minimum_time():
    detector = BargeInDetector(threshold_rms=1000, min_speech_ms=200, max_gap_ms=100)
    speech, silence = tone(300, 0.02, 3000), bytes(FRAME_BYTES)
    assert not any(detector.process_frame(speech) for _ in range(9))  # 180 ms
    assert not any(detector.process_frame(silence) for _ in range(5))  # a 100 ms pause starts the count again
    assert not any(detector.process_frame(speech) for _ in range(9))
    assert detector.process_frame(speech) is True


def test_a_short_word_barges_in_across_the_dips_between_its_syllables():
    """「知道了」 as it reached the hotline in the outage bench: 200 ms loud, a lost packet and a
    quieter onset (60 ms), then the next syllables; counted strictly in a row it never barged in."""
    detector = BargeInDetector()  # the line's defaults: 1300 RMS, 240 ms
    frames = [tone(300, 0.02, rms) for rms in (2400, 4200, 5400, 5000, 4300, 3900, 3700, 3300, 3000, 2700)]
    frames += [bytes(FRAME_BYTES), tone(300, 0.02, 700), tone(300, 0.02, 1100)]
    frames += [tone(300, 0.02, rms) for rms in (3700, 2200, 2600)]
    assert [detector.process_frame(f) for f in frames].index(True) == 14  # 280 ms after the word began
    cough = BargeInDetector()
    sounds = [tone(300, 0.02, 4000)] * 7 + [bytes(FRAME_BYTES)] * 10 + [tone(300, 0.02, 4000)] * 4
    assert not any(cough.process_frame(f) for f in sounds)  # a cough, then a knock: not speech
    quiet = BargeInDetector(threshold_rms=1000, min_speech_ms=200)
    assert not any(quiet.process_frame(tone(300, 0.02, 600)) for _ in range(50))  # line noise, echo


def test_prompt_player_gives_20_ms_frames_and_pads_the_last():
    frames = list(PromptPlayer(tone(440, 0.05, 1000)).frames())
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3 and frames[-1][-160:] == bytes(160)


def test_prompt_player_stops_on_a_key_or_on_speech_only_when_barge_in_is_allowed():
    prompt = tone(440, 1.0, 1000)
    player = PromptPlayer(prompt, barge_in=True)
    frames = player.frames()
    next(frames), next(frames)
    player.key_pressed()
    assert list(frames) == [] and player.barged_in

    talker = PromptPlayer(prompt, barge_in=True, detector=BargeInDetector(1000, 100))
    heard = 0
    for _ in talker.frames():
        heard += 1
        talker.hear(tone(300, 0.02, 4000))
    assert heard == 5 and talker.barged_in  # 100 ms of speech

    polite = PromptPlayer(prompt, barge_in=False)
    polite.key_pressed()
    polite.hear(tone(300, 0.02, 20000))
    assert len(list(polite.frames())) == 50 and not polite.barged_in


# ---------------------------------------------------------------- recording

def test_recording_is_a_complete_8khz_wav_at_every_moment(tmp_path):
    path = tmp_path / "caller.wav"
    recorder = WavRecorder(path)
    speech = tone(300, 1.0, 5000)
    for start in range(0, len(speech), FRAME_BYTES):
        recorder.write(speech[start:start + FRAME_BYTES])
    with wave.open(str(path)) as before_close:  # a caller who hung up, a process that died: still readable
        assert (before_close.getframerate(), before_close.getnchannels(), before_close.getsampwidth()) == (8000, 1, 2)
        assert before_close.readframes(before_close.getnframes()) == speech
    recorder.close()
    assert recorder.duration == 1.0
