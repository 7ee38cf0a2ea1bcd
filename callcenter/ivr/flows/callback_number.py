"""Two hotline steps about reaching the caller again, kept apart from the main script.

``establish_callback_number``, before the summary: the ticket's phone is the caller ID unless
- the caller said a phone number in the description: it is offered (「您说的电话是…，作为回拨号码
  请按1」), since that is the number the caller wants used;
- the caller ID is withheld or not a callable number: a number is asked for by keypad;
- the caller is not the resident of the repair's address (a neighbour reporting the leak upstairs):
  the caller ID is in the directory but the address taken differs from that entry's room. The
  caller may leave another number, or keep this phone's with #.
A keyed number is read back digit by digit (1 as 幺) and confirmed or keyed again.

``put_on_callback_list``, when the call ends: a caller who hung up before anything was understood
(no draft ticket) goes on the desk's call-back list (core.callback_list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from callcenter.ivr.flows.dialogue import Dialogue
from callcenter.ivr.prompts import Prompts
from core.callback_list import Abandoned
from core.contacts import is_phone_number
from core.intake import DraftFacts, PhoneDrafts
from core.phones import caller_number, normalise_phone
from core.settings import Settings
from core.triage import triage


class HotlineServicesShape(Protocol):
    """What these steps use of ``hotline.HotlineServices`` (read only)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def drafts(self) -> PhoneDrafts: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...


class HotlineCall(Protocol):
    """What these steps use of the hotline's call (``hotline.HotlineCall``, which imports this module)."""
    call: Any

    @property
    def services(self) -> HotlineServicesShape: ...  # read-only: hotline.HotlineServices fits it
    facts: DraftFacts
    record: Any  # FlowRecord, set once the call is answered
    dialogue: Dialogue
    prompts: Prompts
    menu_keys: str

    def save(self, step: str) -> None: ...
    def lookup_resident(self) -> Any: ...
    def local_now(self) -> datetime: ...

log = logging.getLogger("callcenter.ivr")

CALLBACK_CONFIRMED = "callback_number"  # in ``confirmed``: the caller chose or keyed the ticket's phone
KEYPAD_TRIES = 3
MAX_NUMBER_KEYS = 20  # PHONE_PATTERN's longest number


def establish_callback_number(hotline: HotlineCall) -> None:
    d, p, f = hotline.dialogue, hotline.prompts, hotline.facts
    said = said_phone(hotline)
    offered = said if said != f.phone else ""
    if offered:
        answer = d.ask_yes_no(p["callback.said_prefix"] + p.digits(offered) + p["callback.said_confirm"], tries=1)
        if answer:
            use_number(hotline, offered, "回拨号码：来电人描述中的号码")
            return
    usable = is_phone_number(caller_id(hotline))
    if usable and not offered and not not_the_resident(hotline):
        return
    keyed = keypad_number(hotline, may_keep=usable)
    if keyed:
        use_number(hotline, keyed, "回拨号码：按键输入")
    elif not usable:
        d.say(p["callback.not_given"])


def keypad_number(hotline: HotlineCall, may_keep: bool) -> str:
    """A number keyed and confirmed, or "" (kept this phone's with # when ``may_keep``, or gave none).
    A number that is not one (PHONE_PATTERN) is asked again; so is one the caller did not confirm."""
    d, p = hotline.dialogue, hotline.prompts
    prompt = p["callback.ask_other_number" if may_keep else "callback.ask_number"]
    before = b""
    for _ in range(KEYPAD_TRIES):
        keys = d.ask_keys(before + prompt, max_keys=MAX_NUMBER_KEYS, timeout=8.0)
        if not keys and may_keep:
            return ""
        if not is_phone_number(keys):
            before = p["callback.invalid"]
            continue
        if d.ask_yes_no(p["callback.readback_prefix"] + p.digits(keys) + p["callback.readback_confirm"], tries=1):
            return keys
        before = b""  # 2: keyed again
    return ""


def use_number(hotline: HotlineCall, number: str, step: str) -> None:
    hotline.facts.phone = normalise_phone(number)
    hotline.facts.confirmed.add(CALLBACK_CONFIRMED)
    log.info("call %s: callback number given (%s)", hotline.call.call_id, step)
    hotline.save(step)


def said_phone(hotline: HotlineCall) -> str:
    """The phone number in what the caller said about the problem (core.triage finds it), or ""."""
    description = hotline.facts.description
    if not description:
        return ""
    return triage(description, hotline.local_now(), hotline.services.settings).phone or ""


def not_the_resident(hotline: HotlineCall) -> bool:
    """The caller ID belongs to a resident of another flat than the one the repair is for."""
    f = hotline.facts
    resident = hotline.lookup_resident()
    if resident is None or "caller_id_room" in f.confirmed or not f.room:
        return False  # a public area (电梯, 车库) is every resident's: the caller's own number is right
    return (resident.building, resident.unit, resident.room) != (f.building, f.unit, f.room)


def caller_id(hotline: HotlineCall) -> str:
    return caller_number(hotline.call.caller)


def gave_up_at(hotline: HotlineCall) -> str:
    """How far a caller who hung up got (core.callback_list.STAGE_NAMES)."""
    steps = [u["step"] for u in hotline.record.utterances]
    if steps:
        return steps[-1]
    return f"key:{hotline.menu_keys}" if hotline.menu_keys else "greeting"


def put_on_callback_list(hotline: HotlineCall) -> None:
    number = caller_id(hotline) if is_phone_number(caller_id(hotline)) else ""
    call = Abandoned(call_id=hotline.record.record_id, number=number, at=hotline.services.clock(),
                     stage=gave_up_at(hotline))
    item_id = hotline.services.drafts.gave_up(call)
    log.info("call %s: caller gave up (%s), on the call-back list as item %s", hotline.call.call_id,
             call.stage, item_id)
