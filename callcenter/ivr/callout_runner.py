"""The dialling side of emergency call-outs: every running call-out rings its chain from a thread.

``core.callouts`` decides and keeps the records; this module dials. One thread per call-out in
state "ringing" loops: ``next_call`` (which stores the step before anyone dials) → dial the contact
on the line named by ``callout.line`` for the step's ring time → the engineer's flow
(``flows/callout.py``) → ``record_outcome``. A supervisor thread reads the database every second
for ringing call-outs that no thread here runs: one started by the web API (which also calls
``wake`` so it rings at once), or one left ringing by a process that died; core refuses to ring a
step twice and counts a ring cut off that way as failed after its cut-off time.

``answer_emergency`` is the hotline's emergency hook: the same incident as a running call-out is
attached to it, anything else starts a call-out whose thread dials at once (the goal: the
engineer's phone rings within 2 s of the caller's word).

When nobody takes the job, core marks the call-out exhausted and records the alert on the
ticket; this runner then rings each ``callout.alert_contacts`` once with a short alert (best
effort, each result noted on the ticket). With no outbound line at all every ring fails at once,
so the call-out ends exhausted and says so, loudly, rather than waiting in silence. A process
whose lines do not include ``callout.line`` leaves call-outs to the process that has it.

The desk stopping a call-out (or this runner stopping) cancels a ring under way within 0.1 s; an
engineer already listening is told at the end of the current sentence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callcenter.ivr.bridge import Meetings
from callcenter.ivr.flows.callout import CalledOff, EngineerCall, Job, load_job
from callcenter.ivr.lines import Call, DialError, Line
from callcenter.ivr.prompts import Prompts
from callcenter.metrics import NO_METRICS
from core import log_context
from core.base import NotFound
from core.callout_service import CallOutService
from core.callouts import ACCEPTED, CallOutError, EmergencyReply
from core.calls import CallLog
from core.dispatch import Action, Outcome, Step
from core.outcomes import dial_failure
from core.settings import Settings

log = logging.getLogger("callcenter.ivr")

POLL_SECONDS = 1.0


@dataclass
class Ringer:
    """The thread ringing one call-out's chain."""

    callout_id: int
    called_off: threading.Event = field(default_factory=threading.Event)  # stopped by the desk, or we stop
    thread: threading.Thread | None = None


class CalloutRunner:
    """The call-outs of this process: a supervisor thread and a thread per ringing call-out."""

    def __init__(self, settings: Settings, store: CallOutService, calls: CallLog, prompts: Prompts,
                 meetings: Meetings, find_line: Callable[[str], Line | None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 poll_seconds: float = POLL_SECONDS):
        self.settings, self.prompts, self.meetings = settings, prompts, meetings
        self.find_line, self.clock, self.poll_seconds = find_line, clock, poll_seconds
        self.store, self.calls = store, calls  # the call-outs' storage, and every ring's call record
        self.metrics = NO_METRICS  # the app's, set by the wiring (callcenter/app.py)
        # Phones the caller who is no longer on the line with who is coming (who_is_coming.CallBack.start);
        # None: nobody is called back (no followup.line).
        self.call_back: Callable[[int], None] | None = None
        self._ringers: dict[int, Ringer] = {}
        self._lock = threading.Lock()
        self._active = False
        self._stopping = threading.Event()
        self._look_now = threading.Event()  # the supervisor's wake-up
        self._nudge = threading.Condition()  # ringers waiting for another process's ring
        self._supervisor: threading.Thread | None = None

    # -- the service's side

    def start(self) -> None:
        name = self.settings.callout.line
        if name and self.find_line(name) is None:
            log.warning("callout.line %r is not a line of this process: its call-outs are rung by the process "
                        "that has that line", name)
            return
        if not name:  # an optional feature left unconfigured: said once, not an error
            log.info("no callout.line configured: an emergency call-out fails at once and alerts the managers")
        self._active = True
        self._supervisor = threading.Thread(target=self._supervise, name="callout supervisor", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        """Ring no more: a ring under way is called off and counts as failed, so whoever resumes the
        call-out goes on at once. An engineer already listening is left to the lines' hang-up."""
        self._stopping.set()
        self.wake()
        with self._lock:
            for ringer in self._ringers.values():
                ringer.called_off.set()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the threads to finish (after ``stop``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [self._supervisor] + [ringer.thread for ringer in self._ringers.values()]
        for thread in threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        """Look at the database now: a call-out was started or stopped (the web API calls this)."""
        self._look_now.set()
        with self._nudge:
            self._nudge.notify_all()

    def run_soon(self, callout_id: int) -> None:
        """Ring this call-out now, unless a thread here already does (or this process does not ring)."""
        with self._lock:
            if not self._active or self._stopping.is_set() or callout_id in self._ringers:
                return
            ringer = Ringer(callout_id)
            ringer.thread = threading.Thread(target=self._ring_chain, args=(ringer,), name=f"callout {callout_id}",
                                             daemon=True)
            self._ringers[callout_id] = ringer
            ringer.thread.start()

    def tell_who_is_coming(self, ticket_id: int) -> None:
        """The job is taken (here by phone, or on the console): a caller still on this node's hotline
        hears who is coming there (flows/put_through); anyone else is phoned, if this node can."""
        meeting = self.meetings.find(ticket_id)
        if (meeting is None or not meeting.caller_on_line) and self.call_back is not None:
            self.call_back(ticket_id)

    def answer_emergency(self, ticket_id: int) -> EmergencyReply | None:
        """The hotline's on_emergency: attach to the same incident's call-out, or start one and ring."""
        try:
            callout_id, attached = self.store.start_or_attach(ticket_id, self.clock())
        except CallOutError as error:
            log.warning("ticket %d: no emergency call-out: %s", ticket_id, error)
            return None
        except Exception:
            log.exception("ticket %d: the emergency call-out could not be started", ticket_id)
            return None
        if attached:
            return EmergencyReply.ATTACHED
        if callout_id is None:  # core gives no id only with attached (an incident's ticket)
            log.error("ticket %d: the emergency call-out was neither started nor attached", ticket_id)
            return None
        self.run_soon(callout_id)
        return EmergencyReply.CALLING

    # -- threads

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            self._look_now.clear()  # before looking: a wake-up while we look is not lost
            try:
                self._look()
            except Exception:
                log.exception("call-outs: cannot read the database; trying again in %g s", self.poll_seconds)
            self._look_now.wait(self.poll_seconds)

    def _look(self) -> None:
        ringing = self.store.ringing()
        with self._lock:
            for callout_id, ringer in self._ringers.items():
                if callout_id not in ringing:
                    ringer.called_off.set()  # stopped by the desk: hang up on whoever is ringing
        for callout_id in sorted(ringing):
            self.run_soon(callout_id)

    @log_context.scoped
    def _ring_chain(self, ringer: Ringer) -> None:
        try:
            ticket_id, number = self.store.ticket_of(ringer.callout_id)
            log_context.note(ticket=number, line=self.settings.callout.line)
            while not self._stopping.is_set():
                next_call = self.store.next_call(ringer.callout_id, self.clock())
                decision = next_call.decision
                if decision.action in (Action.RING, Action.LAST_RESORT):
                    if decision.step is None or next_call.attempt_id is None:
                        raise RuntimeError(f"a {decision.action} decision without a step or an attempt")
                    first_ring = self.store.first_ring_started(ringer.callout_id, next_call.attempt_id)
                    if first_ring is not None:
                        self.metrics.callout_first_ring.observe(max(0.0, (self.clock() - first_ring).total_seconds()))
                    self._ring(ringer, ticket_id, decision.step, next_call.attempt_id)
                elif decision.action == Action.WAIT:
                    if decision.wait_until is None:
                        raise RuntimeError("a wait decision without a time to wait until")
                    self._pause_until(decision.wait_until)
                else:
                    self._ended(ringer.callout_id)
                    if decision.action == Action.EXHAUSTED:
                        self._alert(ticket_id, decision.alert_contacts)
                    return
        except Exception:
            log.exception("callout %d: ringing failed; the supervisor takes it up again", ringer.callout_id)
        finally:
            with self._lock:
                self._ringers.pop(ringer.callout_id, None)

    def _ended(self, callout_id: int) -> None:
        """Count the call-out's final state (accepted, exhausted, stopped) where its chain ended."""
        state = self.store.state(callout_id)
        self.metrics.callouts.labels(state or "unknown").inc()

    def _pause_until(self, until: datetime) -> None:
        """Another process is ringing a step: decide again when it may be over, or sooner when woken."""
        seconds = min(self.poll_seconds, (until - self.clock()).total_seconds())
        with self._nudge:
            self._nudge.wait(max(0.05, seconds))

    @log_context.scoped
    def _ring(self, ringer: Ringer, ticket_id: int, step: Step, attempt_id: int) -> None:
        started, dialled = self.clock(), time.monotonic()
        try:
            call = self._dial(step.contact, step.ring_seconds, ringer.called_off)
            log_context.note(call_id=call.call_id)
        except Exception as error:
            # Whatever went wrong counts at once, so the chain moves on: a DialError says busy / no
            # answer / failed; anything else (no line, a contact that does not resolve) failed.
            if isinstance(error, DialError) and not ringer.called_off.is_set():
                outcome = Outcome(dial_failure(error.outcome))
            else:
                outcome = Outcome.FAILED
            log.info("callout %d: %s: %s (%s)", ringer.callout_id, step.describe(), outcome.value, error)
            self._record(attempt_id, outcome, time.monotonic() - dialled)
            self._note_call(ticket_id, step.contact, started, None, outcome)
            return
        rang, answered_at = time.monotonic() - dialled, self.clock()
        engineer = EngineerCall(call, self.prompts, lambda: self._job(ticket_id), ringer.called_off)
        outcome = Outcome.FAILED
        try:
            outcome = engineer.offer()
            if outcome == Outcome.NO_ANSWER and ringer.called_off.is_set():
                outcome = Outcome.FAILED  # we cut them off: they did not fail to answer
            taken = self._record(attempt_id, outcome, rang, step.engineer_id)
            if outcome == Outcome.ACCEPTED and taken:
                self.tell_who_is_coming(ticket_id)
                engineer.tell_taken(self.meetings.find(ticket_id))
            elif outcome == Outcome.ACCEPTED:
                engineer.tell_called_off()
            elif outcome == Outcome.DECLINED:
                engineer.tell_declined()
        except CalledOff:
            self._record(attempt_id, outcome, rang)
            if not self._stopping.is_set():
                engineer.tell_called_off()
        except Exception:  # the call broke under the engineer: failed, and the chain goes on
            log.exception("callout %d: the call with %s failed", ringer.callout_id, step.describe())
            self._record(attempt_id, Outcome.FAILED, rang)
        finally:
            call.hangup()
            self._note_call(ticket_id, step.contact, started, call, outcome, answered_at)

    def _dial(self, contact: str, seconds: float, cancel: threading.Event) -> Call:
        name = self.settings.callout.line
        line = self.find_line(name) if name else None
        if line is None:
            raise DialError(f"no outbound line to dial {contact} (callout.line = {name!r})")
        if len(line.calls) >= line.config.max_calls:
            raise DialError(f"line {name}: all {line.config.max_calls} calls in use; cannot dial {contact}")
        return line.dial(contact, seconds, cancel)

    def _record(self, attempt_id: int, outcome: Outcome, rang: float, engineer_id: int | None = None) -> bool:
        """Store how a ring ended; True if it was an acceptance that gave them the job."""
        try:
            result = self.store.record_ring(attempt_id, outcome, round(rang, 1), self.clock())
            return result.state == ACCEPTED and result.engineer_id == engineer_id
        except (CallOutError, NotFound) as error:  # counted as cut off meanwhile (a very long call)
            log.warning("attempt %d: outcome %s not recorded: %s", attempt_id, outcome.value, error)
            return False

    def _job(self, ticket_id: int) -> Job:
        return load_job(self.store.job(ticket_id), self.settings)

    def _note_call(self, ticket_id: int, contact: str, started: datetime, call: Call | None, outcome: Outcome,
                   answered_at: datetime | None = None) -> None:
        """Every ring (and every alert call) also leaves a call record, as every call does."""
        line = self.settings.callout.line
        self.calls.record_finished(sip_call_id=call.call_id if call else "", direction="outbound", line=line,
                                   caller=line, called=contact, at=started, ticket_id=ticket_id,
                                   answered_at=answered_at, outcome=outcome.call_outcome, ended_at=self.clock())

    def _alert(self, ticket_id: int, contacts: tuple[str, ...]) -> None:
        """Nobody took the job: ring each manager once with the alert (best effort, noted on the ticket)."""
        job = self._job(ticket_id)
        p = self.prompts
        alert = p["callout.alert_unanswered"] + p.address(job.building, job.unit, job.room, job.area)
        alert += p[f"pieces.cat_{job.category}"]
        for contact, answered in self.ring_contacts(ticket_id, contacts, alert):
            self.store.note_alert(ticket_id, contact, answered, self.clock())

    def ring_contacts(self, ticket_id: int, contacts: tuple[str, ...], message: bytes) -> list[tuple[str, bool]]:
        """Ring each contact once on ``callout.line`` and play ``message`` to whoever answers (the
        managers' alert calls: this one, and a complaint nobody acted on). Each ring leaves a call
        record on the ticket; returns (contact, answered) for each."""
        rung = []
        for contact in contacts:
            started = self.clock()
            try:
                call = self._dial(contact, self.settings.callout.ring_seconds, self._stopping)
            except Exception as error:
                log.error("ticket %d: alert to %s failed: %s", ticket_id, contact, error)
                outcome = Outcome(dial_failure(error.outcome)) if isinstance(error, DialError) else Outcome.FAILED
                self._note_call(ticket_id, contact, started, None, outcome)
                rung.append((contact, False))
                continue
            answered_at = self.clock()
            try:
                call.play(message)
            finally:
                call.hangup()
            log.warning("ticket %d: alert to %s delivered", ticket_id, contact)
            self._note_call(ticket_id, contact, started, call, Outcome.ACCEPTED, answered_at)  # they heard it
            rung.append((contact, True))
        return rung

