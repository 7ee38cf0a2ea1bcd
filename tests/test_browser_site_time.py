"""The console shows and reads times in the site's timezone (setting ``timezone``), whatever the
browser's own is (the test browser runs in UTC). Checked with a site at +05:30, so neither the
old fixed +08:00 nor the browser's zone can pass."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    browser_a,
    browsers,
    call,
    login,
    new_ticket,
    open_ticket,
    shown,
    wait,
)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def settings(settings):
    return replace(settings, timezone="Asia/Kolkata")


def test_times_are_the_sites_not_the_browsers(live_server, browser_a):
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    login(browser_a, live_server, "qiantai")
    assert browser_a.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") in ("UTC", "Etc/UTC")
    # A time typed into a form (datetime-local: the site's wall clock) goes out with the site's offset ...
    sent = browser_a.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/static/app.js').then((app) => done(app.fromInputValue('2026-11-24T14:00')));
    """)
    assert sent == "2026-11-24T14:00:00+05:30"
    ticket = new_ticket(browser_a, appointment_start=sent, appointment_end="2026-11-24T16:00:00+05:30")
    stored = call(browser_a, "GET", f"/api/tickets/{ticket['id']}")["data"]
    assert stored["appointment_start"] == "2026-11-24T14:00:00+05:30"
    # ... and a stored time is shown on the site's clock.
    open_ticket(browser_a, live_server, ticket["id"])
    report = wait(browser_a, shown("#report-view"))
    wait(browser_a, lambda d: "11-24 14:00–16:00" in report.text or "2026-11-24 14:00" in report.text,
         message=report.text)
