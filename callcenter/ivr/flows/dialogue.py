"""The turns every call flow is made of: say something, hear an answer (speech or keys).

A ``Dialogue`` runs on the call's own thread. Speech goes through whatever ``Recognizer`` the
service gives it (the real Vosk engine, or a scripted stand-in in tests); with no speech model
at all it still hears keys and still knows when the caller spoke and stopped (by energy), so
the description is kept in the recording for the front desk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from callcenter.asr.grammar import YES_NO, Choices, match_answer, phrases_of
from callcenter.asr.stream import Final, Partial, Recognizer
from callcenter.ivr.media import PlayOutcome, rms

log = logging.getLogger("callcenter.ivr")
GOODBYE_PAUSE = 0.8  # seconds between the goodbye's last packet and the hang-up



class HungUp(Exception):
    """The caller is gone; the flow stops and saves what it has. Raised by ``listen``, it carries
    what was heard up to the hang-up (the recogniser's last partial, closed), so a caller who hangs
    up mid-sentence still leaves their words."""

    def __init__(self, heard: Heard | None = None):
        super().__init__("the caller hung up")
        self.heard = heard


class CallLike(Protocol):
    @property
    def call_id(self) -> str: ...

    def play(self, pcm: bytes, barge_in: bool = False) -> PlayOutcome: ...
    def send_frame(self, pcm: bytes) -> bool: ...  # put_through bridges the call
    def frames(self, timeout: float | None = None): ...
    def flush_frames(self) -> None: ...
    def dtmf(self) -> str: ...
    def wait_dtmf(self, timeout: float) -> str | None: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def end_reason(self) -> str: ...


@dataclass
class Heard:
    """One answer: what was said (text and words with confidences) and the keys pressed."""

    text: str = ""
    words: list[dict] = field(default_factory=list)
    keys: str = ""
    spoke: bool = False  # the caller made speech-like sound (also known without a model)
    start: float = 0.0  # seconds into the call's recording
    end: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.text and not self.keys and not self.spoke


@dataclass
class EnergyEndpointer:
    """Speech start and end by loudness alone: for calls with no speech model."""

    threshold_rms: float = 700.0
    start_seconds: float = 0.2
    end_silence: float = 1.2
    loud: float = 0.0
    quiet: float = 0.0
    speaking: bool = False

    def feed(self, pcm: bytes) -> str | None:
        """"start" when speech begins, "end" when it has stopped for ``end_silence``, else None."""
        loudness = rms(pcm)
        seconds = len(pcm) / 16000
        # Durations are sums of 0.02 s frames: ten of them make 0.19999999999999998, not 0.2.
        if loudness >= self.threshold_rms:
            self.loud += seconds
            self.quiet = 0.0
            if not self.speaking and self.loud >= self.start_seconds - 1e-6:
                self.speaking = True
                return "start"
        else:
            self.quiet += seconds
            if not self.speaking:
                self.loud = 0.0
            elif self.quiet >= self.end_silence - 1e-6:
                return "end"
        return None


class Dialogue:
    def __init__(self, call: CallLike, new_recognizer: Callable[[list[str] | None], Recognizer] | None,
                 end_silence: float = 1.0):
        self.call = call
        self.new_recognizer = new_recognizer
        self.end_silence = end_silence
        self.started = time.monotonic()

    def restart_clock(self) -> None:
        """Call when the recording starts: answers are located in it by these offsets."""
        self.started = time.monotonic()

    @property
    def has_speech(self) -> bool:
        return self.new_recognizer is not None

    def offset(self) -> float:
        """Seconds since the recording started: where an answer is in the call's recording."""
        return round(time.monotonic() - self.started, 2)

    def say(self, pcm: bytes, barge_in: bool = False, overheard: Callable[[bytes], None] | None = None
            ) -> PlayOutcome:
        """Play a prompt. What the caller said over it is not the answer and is dropped, unless
        ``overheard`` wants it (frame by frame, once the prompt is over; the call keeps the last 10 s,
        so a prompt that needs all of it must be shorter)."""
        outcome = self.call.play(pcm, barge_in=barge_in)
        if outcome == PlayOutcome.HUNG_UP:
            raise HungUp()
        if outcome == PlayOutcome.DONE:
            if overheard is None:
                self.call.flush_frames()
            else:
                for frame in self._buffered_frames():
                    overheard(frame)
        return outcome

    def say_goodbye(self, pcm: bytes) -> None:
        """The last prompt before the flow hangs up: played whole, then ``GOODBYE_PAUSE`` of quiet.
        ``play`` returns as the last packet leaves; the caller's phone still has that much in its
        jitter buffer, and drops it when the BYE arrives: without the pause 「再见」 is cut short."""
        self.say(pcm)
        time.sleep(GOODBYE_PAUSE)

    def _buffered_frames(self):
        """The caller's audio received and not yet read, without waiting for more."""
        while (frame := next(self.call.frames(timeout=0), None)) is not None:
            yield frame

    def listen(self, *, max_seconds: float, no_input_seconds: float = 6.0, grammar: list[str] | None = None,
               keys_end: str = "", max_keys: int = 1, on_partial: Callable[[str], None] | None = None,
               end_silence: float | None = None) -> Heard:
        """Hear one answer: speech up to its end (silence) or ``max_seconds``, or keys.

        Keys: returns after ``max_keys`` keys or on a key in ``keys_end`` (e.g. "#"). Nothing at
        all within ``no_input_seconds`` returns an empty Heard. ``end_silence`` (default: the
        dialogue's) is how long a silence ends speech when there is no recogniser to say so; with
        one, a sound it takes for no words at all also ends at that silence. Raises HungUp when the
        caller is gone, carrying what was heard until then.

        ``start``/``end`` (and the words' times) are offsets in the call's recording. The audio fed
        here may begin before this call (what the caller said over a prompt they barged in on is
        still buffered), so its position is worked out from how much audio was taken in: the last
        frame taken is the one just received.
        """
        recognizer = self.new_recognizer(grammar) if self.new_recognizer else None
        energy = EnergyEndpointer(end_silence=end_silence or self.end_silence)
        heard = Heard(start=self.offset())
        began = time.monotonic()
        finals: list[Final] = []
        fed = 0.0  # seconds of caller audio taken in by this listen
        speech_from: float | None = None  # where in that audio the energy says speech began
        speech_to = 0.0  # ... and was last loud
        partial_seen = False
        try:
            for frame in self._frames_until(began + max_seconds):
                if self._read_keys(heard, keys_end, max_keys):
                    break
                if not frame:  # no audio (RTP paused): still check keys and timeouts
                    if not heard.spoke and time.monotonic() - began >= no_input_seconds:
                        break
                    continue
                fed += len(frame) / 16000
                moment = energy.feed(frame)
                if moment == "start":
                    heard.spoke = True
                    speech_from = fed - energy.loud
                if energy.speaking and energy.quiet == 0.0:
                    speech_to = fed
                if recognizer is not None:
                    events = recognizer.accept(frame)
                    for event in events:
                        if isinstance(event, Partial) and event.text:
                            partial_seen = True
                            if on_partial:
                                on_partial(event.text)
                    finals += [e for e in events if isinstance(e, Final) and e.text]
                    if finals:
                        break
                    if moment == "end" and not partial_seen:
                        break  # a cough or a bang the recogniser did not take for words: do not wait for more
                elif moment == "end":
                    break
                if not heard.spoke and not finals and time.monotonic() - began >= no_input_seconds:
                    break
            else:
                if not self.call.is_active:
                    raise HungUp()
            self._close(heard, recognizer, finals, fed, speech_from, speech_to)
        except HungUp:
            self._close(heard, recognizer, finals, fed, speech_from, speech_to)
            log.info("call %s: hung up while we listened; heard %r", self.call.call_id, heard.text)
            raise HungUp(heard) from None
        finally:
            if recognizer is not None:
                recognizer.release()  # after _close: it may still flush the open utterance
        log.info("call %s: heard %r keys %r (%.2f-%.2f s)", self.call.call_id, heard.text, heard.keys,
                 heard.start, heard.end)
        return heard

    def _close(self, heard: Heard, recognizer: Recognizer | None, finals: list[Final], fed: float,
               speech_from: float | None, speech_to: float) -> None:
        """Fill in ``heard`` once listening is over (the open utterance is closed by ``finish``)."""
        if recognizer is not None and not finals:
            finals += [e for e in recognizer.finish() if isinstance(e, Final) and e.text]
        now = self.offset()
        audio_start = max(0.0, min(heard.start, now - fed))  # the recording offset of the first frame fed
        heard.text = "".join(f.text.replace(" ", "") for f in finals)
        heard.words = [{"word": w.word, "start": round(audio_start + w.start, 2), "end": round(audio_start + w.end, 2),
                        "conf": w.conf} for f in finals for w in f.words]
        heard.spoke = heard.spoke or bool(heard.text)
        if speech_from is not None:
            heard.start = round(audio_start + speech_from, 2)
            heard.end = round(audio_start + max(speech_to, speech_from), 2)
        elif heard.words:
            heard.start, heard.end = heard.words[0]["start"], heard.words[-1]["end"]
        else:
            heard.end = now

    def _frames_until(self, deadline: float):
        while time.monotonic() < deadline:
            got_any = False
            for frame in self.call.frames(timeout=0.1):
                got_any = True
                yield frame
                if time.monotonic() >= deadline:
                    return
            if not self.call.is_active:
                raise HungUp()
            if not got_any:
                yield b""  # no audio (RTP paused): still check keys and timeouts

    def _read_keys(self, heard: Heard, keys_end: str, max_keys: int) -> bool:
        for key in self.call.dtmf():
            if key in keys_end:
                return True
            heard.keys += key
            if len(heard.keys) >= max_keys:
                return True
        return False

    # -- common questions --------------------------------------------------------------

    def ask(self, prompt: bytes, choices: Choices, keys: Mapping[str, str], *, tries: int = 2, again: bytes = b"",
            on_heard: Callable[[Heard], None] = lambda heard: None) -> str | None:
        """One of the answers in ``choices``, said or keyed (``keys``: key -> answer); asked up to
        ``tries`` times (after ``again``, e.g. 「没有听清」) while unclear; None if it stays unclear.

        ``on_heard`` gets everything heard, the last words of a caller who hangs up included. Those
        words still answer the question (the caller's next turn then raises HungUp)."""
        for attempt in range(tries):
            self.say(again + prompt if attempt else prompt, barge_in=True)
            try:
                heard = self.listen(max_seconds=6, no_input_seconds=5, grammar=phrases_of(choices))
            except HungUp as gone:
                if gone.heard is None:
                    raise
                on_heard(gone.heard)
                if (answer := chosen(gone.heard, choices, keys)) is None:
                    raise
                return answer
            on_heard(heard)
            if (answer := chosen(heard, choices, keys)) is not None:
                return answer
        return None

    def ask_yes_no(self, prompt: bytes, tries: int = 2) -> bool | None:
        """是/不是 by voice or 1/2 by key; asked again once when unclear; None if still unclear."""
        answer = self.ask(prompt, YES_NO, {"1": "yes", "2": "no"}, tries=tries)
        return None if answer is None else answer == "yes"

    def ask_keys(self, prompt: bytes, max_keys: int = 8, end_key: str = "#", timeout: float = 10.0) -> str:
        """Digits typed on the keypad, ended by ``end_key``."""
        self.say(prompt, barge_in=True)
        keys = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(keys) < max_keys:
            key = self.call.wait_dtmf(min(1.0, deadline - time.monotonic()))
            if not self.call.is_active:
                raise HungUp()
            if key is None:
                continue
            if key == end_key:
                break
            if key.isdigit():
                keys += key
                deadline = time.monotonic() + timeout  # each key gives the caller time for the next
        return keys


def chosen(heard: Heard, choices: Choices, keys: Mapping[str, str]) -> str | None:
    """The answer a key or the words give, or None."""
    if heard.keys in keys:
        return keys[heard.keys]
    return match_answer(heard.text, choices) if heard.text else None
