"""The follow-up call (回访): was the repair done, how satisfied is the resident, anything to add.

``run_survey`` takes a call we dialled that the resident answered (``callcenter/ivr/followup_dialler.py``
dials) and runs on the dialling thread. It says who is calling, why and that the call is recorded,
before anything else; names the repair (the day it was reported, what, where); asks 「问题解决了吗？」
and the rating, each by word or key and asked once more when unclear; invites a spoken comment
after a beep; thanks and hangs up. 9 or 「别再打了」 in any answer ends the call with the promise not
to call again (``opted_out``).

Whatever happens it returns ``SurveyAnswers`` with what was answered so far (a resident who hangs
up mid-way included); what to store is for its caller. The call record it is given gets the
recording, the utterances and how the call ended.

Nobody reached (``reached=False``, the call counts as unanswered):
* silence: no sound and no key from the answer through both tries of the first question;
* a voicemail greeting, by a simple heuristic: before the first question was over the far end
  talked for ``GREETING_SECONDS`` or more without a pause of ``GREETING_PAUSE`` seconds, and the
  question got no answer. A greeting runs 5-10 s straight from the answer; a person says 「喂？」
  and listens. (A resident who talks over the whole introduction and then ignores the question
  looks the same; the follow-up is then simply tried again later.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from callcenter.asr.capacity import StreamSlots, speech_for_call
from callcenter.asr.grammar import DIGITS, OPT_OUT, RATINGS, SCORES, YES_NO, Choices
from callcenter.asr.stream import Recognizer
from callcenter.ivr.flows.call_record import FlowRecord
from callcenter.ivr.flows.dialogue import Dialogue, EnergyEndpointer, Heard, HungUp, chosen
from callcenter.ivr.lines import CallEnded
from callcenter.ivr.media import rms
from callcenter.ivr.prompts import Prompts
from core.calls import CallLog
from core.followup import SurveyAnswers
from core.followup_policy import MENU_RATINGS, SCORE_RANGE, rating_for_score
from core.outcomes import CallOutcome
from core.settings import Settings

log = logging.getLogger("callcenter.ivr")

OPT_OUT_KEY = "9"  # announced in the introduction (survey.opt_out_hint)
GREETING_SECONDS = 4.0
GREETING_PAUSE = 0.6
NO_INPUT_SECONDS = 5.0
COMMENT_SECONDS = 30.0
# With no speech model a comment is only recorded: a pause for thought must not end it.
COMMENT_END_SILENCE_WITHOUT_MODEL = 3.0


def rating_words() -> Choices:
    """The ratings as residents say them: the words (grammar.RATINGS); the menu's own numbers, said
    instead of keyed (「一」 is the first option, 满意); and a score out of five said with 分 or 星
    (「打五分」), rated by ``core.followup_policy``. A bare 四 or 五 can only be a score, the menu
    stops at three."""
    words = {"满意": RATINGS["satisfied"], "基本满意": RATINGS["basically_satisfied"],
             "不满意": RATINGS["dissatisfied"]}
    menu = {rating: DIGITS[key] for key, rating in MENU_RATINGS.items()}
    scores = {rating: tuple(way for score in SCORE_RANGE if rating_for_score(score) == rating
                            for way in SCORES[str(score)] if score > len(MENU_RATINGS) or way.endswith(("分", "星")))
              for rating in words}
    return {rating: (*words[rating], *menu[rating], *scores[rating]) for rating in words}


RESOLVED_WORDS: Choices = {**YES_NO, **OPT_OUT}
RESOLVED_KEYS = {"1": "yes", "2": "no", OPT_OUT_KEY: "opt_out"}
RATING_WORDS: Choices = {**rating_words(), **OPT_OUT}
RATING_KEYS = {**MENU_RATINGS, OPT_OUT_KEY: "opt_out"}


@dataclass(frozen=True)
class RepairFacts:
    """What the call says about the repair it asks after (from the ticket)."""

    reported_at: datetime
    category: str
    building: str = ""
    unit: str = ""
    room: str = ""
    area: str = ""


@dataclass
class SurveyServices:
    """What the survey needs from the rest of the service (wired in callcenter/app.py)."""

    settings: Settings
    prompts: Prompts
    calls: CallLog
    # A recognizer per answer (optionally restricted to a grammar), or None with no speech model.
    new_recognizer: Callable[[list[str] | None], Recognizer] | None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # This node's recogniser streams, shared with the hotline; none free: the survey runs on keys.
    streams: StreamSlots | None = None


def run_survey(call, services: SurveyServices, repair: RepairFacts, record_id: int) -> SurveyAnswers:
    """Run the follow-up on an answered ``call``, keep it in call record ``record_id``, hang up."""
    return SurveyCall(call, services, repair, record_id).run()


def introduction(prompts: Prompts, repair: RepairFacts, now: datetime) -> list[bytes]:
    """What the call says first, in parts: who calls, why, and that the call is recorded; which
    repair (reported 昨天 or 十一月二十日, what, where); the opt-out key. Each part is shorter than the
    10 s of the far end's audio that a call keeps while a prompt plays. ``now`` in the site's time."""
    category = repair.category if f"pieces.cat_{repair.category}" in prompts.texts else "other"
    where = prompts.address(repair.building, repair.unit, repair.room, repair.area)
    which = (prompts.day(repair.reported_at.astimezone(now.tzinfo), now) + prompts["survey.intro_suffix"]
             + prompts[f"pieces.cat_{category}"] + where)
    return [prompts["survey.intro_prefix"], which, prompts["survey.opt_out_hint"]]


class LongestSpeech:
    """The longest stretch of speech in the audio fed, pauses shorter than ``max_pause`` inside it."""

    def __init__(self, max_pause: float = GREETING_PAUSE):
        self.max_pause = max_pause
        self.longest = self.run = self.pause = 0.0

    def feed(self, frame: bytes) -> None:
        seconds = len(frame) / 16000
        if rms(frame) >= EnergyEndpointer.threshold_rms:
            self.run += self.pause + seconds
            self.pause = 0.0
            self.longest = max(self.longest, self.run)
        elif self.run:
            self.pause += seconds
            if self.pause >= self.max_pause:
                self.run = self.pause = 0.0

    def include(self, heard: Heard) -> None:
        """An answer's span counts as one stretch (a listen ends at the first long pause anyway)."""
        if heard.spoke:
            self.longest = max(self.longest, heard.end - heard.start)


class SurveyCall:
    def __init__(self, call, services: SurveyServices, repair: RepairFacts, record_id: int):
        self.call, self.services, self.repair = call, services, repair
        self.prompts = services.prompts
        self.slot, speech = speech_for_call(services.streams, call.call_id, services.new_recognizer)
        self.dialogue = Dialogue(call, speech, services.settings.asr.end_silence_seconds)
        self.record = FlowRecord(services.calls, record_id, services.settings, services.clock)
        self.answers = SurveyAnswers()
        self.speech = LongestSpeech()  # the far end's talk until the first question is over
        self.invited_to_hang_up = False  # 「没有请直接挂机」 was said: hanging up is the normal end

    def run(self) -> SurveyAnswers:
        outcome = CallOutcome.ERROR
        try:
            self.record.start_recording(self.call, self.dialogue)
            outcome = self.converse()
        except (HungUp, CallEnded):
            outcome = CallOutcome.COMPLETED if self.invited_to_hang_up else CallOutcome.CALLER_HUNG_UP
        except Exception:
            log.exception("call %s: survey flow failed", self.call.call_id)
        finally:
            if self.slot is not None:
                self.slot.release()
            self.call.hangup()
            self.answers.transcript = self.record.utterances
            self.record.close(outcome)
            log.info("call %s: survey ended (%s): %s", self.call.call_id, outcome, self.answers)
        return self.answers

    def converse(self) -> CallOutcome:
        p, a = self.prompts, self.answers
        self.introduce()
        # The first question is asked twice by hand: a voicemail is told after the first try.
        resolved = self.ask("resolved", p["survey.ask_resolved"], RESOLVED_WORDS, RESOLVED_KEYS, tries=1)
        if resolved is None and self.speech.longest >= GREETING_SECONDS:
            a.reached = False
            return CallOutcome.VOICEMAIL  # leave no more on the tape than the introduction
        if resolved is None:
            resolved = self.ask("resolved", p["survey.ask_again"] + p["survey.ask_resolved"], RESOLVED_WORDS,
                                RESOLVED_KEYS, tries=1)
        if resolved is None and not self.speech.longest and not self.record.utterances:
            a.reached = False
            return CallOutcome.NO_INPUT  # not a sound from the far end since it answered
        if resolved == "opt_out":
            return self.opt_out()
        a.resolved = None if resolved is None else resolved == "yes"
        rating = self.ask("rating", p["survey.ask_rating"], RATING_WORDS, RATING_KEYS, tries=2)
        if rating == "opt_out":
            return self.opt_out()
        a.rating = rating
        if self.take_comment():
            return self.opt_out()
        self.dialogue.say_goodbye(p["survey.thanks"])
        return CallOutcome.COMPLETED

    def introduce(self) -> None:
        """Said whole (no barge-in: consent comes first), and listened over for a voicemail greeting."""
        now = self.services.clock().astimezone(self.services.settings.tz)
        for part in introduction(self.prompts, self.repair, now):
            self.dialogue.say(part, overheard=self.speech.feed)

    def ask(self, step: str, prompt: bytes, choices: Choices, keys: dict[str, str], tries: int) -> str | None:
        def note(heard: Heard) -> None:
            self.record.note(step, heard)
            self.speech.include(heard)
        return self.dialogue.ask(prompt, choices, keys, tries=tries, again=self.prompts["survey.ask_again"],
                                 on_heard=note)

    def take_comment(self) -> bool:
        """The optional comment, recorded (and transcribed with a speech model). True: it asked
        not to be called again."""
        d = self.dialogue
        self.invited_to_hang_up = True
        d.say(self.prompts.say("survey.ask_comment", "hotline.beep"), barge_in=True)
        end_silence = None if d.has_speech else COMMENT_END_SILENCE_WITHOUT_MODEL
        try:
            heard = d.listen(max_seconds=COMMENT_SECONDS, no_input_seconds=NO_INPUT_SECONDS, end_silence=end_silence)
        except HungUp as gone:
            if gone.heard is not None:
                self.keep_comment(gone.heard)
            raise
        self.keep_comment(heard)
        return chosen(heard, OPT_OUT, {OPT_OUT_KEY: "opt_out"}) is not None

    def keep_comment(self, heard: Heard) -> None:
        self.record.note("comment", heard)
        if heard.spoke:
            self.answers.comment = heard.text
            self.answers.comment_start = heard.start

    def opt_out(self) -> CallOutcome:
        self.answers.opted_out = True
        self.dialogue.say_goodbye(self.prompts["survey.opted_out"])
        return CallOutcome.OPTED_OUT
