"""The repair ticket (维修单): its states, who may move it where, and its SLA deadlines.

Plain rules with no database: ``core.desk`` applies them to stored tickets.
The states and time limits are described in docs/process.md "States and moves" and "Time limits".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from core.base import Role  # noqa: F401 (who acts is shared: core.base; tickets.Role for callers)
from core.settings import SlaSettings


class Status(enum.StrEnum):
    DRAFT = "draft"
    RECEIVED = "received"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    FOLLOWED_UP = "followed_up"
    ARCHIVED = "archived"
    PRICE_REVIEW = "price_review"
    REFUSED = "refused"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


STATUS_NAMES = {
    Status.DRAFT: "待审核",
    Status.RECEIVED: "受理",
    Status.DISPATCHED: "派单",
    Status.ACCEPTED: "接单",
    Status.ON_SITE: "到场",
    Status.COMPLETED: "完成",
    Status.FOLLOWED_UP: "回访",
    Status.ARCHIVED: "归档",
    Status.PRICE_REVIEW: "待评审",
    Status.REFUSED: "客户拒绝",
    Status.POSTPONED: "暂缓",
    Status.CANCELLED: "撤单",
}

# Work is done (or abandoned) in these states: no SLA clock runs, no 17:00 listing.
CLOSED = frozenset({Status.COMPLETED, Status.FOLLOWED_UP, Status.ARCHIVED, Status.CANCELLED})


class Urgency(enum.StrEnum):
    EMERGENCY = "emergency"  # 紧急维修
    NORMAL = "normal"  # 一般维修
    LOW = "low"  # 不急


URGENCY_NAMES = {Urgency.EMERGENCY: "紧急", Urgency.NORMAL: "一般", Urgency.LOW: "不急"}


# What the repair is about (triage reads it from a caller's words; fee items are filed by it).
CATEGORY_NAMES = {
    "plumbing": "给排水",
    "electrical": "电路",
    "gas": "燃气",
    "elevator": "电梯",
    "doors_windows": "门窗",
    "structure": "土建",
    "appliance": "家电",
    "public_facility": "公共设施",
    "other": "其他",
}


def address_text(ticket) -> str:
    """「3号楼2单元1101」, or 「5号楼 电梯」 for a public area (pages, printouts and alerts say it so)."""
    home = "".join(part for part in (
        f"{ticket.building}号楼" if ticket.building and ticket.building.isdigit() else
        (f"{ticket.building}栋" if ticket.building else ""),
        f"{ticket.unit}单元" if ticket.unit else "",
        ticket.room,
    ))
    return " ".join(part for part in (home, ticket.area) if part)


class Channel(enum.StrEnum):
    PHONE = "phone"
    DESK = "desk"
    WEB = "web"


CHANNEL_NAMES = {Channel.PHONE: "电话", Channel.DESK: "前台", Channel.WEB: "网页"}


ROLE_NAMES = {Role.FRONTDESK: "前台", Role.ENGINEER: "维修人员", Role.MANAGER: "主管", Role.ADMIN: "管理员"}

# 客户提供材料的验证结果
MATERIAL_CHECKS = {"passed": "合格", "failed": "不合格", "poor": "质量不佳", "none": "未提供"}

# 回访 result, shared with the automated follow-up calls.
RATINGS = ("满意", "基本满意", "不满意")

# 撤单 reasons (001), plus the two a phone draft needs: a repeat report and a call that was no report.
CANCEL_REASONS = {
    "wrong_place": "派错地点",
    "wrong_phone": "电话号码错误",
    "unreachable": "连续5天以上联系不上业主",
    "rebooked": "业主改约，同意重新报修",
    "self_fixed": "业主已自行修复",
    "complaint_refused": "业主投诉并拒绝服务",
    "duplicate": "重复报修",
    "not_a_repair": "无效来电（非报修）",
}


class TransitionError(Exception):
    """An illegal or incomplete move; the message is Chinese, for the person who tried it."""


DESK = frozenset({Role.FRONTDESK, Role.MANAGER, Role.ADMIN})
SUPERVISOR = frozenset({Role.MANAGER, Role.ADMIN})
# The front desk may record on an engineer's behalf what the returned paper form says.
FIELD = DESK | {Role.ENGINEER}


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    label: str  # the action's name on a button
    needs_engineer: bool = False
    needs_reason: bool = False
    needs_cancel_reason: bool = False
    needs_rating: bool = False
    needs_completion: bool = False
    needs_paid_consent: bool = False  # 有偿: the resident agreed to the price first (core.consent)


S = Status
RULES: dict[tuple[Status, Status], Rule] = {
    (S.DRAFT, S.RECEIVED): Rule(DESK, "审核受理"),
    (S.DRAFT, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.RECEIVED, S.DISPATCHED): Rule(DESK, "派单", needs_engineer=True),
    (S.RECEIVED, S.PRICE_REVIEW): Rule(FIELD, "送主管评审"),
    (S.RECEIVED, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.PRICE_REVIEW, S.DISPATCHED): Rule(SUPERVISOR, "评审通过并派单", needs_engineer=True),
    (S.PRICE_REVIEW, S.ON_SITE): Rule(SUPERVISOR, "评审通过，继续维修"),
    (S.PRICE_REVIEW, S.REFUSED): Rule(FIELD, "客户拒绝", needs_reason=True),
    (S.PRICE_REVIEW, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.DISPATCHED, S.ACCEPTED): Rule(FIELD, "接单"),
    (S.DISPATCHED, S.DISPATCHED): Rule(DESK, "改派", needs_engineer=True, needs_reason=True),
    (S.DISPATCHED, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.ACCEPTED, S.ON_SITE): Rule(FIELD, "到场"),
    (S.ACCEPTED, S.DISPATCHED): Rule(DESK, "改派", needs_engineer=True, needs_reason=True),
    (S.ACCEPTED, S.POSTPONED): Rule(FIELD, "暂缓", needs_reason=True),
    (S.ACCEPTED, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.ON_SITE, S.COMPLETED): Rule(FIELD, "完成", needs_completion=True, needs_paid_consent=True),
    (S.ON_SITE, S.PRICE_REVIEW): Rule(FIELD, "送主管评审"),
    (S.ON_SITE, S.REFUSED): Rule(FIELD, "客户拒绝", needs_reason=True),
    (S.ON_SITE, S.POSTPONED): Rule(FIELD, "暂缓", needs_reason=True),
    (S.POSTPONED, S.ON_SITE): Rule(FIELD, "恢复维修"),
    (S.POSTPONED, S.DISPATCHED): Rule(DESK, "改派", needs_engineer=True, needs_reason=True),
    (S.POSTPONED, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.REFUSED, S.DISPATCHED): Rule(DESK, "重新派单", needs_engineer=True, needs_reason=True),
    (S.REFUSED, S.CANCELLED): Rule(DESK, "撤单", needs_cancel_reason=True),
    (S.COMPLETED, S.FOLLOWED_UP): Rule(DESK, "回访", needs_rating=True),
    # 返修: the resident says it is not fixed; the work starts again with a reason.
    (S.COMPLETED, S.DISPATCHED): Rule(DESK, "返修", needs_engineer=True, needs_reason=True),
    (S.FOLLOWED_UP, S.DISPATCHED): Rule(DESK, "返修", needs_engineer=True, needs_reason=True),
    (S.FOLLOWED_UP, S.ARCHIVED): Rule(DESK, "归档"),
}


@dataclass
class TransitionRequest:
    to: Status
    note: str = ""
    reason: str = ""
    engineer_id: int | None = None
    rating: str | None = None
    actual_item: str = ""
    material_fee: float | None = None
    labour_fee: float | None = None
    material_check: str | None = None
    customer_confirmed: bool = False
    postponed_until: datetime | None = None


def rule_for(current: Status, request: TransitionRequest, role: Role) -> Rule:
    """The rule that allows this move, or a TransitionError saying in Chinese why not."""
    rule = RULES.get((current, request.to))
    if rule is None:
        raise TransitionError(
            f"当前状态「{STATUS_NAMES[current]}」不能转为「{STATUS_NAMES[request.to]}」"
        )
    if role not in rule.roles:
        raise TransitionError(f"「{ROLE_NAMES[role]}」无权执行「{rule.label}」")
    if rule.needs_engineer and request.engineer_id is None:
        raise TransitionError(f"「{rule.label}」需要指定维修人员")
    if rule.needs_reason and not request.reason.strip():
        raise TransitionError(f"「{rule.label}」需要填写原因")
    if rule.needs_cancel_reason and request.reason not in CANCEL_REASONS:
        raise TransitionError("撤单需要选择撤单原因：" + "、".join(CANCEL_REASONS.values()))
    if rule.needs_rating and request.rating not in RATINGS:
        raise TransitionError("回访需要记录满意度：" + "、".join(RATINGS))
    if rule.needs_completion:
        if not request.actual_item.strip():
            raise TransitionError("完成维修需要填写实际维修项目")
        if request.material_check is not None and request.material_check not in MATERIAL_CHECKS:
            raise TransitionError("客户提供材料的验证结果无效")
        for fee in (request.material_fee, request.labour_fee):
            if fee is not None and fee < 0:
                raise TransitionError("费用不能为负数")
    return rule


def require_paid_consent(rule: Rule, is_paid: bool, consented_fen: int | None,
                         request: TransitionRequest) -> None:
    """有偿服务: no paid work is finished without the resident's consent to its price (PROCESS.md
    到场: fee shown, resident agrees or refuses), nor for more than the amount agreed.
    ``consented_fen``: the amount of the resident's standing consent, None when there is none."""
    if not (rule.needs_paid_consent and is_paid):
        return
    if consented_fen is None:
        raise TransitionError("有偿服务须先取得业主对报价的同意（现场签字或电话确认），才能完成维修")
    fees = [fee for fee in (request.material_fee, request.labour_fee) if fee is not None]
    charged_fen = round(sum(fees) * 100)
    if charged_fen > consented_fen:
        raise TransitionError(f"实际费用 {charged_fen / 100:.2f} 元超过业主同意的报价 {consented_fen / 100:.2f} 元，"
                              "请重新取得业主同意")


def allowed_moves(current: Status, role: Role) -> list[tuple[Status, Rule]]:
    """The actions a page may offer: for this state and this role."""
    return [(to, rule) for (frm, to), rule in RULES.items() if frm == current and role in rule.roles]


# --- SLA deadlines (docs/process.md "Time limits") ---------------------------------


class TicketTimes(Protocol):
    """What the deadlines need to know of a ticket (``core.store.Ticket`` has it): typed against
    this shape so that these rules need no database model, and the model can import the rules.
    Read-only: the rules never change a ticket."""

    @property
    def status(self) -> str: ...

    @property
    def channel(self) -> str: ...

    @property
    def urgency(self) -> str: ...

    @property
    def area(self) -> str: ...

    @property
    def is_paid(self) -> bool: ...

    @property
    def reported_at(self) -> datetime: ...

    @property
    def status_changed_at(self) -> datetime: ...

    @property
    def appointment_start(self) -> datetime | None: ...

    @property
    def accepted_at(self) -> datetime | None: ...

    @property
    def arrived_at(self) -> datetime | None: ...

    @property
    def completed_at(self) -> datetime | None: ...

    @property
    def postponed_until(self) -> datetime | None: ...


@dataclass(frozen=True)
class Deadlines:
    review_due_at: datetime | None  # a phone draft must be reviewed (recorded) by then
    dispatch_due_at: datetime  # engineering notified
    arrival_due_at: datetime | None
    completion_due_at: datetime


def deadlines(ticket: TicketTimes, sla: SlaSettings) -> Deadlines:
    """The SLA deadlines of a ticket, from when it was reported and what kind it is."""
    reported = ticket.reported_at
    minutes = lambda n: timedelta(minutes=n)  # noqa: E731 - reads better below
    hours = lambda n: timedelta(hours=n)  # noqa: E731
    public = bool(ticket.area)
    review = reported + minutes(sla.record_minutes) if ticket.channel == Channel.PHONE else None
    dispatch = reported + minutes(sla.public_notify_minutes if public else sla.notify_minutes)
    if ticket.urgency == Urgency.EMERGENCY:
        return Deadlines(
            review, dispatch, reported + minutes(sla.emergency_arrival_minutes),
            reported + hours(sla.emergency_completion_hours),
        )
    if ticket.appointment_start is not None:
        arrival = ticket.appointment_start - minutes(sla.appointment_lead_minutes)
    elif public:
        arrival = reported + minutes(sla.public_arrival_minutes)
    elif ticket.is_paid and ticket.accepted_at is not None:
        # 有偿 in-home item wanted now: 10 min after the engineer took the order.
        arrival = ticket.accepted_at + minutes(sla.paid_now_arrival_minutes)
    else:
        arrival = None
    window = sla.non_urgent_completion_hours if ticket.urgency == Urgency.LOW else sla.general_completion_hours
    start = max(reported, ticket.appointment_start or reported)
    return Deadlines(review, dispatch, arrival, start + hours(window))


def current_due_at(ticket: TicketTimes, sla: SlaSettings) -> datetime | None:
    """The next deadline the ticket has to meet in its present state (None when none runs)."""
    due = deadlines(ticket, sla)
    status = Status(ticket.status)
    if status == Status.DRAFT:
        return due.review_due_at
    if status == Status.RECEIVED:
        return due.dispatch_due_at
    if status == Status.PRICE_REVIEW:
        return ticket.status_changed_at + timedelta(minutes=sla.price_review_minutes)
    if status in (Status.DISPATCHED, Status.ACCEPTED):
        return due.arrival_due_at or due.completion_due_at
    if status == Status.ON_SITE:
        return due.completion_due_at
    if status == Status.POSTPONED:
        return ticket.postponed_until or due.completion_due_at
    return None


def on_time(ticket: TicketTimes, sla: SlaSettings) -> bool | None:
    """零修及时: arrived and completed within their limits (None until completed)."""
    if ticket.completed_at is None:
        return None
    due = deadlines(ticket, sla)
    arrived_in_time = due.arrival_due_at is None or (
        ticket.arrived_at is not None and ticket.arrived_at <= due.arrival_due_at
    )
    return arrived_in_time and ticket.completed_at <= due.completion_due_at


def expected_arrival_minutes(ticket: TicketTimes, sla: SlaSettings, now: datetime) -> int:
    """What a caller is told once an engineer took the job: 「预计N分钟内到达」. The minutes to the
    arrival deadline, rounded up to 5 (at least 5); with no deadline running (or one already missed),
    the emergency arrival limit: an engineer who just accepted is not promised sooner than that."""
    due = deadlines(ticket, sla).arrival_due_at
    if due is None or due <= now:
        return sla.emergency_arrival_minutes
    minutes = -(-(due - now) // timedelta(minutes=5)) * 5
    return max(5, min(int(minutes), 9995))
