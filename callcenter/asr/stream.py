"""One streaming recogniser per call: the only speech interface the call flows see.

Feed caller audio as it arrives (``accept``); get back ``Partial`` events while the caller speaks
and one ``Final`` when they stop (or talk too long, or the call ends). All times are seconds of
audio fed into this recogniser, never wall-clock time, so results do not depend on how fast the
machine is and tests need no clock.

End of speech is decided here, not by Vosk: Vosk 0.3.45 has fixed endpoint rules (about 0.5–1 s
of trailing silence, from the model's conf/model.conf) and no SetEndpointerDelays. We let Vosk cut
its segments as it likes and join them into one utterance until OUR silence rule fires:
the utterance ends once its text has not changed for ``end_silence`` seconds of audio. Measured on
the Korean test model: partial text changes every 0.24–0.48 s while someone speaks (Vosk decodes in
0.24 s chunks) and its last change comes 0.3–0.5 s after the speech ends, so the Final arrives
about ``end_silence`` + 0.4 s after the last word. Noise that the model does not turn into words
counts as silence, which an energy detector on a phone line would not manage.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from callcenter.asr.grammar import vosk_grammar

log = logging.getLogger("callcenter.asr")

EndReason = Literal["silence", "max_length", "end"]


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the stream
    end: float
    conf: float  # 0..1, the decoder's posterior for this word


@dataclass(frozen=True)
class Partial:
    text: str  # the utterance so far; may still change
    at: float  # seconds of audio fed when it was known


@dataclass(frozen=True)
class Final:
    text: str
    words: tuple[Word, ...]
    reason: EndReason  # silence after speech, the utterance reached max length, or finish() was called
    at: float = 0.0


Event = Partial | Final


class Recognizer(ABC):
    """Streaming speech-to-text for one call.

    Contract: events come back in audio order; every utterance that produced a Partial ends in
    exactly one Final (whose text may be empty if the decoder dropped its guess); silence alone
    produces no events.
    """

    sample_rate: int

    @abstractmethod
    def accept(self, pcm16: bytes) -> list[Event]:
        """Take mono signed 16-bit little-endian PCM at ``sample_rate``; return what it revealed."""

    @abstractmethod
    def finish(self) -> list[Event]:
        """The caller hung up or the flow stopped listening: close the open utterance, if any."""

    def release(self) -> None:
        """The listen is over (after ``finish``): the recogniser is not used again by its taker.
        Nothing to free by default; a recogniser that holds something (a pooled engine) says so."""
        return None


# ---------------------------------------------------------------- the real one

class VoskRecognizer(Recognizer):
    FRAME_SECONDS = 0.02  # one RTP packet (Vosk's partials only move every 0.24 s anyway)

    def __init__(self, model, sample_rate: int, *, end_silence: float = 1.0, max_utterance: float = 30.0,
                 grammar: Sequence[str] | None = None):
        import vosk

        if not 8000 <= sample_rate <= 48000:
            raise ValueError(f"sample_rate {sample_rate} Hz is outside 8000–48000 Hz")
        if end_silence <= 0 or max_utterance <= 0:
            raise ValueError("end_silence and max_utterance must be positive")
        self.sample_rate = sample_rate
        self.end_silence = end_silence
        self.max_utterance = max_utterance
        if grammar is None:  # free recognition with the model's full vocabulary
            self._vosk = vosk.KaldiRecognizer(model, sample_rate)
        else:
            restricted = vosk_grammar(grammar, lambda word: model.vosk_model_find_word(word) >= 0)
            if restricted is None:  # none of the phrases is in the model's vocabulary
                log.warning("grammar %r has no word this model knows; recognising freely", list(grammar))
                self._vosk = vosk.KaldiRecognizer(model, sample_rate)
            else:
                self._vosk = vosk.KaldiRecognizer(model, sample_rate, restricted)
        self._vosk.SetWords(True)
        self._frame_bytes = int(sample_rate * self.FRAME_SECONDS) * 2
        self._unfed = bytearray()
        self._samples = 0
        self._origin = 0  # samples fed before this use (a pooled recogniser's times restart at 0)
        self._start_utterance()

    @property
    def seconds_fed(self) -> float:
        return (self._samples - self._origin) / self.sample_rate

    def restart(self) -> None:
        """Ready for the next taker: nothing pending, times from 0 again. Vosk's own clock runs on
        across utterances (its word times are stream times), so ours is an offset, not a reset."""
        self._unfed.clear()
        self._origin = self._samples
        self._start_utterance()

    def accept(self, pcm16: bytes) -> list[Event]:
        self._unfed += pcm16
        events: list[Event] = []
        whole = len(self._unfed) - len(self._unfed) % self._frame_bytes
        for offset in range(0, whole, self._frame_bytes):
            events += self._feed(bytes(self._unfed[offset:offset + self._frame_bytes]))
        del self._unfed[:whole]
        return events

    def finish(self) -> list[Event]:
        events: list[Event] = []
        leftover = len(self._unfed) - len(self._unfed) % 2
        if leftover:
            events += self._feed(bytes(self._unfed[:leftover]))
        self._unfed.clear()
        # Always flush: the last word may still be in the decoder with no partial shown yet.
        final = self._close_utterance("end")
        if final.text or self._began_at is not None:
            events.append(final)
        self._start_utterance()
        return events

    # -- internals

    def _start_utterance(self) -> None:
        self._segments: list[dict] = []  # Vosk results already cut by Vosk's own endpointing
        self._text = ""  # what the last Partial said
        self._began_at: float | None = None
        self._changed_at = 0.0

    def _feed(self, frame: bytes) -> list[Event]:
        self._samples += len(frame) // 2
        vosk_paused = self._vosk.AcceptWaveform(frame)
        if vosk_paused:  # our utterance goes on; empty segments are Vosk timing out on silence
            segment = json.loads(self._vosk.Result())
            if segment.get("text"):
                self._segments.append(segment)
            current = ""
        else:
            current = json.loads(self._vosk.PartialResult()).get("partial", "")
        events: list[Event] = []
        text = _join([segment.get("text", "") for segment in self._segments] + [current])
        now = self.seconds_fed
        if text != self._text:
            self._text = text
            # Vosk pauses only after silence, and its segment text re-scores speech already heard:
            # a change then is not new speech, so it must not restart the silence clock.
            if not vosk_paused or self._began_at is None:
                self._changed_at = now
            if text:
                if self._began_at is None:
                    self._began_at = now
                events.append(Partial(text, now))
        if self._began_at is not None:  # an utterance is open (its text may have been revised away)
            if now - self._began_at >= self.max_utterance:
                events.append(self._end("max_length"))
            elif now - self._changed_at >= self.end_silence:
                events.append(self._end("silence"))
        return events

    def _end(self, reason: EndReason) -> Final:
        final = self._close_utterance(reason)
        self._start_utterance()
        return final

    def _close_utterance(self, reason: EndReason) -> Final:
        """Flush the decoder (Vosk restarts cleanly on the next frame, keeping stream times)."""
        segments = self._segments + [json.loads(self._vosk.FinalResult())]
        words = tuple(word for segment in segments for word in words_of(segment, self._origin / self.sample_rate))
        return Final(_join(segment.get("text", "") for segment in segments), words, reason, self.seconds_fed)


def words_of(result: dict, origin: float = 0.0) -> list[Word]:
    """The per-word entries of a Vosk result (present when SetWords(True)), timed from ``origin``."""
    return [Word(item["word"], round(item["start"] - origin, 3), round(item["end"] - origin, 3),
                 round(item.get("conf", 1.0), 3))
            for item in result.get("result", [])]


class RecognizerPool:
    """Free-speech recognisers kept warm between listens, shared by the calls of one process.

    A new Vosk recogniser on a model with a lookahead graph spends about 2 s of CPU on its first
    utterance building that graph's cache (measured on the Korean test model: 2.6 s to decode 2.7 s
    of speech on a new recogniser, 0.35 s on one used before), and a call makes several listens. So
    a listen takes an idle warm recogniser and gives it back. Grammar-restricted recognisers (yes/no,
    digits) cost 20 ms to make and nothing to warm: they are made per listen.
    """

    def __init__(self, model, sample_rate: int = 8000, *, end_silence: float = 1.0, max_utterance: float = 30.0,
                 max_idle: int = 32):
        self.model, self.sample_rate, self.max_idle = model, sample_rate, max_idle
        self.end_silence, self.max_utterance = end_silence, max_utterance
        self._idle: list[PooledRecognizer] = []
        self._lock = threading.Lock()

    def __call__(self, grammar: Sequence[str] | None = None) -> Recognizer:
        if grammar is not None:
            return VoskRecognizer(self.model, self.sample_rate, end_silence=self.end_silence,
                                  max_utterance=self.max_utterance, grammar=grammar)
        with self._lock:
            recognizer = self._idle.pop() if self._idle else None
        if recognizer is None:
            recognizer = PooledRecognizer(self, self.model, self.sample_rate, end_silence=self.end_silence,
                                          max_utterance=self.max_utterance)
        return recognizer

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _give_back(self, recognizer: PooledRecognizer) -> None:
        recognizer.restart()
        with self._lock:
            if len(self._idle) < self.max_idle and recognizer not in self._idle:
                self._idle.append(recognizer)


class PooledRecognizer(VoskRecognizer):
    def __init__(self, pool: RecognizerPool, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool = pool

    def release(self) -> None:
        self._pool._give_back(self)


def _join(texts: Iterable[str]) -> str:
    return " ".join(text for text in texts if text)
