"""The end of an emergency hotline call: the caller may hold for the engineer who takes the job.

Once the caller has their ticket number, the hotline offers to put them through to the engineer
(1 to hold). While they hold, the engineer who accepts and asks to talk (``bridge.Meeting``) is
put through: 「已安排维修人员赶往现场，正在为您接通，请稍候」, then the bridge, on the hotline's own
thread, so the hotline call goes on being recorded. Otherwise the caller hears how it stands: the
engineer took the job and is on the way, or nobody could be reached yet. The call-out's state is
read from the database, so a call-out rung by another process counts too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from callcenter.ivr.bridge import Meeting, bridge
from callcenter.ivr.flows.dialogue import Dialogue, HungUp
from callcenter.ivr.prompts import Prompts
from core.callouts import ACCEPTED, RINGING

OFFER_SECONDS = 6.0  # for the 1 after the offer
NOTICE_SECONDS = 15.0  # 「正在为您联系维修人员」 again after this much holding
MAX_HOLD_SECONDS = 600.0
# After the acceptance the engineer hears the job once more and the caller's number before the
# offer to talk: this long at most before the caller is told the engineer is on the way.
ENGINEER_JOIN_SECONDS = 45.0


def hold_for_engineer(dialogue: Dialogue, prompts: Prompts, meeting: Meeting,
                      callout_state: Callable[[], str | None],
                      who_is_coming: Callable[[], bytes] = lambda: b"") -> bool:
    """Offer the caller to hold; True if they then talked with the engineer. HungUp if they hang up.
    ``who_is_coming()``: 「维修人员张师傅已接单，预计二十分钟内到达」, said once the job is taken."""
    d, p, call = dialogue, prompts, dialogue.call
    d.say(p["hotline.offer_engineer"], barge_in=True)
    if call.wait_dtmf(OFFER_SECONDS) != "1":
        if not call.is_active:
            raise HungUp()
        if callout_state() == ACCEPTED:  # taken already: they hear who is coming before goodbye
            d.say(who_is_coming())
        return False
    started = time.monotonic()
    notice_at, accepted_at = started, None
    while time.monotonic() - started < MAX_HOLD_SECONDS:
        if time.monotonic() >= notice_at:  # told every NOTICE_SECONDS while holding, also once taken
            d.say(p["hotline.hold_for_engineer"])
            notice_at = time.monotonic() + NOTICE_SECONDS
        engineer = meeting.take_engineer(timeout=1.0)
        if engineer is not None:
            if accepted_at is None:
                d.say(who_is_coming())
            d.say(p.say("callout.engineer_coming_prefix", "callout.engineer_coming_suffix"))
            bridge(call, engineer)
            meeting.close()
            return True
        if not call.is_active:
            raise HungUp()
        state = callout_state()
        if state == ACCEPTED:
            if accepted_at is None:
                d.say(who_is_coming())
            accepted_at = accepted_at or time.monotonic()
            if meeting.engineer_withdrawn or time.monotonic() - accepted_at > ENGINEER_JOIN_SECONDS:
                d.say(p["hotline.engineer_on_the_way"])
                return False
        elif state != RINGING:
            break
    d.say(p["hotline.engineer_unreached"])
    return False
