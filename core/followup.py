"""Follow-up calls (回访): when to call a resident back, calling hours, retries, what a rating means.

The survey call (``callcenter/ivr/flows/survey.py``) hands its result back as ``SurveyAnswers``.

A follow-up is a row of its own (``core.store.FollowUp``) and every step is one short
transaction, so several processes may dial and a crash loses nothing::

    schedule_for(...)        the ticket became 完成 (core.moves.move_ticket calls it), or the desk asked
    due_followups(...)       the scheduler's tick (core.jobs): ids due now, inside calling hours
    claim(...)               scheduled -> calling, before dialling (commit it, then dial); None: not ours
    record_answers(...)      the resident answered: the ticket moves on (see below)
    record_no_contact(...)   no answer, busy, voicemail, failed: a retry later, or 回访失败
    opt_out(...)             「别再打了」: that number is never called for a follow-up again

Statuses: ``scheduled`` -> ``calling`` -> ``done`` | ``failed`` (回访失败: a clerk calls by hand) |
``opted_out``; a call that reached nobody goes back to ``scheduled`` for a retry.

What an answer means (docs/process.md "Follow-up (回访) and complaints": an unsatisfied resident
is a complaint: re-repair, and the supervisor is told): 满意/基本满意 with the problem not said to
be unsolved moves the ticket 完成 -> 回访 with the rating, ready for 归档; 不满意 or "not fixed" is
返修 to the same engineer plus an ``alert`` event for the manager that very day (the manager's
page lists it until the re-repair is done); an answered call that gave no rating is 回访失败.

A call that never reports back (the process died mid-call) counts, ``STALE_CALL_MINUTES`` after
its claim, as one failed attempt: it is retried like any unanswered call, never dialled twice
at once, and the attempt is not counted again.

No lost updates: a follow-up's status changes only if it is still what was read (``_hold``), and
the ticket moves through ``core.desk.apply_move`` (``core.claims``): a result that arrives while a clerk
records the 回访 or a 返修 by hand is noted on the ticket and changes nothing else.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import alerts, complaints, desk
from core.base import Actor, NotFound, ValidationError
from core.calling_hours import CallingHours
from core.claims import Conflict
from core.db import affected_rows
from core.desk import FOLLOWUP
from core.outcomes import CallOutcome
from core.phones import normalise_phone
from core.settings import Settings
from core.store import CallRecord, FollowUp, FollowUpOptOut, Ticket
from core.tickets import RATINGS, STATUS_NAMES, Status, TransitionError, TransitionRequest, Urgency
from core.transcript import Utterance

log = logging.getLogger(__name__)


@dataclass
class SurveyAnswers:
    """What one answered follow-up call got from the resident."""

    resolved: bool | None = None  # 问题解决了吗: True/False, None if never answered
    rating: str | None = None  # one of core.tickets.RATINGS, None if never answered
    comment: str = ""  # the spoken comment, transcribed ("" if none or no speech model)
    comment_start: float | None = None  # seconds into the call's recording where the comment starts
    opted_out: bool = False  # 「别再打了」 or the opt-out key
    reached: bool = True  # False: silence or a voicemail answered; counts as no answer
    transcript: list[Utterance] = field(default_factory=list)  # the call's answers (core.transcript)


class FollowUpState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time (inside calling hours)
    CALLING = "calling"  # claimed by a dialler: a call is under way
    DONE = "done"  # answered and recorded (by the call or a clerk)
    FAILED = "failed"  # given up: a clerk calls
    OPTED_OUT = "opted_out"  # the resident asked not to be called again


SCHEDULED, CALLING, DONE, FAILED, OPTED_OUT = (FollowUpState.SCHEDULED, FollowUpState.CALLING, FollowUpState.DONE,
                                               FollowUpState.FAILED, FollowUpState.OPTED_OUT)
FOLLOWUP_STATUS_NAMES = {SCHEDULED: "待回访", CALLING: "通话中", DONE: "已回访", FAILED: "回访失败",
                          OPTED_OUT: "不再回访"}
# How a call that reached nobody ended (what record_no_contact accepts).
NO_CONTACT: dict[str, str] = {CallOutcome.NO_ANSWER: "无人接听", CallOutcome.BUSY: "占线", CallOutcome.VOICEMAIL: "语音信箱",
                              CallOutcome.FAILED: "呼叫失败"}
SATISFIED_RATINGS = RATINGS[:2]  # 满意, 基本满意
# A survey call lasts a few minutes; a claim this old without an outcome was cut off by a crash.
STALE_CALL_MINUTES = 15


class FollowUpError(TransitionError):
    """A follow-up that cannot be scheduled or recorded now (the API answers 409); Chinese message."""


# --- policy (pure) ----------------------------------------------------------------------------


def due_time(completed_at: datetime, urgency: Urgency | str, settings: Settings) -> datetime:
    """When to call about a repair completed at ``completed_at``: after the delay (shorter after an
    emergency), at the first moment inside calling hours, never on a rest day."""
    policy = settings.followup
    hours = policy.emergency_delay_hours if urgency == Urgency.EMERGENCY else policy.delay_hours
    return CallingHours.of(settings).next_open(completed_at + timedelta(hours=hours))


def next_retry(now: datetime, attempts: int, settings: Settings, resident_agreed: bool = False) -> datetime | None:
    """When to try again after ``attempts`` calls reached nobody; None: give up (回访失败)."""
    if attempts >= settings.followup.max_attempts:
        return None
    later = now + timedelta(minutes=settings.followup.retry_minutes)
    return CallingHours.of(settings).next_open(later, rest_day_agreed=resident_agreed)


class Verdict(enum.StrEnum):
    SATISFIED = "satisfied"  # 完成 -> 回访 with the rating
    UNHAPPY = "unhappy"  # 返修 and the manager is alerted
    NO_RATING = "no_rating"  # reached, but nothing to record: 回访失败, a clerk calls


def verdict(answers: SurveyAnswers) -> Verdict:
    if answers.rating is not None and answers.rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}: {answers.rating!r}")
    if answers.resolved is False or answers.rating == "不满意":
        return Verdict.UNHAPPY
    if answers.rating in SATISFIED_RATINGS:
        return Verdict.SATISFIED
    return Verdict.NO_RATING


# --- scheduling ----------------------------------------------------------------------------------


def open_followup(session: Session, ticket_id: int) -> FollowUp | None:
    """The ticket's scheduled or calling follow-up, if it has one."""
    return session.scalar(select(FollowUp).where(FollowUp.open_ticket_id == ticket_id))


def is_opted_out(session: Session, phone: str) -> bool:
    return session.get(FollowUpOptOut, normalise_phone(phone)) is not None


def schedule_for(session: Session, ticket: Ticket, now: datetime, settings: Settings,
                 at: datetime | None = None) -> FollowUp:
    """The ticket's follow-up: a new one at the policy's time, or at ``at`` (a time agreed with the
    resident, so a rest day is fine). Idempotent: a ticket has one scheduled follow-up at most;
    asking again returns it, moved to ``at`` if given."""
    if ticket.status != Status.COMPLETED:
        raise FollowUpError(f"维修单状态为「{STATUS_NAMES[Status(ticket.status)]}」，只有已完成的维修单可以回访")
    completed_at = ticket.completed_at
    if completed_at is None:  # a completed ticket has its completion time; the follow-up asks about it
        raise FollowUpError("维修单没有完成时间，无法安排回访")
    phone = normalise_phone(ticket.phone)
    if not phone:
        raise FollowUpError("维修单没有联系电话，无法电话回访")
    if is_opted_out(session, phone):
        raise FollowUpError(f"号码 {phone} 已要求不再回访")
    hours = CallingHours.of(settings)
    if at is not None:
        if at < now:
            raise ValidationError({"at": "回访时间不能早于现在"})
        if not hours.is_open(at, rest_day_agreed=True):
            raise ValidationError({"at": "请选择回访时段内的时间：" + "、".join(settings.followup.calling_hours)})
    existing = open_followup(session, ticket.id)
    if existing is not None:
        if at is None:
            return existing
        if existing.status == CALLING:
            raise FollowUpError("正在进行回访通话，请稍后再改时间")
        existing.due_at, existing.resident_agreed, existing.updated_at = at, True, now
        _note(ticket, now, f"回访时间改为与住户约定的 {_when(at, settings)}", existing)
        return existing
    due = at or max(due_time(completed_at, ticket.urgency, settings), hours.next_open(now))
    followup = FollowUp(ticket_id=ticket.id, open_ticket_id=ticket.id, phone=phone,
                        completed_at=completed_at, due_at=due, resident_agreed=at is not None,
                        status=SCHEDULED, attempts=0, created_at=now, updated_at=now)
    try:
        with session.begin_nested():
            session.add(followup)
    except IntegrityError:  # another process scheduled this ticket a moment ago
        other = open_followup(session, ticket.id)
        if other is None:  # and it was closed again before we could read it
            raise LookupError(f"ticket {ticket.number}: the follow-up that blocked ours is no longer open") from None
        return other
    agreed = "（与住户约定）" if at is not None else ""
    _note(ticket, now, f"已安排回访电话：{_when(due, settings)}{agreed}", followup)
    log.info("followup %d ticket %s scheduled for %s", followup.id, ticket.number, due.isoformat())
    return followup


def after_transition(session: Session, ticket: Ticket, before: Status, actor: Actor, now: datetime,
                     settings: Settings) -> None:
    """Keep a ticket's follow-up in step with its moves (core.moves.move_ticket calls this after each):
    完成 schedules one; a 回访 by hand is recorded as this completion's follow-up; a 返修 by hand
    withdraws the call nobody needs any more."""
    if actor == FOLLOWUP:
        return  # the follow-up call moved the ticket itself
    if ticket.status == Status.COMPLETED:
        _schedule_on_completion(session, ticket, now, settings)
    elif before == Status.COMPLETED and ticket.status == Status.FOLLOWED_UP:
        _record_by_hand(session, ticket, actor, now)
    elif before == Status.COMPLETED:
        followup = open_followup(session, ticket.id)
        if followup is not None and followup.status == SCHEDULED and _hold(session, followup):
            session.delete(followup)  # (a call dialled this moment finds the ticket moved on, and notes it)


def due_followups(session: Session, now: datetime, settings: Settings, limit: int) -> list[int]:
    """Follow-ups to dial now, the longest waiting first; none outside calling hours."""
    hours = CallingHours.of(settings)
    if not hours.is_open(now, rest_day_agreed=True):
        return []
    query = select(FollowUp.id).where(FollowUp.status == SCHEDULED, FollowUp.due_at <= now)
    if hours.is_rest_day(now.astimezone(settings.tz).date()):
        query = query.where(FollowUp.resident_agreed.is_(True))  # missed ones wait for a working day
    return list(session.scalars(query.order_by(FollowUp.due_at, FollowUp.id).limit(limit)))


def claim(session: Session, followup_id: int, now: datetime) -> FollowUp | None:
    """Take a due follow-up for dialling (scheduled -> calling, one more attempt). None when another
    process has it, it is not due (any more), or it no longer needs a call. Commit before dialling."""
    taken = affected_rows(session.execute(
        update(FollowUp)
        .where(FollowUp.id == followup_id, FollowUp.status == SCHEDULED, FollowUp.due_at <= now)
        .values(status=CALLING, attempts=FollowUp.attempts + 1, claimed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    if taken != 1:
        return None
    followup = session.get(FollowUp, followup_id, populate_existing=True)
    if followup is None:  # just claimed in this transaction, so it cannot be gone
        raise LookupError(f"follow-up {followup_id} vanished after it was claimed")
    if followup.ticket.status != Status.COMPLETED:  # moved on by hand a moment ago
        session.delete(followup)
        return None
    if is_opted_out(session, followup.phone):
        _close(followup, OPTED_OUT, now)
        return None
    return followup


# --- outcomes -------------------------------------------------------------------------------------


def record_answers(session: Session, followup_id: int, answers: SurveyAnswers, call_record_id: int | None,
                   now: datetime, settings: Settings) -> FollowUp:
    """What the resident said; the ticket moves on by what it means (see the module's docstring)."""
    followup = _get(session, followup_id)
    if followup.status == DONE or not _hold(session, followup):
        raise FollowUpError("这次回访的结果已经记录过")
    _attach_call(session, followup, call_record_id)
    if not answers.reached:
        _no_contact(followup, "no_answer", now, settings)
        return followup
    meaning = verdict(answers)
    followup.resolved, followup.rating = answers.resolved, answers.rating
    followup.comment, followup.comment_start = answers.comment.strip(), answers.comment_start
    followup.last_outcome, followup.recorded_by = "answered", FOLLOWUP.name
    if meaning == Verdict.NO_RATING and answers.opted_out:
        _close(followup, OPTED_OUT, now)
        _note(followup.ticket, now, "住户在回访电话中要求不再来电，没有评价", followup)
    elif meaning == Verdict.NO_RATING:
        _close(followup, FAILED, now)
        _note(followup.ticket, now, "回访电话已接通，但住户没有评价，请前台人工回访", followup)
    else:
        _close(followup, DONE, now)
        if meaning == Verdict.SATISFIED:
            _followed_up(session, followup, now, settings)
        else:
            _rework_and_alert(session, followup, now, settings)
    if answers.opted_out:
        opt_out(session, followup.phone, now, "回访电话中要求不再来电")
    log.info("followup %d ticket %s answered: %s", followup.id, followup.ticket.number, meaning.value)
    return followup


def record_no_contact(session: Session, followup_id: int, outcome: str, now: datetime,
                      settings: Settings) -> FollowUp:
    """The call reached nobody (``NO_CONTACT``): try again later inside calling hours, or after
    ``followup.max_attempts`` calls give up: 回访失败, for a clerk to call by hand."""
    if outcome not in NO_CONTACT:
        raise ValueError(f"outcome must be one of {sorted(NO_CONTACT)}: {outcome!r}")
    followup = _get(session, followup_id)
    if followup.status != CALLING or not _hold(session, followup):
        raise FollowUpError("这次回访不在通话中，无法记录结果")
    _no_contact(followup, outcome, now, settings)
    return followup


def recover_stale_calls(session: Session, now: datetime, settings: Settings) -> list[int]:
    """Calls claimed ``STALE_CALL_MINUTES`` ago that never reported back (a crash mid-call) count
    as one failed attempt each: retried later, or 回访失败 after the last one."""
    cut_off = now - timedelta(minutes=STALE_CALL_MINUTES)
    stale = session.scalars(select(FollowUp).where(FollowUp.status == CALLING, FollowUp.claimed_at < cut_off)).all()
    recovered = []
    for followup in stale:
        if not _hold(session, followup):
            continue  # its result arrived a moment ago
        _no_contact(followup, "failed", now, settings, remark="，通话中断未得到结果")
        log.warning("followup %d ticket %s: call cut off, counted as failed", followup.id, followup.ticket.number)
        recovered.append(followup.id)
    return recovered


def opt_out(session: Session, phone: str, now: datetime, how: str) -> FollowUpOptOut:
    """Never call this number for a follow-up again; its scheduled follow-ups are withdrawn."""
    phone = normalise_phone(phone)
    if not phone:
        raise ValidationError({"phone": "请填写电话号码"})
    entry = session.get(FollowUpOptOut, phone)
    if entry is None:
        entry = FollowUpOptOut(phone=phone, at=now, how=how[:128])
        try:
            with session.begin_nested():
                session.add(entry)
        except IntegrityError:  # written by another process a moment ago
            other = session.get(FollowUpOptOut, phone)
            if other is None:
                raise LookupError(f"the opt-out of {phone} clashed with another but cannot be read") from None
            entry = other
    waiting = session.scalars(select(FollowUp).where(FollowUp.phone == phone, FollowUp.status == SCHEDULED)).all()
    for followup in waiting:
        if not _hold(session, followup):
            continue  # being dialled this moment: the call itself hears the opt-out or ends
        _close(followup, OPTED_OUT, now)
        _note(followup.ticket, now, f"住户要求不再回访（{how}），取消回访电话", followup)
    log.info("phone %s opted out of follow-up calls (%s)", phone, how)
    return entry


# --- inside ------------------------------------------------------------------------------------


def _get(session: Session, followup_id: int) -> FollowUp:
    followup = session.get(FollowUp, followup_id)
    if followup is None:
        raise NotFound(f"回访 {followup_id} 不存在")
    return followup


def _hold(session: Session, followup: FollowUp) -> bool:
    """True if the follow-up's status is still the one read, and the row is then ours until the
    commit; False if it changed meanwhile (``followup`` then shows how)."""
    held = affected_rows(session.execute(update(FollowUp).where(FollowUp.id == followup.id, FollowUp.status == followup.status)
                           .values(status=FollowUp.status).execution_options(synchronize_session=False)))
    if held != 1:
        session.refresh(followup)
    return held == 1


def _close(followup: FollowUp, status: str, now: datetime) -> None:
    followup.status, followup.open_ticket_id, followup.updated_at = status, None, now


def _when(moment: datetime, settings: Settings) -> str:
    local = moment.astimezone(settings.tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def _note(ticket: Ticket, now: datetime, note: str, followup: FollowUp, kind: str = "followup",
          **data) -> None:
    desk.record_event(ticket, FOLLOWUP, now, kind, note=note, data={"followup_id": followup.id, **data})


def _answers_text(followup: FollowUp) -> str:
    """「问题已解决，评价「满意」，住户意见：…」 for events and alerts."""
    solved = {True: "问题已解决", False: "问题未解决", None: "未回答是否解决"}[followup.resolved]
    rated = f"评价「{followup.rating}」" if followup.rating else "未评价"
    comment = f"，住户意见：{followup.comment}" if followup.comment else ""
    return f"{solved}，{rated}{comment}"


def _attach_call(session: Session, followup: FollowUp, call_record_id: int | None) -> None:
    """Keep the call's recording with the follow-up, and with the ticket so its page plays it."""
    if call_record_id is None:
        return
    followup.call_record_id = call_record_id
    record = session.get(CallRecord, call_record_id)
    if record is not None and record.ticket_id is None:
        record.ticket_id = followup.ticket_id


def _schedule_on_completion(session: Session, ticket: Ticket, now: datetime, settings: Settings) -> None:
    if not normalise_phone(ticket.phone):
        why = "维修单没有联系电话"
    elif is_opted_out(session, ticket.phone):
        why = "该号码已要求不再回访"
    else:
        schedule_for(session, ticket, now, settings)
        return
    desk.record_event(ticket, FOLLOWUP, now, "followup", note=f"不安排自动回访：{why}，请前台人工回访")


def _record_by_hand(session: Session, ticket: Ticket, actor: Actor, now: datetime) -> None:
    """A clerk's 回访 counts as this completion's follow-up: the scheduled one (no call needed now),
    else the one that failed, else a new record."""
    followup = open_followup(session, ticket.id)
    if followup is not None and followup.status == SCHEDULED:
        _hold(session, followup)  # if a call claimed it a moment ago, it is CALLING now
    if followup is None or followup.status == CALLING:
        followup = session.scalar(
            select(FollowUp).where(FollowUp.ticket_id == ticket.id, FollowUp.completed_at == ticket.completed_at,
                                   FollowUp.status.in_((FAILED, OPTED_OUT)))
            .order_by(FollowUp.id.desc()).limit(1))
    if followup is None:
        followup = FollowUp(ticket_id=ticket.id, phone=normalise_phone(ticket.phone), completed_at=ticket.completed_at,
                            due_at=now, status=DONE, attempts=0, created_at=now)
        session.add(followup)
    followup.rating, followup.recorded_by = ticket.rating, actor.name
    _close(followup, DONE, now)


def _followed_up(session: Session, followup: FollowUp, now: datetime, settings: Settings) -> None:
    ticket = followup.ticket
    summary = "自动回访：" + _answers_text(followup)
    for _ in range(3):
        if ticket.status != Status.COMPLETED:
            break
        try:
            desk.apply_move(session, ticket, TransitionRequest(Status.FOLLOWED_UP, rating=followup.rating,
                                                               note=summary), FOLLOWUP, now, settings)
            return
        except Conflict:  # changed a moment ago (claim re-read it): look again
            continue
    # followed up or reopened by hand meanwhile
    _note(ticket, now, f"{summary}（维修单已是「{STATUS_NAMES[Status(ticket.status)]}」，状态未变）", followup)


def _rework_and_alert(session: Session, followup: FollowUp, now: datetime, settings: Settings) -> None:
    """返修 to the engineer who did the work, and tell the manager today (a complaint: docs/process.md
    "Follow-up (回访) and complaints")."""
    ticket = followup.ticket
    reason = "回访：问题未解决" if followup.resolved is False else "回访不满意"
    outcome = f"维修单已是「{STATUS_NAMES[Status(ticket.status)]}」，请主管确认是否需要返修"
    for _ in range(3):
        if ticket.status != Status.COMPLETED:
            outcome = f"维修单已是「{STATUS_NAMES[Status(ticket.status)]}」，请主管确认是否需要返修"
            break
        try:
            desk.apply_move(session, ticket, TransitionRequest(
                Status.DISPATCHED, engineer_id=ticket.engineer_id, reason=reason, note=followup.comment),
                FOLLOWUP, now, settings)
            outcome = f"已返修，派给 {ticket.engineer.name if ticket.engineer is not None else '维修人员'}"
            break
        except Conflict:  # changed a moment ago (claim re-read it): look again
            continue
        except TransitionError as error:  # the engineer has left, say: a person must choose
            outcome = f"未能自动返修（{error}），请主管安排维修人员"
            break
    _note(ticket, now, f"{reason}：{_answers_text(followup)}。{outcome}；请主管今日跟进", followup, kind="alert",
          complaint=True, resolved=followup.resolved, rating=followup.rating)
    complaint = complaints.open_for_followup(session, followup, f"{reason}（{_answers_text(followup)}）", now,
                                             settings)  # 投诉: a time limit, and the manager phoned if nobody acts
    alerts.followup_unhappy(session, followup, outcome, now, settings, complaint)  # and the group chat at once
    log.warning("followup %d ticket %s: resident unhappy (%s); %s", followup.id, ticket.number, reason, outcome)


def _no_contact(followup: FollowUp, outcome: str, now: datetime, settings: Settings, remark: str = "") -> None:
    followup.last_outcome, followup.updated_at = outcome, now
    what = f"回访电话未接通（{NO_CONTACT[outcome]}{remark}），第 {followup.attempts} 次"
    retry = next_retry(now, followup.attempts, settings, followup.resident_agreed)
    if retry is None:
        _close(followup, FAILED, now)
        _note(followup.ticket, now, f"回访失败：{what}，请前台人工回访", followup)
        return
    followup.status, followup.due_at = SCHEDULED, retry
    _note(followup.ticket, now, f"{what}；将于 {_when(retry, settings)} 再次拨打", followup)
