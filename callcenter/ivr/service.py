"""The telephone side of one process: configured lines, each running its call flow.

``[[lines]]`` tables come from the settings; a line's ``flow`` says what answers its inbound
calls (``hotline``, the default) or ``none`` for a line used only to dial out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from callcenter.asr.capacity import StreamSlots
from callcenter.asr.stream import Recognizer, RecognizerPool
from callcenter.ivr.flows.hotline import HotlineServices, answer_hotline
from callcenter.ivr.lines import Invitation, Line, LineConfig, RefusedCall
from callcenter.kamailio_config import NEXT_NODE_HEADER
from core.outcomes import CallOutcome
from core.settings import Settings, SettingsError

log = logging.getLogger("callcenter.ivr")
FLOWS = ("hotline", "none")


def line_config(table: dict[str, Any]) -> tuple[LineConfig, str]:
    """A ``[[lines]]`` table as a LineConfig and the name of its flow; SettingsError names the problem."""
    values = dict(table)
    flow = values.pop("flow", "hotline")
    if flow not in FLOWS:
        raise SettingsError(f"line {values.get('name')}: flow must be one of {FLOWS}, not {flow!r}")
    known = {f.name: f for f in fields(LineConfig)}
    unknown = set(values) - set(known)
    if unknown:
        raise SettingsError(f"line {values.get('name')}: unknown keys {sorted(unknown)}")
    try:
        for key in ("max_calls", "register_expires", "barge_in_ms"):
            if key in values:
                values[key] = int(values[key])
        for key in ("keepalive_interval", "retry_interval", "barge_in_rms", "rtp_timeout_seconds",
                    "max_recording_minutes"):
            if key in values:
                values[key] = float(values[key])
        if isinstance(values.get("symmetric_rtp"), str):  # from the environment
            text = values["symmetric_rtp"].strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(f"symmetric_rtp must be true or false, not {values['symmetric_rtp']!r}")
            values["symmetric_rtp"] = text in ("1", "true", "yes", "on")
        if "rtp_ports" in values:
            values["rtp_ports"] = tuple(int(port) for port in values["rtp_ports"])
        for key in ("allow", "codecs"):
            if isinstance(values.get(key), str):  # from the environment: comma separated
                values[key] = [item.strip() for item in values[key].split(",") if item.strip()]
        return LineConfig(**values), flow
    except (ValueError, TypeError) as error:
        raise SettingsError(f"线路配置错误 / line {values.get('name')}: {error}") from None


def recognizer_factory(model, settings: Settings) -> Callable[[list[str] | None], Recognizer] | None:
    """A recognizer per answer on the shared model (free speech ones kept warm); None with no model."""
    if model is None:
        return None
    return RecognizerPool(model, 8000, end_silence=settings.asr.end_silence_seconds,
                          max_utterance=settings.asr.max_utterance_seconds)


# How a call refused before any flow ran is recorded; others (488 no common codec, 503 no thread) failed.
REFUSED_OUTCOMES = {486: CallOutcome.BUSY, 403: CallOutcome.REJECTED}
REFUSALS_QUEUED = 500  # refused calls waiting for their record; beyond it they are counted, not queued
START_WAIT = 6.0  # seconds the service's start waits for its lines' first outcome (a REGISTER times out in 5)


def admission(streams: StreamSlots) -> Callable[[Invitation], int | None]:
    """Full is not busy: who gets in when this node's recognisers are all taken.

    A free recogniser is reserved for the call and it rings. With none free, the call is refused
    with 503 only when the dispatcher has another node to try (Kamailio marks such an INVITE with
    ``NEXT_NODE_HEADER``, see callcenter/kamailio_config.py); on the last node it tries, or with no
    dispatcher at all (one node, a PBX straight to it), the call is answered anyway and runs in
    keypad-and-recording mode: a resident is never turned away because the recognisers are busy."""
    def admit(invitation: Invitation) -> int | None:
        if streams.reserve(invitation.call_id):
            return None
        if invitation.header(NEXT_NODE_HEADER):
            streams.note_refused()
            return 503
        return None
    return admit


class Telephony:
    """Every configured line of this process, started and stopped together. Lines with the hotline
    flow admit calls by the recognisers free (``admission``) when ``hotline.streams`` counts them."""

    def __init__(self, settings: Settings, hotline: HotlineServices):
        self.hotline = hotline
        admit = admission(hotline.streams) if hotline.streams is not None else None
        self.lines: list[Line] = []
        # Refused calls are written from here, not from the SIP receive thread that refuses them,
        # through a bounded queue: a flood of refusals costs a count, not memory.
        self._refusals: queue.Queue = queue.Queue(REFUSALS_QUEUED)
        self._refusals_dropped = 0
        self._recorder = threading.Thread(target=self._record_refusals, name="refused-calls", daemon=True)
        for table in settings.lines:
            config, flow = line_config(table)
            on_call = (lambda call: answer_hotline(call, hotline)) if flow == "hotline" else None
            self.lines.append(Line(config, on_call=on_call, on_refused=self._refused_on(config.name),
                                   admit=admit if flow != "none" else None, metrics=hotline.metrics))

    def _refused_on(self, line: str) -> Callable[[RefusedCall], None]:
        def queue_it(refused: RefusedCall) -> None:
            if self.hotline.streams is not None:  # a recogniser reserved for it is free again
                self.hotline.streams.cancel(refused.call_id)
            try:
                self._refusals.put_nowait((line, refused))
            except queue.Full:
                self._refusals_dropped += 1
        return queue_it

    def _record_refusals(self) -> None:
        while (item := self._refusals.get()) is not None:
            self._record_refused(*item)

    def _record_refused(self, line: str, refused: RefusedCall) -> None:
        """Every call leaves a record, also one turned away before it was answered."""
        outcome, at = REFUSED_OUTCOMES.get(refused.code, CallOutcome.FAILED), self.hotline.clock()
        try:
            record_id = self.hotline.calls.open(sip_call_id=refused.call_id, direction="inbound", line=line,
                                                caller=refused.caller, called=refused.called, at=at, outcome=outcome)
            self.hotline.calls.close(record_id, outcome, at)
        except Exception:
            log.exception("call %s: could not record the refused call (%s)", refused.call_id, refused.reason)

    def start(self) -> None:
        """Start every line; one that cannot come up (bind error, unknown host, no registrar) is said
        loudly and shown in /api/health, keeps trying by itself, and stops nothing else."""
        self._recorder.start()
        if not self.lines:
            log.info("no telephone lines configured: running the web console alone")
        for line in self.lines:  # all at once: one slow registrar does not hold up the others
            line.begin()
        deadline = time.monotonic() + START_WAIT
        for line in self.lines:
            error = line.first_outcome(max(0.0, deadline - time.monotonic()))
            if error is None and line.up:
                log.info("line %s (%s) on %s:%d: %s", line.name, line.config.mode, *line.bound_address, line.status)
            else:
                log.error("line %s is not up yet (%s); it keeps trying", line.name, error or line.status)

    def stop(self) -> None:
        for line in self.lines:
            try:
                line.stop()
            except Exception:
                log.exception("line %s: stopping failed", line.name)
        if self._recorder.is_alive():
            try:
                self._refusals.put(None, timeout=5)
            except queue.Full:
                pass
            self._recorder.join(5)
        if self._refusals_dropped:
            log.warning("%d refused calls were not recorded (more than %d waiting)", self._refusals_dropped,
                        REFUSALS_QUEUED)

    def health(self) -> dict[str, Any]:
        """``{"up": every line registered or listening, "lines": {name: Line.health()}}``, and with a
        recogniser limit ``"recognisers"``: in use, the limit, calls refused (503) and calls answered
        without speech because all were busy (``StreamSlots.health``)."""
        lines = {line.name: line.health() for line in self.lines}
        health: dict[str, Any] = {"up": all(line.up for line in self.lines), "lines": lines}
        if self.hotline.streams is not None:
            health["recognisers"] = self.hotline.streams.health()
        return health

    def line(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)
