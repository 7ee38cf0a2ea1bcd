"""Logging to standard error: readable lines (the default), or one JSON object a line.

``log.format = "json"`` (``CALLCENTER_LOG_FORMAT=json``) is for a log collector (journald to Loki,
Filebeat, Vector ...): every line is one object with ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message`` and ``node`` (``node_name``), plus, where the work has them,
``call_id``, ``line`` and ``ticket`` (``core.log_context``), and ``exc_info`` with a traceback.
The JSON is python-json-logger's. Warnings and exceptions that escape a thread go through
logging too, so nothing else reaches standard error in between.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from core import log_context
from core.settings import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(node)s] %(name)s: %(message)s"  # several nodes' logs read together
JSON_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}


class ContextFilter(logging.Filter):
    """Puts the node's name and the work's call, line and ticket on every record (as attributes,
    which the JSON formatter writes out; the text format leaves them to the message)."""

    def __init__(self, node: str):
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        for name, value in log_context.current().items():
            if not hasattr(record, name):  # an explicit extra={...} wins
                setattr(record, name, value)
        return True


class UtcJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return UtcJsonFormatter(" ".join(f"%({name})s" for name in (*JSON_FIELDS, "message")),
                                rename_fields=JSON_FIELDS, json_ensure_ascii=False)
    return logging.Formatter(TEXT_FORMAT)


class _OurHandler(logging.StreamHandler):
    """The handler setup_logging installs (and replaces when called again). It writes to whatever
    ``sys.stderr`` is at the time, as print() does."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(settings: LogSettings | None = None, node: str = "") -> None:
    """Log to standard error in the configured format; calling it again replaces what it set up
    (and leaves any other handler, such as pytest's, alone)."""
    settings = settings or LogSettings()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter(settings.format))
    handler.addFilter(ContextFilter(node))
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at every start
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught


def _log_uncaught(exc_type, exc_value, exc_traceback) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)
        return
    logging.getLogger("callcenter").critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread else "?"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
    logging.getLogger("callcenter").error("thread %s ended by an exception", thread, exc_info=exc_info)
