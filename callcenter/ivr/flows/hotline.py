"""The inbound hotline script: greet, ask, listen, confirm, give the ticket number.

Runs on the call's own thread. The draft ticket is saved as soon as anything is known and on
every step after (``core.intake``), so a caller who hangs up at any moment leaves a ticket with
what was understood, the transcript so far and the recording; every call leaves a call record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callcenter.asr.capacity import StreamSlot, StreamSlots, speech_for_call
from callcenter.asr.stream import Recognizer
from callcenter.ivr.bridge import Meeting, Meetings, bridge
from callcenter.ivr.flows.call_record import FlowRecord
from callcenter.ivr.flows.callback_number import establish_callback_number, put_on_callback_list
from callcenter.ivr.flows.dialogue import Dialogue, Heard, HungUp
from callcenter.ivr.flows.incident_notice import IncidentNotice, JoinedIncident
from callcenter.ivr.flows.put_through import hold_for_engineer
from callcenter.ivr.lines import Call, CallEnded, SipError
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.who_is_coming import sentence_for
from callcenter.metrics import NO_METRICS, Metrics
from core import log_context
from core.base import in_windows
from core.callouts import CallOutState, EmergencyReply
from core.calls import CallLog
from core.incidents import Place
from core.intake import DraftFacts, PhoneDrafts
from core.numerals import compact_spaces, normalize_numbers
from core.outcomes import CallOutcome
from core.phones import caller_number
from core.settings import Settings
from core.tickets import Urgency
from core.transcript import PROBLEM, Utterance
from core.triage import triage

log = logging.getLogger("callcenter.ivr")


class Transferred(Exception):
    """The caller was handed to the front desk: the flow's part is over."""


# With no speech model, a description ends with # or this much silence.
NO_MODEL_END_SILENCE = 4.0
DESK_RING_SECONDS = 20  # 0 → front desk: how long the desk's phone rings before the caller goes on here
# In ``confirmed``: the caller ID matched the directory and the caller gave that entry's room number.
CALLER_ID_CONFIRMED = "caller_id_room"


@dataclass
class HotlineServices:
    """What the hotline needs from the rest of the service (wired in callcenter/app.py)."""

    settings: Settings
    prompts: Prompts
    drafts: PhoneDrafts
    calls: CallLog
    # A recognizer per answer (optionally restricted to a grammar), or None with no speech model.
    new_recognizer: Callable[[list[str] | None], Recognizer] | None
    # The emergency call-out's trigger: called with the ticket id the moment a caller's words
    # make the draft an emergency (on a partial result, before they finish). None: nothing known.
    on_emergency: Callable[[int], EmergencyReply | None] = lambda ticket_id: None
    # Where an emergency caller meets the engineer who takes the job; None: never put through.
    meetings: Meetings | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # This node's recogniser streams (asr.max_streams); None: no limit kept (no model, or a test).
    streams: StreamSlots | None = None
    metrics: Metrics = NO_METRICS  # this app's (callcenter/metrics.py); the lines count into it too


@dataclass
class HotlineCall:
    call: Call
    services: HotlineServices
    facts: DraftFacts = field(default_factory=DraftFacts)
    ticket_id: int | None = None
    number: str = ""
    record: FlowRecord | None = None  # the call record, its recording and the caller's answers
    emergency_raised: bool = False
    emergency_reply: EmergencyReply | None = None
    meeting: Meeting | None = None  # while the caller may still be put through to the engineer
    provisional_description: str = ""  # taken from a partial result; the final replaces it
    told_number: bool = False  # the caller has heard the ticket number: hanging up now is the normal end
    menu_keys: str = ""  # keyed over the greeting and menu (for the call-back list: how far they got)
    slot: StreamSlot | None = None  # the recogniser stream this call holds until it ends
    recognisers_busy: bool = False  # all were taken when it came: keys and the recording only
    incident: IncidentNotice | None = None  # an open outage announced, the caller counted on it

    def __post_init__(self) -> None:
        s = self.services
        self.prompts = s.prompts
        self.config = s.settings.hotline
        self.dialogue = Dialogue(self.call, s.new_recognizer, s.settings.asr.end_silence_seconds)
        self.facts.phone = caller_number(self.call.caller)

    # -- the call from start to end ------------------------------------------------------

    def run(self) -> None:
        """The whole call, holding a recogniser stream from start to end (given back whatever ends
        it); with every stream taken, the call runs on keys and its recording (``recognisers_busy``)."""
        s = self.services
        self.slot, speech = speech_for_call(s.streams, self.call.call_id, s.new_recognizer)
        try:
            if speech is None and s.new_recognizer is not None and s.streams is not None:  # all taken
                self.recognisers_busy = True
                self.dialogue = Dialogue(self.call, None, s.settings.asr.end_silence_seconds)
                s.streams.note_without_speech(self.call.call_id)
            self.run_call()
        finally:
            if self.slot is not None:
                self.slot.release()

    def run_call(self) -> None:
        s, call = self.services, self.call
        record_id = s.calls.open(sip_call_id=call.call_id, direction="inbound", line=call.line.name,
                                 caller=call.caller, called=call.called, at=s.clock())
        self.record = FlowRecord(s.calls, record_id, s.settings, s.clock)
        self.told_who_is_coming: dict | None = None  # what the caller was told of the engineer coming
        outcome = CallOutcome.ERROR
        try:
            try:
                call.answer()
            except CallEnded:  # cancelled while it rang
                outcome = CallOutcome.CANCELLED
                return
            s.calls.update(record_id, answered_at=s.clock())
            self.record.start_recording(call, self.dialogue)
            self.incident = IncidentNotice(self)
            outcome = self.converse()
        except JoinedIncident:
            outcome = CallOutcome.INCIDENT
        except (HungUp, CallEnded):
            outcome = CallOutcome.COMPLETED if self.told_number else CallOutcome.CALLER_HUNG_UP
            if self.incident is not None and self.incident.joined:
                outcome = CallOutcome.INCIDENT
        except Transferred:
            outcome = CallOutcome.TRANSFERRED
        except Exception:
            log.exception("call %s: hotline flow failed", call.call_id)
        finally:
            self.finish(outcome)

    def finish(self, outcome: CallOutcome) -> None:
        """Whatever happened: keep what was understood, the transcript and the outcome."""
        s = self.services
        if self.meeting is not None and s.meetings is not None:  # a meeting is only opened from them
            s.meetings.close(self.meeting)
        try:
            counted = self.incident is not None and self.incident.joined  # on an incident: no ticket
            if not counted and (self.ticket_id is not None or self.flow_record.utterances or self.facts.room
                                or self.facts.area):
                self.save("通话结束" if outcome == CallOutcome.COMPLETED else "通话中断", final=True)
        except Exception:
            log.exception("call %s: could not save the draft at the end", self.call.call_id)
        s.calls.update(self.flow_record.record_id, ticket_id=self.ticket_id)
        if outcome == CallOutcome.CALLER_HUNG_UP and self.ticket_id is None:
            try:  # nothing understood: the desk calls back (回拨)
                put_on_callback_list(self)
            except Exception:
                log.exception("call %s: could not put the call on the call-back list", self.call.call_id)
        # Why a call has no words in its transcript: every recogniser of the node was busy.
        self.flow_record.close(outcome, confirmed=self.facts.confirmed,
                               without_speech="recognisers_busy" if self.recognisers_busy else None,
                               who_is_coming=self.told_who_is_coming)
        log.info("call %s: ended (%s), ticket %s", self.call.call_id, outcome, self.number or "none")

    def save(self, step: str, final: bool = False) -> None:
        if not final and self.incident is not None and self.incident.holds_draft():
            return  # the caller may belong to an open incident: no ticket until that is known
        self.ticket_id, self.number = self.services.drafts.save(self.ticket_id, self.facts, self.services.clock(), step)
        log_context.note(ticket=self.number)
        if self.record is not None:
            self.services.calls.update(self.record.record_id, ticket_id=self.ticket_id)

    def converse(self) -> CallOutcome:
        d, p = self.dialogue, self.prompts
        d.say(p["hotline.greeting"], barge_in=True)
        heard = self.incident_notice.after_greeting(self.caller_id_place())  # an outage in the caller's building
        if heard is None:
            if self.recognisers_busy:
                d.say(p["hotline.recognisers_busy"])  # not skipped by a key: it says why to use the keys
            d.say(p["hotline.menu"], barge_in=True)
            heard = self.listen_for_problem(max_seconds=self.config.max_description_seconds, no_input_seconds=5)
        self.menu_keys = heard.keys
        if heard.keys == "2":
            return self.tell_ticket_status()
        if heard.keys == "0":
            self.desk_transfer()
        if heard.spoke and not heard.keys:
            self.take_description(heard)  # the caller started with the problem itself
        self.establish_address()
        self.place_known(final=False)
        if not self.facts.description and not self.utterances_of(PROBLEM):
            self.ask_problem()
        self.place_known(final=True)
        if self.emergency_raised:
            attached = self.emergency_reply == EmergencyReply.ATTACHED
            d.say(p["hotline.emergency_attached" if attached else "hotline.emergency_notice"])
        self.ask_time()
        establish_callback_number(self)
        self.confirm_summary()
        self.save("确认报修")
        d.say(p.say("hotline.ticket_number_prefix") + p.digits(self.number))
        self.told_number = True
        if self.meeting is not None:
            hold_for_engineer(d, p, self.meeting, self.callout_state, self.who_is_coming)
        d.say_goodbye(p["hotline.goodbye"])
        return CallOutcome.COMPLETED

    # -- steps -----------------------------------------------------------------------------

    def establish_address(self) -> None:
        """Caller ID first, confirmed by the caller's room number; else the address by voice, read
        back; after two misses, by keypad."""
        d, p, f = self.dialogue, self.prompts, self.facts
        resident = self.lookup_resident()
        if resident is not None and self.knows_the_room(resident.room):
            f.building, f.unit, f.room, f.area = resident.building, resident.unit, resident.room, ""
            f.reporter_name = resident.name
            f.confirmed |= {"address", CALLER_ID_CONFIRMED}
            self.save("来电号码匹配住户，房号核对一致")
            return
        if d.has_speech:
            for _ in range(2):
                if self.facts.address_said and self.read_back_address():
                    return
                d.say(p["hotline.ask_address"], barge_in=True)
                heard = d.listen(max_seconds=12, no_input_seconds=6)
                self.note_utterance("address", heard)
                if heard.text:
                    address = triage(heard.text, self.local_now(), self.services.settings).address
                    self.facts.set_address(address.building, address.unit, address.room, address.area)
                    self.save("语音地址")
            if self.facts.address_said and self.read_back_address():
                return
        self.keypad_address()

    def caller_id_place(self) -> Place:
        """The building the caller ID's directory entry names (not verified: see ``knows_the_room``)."""
        resident = self.lookup_resident()
        return Place(resident.building, resident.unit, resident.room) if resident is not None else Place()

    def place_known(self, final: bool) -> None:
        """Where and what are known: an incident of that kind there counts the caller (JoinedIncident);
        otherwise the draft held back for that question is written now, its emergency acted on."""
        f = self.facts
        how = ("keypad" if "address_keypad" in f.confirmed else
               "caller_id" if CALLER_ID_CONFIRMED in f.confirmed else "speech")
        self.incident_notice.join_if_same(how, final)
        if self.ticket_id is None and not self.incident_notice.holds_draft() and (f.description or f.room or f.area):
            self.save("地址已知")
            if f.urgency == Urgency.EMERGENCY:
                self.raise_emergency()

    def knows_the_room(self, room: str) -> bool:
        """A caller ID is easy to forge on VoIP, and numbers are given up and handed on: it proves
        nothing. So the caller says (or keys) their room number and it is compared with the
        directory's; the directory's address is never spoken to a caller who has not done so
        (nor after: the summary says 「您登记的住址」). One answer; asked once more only if nothing
        was understood; a wrong one goes on quietly to the ordinary address questions."""
        d, p = self.dialogue, self.prompts
        wanted = digits_of(room)
        if not wanted:
            return False
        for attempt in range(2):
            d.say((p["hotline.ask_again"] if attempt else b"") + p["hotline.verify_room"], barge_in=True)
            heard = d.listen(max_seconds=10, no_input_seconds=6, keys_end="#", max_keys=8)
            self.note_utterance("room_check", heard)
            answer = heard.keys or digits_of(heard.text)
            if answer:
                matches = answer == wanted
                log.info("call %s: caller ID in the directory; room number %s", self.call.call_id,
                         "matches" if matches else "does not match")
                return matches
        return False

    def read_back_address(self) -> bool:
        d, p, f = self.dialogue, self.prompts, self.facts
        spoken = p.address(f.building, f.unit, f.room, f.area)
        confirmed = d.ask_yes_no(p.say("hotline.readback_prefix") + spoken + p["hotline.readback_suffix"])
        if confirmed:
            f.confirmed.add("address")
            self.save("来电人确认地址")
            return True
        self.facts.set_address("", "", "", "")
        return False

    def keypad_address(self) -> None:
        d, p, f = self.dialogue, self.prompts, self.facts
        f.building = d.ask_keys(p["hotline.keypad_building"], max_keys=4)
        f.unit = d.ask_keys(p["hotline.keypad_unit"], max_keys=2)
        f.room = d.ask_keys(p["hotline.keypad_room"], max_keys=6)
        f.area = ""
        if f.room:
            f.confirmed.add("address_keypad")
        self.save("按键输入地址")

    def ask_problem(self) -> None:
        d, p = self.dialogue, self.prompts
        # With no speech model the description is for the recording only: the caller is told to end
        # it with #, so a pause for thought must not cut it (only a long silence does).
        first = "hotline.ask_problem" if d.has_speech else "hotline.no_speech_fallback"
        end_silence = None if d.has_speech else NO_MODEL_END_SILENCE
        for prompt in (first, "hotline.ask_again"):
            d.say(p[prompt], barge_in=True)
            heard = self.listen_for_problem(max_seconds=self.config.max_description_seconds,
                                            no_input_seconds=self.config.no_input_seconds, keys_end="#",
                                            end_silence=end_silence)
            if heard.spoke:
                self.take_description(heard)
                return
        # Nothing heard twice: the recording keeps whatever there was; the desk can call back.
        d.say(p["hotline.offer_keypad_or_desk"], barge_in=True)
        heard = d.listen(max_seconds=6, no_input_seconds=6)
        if heard.keys == "0":
            self.desk_transfer()

    def listen_for_problem(self, **kwargs) -> Heard:
        """A listen whose words describe the problem: emergencies are watched for on every partial,
        and a caller who hangs up mid-sentence leaves what was heard so far in the draft."""
        try:
            return self.dialogue.listen(on_partial=self.watch_for_emergency, **kwargs)
        except HungUp as gone:
            if gone.heard is not None and gone.heard.spoke and not gone.heard.keys:
                self.take_description(gone.heard)
            raise

    def take_description(self, heard: Heard) -> None:
        f = self.facts
        self.note_utterance(PROBLEM, heard)
        if heard.text:
            if self.provisional_description and f.description == self.provisional_description:
                f.description = ""  # the partial that raised the emergency: the final says it all
            self.provisional_description = ""
            f.description = (f.description + "；" if f.description else "") + heard.text
            f.merge(triage(f.description, self.local_now(), self.services.settings))
        self.save("描述问题")
        if heard.spoke and heard.end:  # heard.end: where the speech ended, on the dialogue's clock
            self.services.metrics.speech_to_saved.observe(max(0.0, self.dialogue.offset() - heard.end))
        if f.urgency == Urgency.EMERGENCY:
            self.raise_emergency()

    def watch_for_emergency(self, partial: str) -> None:
        """Called on every partial result: an emergency is acted on before the caller finishes."""
        if self.emergency_raised or (self.ticket_id is None and self.facts.urgency == Urgency.EMERGENCY):
            return  # raised already, or held until the place is known (incidents): once is enough
        draft = triage(partial, self.local_now(), self.services.settings)
        if draft.urgency == Urgency.EMERGENCY:
            self.facts.urgency = Urgency.EMERGENCY
            self.facts.category = draft.category
            if not self.facts.description:
                self.facts.description = self.provisional_description = partial.replace(" ", "")
            log.info("call %s: emergency words %s in a partial result", self.call.call_id,
                     [w["word"] for w in draft.to_dict()["emergency_words"]])
            self.save("识别到紧急情况")
            self.raise_emergency()

    def raise_emergency(self) -> None:
        if self.emergency_raised or self.ticket_id is None:
            return  # no draft yet (held for an incident): raised once it is written (place_known)
        self.emergency_raised = True
        s = self.services
        # Open before the engineer is rung, so whoever accepts knows the caller is still on the line.
        meeting = s.meetings.open(self.ticket_id) if s.meetings is not None else None
        self.emergency_reply = s.on_emergency(self.ticket_id)
        if self.emergency_reply == EmergencyReply.CALLING:
            self.meeting = meeting
        elif meeting is not None and s.meetings is not None:
            s.meetings.close(meeting)

    def who_is_coming(self) -> bytes:
        """「维修人员张师傅已接单，预计二十分钟内到达」 for this ticket as it stands (kept for the transcript)."""
        coming = self.services.drafts.tickets.coming(self.saved_ticket_id, self.local_now())
        sentence, self.told_who_is_coming = sentence_for(coming, self.prompts, self.services.settings)
        return sentence

    def callout_state(self) -> CallOutState | None:
        """How this ticket's call-out stands, from the database (another process may ring it)."""
        return self.services.drafts.callout_state(self.saved_ticket_id)

    def ask_time(self) -> None:
        d, p, f = self.dialogue, self.prompts, self.facts
        if not d.has_speech or not f.needs_visit_time():
            return
        d.say(p["hotline.ask_time"], barge_in=True)
        heard = d.listen(max_seconds=10, no_input_seconds=6)
        self.note_utterance("time", heard)
        appointment = triage(heard.text, self.local_now(), self.services.settings).appointment if heard.text else None
        if appointment:
            f.appointment_start, f.appointment_end = appointment.start, appointment.end
            self.save("预约时间")

    def confirm_summary(self) -> None:
        d, p, f = self.dialogue, self.prompts, self.facts
        summary = p.say("hotline.summary_prefix")
        # An address from the directory is not read out, even now: the caller gave the room only.
        summary += p["hotline.registered_address"] if CALLER_ID_CONFIRMED in f.confirmed \
            else p.address(f.building, f.unit, f.room, f.area)
        summary += p[f"pieces.cat_{f.category}"]
        if f.appointment_start:
            summary += p.when(f.appointment_start.astimezone(self.services.settings.tz), self.local_now())
        answer = d.ask_yes_no(summary + p["hotline.summary_confirm"], tries=1)
        if answer is False:
            d.say(p["hotline.ask_problem" if d.has_speech else "hotline.no_speech_fallback"], barge_in=True)
            heard = self.listen_for_problem(max_seconds=self.config.max_description_seconds,
                                            no_input_seconds=self.config.no_input_seconds, keys_end="#",
                                            end_silence=None if d.has_speech else NO_MODEL_END_SILENCE)
            if heard.spoke:
                self.take_description(heard)
        elif answer:  # no answer at all is not a confirmation
            f.confirmed.add("summary")

    def tell_ticket_status(self) -> CallOutcome:
        d, p = self.dialogue, self.prompts
        number = d.ask_keys(p["hotline.ask_ticket_number"], max_keys=14)
        status = self.services.drafts.status_of(number) if number else None
        if status is None:
            d.say(p["hotline.ticket_not_found"])
        else:
            d.say(p.say("hotline.ticket_status_prefix", f"pieces.status_{status.value}"))
        d.say_goodbye(p["hotline.goodbye"])
        return CallOutcome.COMPLETED

    def desk_transfer(self) -> None:
        """0: the front desk while it is staffed: the hotline dials ``hotline.desk_extension`` on its own
        line and bridges the caller to it, still recording, until either hangs up (raises
        Transferred). Out of hours, or when the desk does not answer, say so and go on with the call."""
        d, p = self.dialogue, self.prompts
        extension = self.config.desk_extension
        if not (extension and in_windows(self.config.desk_windows(), self.local_now().time())):
            d.say(p["hotline.desk_closed"])
            return
        d.say(p["hotline.transfer_desk"])
        try:
            desk = self.call.line.dial(extension, timeout=DESK_RING_SECONDS)
        except SipError as error:
            log.warning("call %s: the front desk %s did not answer: %s", self.call.call_id, extension, error)
            d.say(p["hotline.desk_no_answer"])
            return
        try:
            bridge(self.call, desk)
        finally:
            desk.hangup()
        raise Transferred()

    # -- helpers ---------------------------------------------------------------------------

    def lookup_resident(self):
        return self.services.drafts.resident(self.facts.phone) if self.facts.phone else None

    def note_utterance(self, step: str, heard: Heard) -> None:
        if not heard.empty:
            self.flow_record.note(step, heard)
            # Kept as it is said: an engineer rung in an emergency hears the caller's words mid-call.
            transcript = self.flow_record.transcript(self.facts.confirmed).to_json()
            self.services.calls.update(self.flow_record.record_id, transcript=transcript)

    def utterances_of(self, step: str) -> list[Utterance]:
        return self.flow_record.utterances_of(step)

    # Set (by run_call, or once the draft is saved) before the steps that use them: else a clear error.
    @property
    def flow_record(self) -> FlowRecord:
        if self.record is None:
            raise RuntimeError(f"call {self.call.call_id}: no call record yet")
        return self.record

    @property
    def incident_notice(self) -> IncidentNotice:
        if self.incident is None:
            raise RuntimeError(f"call {self.call.call_id}: incident check used before the call was answered")
        return self.incident

    @property
    def saved_ticket_id(self) -> int:
        if self.ticket_id is None:
            raise RuntimeError(f"call {self.call.call_id}: no draft ticket saved yet")
        return self.ticket_id

    def local_now(self) -> datetime:
        return self.services.clock().astimezone(self.services.settings.tz)


def digits_of(text: str) -> str:
    """The digits of a room number, keyed or said (「幺幺零幺」, 「一一零一室」 -> 1101)."""
    return re.sub(r"\D", "", normalize_numbers(compact_spaces(text))) if text else ""


@log_context.scoped
def answer_hotline(call, services: HotlineServices) -> None:
    """The ``on_call`` of the hotline line."""
    log_context.note(call_id=call.call_id, line=call.line.name)  # on every line this call's thread logs
    HotlineCall(call, services).run()
