"""A whole recording to text with word times: what `callcenter transcribe FILE` prints."""

from __future__ import annotations

import json
from pathlib import Path

from callcenter.asr.audio import read_wav
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
