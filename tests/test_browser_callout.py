"""紧急呼叫 on the ticket page in a real headless Chromium: the front desk presses 紧急派单, watches the
call-out go down the chain live as the dialler records each ring, and can stop it.

The dialler's turns are made here with core.callouts on the same database, as the telephony
side makes them (its calls over real SIP are tested in test_callout_e2e.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core import callouts, roster_store
from core.dispatch import Outcome
from core.settings import CalloutSettings
from core.store import CallOut
from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    browser_a,
    browsers,
    cell_texts,
    css,
    css_all,
    login,
    new_ticket,
    open_ticket,
    shown,
    text_of,
    wait,
)

pytestmark = pytest.mark.browser

NIGHT_AND_DAY = [{"name": "全天班", "weekdays": "1-7", "start": "00:00", "end": "00:00", "skill": "",
                  "chain": "张工>李工"}]


@pytest.fixture
def settings(settings):
    return replace(settings, callout=CalloutSettings(line="outbound", ring_seconds=20, rounds=1))


def dialler_turn(server, outcome=None, rang=None):
    """One turn of the telephony side: claim the next ring, and (maybe) record how it ended."""
    now = datetime.now(UTC)
    with server.sessions() as session, session.begin():
        callout_id = session.scalar(select(CallOut.id).where(CallOut.state == "ringing"))
        call = callouts.next_call(session, callout_id, now, server.settings)
        if outcome is not None:
            callouts.record_outcome(session, call.attempt_id, outcome, rang, now, server.settings)


def attempt_rows(driver):
    return cell_texts(driver, "#callout-panel table.attempts tbody tr")


def test_the_desk_starts_a_call_out_and_watches_it_go_down_the_chain(browser_a, live_server):
    driver = browser_a
    for name, phone in (("张工", "13800000001"), ("李工", "13800000002")):
        live_server.add_engineer(name, phone)
    with live_server.sessions() as session, session.begin():
        roster_store.replace_shifts(session, NIGHT_AND_DAY)
    live_server.add_user("desk", PASSWORD, "frontdesk")
    login(driver, live_server, "desk")
    ticket = new_ticket(driver, urgency="emergency", description="地下室水管爆了")
    open_ticket(driver, live_server, ticket["id"])

    wait(driver, shown("#callout-start")).click()
    wait(driver, lambda d: text_of(d, "#callout-state") == "呼叫中")
    # No [[lines]] named "outbound" in these settings: nobody would be dialled, and the page says so.
    assert "未配置外呼线路" in text_of(driver, "#callout-panel [role=alert]")
    assert not css_all(driver, "#callout-start")  # one call-out at a time

    dialler_turn(live_server, Outcome.NO_ANSWER, 20)
    dialler_turn(live_server)  # 李工's phone rings now
    wait(driver, lambda d: len(attempt_rows(d)) == 2, message="the rings did not appear")
    rows = attempt_rows(driver)
    assert rows[0][0].endswith("张工（13800000001）") and rows[0][3:] == ["无人接听", "20 秒"]
    assert rows[1][0].endswith("李工（13800000002）") and rows[1][3] == "振铃中"

    driver.execute_script("window.prompt = () => '已电话联系到李工';")
    css(driver, "#callout-stop").click()
    wait(driver, lambda d: text_of(d, "#callout-state") == "已停止", message=text_of(driver, "#callout-panel"))
    wait(driver, lambda d: "停止紧急呼叫" in text_of(d, "#timeline"))
    assert "紧急呼叫" in text_of(driver, "#timeline") and text_of(driver, "#callout-start") == "重新紧急派单"
