"""Shared fixtures: a real database per test (SQLite file, and PostgreSQL when available),
the settings that point at it, a controllable clock, the app, and a live server for browsers."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from core import migrate
from core.settings import DatabaseSettings, load_settings
from core.store import make_engine, make_session_factory
from tests.support.postgres import PostgresServer, free_port

REQUIRE_POSTGRES = os.environ.get("CALLCENTER_REQUIRE_POSTGRES") == "1"
_database_names = itertools.count()

# The modules that take longest (real-time calls), longest first. With ``--dist loadfile
# --no-loadscope-reorder`` (scripts/test.sh) xdist hands modules out in collection order, so these
# start at once and overlap everything else; by default it starts the modules with the most tests
# first, and the six-minute call began halfway through and ran alone for minutes at the end.
LONGEST_FIRST = ("test_hotline_e2e", "test_incident_e2e", "test_callback_e2e", "test_security_callerid",
                 "test_python_versions", "test_callout_e2e", "test_browser", "test_survey_e2e",
                 "test_capacity_e2e", "test_softphone", "test_consent_call_e2e")


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(rank)) if item.module else len(rank))


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server to make test databases in, or a skip saying why not."""
    url = os.environ.get("CALLCENTER_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        server = PostgresServer()
        url = server.start()
    except (FileNotFoundError, OSError) as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required (CALLCENTER_REQUIRE_POSTGRES=1) but not startable: {error}")
        pytest.skip(f"no PostgreSQL server here: {error}")
    yield url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Every test that stores data runs on both databases the product supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'callcenter.db'}"
        return
    server_url = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_database_names)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings(tmp_path, db_url):
    base = load_settings(environ={"CALLCENTER_DATA_DIR": str(tmp_path / "data")})
    return replace(base, database=DatabaseSettings(url=db_url))


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


class Clock:
    """A clock the test moves by hand; starts at a Monday 10:00 in Shanghai."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(autouse=True)
def quick_password_hashing(request, monkeypatch):
    """scrypt at OWASP's cost (core.accounts.CURRENT_COST) takes half a second and 128 MiB a hash;
    every test makes several accounts and logins. Tests of the hashing itself are marked
    ``real_password_cost`` and get the real one."""
    if request.node.get_closest_marker("real_password_cost") is None:
        from core import accounts

        monkeypatch.setattr(accounts, "CURRENT_COST", accounts.ScryptCost(2**10, 8, 1))


async def console_client(aiohttp_client, app):
    """A client of the real app that sends the ``Origin`` a browser on the console's page would
    (every request that changes something must come from the console's own origin)."""
    client = await aiohttp_client(app)
    client.session.headers["Origin"] = str(client.make_url("/").origin())
    return client


STAFF_PASSWORD = "correct horse"


@pytest.fixture
def people(sessions):
    """Two engineers and an account per role: desk, zhang (张工), li (李工), boss (manager), root (admin)."""
    from core.accounts import add_user
    from core.store import Engineer

    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")])
        session.flush()
        for name, role, engineer in (("desk", "frontdesk", ""), ("zhang", "engineer", "张工"),
                                     ("li", "engineer", "李工"), ("boss", "manager", ""), ("root", "admin", "")):
            add_user(session, name, STAFF_PASSWORD, role, now, engineer_name=engineer)
    with sessions() as session:
        return {e.name: e.id for e in session.scalars(select(Engineer))}


@pytest.fixture
def engineer(people):
    """张工's id: whoever did the repair."""
    return people["张工"]


@pytest.fixture
async def api(settings, sessions, clock, people, aiohttp_client):
    """``await api("desk")``: a client of the real app logged in as that person; ``api.anonymous``.
    (``aiohttp_client`` last: its clients, and so the app, close before the database is dropped.)"""
    from callcenter.web.app import create_app

    app = create_app(settings, sessions, clock)
    clients = {}

    async def as_user(name):
        if name not in clients:
            client = await console_client(aiohttp_client, app)
            response = await client.post("/api/login", json={"username": name, "password": STAFF_PASSWORD})
            assert response.status == 200, await response.text()
            clients[name] = client
        return clients[name]

    as_user.anonymous = await console_client(aiohttp_client, app)
    as_user.app, as_user.aiohttp_client = app, aiohttp_client
    return as_user


class LiveServer:
    """The real app served on a loopback port from a background thread (for browsers)."""

    def __init__(self, settings, sessions):
        self.settings, self.sessions = settings, sessions
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._started = threading.Event()

    def _serve(self) -> None:
        from aiohttp import web

        from callcenter.web.app import create_app

        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(create_app(self.settings, self.sessions))
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(15), "live server did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def add_user(self, username, password, role, engineer_name=None):
        from core.accounts import add_user

        with self.sessions() as session, session.begin():
            add_user(session, username, password, role, datetime.now(UTC),
                     engineer_name=engineer_name or "")

    def add_engineer(self, name, phone, skills=()):
        from core.store import Engineer

        with self.sessions() as session, session.begin():
            session.add(Engineer(name=name, phone=phone, skills=list(skills)))


@pytest.fixture
def live_server(settings, sessions):
    server = LiveServer(settings, sessions)
    server.start()
    yield server
    server.stop()
