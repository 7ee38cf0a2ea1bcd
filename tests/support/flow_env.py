"""Fixtures for the flows' turn-by-turn tests: virtual time, labelled prompts, a real database.

The database is a real SQLite file migrated once per session and copied for each test (a copy
takes a millisecond, a migration half a second): the flows' storage is tested on both databases
by the storage tests and the end-to-end tests; here it is the script that is under test.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from callcenter.ivr.flows import callout, dialogue, put_through
from core import migrate
from core.settings import DatabaseSettings, load_settings
from core.store import make_engine, make_session_factory
from tests.support.fake_call import LabelledPrompts, VirtualTime


@pytest.fixture
def virtual_time(monkeypatch) -> VirtualTime:
    """The flows' waits and timeouts run on a clock the fake call moves."""
    clock = VirtualTime()
    for module in (dialogue, callout, put_through):
        monkeypatch.setattr(module, "time", clock)
    return clock


@pytest.fixture(scope="session")
def labelled_prompts() -> LabelledPrompts:
    return LabelledPrompts()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow-db") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def flow_settings(tmp_path, migrated_database):
    database = tmp_path / "callcenter.db"
    shutil.copy(migrated_database, database)
    base = load_settings(environ={"CALLCENTER_DATA_DIR": str(tmp_path / "data")})
    return replace(base, database=DatabaseSettings(url=f"sqlite:///{database}"))


@pytest.fixture
def flow_sessions(flow_settings):
    engine = make_engine(flow_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()
