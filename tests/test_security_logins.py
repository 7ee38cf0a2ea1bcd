"""Logins (issue 14, item 4), against the real app over HTTP: guessing is throttled per account and per
client address with growing delays (429 + Retry-After) without locking the real user out for long;
hashing runs on its own bounded executor, at OWASP's scrypt cost, older hashes redone at login;
changing a user's password, role or active flag ends that user's other sessions."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest
from sqlalchemy import select, update

from callcenter.web.passwords import PASSWORDS, PasswordWorker
from core import accounts
from core.store import AuditEntry, User
from tests.conftest import STAFF_PASSWORD, console_client

PROXY = "127.0.0.1"  # the test client's address: here it stands for a reverse proxy


@pytest.fixture
def settings(settings):
    """Behind a trusted reverse proxy, so a test can log in "from" other addresses (X-Forwarded-For)."""
    return replace(settings, web=replace(settings.web, trusted_proxies=(PROXY,)))


async def log_in(client, username, password, address="10.0.0.1"):
    return await client.post("/api/login", json={"username": username, "password": password},
                             headers={"X-Forwarded-For": address})


async def test_guessing_one_account_is_slowed_and_the_real_user_waits_a_minute_at_most(api, clock, sessions):
    guesser = api.anonymous
    answers = []
    for attempt in range(25):
        response = await log_in(guesser, "desk", f"guess-{attempt:04d}", address=f"10.0.{attempt}.1")
        answers.append(response.status)
    assert answers[:5] == [401] * 5 and answers[5:] == [429] * 20  # in a row: only the first five are tried
    throttled = await log_in(guesser, "desk", STAFF_PASSWORD, address="10.9.9.9")  # even the right password
    assert throttled.status == 429 and int(throttled.headers["Retry-After"]) == 1
    assert "秒后再试" in (await throttled.json())["error"]
    # Each further failure doubles the wait: 1, 2, 4, 8 ... s, never more than a minute.
    waits = []
    for attempt in range(10):
        clock.advance(seconds=int((await log_in(guesser, "desk", "x-guess-x", f"10.1.{attempt}.1")).headers.get(
            "Retry-After", 0)))
        response = await log_in(guesser, "desk", f"again-{attempt:04d}", f"10.1.{attempt}.1")
        assert response.status == 401
        waits.append(int((await log_in(guesser, "desk", "x", f"10.1.{attempt}.1")).headers["Retry-After"]))
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]
    clock.advance(seconds=60)
    real = await log_in(await console_client(api.aiohttp_client, api.app), "desk", STAFF_PASSWORD, "192.168.1.20")
    assert real.status == 200  # the real user is in after at most a minute
    assert (await log_in(guesser, "desk", "guess-after", "10.2.0.1")).status == 401  # and the count starts over
    with sessions() as session:
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "login_failed")).all()
    assert len(failed) == 5 + 10 + 1  # throttled tries were never checked, so never counted


async def test_one_address_guessing_many_accounts_is_stopped_and_others_are_not(api, clock):
    guesser = api.anonymous
    statuses = [(await log_in(guesser, f"user{n}", "guess-1234", address="203.0.113.7")).status for n in range(21)]
    assert statuses == [401] * 20 + [429]
    assert (await log_in(guesser, "boss", STAFF_PASSWORD, address="203.0.113.7")).status == 429
    assert (await log_in(guesser, "boss", STAFF_PASSWORD, address="198.51.100.2")).status == 200
    clock.advance(minutes=16)  # outside the window the address may try again
    assert (await log_in(guesser, "root", STAFF_PASSWORD, address="203.0.113.7")).status == 200


async def test_an_untrusted_x_forwarded_for_is_ignored(settings, sessions, clock, people, aiohttp_client):
    from callcenter.web.app import create_app

    direct = replace(settings, web=replace(settings.web, trusted_proxies=()))
    client = await console_client(aiohttp_client, create_app(direct, sessions, clock))
    assert (await log_in(client, "desk", "guess-1234", address="10.7.7.7")).status == 401
    with sessions() as session:
        assert session.scalar(select(AuditEntry.address).where(AuditEntry.action == "login_failed")) == "127.0.0.1"


async def test_password_checks_have_their_own_bounded_executor(api, people):
    """While password hashing is saturated, logins are told to come back and the console answers."""
    desk, hashing = await api("desk"), api.app[PASSWORDS]
    assert isinstance(hashing, PasswordWorker) and hashing.workers <= 2
    release = threading.Event()
    stuck = [asyncio.ensure_future(hashing.run(release.wait, 10)) for _ in range(hashing.max_waiting)]
    await asyncio.sleep(0.05)
    try:
        busy = await log_in(api.anonymous, "boss", STAFF_PASSWORD)
        assert busy.status == 429 and busy.headers["Retry-After"] == "2" and "登录请求过多" in (await busy.json())["error"]
        console = await asyncio.wait_for(desk.get("/api/tickets"), 2)
        assert console.status == 200
    finally:
        release.set()
        await asyncio.gather(*stuck)
    assert (await log_in(api.anonymous, "boss", STAFF_PASSWORD)).status == 200


@pytest.mark.real_password_cost
async def test_hashes_use_owasps_scrypt_cost_and_older_ones_are_redone_at_login(api, sessions):
    assert accounts.CURRENT_COST == (2**17, 8, 1)
    root = await api("root")
    created = await root.post("/api/users", json={"username": "qian", "password": "long-enough-1", "role": "frontdesk"})
    assert created.status == 201
    with sessions() as session, session.begin():
        assert session.scalar(select(User.password_hash).where(User.username == "qian")).startswith("scrypt$131072$8$1$")
        older = accounts.hash_password("an-older-password", accounts.ScryptCost(2**14, 8, 1))
        session.execute(update(User).where(User.username == "qian").values(password_hash=older))
    assert (await log_in(api.anonymous, "qian", "wrong-password")).status == 401
    with sessions() as session:  # a wrong password changes nothing
        assert session.scalar(select(User.password_hash).where(User.username == "qian")) == older
    assert (await log_in(api.anonymous, "qian", "an-older-password")).status == 200
    with sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "qian"))
        assert stored.startswith("scrypt$131072$8$1$") and accounts.verify_password("an-older-password", stored)
        assert session.scalar(select(AuditEntry.detail).where(AuditEntry.action == "login",
                                                              AuditEntry.username == "qian")) == {"rehashed": True}


async def second_session(api, username):
    client = await console_client(api.aiohttp_client, api.app)
    assert (await log_in(client, username, STAFF_PASSWORD)).status == 200
    return client


@pytest.mark.parametrize("change", [{"password": "a-new-password"}, {"role": "manager"}, {"active": False}])
async def test_a_changed_user_is_logged_out_everywhere(api, change):
    root, desk = await api("root"), await api("desk")
    other_desk = await second_session(api, "desk")
    users = {u["username"]: u["id"] for u in await (await root.get("/api/users")).json()}
    assert (await root.patch(f"/api/users/{users['desk']}", json=change)).status == 200
    for client in (desk, other_desk):
        assert (await client.get("/api/me")).status == 401
    assert (await root.get("/api/me")).status == 200  # nobody else is touched


async def test_an_admin_changing_their_own_password_keeps_this_session_only(api):
    root = await api("root")
    elsewhere = await second_session(api, "root")
    me = await (await root.get("/api/me")).json()
    assert (await root.patch(f"/api/users/{me['id']}", json={"password": "a-new-password"})).status == 200
    assert (await root.get("/api/me")).status == 200
    assert (await elsewhere.get("/api/me")).status == 401
    assert (await root.patch(f"/api/users/{me['id']}", json={"active": False})).status == 422  # not themselves


async def test_twenty_guesses_at_once_are_throttled_as_if_one_after_another(api):
    guesses = [log_in(api.anonymous, "desk", f"guess-{n:04d}", address=f"10.3.{n}.1") for n in range(20)]
    statuses = sorted(response.status for response in await asyncio.gather(*guesses))
    assert statuses == [401] * 5 + [429] * 15
