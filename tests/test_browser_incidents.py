"""停水停电事件 on the desk page, in real headless Chromium: declared from a ticket, listed with its
caller count, closed with a call-back."""

from __future__ import annotations

import pytest

from core import incidents
from core.incidents import Place
from tests.test_browser import (  # noqa: F401 (fixtures)
    PASSWORD,
    browser_a,
    browsers,
    call,
    css,
    login,
    new_ticket,
    shown,
    text_of,
    wait,
)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_the_desk_declares_an_outage_from_a_ticket_sees_its_callers_and_closes_it(live_server, browser_a):
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    login(browser_a, live_server, "qiantai")
    ticket = new_ticket(browser_a, description="整栋楼都停水了，一滴水都没有", urgency="emergency", building="3")

    browser_a.get(f"{live_server.url}/desk?incident_from={ticket['id']}")
    wait(browser_a, shown("#incident-form"), message="the declare form did not open from the ticket")
    wait(browser_a, lambda d: css(d, "#in-buildings").get_attribute("value") == "3")
    assert css(browser_a, "#in-kind").get_attribute("value") == "water"
    css(browser_a, "#incident-form button[type=submit]").click()
    wait(browser_a, lambda d: "停水" in text_of(d, "#incident-list"), message="the incident is not listed")
    row = css(browser_a, "#incident-list tr[data-id]")
    assert "3号楼" in row.text and "正在抢修" in row.text and "1 人来电" in row.text  # the ticket is its first

    incident_id = int(row.get_attribute("data-id"))
    with live_server.sessions() as session, session.begin():  # a resident is counted by the hotline
        incident = incidents.get(session, incident_id)
        incidents.attach_call(session, incident, at=incident.opened_at, phone="13900139000", call_record_id=None,
                              place=Place("3", "1", "0502"), words="我家也没水了", how="caller_id")
    browser_a.refresh()
    wait(browser_a, lambda d: "2 人来电" in text_of(d, "#incident-list"))
    css(browser_a, "#incident-list .caller-count button").click()
    wait(browser_a, lambda d: "我家也没水了" in text_of(d, "#incident-callers"))

    browser_a.execute_script("window.confirm = () => true")
    [close_and_call] = [b for b in browser_a.find_elements("css selector", "#incident-list button")
                        if b.text == "关闭并回电"]
    close_and_call.click()
    wait(browser_a, lambda d: "已关闭" in text_of(d, "#incident-list"), message="not closed")
    shown_incident = call(browser_a, "GET", f"/api/incidents/{incident_id}")["data"]
    assert not shown_incident["open"] and shown_incident["call_back"]
    assert sorted(c["call_back_state"] for c in shown_incident["callers"]) == ["pending", "pending"]
