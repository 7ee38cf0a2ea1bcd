"""What an engineer hears when an emergency call-out rings them, and the keys they press.

Runs on the call-out runner's thread (``callcenter/ivr/callout_runner.py``) with the answered
call. ``offer`` plays 「紧急报修」, the address, the category and the caller's own words (cut from
the hotline call's recording), then 「接单请按1，无法接单请按2，重听请按星号键」, and returns the
engineer's answer; the runner records it. A key pressed early takes effect after the piece being
played, so an engineer who has heard enough need not sit through the rest. Once the runner has
recorded an acceptance, ``tell_taken`` repeats the address, reads out the caller's number and, if
the caller is still on the hotline in this process, offers to put them through (``bridge.Meeting``).
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from callcenter.ivr.bridge import Meeting
from callcenter.ivr.flows.dialogue import Dialogue, HungUp
from callcenter.ivr.lines import Call
from callcenter.ivr.prompts import SAMPLE_RATE, Prompts
from core.callout_service import JobFacts
from core.dispatch import Outcome
from core.settings import Settings
from core.transcript import PROBLEM

log = logging.getLogger("callcenter.ivr")

LISTEN_SECONDS = 8.0  # for a key after the menu; the menu is said twice before it counts as no answer
MENU_TIMES = 2
MAX_REPEATS = 3  # "*" replays the announcement at most this often
BRIDGE_OFFER_SECONDS = 8.0
WAIT_FOR_CALLER_SECONDS = 60.0  # the caller may still be confirming their ticket before they can hold
# The caller's words: the span the hotline found, from 1.5 s before it (the hotline takes speech to
# start at 0.2 s of unbroken loudness, so soft first syllables such as 「厨房」 can come a second
# before that) to a little after; never longer than WORDS_MAX_SECONDS.
WORDS_LEAD_IN, WORDS_TAIL, WORDS_MAX_SECONDS = 1.5, 0.3, 30.0
WORDS_GAP = bytes(2 * SAMPLE_RATE * 4 // 10)  # 0.4 s between two things the caller said


class CalledOff(Exception):
    """The call-out no longer wants this engineer (the desk stopped it, or the service is stopping)."""


@dataclass(frozen=True)
class Job:
    """What the engineer is told, read afresh for every announcement: the hotline caller may still be
    giving the address or finishing their sentence when the engineer answers."""

    building: str = ""
    unit: str = ""
    room: str = ""
    area: str = ""
    category: str = "other"
    phone: str = ""
    caller_words: bytes = b""  # 8 kHz 16-bit PCM

    @property
    def has_address(self) -> bool:
        return bool(self.building or self.room or self.area)


def load_job(facts: JobFacts, settings: Settings) -> Job:
    """The job as stored now (``CallOutService.job``), with the caller's words cut from the recording."""
    return Job(facts.building, facts.unit, facts.room, facts.area, facts.category, facts.phone,
               caller_words(facts, settings))


def caller_words(facts: JobFacts, settings: Settings) -> bytes:
    """The caller's description of the problem in their own voice: the "problem" utterances of the
    hotline call that reported the ticket, cut from its recording; b"" if there are none (yet)."""
    if not facts.recording_path:
        return b""
    spans = [(u.start, u.end) for u in facts.transcript.of_step(PROBLEM) if u.end > u.start]
    try:
        pieces = [cut(settings.recordings_dir / facts.recording_path, start - WORDS_LEAD_IN, end + WORDS_TAIL)
                  for start, end in spans]
    except (OSError, wave.Error) as error:
        log.error("cannot read the caller's words from %s: %s", facts.recording_path, error)
        return b""
    return WORDS_GAP.join(pieces)[:2 * SAMPLE_RATE * int(WORDS_MAX_SECONDS)]


def cut(path: Path, start: float, end: float) -> bytes:
    """Seconds ``start`` to ``end`` of a recording (8 kHz mono 16-bit), which may still be growing."""
    with wave.open(str(path), "rb") as recording:
        first = max(0, int(start * SAMPLE_RATE))
        if first >= recording.getnframes():
            return b""
        recording.setpos(first)
        return recording.readframes(max(0, int(end * SAMPLE_RATE) - first))


class EngineerCall:
    """One engineer's answered call of a call-out, from the alert to the hang-up."""

    def __init__(self, call: Call, prompts: Prompts, job: Callable[[], Job], called_off: threading.Event):
        """``job()`` gives the current Job; ``called_off`` is set when the call-out no longer needs them."""
        self.call = call
        self.prompts = prompts
        self.job = job
        self.called_off = called_off
        self.dialogue = Dialogue(call, None)
        self.heard_it_all = False  # the whole announcement, up to the caller's words

    def offer(self) -> Outcome:
        """Accepted (1) or declined (2); * hears it all again. No key after the menu twice, or a
        hang-up without a key: no answer. CalledOff when the call-out stops wanting them."""
        repeats = asked = 0
        try:
            key = self._announce()
            while True:
                if key is None:
                    if asked == MENU_TIMES:
                        return Outcome.NO_ANSWER
                    key, asked = self._ask(), asked + 1
                elif key == "1":
                    return Outcome.ACCEPTED
                elif key == "2":
                    return Outcome.DECLINED
                elif key == "*" and repeats < MAX_REPEATS:
                    key, repeats, asked = self._announce(), repeats + 1, 0
                else:
                    key = None  # another key: ask again
        except HungUp:
            return Outcome.NO_ANSWER

    def tell_taken(self, meeting: Meeting | None) -> None:
        """After the acceptance is recorded: where to go (again, if they accepted before hearing it all),
        whom to call, and the caller if they hold."""
        d, p, job = self.dialogue, self.prompts, self.job()
        words = p["callout.accepted"]
        if job.has_address and not self.heard_it_all:
            words += p["callout.address_prefix"] + p.address(job.building, job.unit, job.room, job.area)
        if job.phone:
            words += p["callout.caller_number_prefix"] + p.digits(job.phone)
        try:
            d.say(words)
            if meeting is None or not meeting.caller_on_line:
                return
            d.say(p["callout.bridge_offer"], barge_in=True)
            if self.call.wait_dtmf(BRIDGE_OFFER_SECONDS) != "1":
                meeting.decline()
                return
            d.say(p["callout.connecting"])
            if not meeting.join(self.call, WAIT_FOR_CALLER_SECONDS) and self.call.is_active:
                d.say(p["callout.caller_unavailable"])
        except HungUp:
            if meeting is not None:
                meeting.decline()

    def tell_declined(self) -> None:
        self._say_if_up(self.prompts["callout.declined"])

    def tell_called_off(self) -> None:
        """The call-out no longer needs them: the desk stopped it, or the ticket was taken another way."""
        self._say_if_up(self.prompts["callout.cancelled"])

    # -- inside

    def _announce(self) -> str | None:
        """The alert, piece by piece; a key pressed meanwhile ends it after the current piece."""
        for piece in self._pieces():
            if (key := self._key(0)) is not None:
                return key
            self.dialogue.say(piece)
        self.heard_it_all = True
        return self._key(0)

    def _pieces(self) -> Iterator[bytes]:
        """The announcement, each piece made when it is due: the caller may have finished their
        sentence (or given the address) only while the first pieces played."""
        p = self.prompts
        yield p["callout.alert"]
        job = self.job()
        if job.has_address:
            yield p["callout.address_prefix"] + p.address(job.building, job.unit, job.room, job.area)
        yield p["callout.category_prefix"] + p[f"pieces.cat_{job.category}"]
        words = self.job().caller_words
        if words:
            yield p["callout.caller_words"] + words

    def _ask(self) -> str | None:
        if (key := self._key(0)) is not None:  # typed ahead
            return key
        self.dialogue.say(self.prompts["callout.accept_menu"], barge_in=True)
        return self._key(LISTEN_SECONDS)

    def _key(self, timeout: float) -> str | None:
        """The next key within ``timeout`` s (0: only one already pressed), watching for a call-off."""
        deadline = time.monotonic() + timeout
        while True:
            if self.called_off.is_set():
                raise CalledOff()
            key = self.call.wait_dtmf(min(0.2, max(0.0, deadline - time.monotonic())))
            if key is not None:
                return key
            if not self.call.is_active:
                raise HungUp()
            if time.monotonic() >= deadline:
                return None

    def _say_if_up(self, pcm: bytes) -> None:
        try:
            self.dialogue.say(pcm)
        except HungUp:
            pass
