"""A call's transcript: what the caller said or keyed at each step, and where it lies in the recording.

Written by the call flows as the call goes (``callcenter/ivr/flows/call_record.py``) and read by
others: the emergency call-out plays an engineer the caller's own words (the ``PROBLEM`` steps,
cut from the hotline call's recording), the console shows it line by line. Stored as JSON in
``CallRecord.transcript``::

    {"utterances": [{"step": "problem", "text": "...", "keys": "", "words": [...], "start": 3.2, "end": 6.9}],
     "confirmed": ["address", "summary"]}        # the hotline's only: what the caller confirmed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM = "problem"  # the hotline caller describing the problem (what a call-out plays the engineer)


@dataclass(frozen=True)
class Utterance:
    """One answer: the step that asked, what was said (text, and words with their times and
    confidences) or keyed, and its span in seconds from the start of the call's recording."""

    step: str
    text: str = ""
    keys: str = ""
    words: list[dict[str, Any]] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "text": self.text, "keys": self.keys, "words": self.words,
                "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Utterance:
        return cls(step=data.get("step", ""), text=data.get("text", ""), keys=data.get("keys", ""),
                   words=list(data.get("words", [])), start=data.get("start", 0.0), end=data.get("end", 0.0))


@dataclass
class Transcript:
    utterances: list[Utterance] = field(default_factory=list)
    confirmed: list[str] | None = None  # the hotline's: the facts the caller confirmed (None: not a hotline call)
    without_speech: str | None = None  # why the call was taken on keys only ("recognisers_busy"); None: it was not
    who_is_coming: dict[str, Any] | None = None  # what the caller was told of the engineer coming, if anything
    consent: dict[str, Any] | None = None  # the consent call's: the amount quoted and the answer

    def of_step(self, step: str) -> list[Utterance]:
        return [u for u in self.utterances if u.step == step]

    def to_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {"utterances": [u.to_json() for u in self.utterances]}
        if self.confirmed is not None:
            stored["confirmed"] = list(self.confirmed)
        if self.without_speech is not None:
            stored["without_speech"] = self.without_speech
        if self.who_is_coming is not None:
            stored["who_is_coming"] = self.who_is_coming
        if self.consent is not None:
            stored["consent"] = self.consent
        return stored

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Transcript:
        """A stored transcript (None, as a record whose transcript was cleared, is an empty one)."""
        data = data or {}
        confirmed = data.get("confirmed")
        return cls([Utterance.from_json(u) for u in data.get("utterances", [])],
                   list(confirmed) if confirmed is not None else None, data.get("without_speech"),
                   data.get("who_is_coming"), data.get("consent"))
