"""Alerts to the managers' group chat (企业微信 / 钉钉 group robot): what to say, and when, kept in
an outbox so that each goes out once, whichever node sends it, and none is lost in a crash.

core decides and records; ``callcenter.alert_sender`` sends. An alert is a row of ``alert_outbox``
written in the same transaction as the event it tells of (the call-out ending ``exhausted``, the
follow-up answer that reopened a ticket): it exists exactly when the event does. Every node's
sender claims due rows with a conditional UPDATE (one claim wins), posts them, and records the
outcome; a failure is retried with a doubling wait, up to ``alerts.max_attempts`` sends. A claim
moves the row's ``next_attempt_at`` past the send's time-out, so a row whose sender died is
claimed again later by any node (it may then go out twice; it is never lost).

An event noticed by several nodes at once (no scheduler owner) has the same ``key`` on each: the
unique key makes it one row. Without ``alerts.webhook_url`` nothing is recorded.

The kinds, each one call where the event is known::

    callout_exhausted(session, callout, ticket, now, settings)     core.callouts (exhausted)
    followup_unhappy(session, followup, outcome, now, settings, complaint)  core.followup (返修, 投诉)
    eta_slip(session, slip, now, settings)                         core.eta (an engineer is late)
    line_down(session, line, node, down_since, detail, now, settings)  the line watcher
    no_scheduler_owner(session, since, now, settings)              the scheduler lease watcher

The last two decide themselves whether it has been long enough (``alerts.line_down_minutes``,
``alerts.no_owner_minutes``) and may be called on every check: one alert per outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import dispatch
from core.db import affected_rows
from core.settings import Settings
from core.store import CallOut, FollowUp, OutboxAlert, Ticket
from core.store_watch import Complaint, EtaSlip
from core.tickets import CATEGORY_NAMES, URGENCY_NAMES, address_text

log = logging.getLogger(__name__)

CALLOUT_EXHAUSTED, FOLLOWUP_UNHAPPY, LINE_DOWN, NO_SCHEDULER_OWNER, TEST, ETA_SLIP = (
    "callout_exhausted", "followup_unhappy", "line_down", "no_scheduler_owner", "test", "eta_slip")
KINDS = {CALLOUT_EXHAUSTED: "紧急呼叫无人接单", FOLLOWUP_UNHAPPY: "回访不满意（投诉）", LINE_DOWN: "线路故障",
         NO_SCHEDULER_OWNER: "定时任务无人执行", TEST: "测试消息", ETA_SLIP: "维修人员到场超时"}
PENDING, SENT, FAILED = "pending", "sent", "failed"
SEND_TIMEOUT_SECONDS = 10  # one HTTP post to the robot
CLAIM_SECONDS = 60  # a claimed alert not reported back within this is due again (its sender died)
MAX_RETRY_SECONDS = 300
KEEP_DAYS = 30  # sent and abandoned alerts are deleted after this
# 企业微信 takes at most 2048 bytes of text; a little less leaves room for nothing to be cut badly.
MAX_TEXT_BYTES = 2000


@dataclass(frozen=True)
class Claimed:
    """An alert this node has claimed and now sends."""

    id: int
    kind: str
    text: str
    attempt: int  # 1 for the first send


# --- what to say ----------------------------------------------------------------------------------


def message(kind: str, settings: Settings, *lines: str) -> str:
    """「【报修热线·紧急呼叫无人接单】阳光花园物业服务中心」 and the lines; the fixed 报修热线 lets a
    钉钉 robot secured by keyword accept it (keyword: 报修热线). Cut to what 企业微信 takes."""
    text = "\n".join((f"【报修热线·{KINDS[kind]}】{settings.property_name}", *(line for line in lines if line)))
    data = text.encode("utf-8")
    if len(data) <= MAX_TEXT_BYTES:
        return text
    return data[:MAX_TEXT_BYTES - 3].decode("utf-8", errors="ignore") + "…"


def _ticket_lines(ticket: Ticket) -> list[str]:
    category = CATEGORY_NAMES.get(ticket.category, ticket.category)
    return [f"维修单 {ticket.number}（{URGENCY_NAMES.get(ticket.urgency, ticket.urgency)}·{category}）",
            f"地址：{address_text(ticket) or '未知'}"]


def _who_was_rung(callout: CallOut) -> str:
    rung = []
    for attempt in callout.attempts:
        if attempt.round == dispatch.LAST_RESORT_ROUND:
            who = "最后保障电话"
        else:
            who = callout.chain[attempt.position]["name"]
        outcome = dispatch.OUTCOME_NAMES.get(dispatch.Outcome(attempt.outcome), attempt.outcome) \
            if attempt.outcome else "未知"
        rung.append(f"{who}（第{attempt.round}轮，{outcome}）" if attempt.round else f"{who}（{outcome}）")
    return "、".join(rung) or "无人可呼叫（值班表无人或线路未配置）"


# --- the kinds ---------------------------------------------------------------------------------


def callout_exhausted(session: Session, callout: CallOut, ticket: Ticket, now: datetime,
                      settings: Settings) -> OutboxAlert | None:
    """Nobody took an emergency: the ticket, where, what the caller said, whom we rang."""
    text = message(CALLOUT_EXHAUSTED, settings, *_ticket_lines(ticket),
                   f"来电内容：{ticket.description.strip() or '（未听清，请听录音）'}",
                   f"已呼叫：{_who_was_rung(callout)}",
                   "请主管立即安排人员处理。")
    return record(session, CALLOUT_EXHAUSTED, f"callout:{callout.id}", text, now, settings, ticket.id)


def followup_unhappy(session: Session, followup: FollowUp, outcome: str, now: datetime,
                     settings: Settings, complaint: Complaint | None = None) -> OutboxAlert | None:
    """A resident is unhappy or the problem is not solved: what they said, the recording's page
    (the console asks for a login: recordings are personal data), what was done, the complaint's limit."""
    ticket = followup.ticket
    solved = {True: "问题已解决", False: "问题未解决", None: "未回答是否解决"}[followup.resolved]
    rating = f"评价「{followup.rating}」" if followup.rating else "未评价"
    engineer = f"维修人员：{ticket.engineer.name}" if ticket.engineer else ""
    text = message(FOLLOWUP_UNHAPPY, settings, *_ticket_lines(ticket), engineer,
                   f"回访结果：{solved}，{rating}",
                   f"住户意见：{followup.comment}" if followup.comment else "",
                   _recording_line(ticket, followup.call_record_id, settings),
                   f"处理：{outcome}", _complaint_line(complaint, settings), "请主管今日跟进。")
    return record(session, FOLLOWUP_UNHAPPY, f"followup:{followup.id}", text, now, settings, ticket.id)


def eta_slip(session: Session, slip: EtaSlip, now: datetime, settings: Settings) -> OutboxAlert | None:
    """An accepted ticket's engineer is late: the desk and the managers know before the resident calls."""
    ticket, tz = slip.ticket, settings.tz
    engineer = f"维修人员：{ticket.engineer.name}" if ticket.engineer else ""
    late = int((now - slip.promised_at).total_seconds() // 60)
    call = (f"将于 {slip.call_at.astimezone(tz):%H:%M} 自动致电住户致歉，前台可在维修单页面取消"
            if slip.status == "pending" else "不自动致电住户，请前台联系住户")
    text = message(ETA_SLIP, settings, *_ticket_lines(ticket), engineer,
                   f"承诺到场 {slip.promised_at.astimezone(tz):%m-%d %H:%M}，已超过 {late} 分钟仍未到场",
                   call, f"维修单：{settings.web.console_url(f'/tickets/{ticket.id}')}")
    return record(session, ETA_SLIP, f"eta:{slip.id}", text, now, settings, ticket.id)


def _recording_line(ticket: Ticket, call_record_id: int | None, settings: Settings) -> str:
    if call_record_id is None:
        return ""
    return f"回访录音（需登录）：{settings.web.console_url(f'/tickets/{ticket.id}')}#call-{call_record_id}"


def _complaint_line(complaint: Complaint | None, settings: Settings) -> str:
    if complaint is None:
        return ""
    tz = settings.tz
    return (f"已登记为投诉，处理时限 {complaint.due_at.astimezone(tz):%m-%d %H:%M}；"
            f"{complaint.escalate_at.astimezone(tz):%m-%d %H:%M} 前无人处理将电话通知主管")


def line_down(session: Session, line: str, node: str, down_since: datetime, detail: str, now: datetime,
              settings: Settings) -> OutboxAlert | None:
    """Call on every check while a line is down; alerts once ``alerts.line_down_minutes`` have passed
    (once per outage: the outage is known by when it began)."""
    minutes = settings.alerts.line_down_minutes
    if now - down_since < timedelta(minutes=minutes):
        return None
    since = down_since.astimezone(settings.tz)
    text = message(LINE_DOWN, settings, f"节点 {node} 的线路 {line} 自 {since:%m-%d %H:%M:%S} 起不可用"
                                        f"（超过 {minutes} 分钟）", f"状态：{detail}" if detail else "",
                   "来电可能无法接通，请检查线路和 PBX/运营商。")
    key = f"line:{node}:{line}:{down_since.isoformat()}"
    return record(session, LINE_DOWN, key, text, now, settings)


def no_scheduler_owner(session: Session, since: datetime, now: datetime, settings: Settings) -> OutboxAlert | None:
    """Call on every check while no node holds the scheduler's lease (``since``: when the last one
    ran out, the same on every node); alerts once ``alerts.no_owner_minutes`` have passed."""
    minutes = settings.alerts.no_owner_minutes
    if now - since < timedelta(minutes=minutes):
        return None
    local = since.astimezone(settings.tz)
    text = message(NO_SCHEDULER_OWNER, settings, f"自 {local:%m-%d %H:%M:%S} 起（超过 {minutes} 分钟）没有节点执行定时任务：",
                   "回访电话、17:00 清单和录音清理都已停下。请检查各节点是否在运行、scheduler.owner 设置是否正确。")
    return record(session, NO_SCHEDULER_OWNER, f"scheduler:{since.isoformat()}", text, now, settings)


# --- the outbox -------------------------------------------------------------------------------------


def record(session: Session, kind: str, key: str, text: str, now: datetime, settings: Settings,
           ticket_id: int | None = None) -> OutboxAlert | None:
    """Put an alert in the outbox, in the caller's transaction; None when no webhook is configured or
    this event's alert is recorded already (by this or another node)."""
    if not settings.alerts.webhook_url:
        log.debug("alert %s not recorded: no alerts.webhook_url", key)
        return None
    alert = OutboxAlert(kind=kind, key=key[:160], ticket_id=ticket_id, text=text, state=PENDING, attempts=0,
                        created_at=now, next_attempt_at=now)
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:  # the same event, recorded a moment ago
        return None
    log.info("alert %s recorded: %s", key, kind)
    return alert


def due(session: Session, now: datetime, limit: int = 20) -> list[int]:
    """Alerts any node may claim now, oldest first."""
    return list(session.scalars(select(OutboxAlert.id).where(OutboxAlert.state == PENDING,
                                                             OutboxAlert.next_attempt_at <= now)
                                .order_by(OutboxAlert.id).limit(limit)))


def claim(session: Session, alert_id: int, node: str, now: datetime) -> Claimed | None:
    """Take a due alert for sending (commit before sending); None when another node took it."""
    taken = affected_rows(session.execute(
        update(OutboxAlert)
        .where(OutboxAlert.id == alert_id, OutboxAlert.state == PENDING, OutboxAlert.next_attempt_at <= now)
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS), attempts=OutboxAlert.attempts + 1,
                claimed_by=node[:64])
        .execution_options(synchronize_session=False)))
    if taken != 1:
        return None
    alert = session.get(OutboxAlert, alert_id, populate_existing=True)
    if alert is None:  # just claimed in this transaction, so it cannot be gone
        raise LookupError(f"outbox alert {alert_id} vanished after it was claimed")
    return Claimed(alert.id, alert.kind, alert.text, alert.attempts)


def sent(session: Session, alert_id: int, now: datetime) -> None:
    session.execute(update(OutboxAlert).where(OutboxAlert.id == alert_id)
                    .values(state=SENT, sent_at=now, last_error="").execution_options(synchronize_session=False))


def failed(session: Session, alert_id: int, error: str, now: datetime, settings: Settings) -> datetime | None:
    """A send failed: when it is tried again (a doubling wait), or None: given up after
    ``alerts.max_attempts`` sends."""
    alert = session.get(OutboxAlert, alert_id, populate_existing=True)
    if alert is None:
        raise LookupError(f"no outbox alert {alert_id}")
    alert.last_error = error[:1000]
    if alert.attempts >= settings.alerts.max_attempts:
        alert.state = FAILED
        return None
    wait = min(settings.alerts.retry_seconds * 2 ** (alert.attempts - 1), MAX_RETRY_SECONDS)
    alert.next_attempt_at = now + timedelta(seconds=wait)
    return alert.next_attempt_at


def purge(session: Session, now: datetime) -> int:
    """Forget sent and abandoned alerts after ``KEEP_DAYS`` (the outbox must not grow for ever)."""
    return affected_rows(session.execute(delete(OutboxAlert).where(OutboxAlert.state != PENDING,
                                                     OutboxAlert.created_at < now - timedelta(days=KEEP_DAYS))
                           ))
