"""The call record of one call flow, kept as the call goes: its recording and what the caller said.

Every flow records the whole call (the caller's side) to a WAV under ``settings.recordings_dir``
and keeps each answer as an utterance of the record's transcript, with where it lies in that
recording, so the console can play exactly the span a transcript line came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from callcenter.ivr.flows.dialogue import Dialogue, Heard
from core.calls import CallLog
from core.outcomes import CallOutcome
from core.settings import Settings
from core.transcript import Transcript, Utterance


class FlowRecord:
    def __init__(self, calls: CallLog, record_id: int, settings: Settings, clock: Callable[[], datetime]):
        self.calls = calls
        self.record_id = record_id
        self.settings = settings
        self.clock = clock
        self.utterances: list[Utterance] = []
        self.call = None  # the call once recorded (lines.Call)

    def start_recording(self, call, dialogue: Dialogue) -> None:
        """Record the call from now on; the dialogue's answer times count from here."""
        self.call = call
        relative = recording_name(self.clock().astimezone(self.settings.tz), self.record_id, call.call_id)
        path = self.settings.recordings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        call.start_recording(path)
        dialogue.restart_clock()
        self.calls.update(self.record_id, recording_path=relative)

    def note(self, step: str, heard: Heard) -> None:
        """Keep an answer (what was said or keyed, and where) unless nothing at all was heard."""
        if not heard.empty:
            self.utterances.append(Utterance(step, heard.text, heard.keys, heard.words, heard.start, heard.end))

    def transcript(self, confirmed: set[str] | None = None, without_speech: str | None = None,
                   who_is_coming: dict[str, Any] | None = None, consent: dict[str, Any] | None = None) -> Transcript:
        """The transcript so far; ``confirmed``: the facts the caller confirmed (the hotline's)."""
        return Transcript(list(self.utterances), sorted(confirmed) if confirmed is not None else None, without_speech,
                          who_is_coming, consent)

    def utterances_of(self, step: str) -> list[Utterance]:
        return [u for u in self.utterances if u.step == step]

    def close(self, outcome: str, confirmed: set[str] | None = None, without_speech: str | None = None,
              who_is_coming: dict[str, Any] | None = None, consent: dict[str, Any] | None = None) -> None:
        """Store the transcript (with ``confirmed``, the hotline's; ``consent``, the consent call's
        amount and answer) and how the call ended.
        A call the line ended for its own reason (no RTP: "media_timeout") says so, not "hung up"."""
        end_outcome = getattr(self.call, "end_outcome", None)
        if outcome == CallOutcome.CALLER_HUNG_UP and end_outcome:
            outcome = end_outcome
        transcript = self.transcript(confirmed, without_speech, who_is_coming, consent).to_json()
        self.calls.update(self.record_id, transcript=transcript)
        self.calls.close(self.record_id, outcome, self.clock())


def recording_name(started: datetime, record_id: int, sip_call_id: str) -> str:
    """Where a call's recording goes, relative to the recordings directory: by local day, then the
    record id and the (file-safe) SIP Call-ID, so a file can be traced both ways."""
    return f"{started:%Y/%m/%d}/{record_id}-{re.sub(r'[^A-Za-z0-9._-]', '_', sip_call_id)[:60]}.wav"
