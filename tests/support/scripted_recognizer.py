"""A stand-in recogniser for call-flow tests: replays a script of partial and final results.

Test-only: it does not listen to the audio at all, so it must never stand in for a recogniser under
test (those run the real Vosk engine). The flows' unit tests (tests/test_flow_*.py) and the SIPp
end-to-end tests (tests/support/hotline_caller.py) give it to the flows as their ``new_recognizer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from callcenter.asr.stream import Event, Final, Partial, Recognizer, Word

ScriptLine = tuple[float, Literal["partial", "final"], str]


class ScriptedRecognizer(Recognizer):
    """Replays a script [(seconds, "partial" | "final", text)] as audio is fed: each line fires once
    the audio fed so far reaches its time. For testing call flows without a Chinese model; it does
    not listen to the audio at all, so it must never stand in for a recogniser under test."""

    def __init__(self, script: Iterable[ScriptLine], sample_rate: int = 8000):
        self.sample_rate = sample_rate
        self._script = sorted(script, key=lambda line: line[0])
        for _, kind, _ in self._script:
            if kind not in ("partial", "final"):
                raise ValueError(f"script line kind must be 'partial' or 'final', not {kind!r}")
        self._samples = 0
        self._pending_text = ""  # a partial not yet closed by a final

    @property
    def seconds_fed(self) -> float:
        return self._samples / self.sample_rate

    def accept(self, pcm16: bytes) -> list[Event]:
        self._samples += len(pcm16) // 2
        events: list[Event] = []
        while self._script and self._script[0][0] <= self.seconds_fed:
            at, kind, text = self._script.pop(0)
            if kind == "partial":
                self._pending_text = text
                events.append(Partial(text, self.seconds_fed))
            else:
                self._pending_text = ""
                events.append(Final(text, _even_words(text, at), "silence", self.seconds_fed))
        return events

    def finish(self) -> list[Event]:
        self._script.clear()  # what was scripted after the hang-up never got said
        if not self._pending_text:
            return []
        text, self._pending_text = self._pending_text, ""
        return [Final(text, _even_words(text, self.seconds_fed), "end", self.seconds_fed)]


def _even_words(text: str, end: float) -> tuple[Word, ...]:
    """Scripted words: 0.3 s each, ending at the scripted time, fully confident."""
    tokens = text.split()
    return tuple(Word(token, round(max(0.0, end - 0.3 * (len(tokens) - i)), 3),
                      round(max(0.0, end - 0.3 * (len(tokens) - i - 1)), 3), 1.0)
                 for i, token in enumerate(tokens))
