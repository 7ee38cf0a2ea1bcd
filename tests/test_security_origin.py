"""Cross-site requests (issue 14, item 3), against the real app over HTTP: anything but GET must come
from the console's own origin (Origin, else Sec-Fetch-Site, else refused), and only the configured
host names are served, which also stops DNS rebinding."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callcenter.web.app import create_app
from tests.conftest import STAFF_PASSWORD

EMERGENCY = {"description": "厨房水管爆了", "building": "3", "unit": "2", "room": "1101", "category": "plumbing",
             "urgency": "emergency"}


def own_origin(client) -> str:
    return str(client.make_url("/").origin())


async def test_a_page_of_another_origin_cannot_act_with_a_valid_session(api, people):
    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=EMERGENCY)).json()  # the console's own origin: fine
    port = desk.make_url("/").port
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}",
                   f"https://127.0.0.1:{port}", "null"):
        headers = {"Origin": origin}
        ring = await desk.post(f"/api/tickets/{ticket['id']}/callout", headers=headers)
        assert ring.status == 403 and "跨站" in (await ring.json())["error"], origin
        assert (await desk.post("/api/tickets", json=EMERGENCY, headers=headers)).status == 403
        assert (await desk.patch(f"/api/tickets/{ticket['id']}", json={"room": "1"}, headers=headers)).status == 403
        assert (await desk.delete(f"/api/tickets/{ticket['id']}/callout", headers=headers)).status == 403
        assert (await desk.post("/api/logout", headers=headers)).status == 403
    listed = await (await desk.get("/api/tickets")).json()
    assert listed["total"] == 1 and listed["tickets"][0]["room"] == "1101"  # nothing happened
    assert (await desk.get(f"/api/tickets/{ticket['id']}/callout")).status == 404  # nobody was rung


async def test_without_origin_the_fetch_metadata_decides_and_without_either_it_is_refused(api, aiohttp_client):
    client = await aiohttp_client(api.app)  # sends no Origin of its own
    login = {"username": "desk", "password": STAFF_PASSWORD}
    for headers in ({}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "none"}):
        assert (await client.post("/api/login", json=login, headers=headers)).status == 403, headers
    assert (await client.post("/api/login", json=login, headers={"Sec-Fetch-Site": "same-origin"})).status == 200
    assert (await client.post("/api/tickets", json=EMERGENCY, headers={"Origin": own_origin(client)})).status == 201
    assert (await client.get("/api/tickets")).status == 200  # reading needs no Origin


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io", "[::2]", "10.0.0.5"])
async def test_only_the_configured_host_names_are_served(api, host):
    """A DNS name an attacker points at 127.0.0.1 (rebinding) reaches the socket, not the console."""
    for path in ("/login", "/api/health", "/static/app.css"):
        response = await api.anonymous.get(path, headers={"Host": host})
        assert response.status == 421, (path, host)
    refused = await api.anonymous.post("/api/login", json={"username": "desk", "password": STAFF_PASSWORD},
                                       headers={"Host": host})
    assert refused.status == 421 and "web.hosts" in (await refused.json())["error"]


async def test_loopback_names_and_web_host_are_served_by_default(api):
    port = api.anonymous.make_url("/").port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert (await api.anonymous.get("/api/health", headers={"Host": host})).status == 200, host


async def test_web_hosts_names_the_console_behind_https(settings, sessions, clock, people, aiohttp_client):
    web = replace(settings.web, hosts=("repair.example.com",), cookie_secure=True, trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(replace(settings, web=web), sessions, clock))
    proxied = {"Host": "repair.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    assert (await client.get("/api/health", headers={"Host": f"127.0.0.1:{client.port}"})).status == 421
    login = {"username": "desk", "password": STAFF_PASSWORD}
    assert (await client.post("/api/login", json=login, headers=proxied | {"Origin": "http://repair.example.com"})
            ).status == 403  # not the scheme the staff see
    answer = await client.post("/api/login", json=login, headers=proxied | {"Origin": "https://repair.example.com"})
    assert answer.status == 200
    assert "Secure" in answer.headers["Set-Cookie"] and "SameSite=Strict" in answer.headers["Set-Cookie"]
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
