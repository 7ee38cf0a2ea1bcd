"""Logs (issue 16): readable lines by default; with ``log.format = "json"`` every line on standard
error is one JSON object a log collector can parse, with the node, and the call, line and ticket
of the work that wrote it. The end-to-end test parses every line of a real ``callcenter serve``
that answers a real SIP call (SIPp, on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from datetime import datetime

import pytest
from sqlalchemy import create_engine, select

from callcenter.logs import setup_logging
from core import log_context
from core.settings import LogSettings, SettingsError, load_settings
from tests.support.e2e import one, time_limit  # noqa: F401 (fixture)
from tests.support.hotline_caller import CallerScript
from tests.support.serve import RESIDENT, ServeProcess
from tests.support.sip import Sipp, sipp  # noqa: F401 (fixture)

TEST_TIME_LIMIT = 150


@pytest.fixture
def stderr(capsys):
    """``stderr()``: what the process wrote to standard error so far (our handler writes to
    whatever sys.stderr is, here pytest's capture)."""
    root = logging.getLogger()
    saved = root.level, threading.excepthook, sys.excepthook
    yield lambda: capsys.readouterr().err
    setup_logging(LogSettings())  # back to the default handler for whoever comes next
    root.level, threading.excepthook, sys.excepthook = saved
    logging.captureWarnings(False)


def test_json_lines_carry_the_calls_context_and_the_node(stderr):
    setup_logging(LogSettings(format="json"), node="hotline-2")
    log = logging.getLogger("callcenter.ivr")
    log.info("before any call")
    with log_context.bound(call_id="a84b4c76e66710@127.0.0.1", line="hotline"):
        log.info("call %s: 您好", "a84b4c76e66710@127.0.0.1")
        log_context.note(ticket="20261122007")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("flow failed")
    log.warning("after the call")
    written = stderr()
    lines = [json.loads(line) for line in written.splitlines()]
    assert [set(line) for line in lines] == [
        {"time", "level", "logger", "message", "node"},
        {"time", "level", "logger", "message", "node", "call_id", "line"},
        {"time", "level", "logger", "message", "node", "call_id", "line", "ticket", "exc_info"},
        {"time", "level", "logger", "message", "node"},
    ]
    assert lines[1] == {"time": lines[1]["time"], "level": "INFO", "logger": "callcenter.ivr",
                        "message": "call a84b4c76e66710@127.0.0.1: 您好", "node": "hotline-2",
                        "call_id": "a84b4c76e66710@127.0.0.1", "line": "hotline"}
    assert lines[2]["ticket"] == "20261122007" and "RuntimeError: boom" in lines[2]["exc_info"]
    assert lines[3]["level"] == "WARNING"
    assert datetime.fromisoformat(lines[0]["time"]).utcoffset().total_seconds() == 0
    assert "您好" in written  # Chinese as itself, not \\u escapes


def test_the_default_stays_readable_lines(stderr):
    setup_logging(LogSettings(), node="hotline-2")
    with log_context.bound(call_id="x1"):
        logging.getLogger("callcenter").warning("line %s: registration refused", "pbx")
    [line] = stderr().splitlines()
    assert line.endswith(" WARNING [hotline-2] callcenter: line pbx: registration refused")
    assert not line.startswith("{")


def test_warnings_and_thread_crashes_are_log_lines_too(stderr):
    setup_logging(LogSettings(format="json"))
    warnings.warn("something old", UserWarning, stacklevel=1)
    thread = threading.Thread(target=lambda: 1 / 0, name="call 77")
    thread.start()
    thread.join()
    lines = [json.loads(line) for line in stderr().splitlines()]
    assert any("something old" in line["message"] for line in lines)
    crash = one(line for line in lines if "thread call 77" in line["message"])
    assert crash["level"] == "ERROR" and "ZeroDivisionError" in crash["exc_info"]


def test_context_belongs_to_its_thread_and_ends_with_its_scope():
    seen = {}

    @log_context.scoped
    def a_call(name):
        log_context.note(call_id=name)
        seen[name] = log_context.current()

    with log_context.bound(line="hotline"):
        other = threading.Thread(target=lambda: seen.setdefault("thread", log_context.current()))
        other.start()
        other.join()
        a_call("c1")
        assert log_context.current() == {"line": "hotline"}  # the call's note ended with it
    assert seen == {"thread": {}, "c1": {"line": "hotline", "call_id": "c1"}}
    assert log_context.current() == {}
    with pytest.raises(ValueError, match="log context fields"):
        log_context.note(phone="13800138000")


def test_sip_timers_run_in_the_context_they_were_set_from():
    from callcenter.sip.transaction import Timers

    timers, seen, done = Timers("test"), [], threading.Event()
    try:
        with log_context.bound(call_id="a84b4c76e66710", line="hotline"):
            timers.call_later(0.01, lambda: seen.append(log_context.current()))
        timers.call_later(0.02, lambda: (seen.append(log_context.current()), done.set()))
        assert done.wait(5)
    finally:
        timers.stop()
    assert seen == [{"call_id": "a84b4c76e66710", "line": "hotline"}, {}]


def test_log_settings_from_the_environment():
    settings = load_settings(environ={"CALLCENTER_LOG_FORMAT": "json", "CALLCENTER_NODE_NAME": "hotline-2"})
    assert (settings.log.format, settings.log.level, settings.node_name) == ("json", "INFO", "hotline-2")
    assert load_settings(environ={}).node_name  # the host name by default
    with pytest.raises(SettingsError, match="log.format"):
        load_settings(environ={"CALLCENTER_LOG_FORMAT": "xml"})


# --- a real serve with a real call ------------------------------------------------------------


def test_every_line_of_a_serve_run_with_a_call_is_json_with_the_calls_context(tmp_path, sipp):
    site = ServeProcess(tmp_path, environ={"CALLCENTER_LOG_FORMAT": "json", "CALLCENTER_NODE_NAME": "hotline-2"})
    site.add_resident()
    site.start()
    try:
        caller = CallerScript()
        caller.keys(1.0, "1")  # over the greeting: 报修
        caller.keys(2.2, "1101#")  # 「为核实身份，请输入或说出您的房号」: the directory's room
        pcap = caller.write_pcap(tmp_path / "caller.pcap", 10)
        run = sipp.start("hotline_caller_hangs_up", site.sip_address, timeout=40,
                         params={"pcap": pcap, "caller": RESIDENT["phone"], "hold_ms": 8000, "bye_timeout_ms": 40000})
        assert run.wait(40) == 0, run.report()
        assert site.output.wait_for(r"ended \(caller_hung_up\)", 20), site.output.text()[-3000:]
    finally:
        lines = site.stop()
    engine = create_engine(site.database)
    with engine.connect() as connection:
        from core.store import CallRecord, Ticket

        sip_call_id = connection.scalar(select(CallRecord.sip_call_id))
        number = connection.scalar(select(Ticket.number))
    engine.dispose()
    assert sip_call_id and number

    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"time", "level", "logger", "message", "node"} <= set(r) for r in records)
    assert {r["node"] for r in records} == {"hotline-2"}
    call_lines = [r for r in records if r.get("call_id") == sip_call_id]
    assert len(call_lines) >= 3 and {r["line"] for r in call_lines} == {"hotline"}
    ended = one(r for r in call_lines if "ended (caller_hung_up)" in r["message"])
    assert ended["ticket"] == number  # known once the draft was saved, on every line after
    assert not [r for r in records if r.get("call_id") not in (None, sip_call_id)]
    # The SIP user agent's own threads (receive, timers, RTP, hang-up) say which call and line, too.
    sip_lines = [r for r in records if r["logger"] == "callcenter.sip" and sip_call_id in r["message"]]
    assert len(sip_lines) >= 2 and [r for r in sip_lines if (r.get("call_id"), r.get("line")) !=
                                    (sip_call_id, "hotline")] == []
    # Honest levels: an optional part left unconfigured is said once, at INFO; nothing here is an error.
    assert one(r for r in records if "no callout.line configured" in r["message"])["level"] == "INFO"
    assert one(r for r in records if "no alerts.webhook_url" in r["message"])["level"] == "INFO"
    assert [r for r in records if r["level"] in ("ERROR", "CRITICAL")] == []
