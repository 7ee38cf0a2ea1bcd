"""Alembic environment: runs on the connection that ``core.migrate`` hands it."""

from alembic import context

import core.consent  # noqa: F401 - its model (paid_consents) lives outside core.store
from core.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `callcenter db upgrade` (core.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only ALTER through table copies
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
