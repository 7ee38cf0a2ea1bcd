"""The emergency call-out policy (紧急呼叫): whom to ring next, for how long, and when to give up.

Pure decisions, no sockets, no threads, no clock of its own: given the chain on duty, the
settings and the attempts made so far, ``decide`` names the next step. Every step is a
(round, position) pair that is rung at most once; the attempts are stored before dialling
(``core.callouts``), so deciding again from the stored attempts after a restart carries on
where the call-out stopped.

The order: the chain (primary → backup → supervisor → manager) ``callout.rounds`` times, then
the last resort (``callout.last_resort``, e.g. the 24-hour control room) once, then
"exhausted": the managers in ``callout.alert_contacts`` are told. Declined, busy, failed and no
answer all move on; whoever declined is not asked again in a later round.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.outcomes import CallOutcome
from core.roster import ANY_SKILL, ChainLink
from core.settings import CalloutSettings

# Round 0 is the last resort's: it is rung once, after every round of the chain.
LAST_RESORT_ROUND = 0
POSITION_NAMES = ("主班", "备班", "工程主管", "经理")
# An answered call-out plays the alert and the caller's own words before the engineer presses 1;
# an attempt with no outcome this long after its ring time ended was cut off (a crash, a restart).
ANSWERED_CALL_SECONDS = 180


class Outcome(enum.StrEnum):
    """How one ring of a call-out ended: the engineer's answer, or the call's outcome when there was
    none (the same strings as ``core.outcomes.CallOutcome``)."""

    ACCEPTED = "accepted"
    DECLINED = CallOutcome.DECLINED.value
    NO_ANSWER = CallOutcome.NO_ANSWER.value
    BUSY = CallOutcome.BUSY.value
    FAILED = CallOutcome.FAILED.value

    @property
    def call_outcome(self) -> CallOutcome:
        """The ring as its call record's outcome: an acceptance is a call completed."""
        return CallOutcome.COMPLETED if self is Outcome.ACCEPTED else CallOutcome(self.value)


OUTCOME_NAMES = {Outcome.ACCEPTED: "接单", Outcome.DECLINED: "拒绝", Outcome.NO_ANSWER: "无人接听",
                 Outcome.BUSY: "占线", Outcome.FAILED: "呼叫失败"}


class Action(enum.StrEnum):
    RING = "ring"  # ring step.contact for step.ring_seconds
    LAST_RESORT = "last_resort"  # the same, for the last resort
    WAIT = "wait"  # a ring is under way: decide again at wait_until, or when its outcome is stored
    ACCEPTED = "accepted"  # step took it: the chain stops
    EXHAUSTED = "exhausted"  # nobody took it: alert the managers
    STOPPED = "stopped"  # the front desk (or a closed ticket) stopped it; never from decide()


@dataclass(frozen=True)
class Step:
    round: int
    position: int
    contact: str
    ring_seconds: int
    engineer_id: int | None = None  # None: the last resort
    name: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return self.round, self.position

    @property
    def is_last_resort(self) -> bool:
        return self.round == LAST_RESORT_ROUND

    def describe(self) -> str:
        """For events and logs: 「第1轮·主班 张工（13800000001）」."""
        if self.is_last_resort:
            return f"最后保障（{self.contact}）"
        place = POSITION_NAMES[self.position] if self.position < len(POSITION_NAMES) else f"第{self.position + 1}位"
        return f"第{self.round}轮·{place} {self.name}（{self.contact}）"


@dataclass(frozen=True)
class Attempt:
    round: int
    position: int
    contact: str
    started_at: datetime
    outcome: Outcome | None = None  # None: still ringing, or cut off
    engineer_id: int | None = None
    rang_seconds: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        return self.round, self.position


@dataclass(frozen=True)
class Decision:
    action: Action
    step: Step | None = None  # RING, LAST_RESORT: whom to dial; ACCEPTED: who took it
    wait_until: datetime | None = None  # WAIT
    alert_contacts: tuple[str, ...] = ()  # EXHAUSTED: whom to tell


def needed_skill(category: str, settings: CalloutSettings) -> str:
    """The roster skill an emergency of this category needs (plumbing → 水电 ...); "" for anyone."""
    for entry in settings.category_skills:
        key, _, skill = entry.partition("=")
        if key.strip() == category:
            return skill.strip()
    return ANY_SKILL


def emergency_skills(settings: CalloutSettings) -> list[str]:
    """Every skill an emergency may ask the roster for: a gap in any of them is a warning."""
    return list(dict.fromkeys(entry.partition("=")[2].strip() for entry in settings.category_skills))


def plan(chain: Sequence[ChainLink], settings: CalloutSettings) -> list[Step]:
    """Every step in order: the chain ``rounds`` times, then the last resort if there is one."""
    steps = [Step(round_, position, link.contact, link.ring_seconds, link.engineer_id, link.name)
             for round_ in range(1, settings.rounds + 1) for position, link in enumerate(chain)]
    if settings.last_resort:
        steps.append(Step(LAST_RESORT_ROUND, 0, settings.last_resort, settings.ring_seconds))
    return steps


def cut_off_after(attempt: Attempt, steps: Sequence[Step], settings: CalloutSettings) -> datetime:
    """When an attempt still without an outcome counts as failed."""
    ring = next((s.ring_seconds for s in steps if s.key == attempt.key), settings.ring_seconds)
    return attempt.started_at + timedelta(seconds=ring + ANSWERED_CALL_SECONDS)


def decide(chain: Sequence[ChainLink], settings: CalloutSettings, attempts: Sequence[Attempt],
           now: datetime) -> Decision:
    """The next step of a call-out, from the chain it started with and what has been tried."""
    steps = plan(chain, settings)
    for attempt in attempts:
        if attempt.outcome == Outcome.ACCEPTED:
            taken_by = next((s for s in steps if s.key == attempt.key), None)
            return Decision(Action.ACCEPTED, taken_by)
    unanswered = [cut_off_after(a, steps, settings) for a in attempts if a.outcome is None]
    still_ringing = [until for until in unanswered if until > now]  # past the cut-off: counts as failed
    if still_ringing:
        return Decision(Action.WAIT, wait_until=min(still_ringing))  # one ring at a time
    tried = {a.key for a in attempts}
    declined = {a.engineer_id for a in attempts if a.outcome == Outcome.DECLINED}
    for step in steps:
        if step.key in tried or (step.engineer_id is not None and step.engineer_id in declined):
            continue
        return Decision(Action.LAST_RESORT if step.is_last_resort else Action.RING, step)
    return Decision(Action.EXHAUSTED, alert_contacts=settings.alert_contacts)
