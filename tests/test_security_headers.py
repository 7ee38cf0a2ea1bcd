"""Headers and small things (issue 14, item 5), against the real app over HTTP: a strict CSP and the
other protective headers on every answer, anonymous health says only its status, nested or
oversized JSON is a 400, free text is capped, CSV cells cannot be formulas. (The pages working
under the CSP, and ``next`` staying on the site, are in tests/test_browser.py.)"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.support.tickets import completed_ticket

TICKET = {"description": "厨房水管漏水", "building": "3", "unit": "2", "room": "1101"}


async def test_every_answer_carries_the_protective_headers(api):
    desk = await api("desk")
    answers = {
        "page": await desk.get("/desk"), "login page": await api.anonymous.get("/login"),
        "script": await api.anonymous.get("/static/app.js"), "api": await desk.get("/api/tickets"),
        "api error": await desk.get("/api/tickets/999"), "redirect": await api.anonymous.get("/desk", allow_redirects=False),
        "refused": await desk.post("/api/tickets", json=TICKET, headers={"Origin": "http://evil.example"}),
    }
    for what, response in answers.items():
        headers = response.headers
        csp = {part.split()[0]: part.split()[1:] for part in headers["Content-Security-Policy"].split("; ")}
        assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"], what
        assert csp["style-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], what
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], what
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"], what
        assert headers["X-Content-Type-Options"] == "nosniff", what
        assert headers["Referrer-Policy"] == "same-origin", what
        assert headers["X-Frame-Options"] == "DENY", what
        assert "Strict-Transport-Security" not in headers, what  # only with web.cookie_secure (HTTPS)


async def test_the_pages_have_no_inline_script_or_style_for_the_csp_to_block(api):
    desk = await api("boss")
    for path in ("/login", "/desk", "/engineer", "/manager", "/tickets/1", "/tickets/1/print"):
        html = await (await (api.anonymous if path == "/login" else desk).get(path)).text()
        assert "<script>" not in html and " on" + "click=" not in html and "style=" not in html, path
        assert '<script type="module" src="/static/' in html, path


async def test_anonymous_health_says_only_its_status(api, aiohttp_client):
    from callcenter.web.context import HEALTH

    api.app[HEALTH]["asr"] = lambda: {"state": "ready", "message": "model at /var/lib/callcenter/models/x"}
    anonymous = await api.anonymous.get("/api/health")
    assert anonymous.status == 200 and await anonymous.json() == {"status": "ok"}
    staff = await (await (await api("zhang")).get("/api/health")).json()
    assert staff["database"] == "ok" and staff["asr"]["message"].startswith("model at")


@pytest.mark.parametrize("body", [
    "[" * 30_000 + "]" * 30_000,  # deep enough to overflow the parser (was a 500), yet under 64 KB
    json.dumps({"description": {"a": {"b": {"c": {"d": ["e"]}}}}}),  # deeper than any body the API takes
])
async def test_deeply_nested_json_is_a_400(api, body):
    desk = await api("desk")
    response = await desk.post("/api/tickets", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == "请求内容嵌套过深"


async def test_an_oversized_body_is_a_400_also_without_a_length(api):
    desk = await api("desk")
    huge = json.dumps(TICKET | {"remarks": "长" * 40_000})
    response = await desk.post("/api/tickets", data=huge, headers={"Content-Type": "application/json"})
    assert response.status == 400 and "过大" in (await response.json())["error"]

    async def chunks():
        for _ in range(20):
            yield b" " * 8192  # a chunked body: no Content-Length to go by
        yield json.dumps(TICKET).encode()

    chunked = await desk.post("/api/tickets", data=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status == 400
    assert (await desk.post("/api/tickets", json=TICKET)).status == 201  # an ordinary one still goes


async def test_free_text_is_capped(api, people):
    desk, boss = await api("desk"), await api("boss")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    url = f"/api/tickets/{ticket['id']}"
    assert (await desk.post(f"{url}/notes", json={"note": "记" * 2001})).status == 422
    assert (await desk.post(f"{url}/notes", json={"note": "记" * 2000})).status == 201
    cancel = await desk.post(f"{url}/transitions", json={"to": "cancelled", "reason": "duplicate", "note": "x" * 2001})
    assert cancel.status == 422 and "note" in (await cancel.json())["fields"]
    assert (await desk.post("/api/tickets", json=TICKET | {"description": "漏" * 2001})).status == 422
    fee = {"code": "P01", "name": "更换水龙头", "note": "说明" * 300}
    assert (await boss.post("/api/fees", json=fee)).status == 422
    assert (await boss.post("/api/engineers", json={"name": "王" * 65, "phone": "13900000000"})).status == 422
    override = {"from": "2026-11-24T08:00", "to": "2026-11-24T20:00", "replace_id": people["张工"], "note": "n" * 501}
    assert (await boss.post("/api/roster/overrides", json=override)).status == 422


async def test_csv_cells_never_start_a_formula(api, sessions, settings):
    boss = await api("boss")
    sneaky = "=HYPERLINK(\"http://evil.example\",\"点我\")"
    added = await boss.post("/api/engineers", json={"name": sneaky, "phone": "13900000009"})
    assert added.status == 201
    completed_ticket(sessions, settings, (await added.json())["id"],
                     datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    response = await boss.get("/api/reports/followups?month=2026-11&format=csv")
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    names = [row[1] for row in rows if row[0] == "维修人员"]
    assert names == ["'" + sneaky]
