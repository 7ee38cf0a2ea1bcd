"""How a call ended: one vocabulary for call records, call-out rings and follow-up attempts.

Stored as these strings (``StrEnum``: a member is its value, so stored rows need no migration).
The SIP package (``callcenter/sip``, which imports nothing of ``core``) gives a failed dial's
outcome as one of ``DIAL_FAILURES``' values (``DialError.outcome``).
"""

from __future__ import annotations

from enum import StrEnum


class CallOutcome(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CALLER_HUNG_UP = "caller_hung_up"
    MEDIA_TIMEOUT = "media_timeout"  # no RTP for rtp_timeout_seconds: the line ended the call
    NO_INPUT = "no_input"
    TRANSFERRED = "transferred"
    INCIDENT = "incident"  # told of an open outage (core.incidents) and counted on it: no ticket
    BUSY = "busy"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    DECLINED = "declined"
    FAILED = "failed"
    VOICEMAIL = "voicemail"  # a follow-up call answered by a voicemail greeting
    OPTED_OUT = "opted_out"
    ERROR = "error"
    NODE_LOST = "node_lost"  # closed by another node (core.nodes)


# How a call ended, as the console shows it.
CALL_OUTCOME_NAMES = {
    CallOutcome.IN_PROGRESS: "通话中",
    CallOutcome.COMPLETED: "完成",
    CallOutcome.CALLER_HUNG_UP: "来电方挂机",
    CallOutcome.MEDIA_TIMEOUT: "语音中断（收不到对方语音包）",
    CallOutcome.NO_INPUT: "无应答输入",
    CallOutcome.TRANSFERRED: "已转前台",
    CallOutcome.INCIDENT: "已告知停水停电等事件，计入该事件",
    CallOutcome.BUSY: "线路忙（已拒接）",
    CallOutcome.CANCELLED: "未接通即挂断",
    CallOutcome.REJECTED: "来源不允许",
    CallOutcome.NO_ANSWER: "无人接听",
    CallOutcome.DECLINED: "拒绝",
    CallOutcome.FAILED: "呼叫失败",
    CallOutcome.VOICEMAIL: "语音信箱",
    CallOutcome.OPTED_OUT: "要求不再回访",
    CallOutcome.ERROR: "系统错误",
    CallOutcome.NODE_LOST: "处理节点失联，通话中断",
}

# A dial that never became a call (``callcenter.sip.errors.DialError.outcome``).
DIAL_FAILURES = frozenset({CallOutcome.BUSY, CallOutcome.NO_ANSWER, CallOutcome.FAILED})


def dial_failure(outcome: str) -> CallOutcome:
    """A failed dial's outcome as given by the SIP side; anything else counts as failed."""
    return CallOutcome(outcome) if outcome in DIAL_FAILURES else CallOutcome.FAILED
