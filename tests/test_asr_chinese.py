"""The recogniser on a real Chinese model with Mandarin made by espeak-ng (voice cmn).

Runs only when CALLCENTER_ASR_MODEL_PATH points at an unpacked Chinese Vosk model (the product's
vosk-model-small-cn-0.22, as installed by `callcenter setup asr`); there is no Chinese model in
the test environment by default, so otherwise the whole module is skipped with that reason.
espeak's Mandarin is robotic, so the error-rate bounds are loose: they catch a broken pipeline
(wrong sample rate, garbled G.711, a non-Chinese model), not a few misheard characters.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from callcenter.asr.audio import read_wav
from callcenter.asr.grammar import DIGITS, YES_NO, match_answer, phrases_of
from callcenter.asr.model import ModelError, load_model
from callcenter.asr.stream import VoskRecognizer
from callcenter.asr.transcribe import transcribe_file
from tests.support.metrics import character_error_rate
from tests.test_asr_stream import finals, padded, partials, run_stream, speak, speech_span

MODEL_PATH = os.environ.get("CALLCENTER_ASR_MODEL_PATH")
pytestmark = [
    pytest.mark.chinese,
    pytest.mark.skipif(not MODEL_PATH, reason="no Chinese model: set CALLCENTER_ASR_MODEL_PATH to an unpacked "
                                              "Chinese Vosk model (e.g. vosk-model-small-cn-0.22) to run these"),
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                       reason="espeak-ng and sox make the test speech"),
]

# What residents say on the repair line: a leak, an address, an emergency, an appointment.
SENTENCES = [
    "我家厨房的水管漏水了",
    "三号楼二单元五零一室停电了",
    "电梯里有人被困住了",
    "明天上午十点来修空调",
    "卫生间的马桶堵了",
]
MAX_MEAN_CER_CLEAN = 0.5
MAX_EXTRA_CER_PHONE = 0.2  # 8 kHz μ-law may lose this much more than clean 16 kHz


@pytest.fixture(scope="session")
def zh_model():
    try:
        return load_model(Path(MODEL_PATH))
    except ModelError as error:  # configured but unusable: that is a failure, not a reason to skip
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def zh_speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech-cmn")


@pytest.fixture(scope="session")
def zh_runs(zh_model, zh_speech_dir):
    """Every sentence streamed once as clean 16 kHz and once as an 8 kHz μ-law phone line."""
    runs = {}
    for kind, phone_line in (("16k", False), ("8k-ulaw", True)):
        runs[kind] = []
        for sentence in SENTENCES:
            audio = padded(read_wav(speak(sentence, "cmn", zh_speech_dir, phone_line=phone_line)), 0.5, 2.0)
            events = run_stream(VoskRecognizer(zh_model, audio.sample_rate), audio)
            runs[kind].append((sentence, audio, events))
    return runs


def mean_cer(runs) -> float:
    return sum(character_error_rate(sentence, " ".join(f.text for f in finals(events)))
               for sentence, _, events in runs) / len(runs)


def test_clean_speech_is_transcribed(zh_runs):
    cer = mean_cer(zh_runs["16k"])
    print(f"mean CER, 16 kHz: {cer:.2f}")
    assert cer <= MAX_MEAN_CER_CLEAN


def test_phone_line_speech_is_transcribed_nearly_as_well(zh_runs):
    clean, phone = mean_cer(zh_runs["16k"]), mean_cer(zh_runs["8k-ulaw"])
    print(f"mean CER, 8 kHz μ-law: {phone:.2f} (16 kHz: {clean:.2f})")
    assert phone <= clean + MAX_EXTRA_CER_PHONE


@pytest.mark.parametrize("kind", ["16k", "8k-ulaw"])
def test_partials_while_speaking_and_one_final_after_silence(zh_runs, kind):
    for sentence, audio, events in zh_runs[kind]:
        speech_end = speech_span(audio)[1]
        assert partials(events) and partials(events)[0].at < speech_end, sentence
        (final,) = finals(events)
        assert final.reason == "silence" and speech_end < final.at < audio.duration, sentence
        assert all(0 <= word.start <= word.end <= audio.duration for word in final.words)


@pytest.mark.parametrize("said, choices, answer", [
    ("是的", YES_NO, "yes"), ("不是", YES_NO, "no"), ("对", YES_NO, "yes"), ("三", DIGITS, "3"),
])
def test_menu_answers_with_a_grammar(zh_model, zh_speech_dir, said, choices, answer):
    audio = padded(read_wav(speak(said, "cmn", zh_speech_dir, phone_line=True)), 0.3, 1.5)
    recognizer = VoskRecognizer(zh_model, audio.sample_rate, grammar=phrases_of(choices))
    (final,) = finals(run_stream(recognizer, audio))
    assert match_answer(final.text, choices) == answer, final.text


def test_transcribe_file(zh_model, zh_speech_dir):
    sentence = SENTENCES[0]
    result = transcribe_file(speak(sentence, "cmn", zh_speech_dir), zh_model)
    assert character_error_rate(sentence, result["text"]) <= MAX_MEAN_CER_CLEAN + 0.2
    assert result["words"] and all(word["end"] >= word["start"] for word in result["words"])
