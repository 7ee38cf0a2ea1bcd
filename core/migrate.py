"""Schema migrations: bring any database (empty or older) up to the models' schema.

Every node runs them at its start, so several nodes starting together on one database must
not run them at once: the first takes a lock, the others wait for it and then find the schema
up to date. PostgreSQL: an advisory lock held by the migration's own transaction (released by
its commit or rollback, also when the process dies). SQLite: a lock on a file next to the
database, released by the kernel when the process holding it ends.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from core.changes import install_triggers

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: any constant other code does not use ("cc-migrate").
POSTGRES_LOCK_KEY = 0x63632D6D69677261


def alembic_config(engine: Engine, connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["connection"] = connection
    return config


def open_database(url: str) -> Engine:
    """The engine on an up-to-date schema: a first start creates the database by itself."""
    from core.db import make_engine

    engine = make_engine(url)
    upgrade(engine)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` (and install the live-change triggers) under the migration lock."""
    with sqlite_file_lock(engine), engine.begin() as connection:
        lock_migrations(connection)
        command.upgrade(alembic_config(engine, connection), revision)
        install_triggers(connection)


def lock_migrations(connection: Connection) -> None:
    """PostgreSQL: wait until no other node migrates; the lock ends with this transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_LOCK_KEY})


@contextmanager
def sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """SQLite (a file database): hold an exclusive lock on ``<database>.migrate-lock``."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released on close, or by the kernel if we die
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def revision(engine: Engine, message: str) -> None:
    """Developers: write a new migration from the difference between models and database."""
    with engine.begin() as connection:
        command.revision(alembic_config(engine, connection), message=message, autogenerate=True)
