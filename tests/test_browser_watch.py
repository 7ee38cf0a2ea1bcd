"""投诉 and 晚到 in a real headless Chromium: the manager finds the open complaint at the top of the
manager page and marks it handled on the ticket page; the desk sees a late engineer marked in the
queue and stops the resident's apology call. The follow-up call and the scheduled watch's turn are
made with core on the same database, as the telephony side and the scheduler make them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core import eta, followup
from core.followup import SurveyAnswers
from core.store import Engineer, Ticket
from tests.support.tickets import completed_ticket
from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    browser_a,
    browsers,
    call,
    css,
    css_all,
    login,
    move,
    new_ticket,
    open_ticket,
    shown,
    text_of,
    wait,
)

pytestmark = pytest.mark.browser


def test_the_manager_handles_a_complaint_and_the_desk_stops_a_late_arrivals_call(live_server, browser_a, settings):
    live_server.add_engineer("张工", "13700000001", ["水电"])
    live_server.add_user("boss", PASSWORD, "manager")
    sessions, now = live_server.sessions, datetime.now(UTC)
    with sessions() as session:
        engineer = session.scalar(select(Engineer.id))
    unhappy = completed_ticket(sessions, settings, engineer, now - timedelta(days=1), phone="13800000032")
    with sessions() as session, session.begin():
        scheduled = followup.open_followup(session, unhappy)
        scheduled.due_at = now
        claimed = followup.claim(session, scheduled.id, now)
        followup.record_answers(session, claimed.id, SurveyAnswers(resolved=False, rating="不满意", comment="水管还在漏"),
                                None, now, settings)

    login(browser_a, live_server, "boss", page="/manager")
    first = wait(browser_a, lambda d: css_all(d, "#complaint-table tbody tr"))[0]
    assert "未处理" in first.text and "水管还在漏" in first.text
    first.find_element("css selector", "a").click()
    wait(browser_a, shown("#complaint-handled"))
    css(browser_a, "#complaint-note").send_keys("已致电住户道歉")
    css(browser_a, "#complaint-handled").click()
    wait(browser_a, lambda d: "投诉（已处理）" in text_of(d, "#watch-panel"))
    assert "boss" in text_of(browser_a, "#watch-panel") and "已致电住户道歉" in text_of(browser_a, "#watch-panel")

    late = new_ticket(browser_a, description="厨房水管爆了", urgency="emergency")
    move(browser_a, late["id"], "dispatched", engineer_id=engineer)
    move(browser_a, late["id"], "accepted")
    with sessions() as session, session.begin():  # reported 55 minutes ago: promised 30 min, 25 late
        ticket = session.get(Ticket, late["id"])
        ticket.reported_at = now - timedelta(minutes=55)
    with sessions() as session, session.begin():  # the scheduled watch's turn
        phoning = replace(settings, followup=replace(settings.followup, line="residents"))
        assert [s.ticket_id for s in eta.detect(session, datetime.now(UTC), phoning)] == [late["id"]]
    browser_a.get(live_server.url + "/desk")
    row = wait(browser_a, lambda d: css_all(d, f"tr.late[data-id='{late['id']}']"))[0]
    assert "晚到" in row.text
    open_ticket(browser_a, live_server, late["id"])
    wait(browser_a, shown("#eta-call-stop")).click()
    wait(browser_a, lambda d: "前台已取消致电" in text_of(d, "#watch-panel"))
    assert call(browser_a, "GET", f"/api/tickets/{late['id']}")["data"]["eta_slip"]["status"] == "stopped"
