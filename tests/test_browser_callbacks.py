"""The 回拨 panel of the desk page in a real headless Chromium: a number that gave up twice is one row
with both recordings; a withheld number offers only 无需回拨; 已回拨 takes the row off the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.callback_list import record_abandoned
from tests.test_browser import PASSWORD, browser_a, browsers, call, css, css_all, login, text_of, wait  # noqa: F401
from tests.test_callback_list import NUMBER, abandoned_call

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def rows(driver):
    return css_all(driver, "#callbacks-open tr[data-callback]")


def test_the_desk_sees_who_gave_up_and_marks_a_number_called_back(live_server, browser_a):
    now = datetime.now(UTC)
    for minutes, number, stage in ((30, NUMBER, "greeting"), (10, NUMBER, "key:1"), (5, "", "greeting")):
        record_abandoned(live_server.sessions, abandoned_call(live_server.sessions, number=number,
                                                              at=now - timedelta(minutes=minutes), stage=stage))
    driver = browser_a
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    login(driver, live_server, "qiantai")
    wait(driver, lambda d: len(rows(d)) == 2, message="the 回拨 panel did not list two items")
    withheld, repeated = rows(driver)
    assert "未显示号码" in withheld.text and [b.text for b in withheld.find_elements("css selector", "button.mark")] \
        == ["无需回拨"]
    cells = [td.text for td in repeated.find_elements("css selector", "td")]
    assert cells[0] == NUMBER and cells[2] == "2" and cells[3] == "按键 1 后挂机"
    assert len(repeated.find_elements("css selector", "button.play")) == 2  # each call's recording
    assert text_of(driver, "#callbacks-count") == "（2）"

    next(b for b in repeated.find_elements("css selector", "button.mark") if b.text == "已回拨").click()
    wait(driver, lambda d: len(rows(d)) == 1, message="the row called back stayed on the list")
    assert "已回拨" in text_of(driver, "#callbacks-status")
    listed = call(driver, "GET", "/api/callbacks")["data"]
    assert [(i["number"], i["status"], i["resolved_by"]) for i in listed["resolved"]] == [
        (NUMBER, "called_back", "qiantai")]
