"""The telephone side of one process: configured lines, each running its call flow.

``[[lines]]`` tables come from the settings; a line's ``flow`` says what answers its inbound
calls (``hotline``, the default) or ``none`` for a line used only to dial out.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from functools import partial
from typing import Any, Callable

from callcenter.asr.stream import Recognizer, RecognizerPool
from callcenter.ivr.flows.hotline import HotlineServices, answer_hotline
from callcenter.ivr.lines import Line, LineConfig, RefusedCall, RegistrationError
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
        for key in ("keepalive_interval", "retry_interval", "barge_in_rms"):
            if key in values:
                values[key] = float(values[key])
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
REFUSED_OUTCOMES = {486: "busy", 403: "rejected"}


class Telephony:
    """Every configured line of this process, started and stopped together."""

    def __init__(self, settings: Settings, hotline: HotlineServices):
        self.hotline = hotline
        self.lines: list[Line] = []
        # Refused calls are written from here, not from the SIP receive thread that refuses them.
        self._refusals = ThreadPoolExecutor(1, thread_name_prefix="refused-calls")
        for table in settings.lines:
            config, flow = line_config(table)
            on_call = (lambda call: answer_hotline(call, hotline)) if flow == "hotline" else None
            on_refused = partial(self._refusals.submit, self._record_refused, config.name)
            self.lines.append(Line(config, on_call=on_call, on_refused=on_refused))

    def _record_refused(self, line: str, refused: RefusedCall) -> None:
        """Every call leaves a record, also one turned away before it was answered."""
        outcome, at = REFUSED_OUTCOMES.get(refused.code, "failed"), self.hotline.clock()
        try:
            record_id = self.hotline.calls.open(sip_call_id=refused.call_id, direction="inbound", line=line,
                                                caller=refused.caller, called=refused.called, at=at, outcome=outcome)
            self.hotline.calls.close(record_id, outcome, at)
        except Exception:
            log.exception("call %s: could not record the refused call (%s)", refused.call_id, refused.reason)

    def start(self) -> None:
        if not self.lines:
            log.info("no telephone lines configured: running the web console alone")
        for line in self.lines:
            try:
                line.start()
                log.info("line %s (%s) listening on %s:%d: %s", line.name, line.config.mode, *line.bound_address,
                         line.status)
            except RegistrationError as error:
                # Said loudly and shown in /api/health; the line keeps trying to register.
                log.error("line %s: %s", line.name, error)

    def stop(self) -> None:
        for line in self.lines:
            line.stop()
        self._refusals.shutdown(wait=True)

    def health(self) -> dict[str, str]:
        return {line.name: line.status for line in self.lines}

    def line(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)
