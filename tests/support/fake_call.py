"""A call without a network, for testing the call flows turn by turn in milliseconds.

``FakeCall`` implements what the flows use of ``callcenter.ivr.lines.Call`` (play, frames, dtmf,
wait_dtmf, answer, hangup, start_recording, dial on its line) and plays a caller (or an engineer)
from a script of turns:

* ``Say("是")`` — the caller speaks: loud audio for ``seconds`` and, with a speech model, the
  scripted recogniser's partial and final results (``partials`` first); ``hang_up=True`` ends the
  call in the middle of the sentence, before the final result.
* ``Press("101#")`` — keys.
* ``Silence()`` — nothing at all, until the flow stops waiting.
* ``HangUp()`` — the caller is gone.

A turn is the answer to what the flow waits for next, after the prompt it played last. With
``during="hotline.greeting"`` a turn happens while that prompt plays instead: keys barge in (or
type ahead), a ``HangUp`` ends the call mid-prompt, speech is heard over it. When the script runs
out the caller hangs up, so a flow can never wait for ever.

Prompts are ``LabelledPrompts``: each prompt's "audio" is its id, so ``call.prompts`` lists what
was played, in order, pieces (digits, addresses) included. Time is virtual (``VirtualTime``,
patched over the flows' ``time`` module): 20 ms of audio advance it by 20 ms and a wait for a key
by its timeout, so a six-second silence costs a few hundred loop turns and no waiting.
"""

from __future__ import annotations

import re
import struct
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.ivr.media import PlayOutcome
from callcenter.ivr.prompts import AUDIO_DIR, Prompts
from callcenter.sip.errors import CallEnded, DialError
from tests.support.scripted_recognizer import ScriptedRecognizer

FRAME_SECONDS = 0.02
SILENT_FRAME = bytes(320)  # 20 ms of 8 kHz 16-bit silence
LOUD_FRAME = struct.pack("<160h", *([4000, -4000] * 80))  # well over the speech threshold
_LABEL = re.compile(rb"\[([A-Za-z0-9_.]+)\]")


class LabelledPrompts(Prompts):
    """The real prompt list (``audio/prompts.toml``), each prompt's audio being ``[its.id]``."""

    def __init__(self, directory: Path = AUDIO_DIR):
        self.directory = directory
        listing = tomllib.loads((directory / "prompts.toml").read_text(encoding="utf-8"))
        self.texts = {f"{section}.{key}": text for section, items in listing.items() for key, text in items.items()}
        self._audio = {prompt_id: f"[{prompt_id}]".encode() for prompt_id in self.texts}


def labels(pcm: bytes) -> list[str]:
    """The prompt ids in audio made of ``LabelledPrompts``."""
    return [match.decode() for match in _LABEL.findall(pcm)]


class VirtualTime:
    """Stands in for the ``time`` module in the flows: ``monotonic`` is moved by the fake call."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Turn:
    during: str = ""  # a prompt id: the turn happens while that prompt plays


@dataclass
class Say(Turn):
    text: str = ""
    seconds: float = 1.0
    partials: tuple[str, ...] = ()
    hang_up: bool = False  # gone before the sentence ends: the recogniser's last partial is all there is


@dataclass
class Press(Turn):
    keys: str = ""


@dataclass
class Silence(Turn):
    pass


@dataclass
class HangUp(Turn):
    pass


def say(text: str, **kwargs) -> Say:
    return Say(text=text, **kwargs)


def press(keys: str, **kwargs) -> Press:
    return Press(keys=keys, **kwargs)


@dataclass
class FakeLine:
    name: str = "hotline"
    dialled: list[str] = field(default_factory=list)
    answer_dial: object = None  # a FakeCall that answers the next dial, or None: DialError (no answer)

    def dial(self, number: str, timeout: float = 30.0, cancel=None):
        self.dialled.append(number)
        if self.answer_dial is None:
            raise DialError(f"{number} did not answer", 480)
        call, self.answer_dial = self.answer_dial, None
        return call


class FakeCall:
    def __init__(self, turns: list[Turn], time: VirtualTime, *, caller: str = "sip:13800138000@127.0.0.2",
                 called: str = "sip:hotline@127.0.0.1", call_id: str = "fake-call", line: FakeLine | None = None,
                 cancelled: bool = False):
        self.turns = deque(turns)
        self.time = time
        self.caller, self.called, self.call_id = caller, called, call_id
        self.line = line or FakeLine()
        self.cancelled = cancelled  # the caller hangs up while it rings: answer() raises CallEnded
        self.played: list[str] = []  # every prompt id played, in order
        self.audio_played: list[bytes] = []  # every play() as given
        self.recording: Path | None = None
        self.answered = self.hung_up_by_flow = False
        self.end_outcome: str | None = None
        self._active = True
        self._frames: deque[bytes] = deque()  # the caller's audio not yet read
        self._keys: deque[str] = deque()
        self._script: list = []  # the current turn's recogniser script
        self._hang_up_after_audio = False
        self._awaiting = True  # a prompt was played: the next wait starts the next turn

    # -- what the test reads

    @property
    def prompts(self) -> list[str]:
        return self.played

    def new_recognizer(self, grammar: list[str] | None = None) -> ScriptedRecognizer:
        """The flows' ``new_recognizer``: the scripted results of the turn this listen hears."""
        self._start_turn()
        script, self._script = self._script, []
        return ScriptedRecognizer(script)

    # -- the call interface

    @property
    def is_active(self) -> bool:
        return self._active

    def answer(self) -> None:
        if self.cancelled:
            self._active = False
            raise CallEnded("cancelled while ringing")
        self.answered = True

    def hangup(self) -> None:
        self.hung_up_by_flow = True
        self._active = False

    def start_recording(self, path) -> None:
        self.recording = Path(path)

    def play(self, pcm: bytes, barge_in: bool = False) -> PlayOutcome:
        if not self._active:
            return PlayOutcome.HUNG_UP
        if barge_in and self._keys:
            return PlayOutcome.BARGED_IN  # typed ahead
        ids = labels(pcm)
        self.audio_played.append(pcm)
        self._awaiting = True
        while self.turns and self.turns[0].during:
            if self.turns[0].during not in ids:
                break
            played_until = ids.index(self.turns[0].during) + 1
            self.played += ids[:played_until]
            ids = ids[played_until:]
            turn = self.turns.popleft()
            self._act(turn)
            if isinstance(turn, HangUp):
                return PlayOutcome.HUNG_UP
            if barge_in:
                return PlayOutcome.BARGED_IN
        self.played += ids
        self.time.advance(0.1 * max(1, len(ids)))
        return PlayOutcome.DONE

    def frames(self, timeout: float | None = None):
        if timeout:
            self._start_turn()
        if timeout == 0:  # only what is buffered already
            while self._frames:
                yield self._frames.popleft()
            return
        for _ in range(5):  # 0.1 s at a time, like the real call's 0.1 s waits
            if self._frames:
                self.time.advance(FRAME_SECONDS)
                yield self._frames.popleft()
                continue
            if self._hang_up_after_audio:
                self._active = False
            if not self._active:
                return
            self.time.advance(FRAME_SECONDS)
            yield SILENT_FRAME

    def flush_frames(self) -> None:
        self._frames.clear()

    def dtmf(self) -> str:
        keys = "".join(self._keys)
        self._keys.clear()
        return keys

    def wait_dtmf(self, timeout: float) -> str | None:
        if timeout > 0:
            self._start_turn()
        if self._keys:
            self.time.advance(0.01)
            return self._keys.popleft()
        self.time.advance(timeout)
        if self._hang_up_after_audio and not self._frames:
            self._active = False
        return None

    # -- inside

    def _start_turn(self) -> None:
        if not self._awaiting or not self._active:
            return
        self._awaiting = False
        if not self.turns:
            self._active = False  # nothing more scripted: the caller hangs up
            return
        if self.turns[0].during:
            return  # waits for its prompt
        self._act(self.turns.popleft())

    def _act(self, turn: Turn) -> None:
        if isinstance(turn, HangUp):
            self._active = False
        elif isinstance(turn, Press):
            self._keys.extend(turn.keys)
        elif isinstance(turn, Say):
            frames = round(turn.seconds / FRAME_SECONDS)
            self._frames.extend([LOUD_FRAME] * frames)
            step = turn.seconds / (len(turn.partials) + 1)
            self._script = [(round(step * (i + 1), 2), "partial", text) for i, text in enumerate(turn.partials)]
            if turn.hang_up:
                self._hang_up_after_audio = True
            elif turn.text:
                self._script.append((turn.seconds, "final", turn.text))
