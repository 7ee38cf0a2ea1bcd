"""The telephone side of one process: configured lines, each running its call flow.

``[[lines]]`` tables come from the settings; a line's ``flow`` says what answers its inbound
calls (``hotline``, the default) or ``none`` for a line used only to dial out.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any, Callable

from callcenter.asr.stream import Recognizer, VoskRecognizer
from callcenter.ivr.flows.hotline import HotlineServices, answer_hotline
from callcenter.ivr.lines import Line, LineConfig, RegistrationError
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
    """A new recognizer per answer on the shared model; None when there is no model."""
    if model is None:
        return None

    def new_recognizer(grammar: list[str] | None) -> Recognizer:
        return VoskRecognizer(model, 8000, end_silence=settings.asr.end_silence_seconds,
                              max_utterance=settings.asr.max_utterance_seconds, grammar=grammar)

    return new_recognizer


class Telephony:
    """Every configured line of this process, started and stopped together."""

    def __init__(self, settings: Settings, hotline: HotlineServices):
        self.lines: list[Line] = []
        for table in settings.lines:
            config, flow = line_config(table)
            on_call = (lambda call: answer_hotline(call, hotline)) if flow == "hotline" else None
            self.lines.append(Line(config, on_call=on_call))

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

    def health(self) -> dict[str, str]:
        return {line.name: line.status for line in self.lines}

    def line(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)
