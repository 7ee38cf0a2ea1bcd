"""The hotline's part of incidents (core.incidents): announce an open outage, count the caller.

Kept apart from hotline.py, which calls in at three points:

- ``after_greeting``: the caller's building is known from caller ID (the resident directory) and an
  incident is open there: 「三号楼目前停水，正在抢修，预计下午三点恢复。如果是其他问题，请按1或直接说。」
  Hanging up, silence, 「知道了」 or words of the same kind count the caller on the incident and end
  the call with no ticket; 1 (or the menu's 2 and 0) or another problem goes on as usual.
- ``holds_draft``: while an incident of the kind the caller describes could still be theirs (their
  building is not known yet), no draft ticket is written; the call record keeps every word.
- ``join_if_same``: once the building and the kind are known, the same rule as the call-outs'
  (``core.incidents.incident_for``) says whether the caller belongs to an incident; if so they hear
  the announcement and are counted instead of getting a ticket.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import NoReturn

from callcenter.ivr.flows.dialogue import Heard, HungUp
from callcenter.ivr.prompts import Prompts
from core import incidents
from core.incident_service import IncidentCalls, IncidentFacts
from core.incidents import Place

log = logging.getLogger("callcenter.ivr")

PAUSE = b"\x00\x00" * 1200  # 0.15 s between the announcement's clauses
# Words that only acknowledge (「好的，知道了，谢谢」): said alone, the caller has heard what they called about.
ACKNOWLEDGED = sorted(("知道了", "知道", "好的", "好", "明白了", "明白", "谢谢你", "谢谢", "行", "嗯", "晓得了", "晓得",
                       "收到", "了解", "哦", "噢", "那好", "是的", "是", "对", "没事了", "没事", "那就这样", "啊", "吧"),
                      key=len, reverse=True)


class JoinedIncident(Exception):
    """The caller was counted on an incident: the call ends with no ticket."""


def announcement(prompts: Prompts, incident: IncidentFacts, place: Place, now: datetime, tz) -> bytes:
    """「三号楼目前停水，正在抢修，预计下午三点恢复。」 from recorded pieces (numbers said in Chinese)."""
    where = prompts.address(place.building, "", "", "" if place.building else place.area)
    spoken = where + prompts.say("incident.now", f"incident.kind_{incident.kind}") + PAUSE
    spoken += prompts[f"incident.action_{incident.action}"]
    if incident.expected_end is not None:
        spoken += PAUSE + prompts["incident.expected_prefix"] + prompts.when(incident.expected_end.astimezone(tz), now, say_today=False)
        spoken += prompts["incident.expected_suffix"]
    return spoken + PAUSE


def acknowledges(text: str) -> bool:
    """Nothing but acknowledgements (「好的，知道了，谢谢」); 「是不是漏水了」 is not one."""
    rest = re.sub(r"[\s，。！？、,.!?]", "", text)
    for word in ACKNOWLEDGED:
        rest = rest.replace(word, "")
    return bool(text.strip()) and not rest


class IncidentNotice:
    """One hotline call's dealings with incidents (``hotline`` is the HotlineCall)."""

    def __init__(self, hotline) -> None:  # hotline.HotlineCall (which imports this module)
        self.hotline = hotline
        self.caller_id: int | None = None  # the IncidentCaller row, once counted
        self.announced: int | None = None  # the incident the caller has heard about
        self.went_on = False  # heard it and chose to go on (1, or another problem): not asked again
        self.decided = False  # join_if_same has looked at a known place and kind: the draft may be written
        self.open_kinds = self.store.open_kinds()

    @property
    def store(self) -> IncidentCalls:
        return self.hotline.services.drafts.incidents

    @property
    def joined(self) -> bool:
        return self.caller_id is not None

    # -- right after the greeting

    def after_greeting(self, place: Place) -> Heard | None:
        """Announce the open incident at the caller's (caller ID) building. Raises JoinedIncident when
        the caller is counted; returns what they said or keyed to go on with, or None (nothing open)."""
        if not self.open_kinds or not place.known:
            return None
        h = self.hotline
        incident = self.store.open_for_place(place)
        if incident is None:
            return None
        spoken = announcement(h.prompts, incident, place, h.local_now(), h.services.settings.tz)
        incident_id, kind = incident.id, incident.kind
        self.announced = incident_id
        d = h.dialogue
        log.info("call %s: incident %d announced (caller ID)", h.call.call_id, incident_id)
        try:
            d.say(spoken + h.prompts["incident.other_problem"], barge_in=True)
            heard = d.listen(max_seconds=10, no_input_seconds=5)
        except HungUp as gone:
            self.join(incident_id, place, gone.heard.text if gone.heard else "", "caller_id")
            raise
        if heard.keys:
            self.went_on = True
            return heard  # 1: another problem (2 and 0 keep their menu meaning)
        if heard.spoke and not self.same_or_acknowledged(heard.text, kind):
            self.went_on = True
            return heard  # another problem, said straight away
        h.note_utterance("incident", heard)
        self.join(incident_id, place, heard.text, "caller_id")
        self.goodbye()

    def same_or_acknowledged(self, text: str, kind: str) -> bool:
        if not text:
            return True  # a sound with no words: nothing else was asked for
        if acknowledges(text):
            return True
        return incidents.kind_of_text(text, self.hotline.local_now(), self.hotline.services.settings) == kind

    # -- later in the call

    def described_kind(self) -> str | None:
        f = self.hotline.facts
        return incidents.kind_of_text(f.description, self.hotline.local_now(), self.hotline.services.settings)

    def holds_draft(self) -> bool:
        """No draft yet: an incident of the kind described (or not yet described) may be the caller's."""
        if not self.open_kinds or self.went_on or self.decided or self.hotline.ticket_id is not None:
            return False
        if self.hotline.facts.description:
            return self.described_kind() in self.open_kinds
        return True

    def join_if_same(self, how: str, final: bool) -> None:
        """The building (and the kind) are known: does the caller belong to an incident? Then announce
        it, count them and raise JoinedIncident. ``final``: nothing more will be described, so the held
        draft may be written whatever the answer."""
        h, f = self.hotline, self.hotline.facts
        if h.ticket_id is not None or self.joined or self.went_on or self.decided:
            return
        kind = self.described_kind()
        place = Place(f.building, f.unit, f.room, f.area)
        self.decided = final or bool(f.description)
        if kind is None or not place.known:
            return
        incident = self.store.incident_for(place, kind, h.services.clock())  # may form one just now
        if incident is None:
            return
        spoken = announcement(h.prompts, incident, place, h.local_now(), h.services.settings.tz)
        incident_id = incident.id
        self.join(incident_id, place, f.description, how)
        log.info("call %s: same %s as incident %d: counted, no ticket", h.call.call_id, kind, incident_id)
        h.dialogue.say(spoken)
        self.goodbye()

    # -- counting

    def join(self, incident_id: int, place: Place, words: str, how: str) -> None:
        h = self.hotline
        self.caller_id = self.store.attach_call(incident_id, at=h.services.clock(), phone=h.facts.phone,
                                                call_record_id=h.record.record_id, place=place, words=words, how=how)

    def goodbye(self) -> NoReturn:
        self.hotline.dialogue.say_goodbye(self.hotline.prompts["incident.counted"])
        raise JoinedIncident()
