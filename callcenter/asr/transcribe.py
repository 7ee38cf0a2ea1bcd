"""A whole recording to text with word times: what `callcenter transcribe FILE` prints."""

from __future__ import annotations

import json
from pathlib import Path

from callcenter.asr.audio import read_wav
from callcenter.asr.grammar import normalize
from callcenter.asr.stream import words_of

_CHUNK_SECONDS = 0.5  # files need no partials, so feed big chunks (cheaper per second of audio)


def transcribe_file(path: str | Path, model) -> dict:
    """{"text": ..., "words": [{"word", "start", "end", "conf"}]} for a WAV file (see audio.read_wav).

    Raises audio.AudioError for a file that is not usable audio.
    """
    import vosk

    audio = read_wav(path)
    recognizer = vosk.KaldiRecognizer(model, audio.sample_rate)
    recognizer.SetWords(True)
    chunk = int(audio.sample_rate * _CHUNK_SECONDS) * 2
    results = []
    for offset in range(0, len(audio.pcm), chunk):
        if recognizer.AcceptWaveform(audio.pcm[offset:offset + chunk]):
            results.append(json.loads(recognizer.Result()))
    results.append(json.loads(recognizer.FinalResult()))
    words = [word for result in results for word in words_of(result)]
    return {
        "text": " ".join(result["text"] for result in results if result.get("text")),
        "words": [{"word": w.word, "start": w.start, "end": w.end, "conf": w.conf} for w in words],
    }


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance over characters / reference length, ignoring spaces and punctuation (Chinese
    models put spaces between words and no punctuation). Used by the bench and the Chinese tests."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return float(bool(hyp))
    previous = list(range(len(hyp) + 1))
    for i, ref_char in enumerate(ref, 1):
        current = [i]
        for j, hyp_char in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char)))
        previous = current
    return previous[-1] / len(ref)
