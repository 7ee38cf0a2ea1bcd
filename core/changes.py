"""What changed, announced by the database itself: every ticket event and every call record.

Database triggers see every writer (this node or another, the console, a call's thread, the
scheduler), so no code path can forget to announce a change:

- PostgreSQL: the triggers ``NOTIFY callcenter_changes`` with ``{"ticket": id, "call": id}``.
  PostgreSQL delivers a notification when (and only if) its transaction commits, in commit order,
  to every listening connection: an event committed after a later-numbered one is not skipped, as
  it would be by a reader that follows ids. A listener that reconnects may have missed some and
  must say so (the consoles then reload).
- SQLite: the triggers append to ``live_changes``. SQLite lets one writer at a time hold the
  database until it commits, so ids there are in commit order and a reader may follow them.

The triggers belong to the code, not to one migration: ``install_triggers`` runs after every
upgrade (SQLite drops a table's triggers whenever a migration copies the table to alter it).
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.node_store import LiveChange

CHANNEL = "callcenter_changes"
# Bump when a trigger below changes: a database with an older version gets them again.
VERSION = "callcenter live changes v1"

_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION callcenter_live_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- {VERSION}
    IF TG_TABLE_NAME = 'call_records' THEN
        PERFORM pg_notify('{CHANNEL}', json_build_object('ticket', NEW.ticket_id, 'call', NEW.id)::text);
    ELSE
        PERFORM pg_notify('{CHANNEL}', json_build_object('ticket', NEW.ticket_id)::text);
    END IF;
    RETURN NULL;
END
$$"""
_POSTGRES_TRIGGERS = {
    "ticket_events_live": "AFTER INSERT ON ticket_events",
    "call_records_live": "AFTER INSERT OR UPDATE ON call_records",
}

_SQLITE_TRIGGERS = {
    "ticket_events_live": "AFTER INSERT ON ticket_events BEGIN "
                          "INSERT INTO live_changes (ticket_id, call_id) VALUES (NEW.ticket_id, NULL); END",
    "call_records_live_insert": "AFTER INSERT ON call_records BEGIN "
                                "INSERT INTO live_changes (ticket_id, call_id) VALUES (NEW.ticket_id, NEW.id); END",
    "call_records_live_update": "AFTER UPDATE ON call_records BEGIN "
                                "INSERT INTO live_changes (ticket_id, call_id) VALUES (NEW.ticket_id, NEW.id); END",
}


def install_triggers(connection: Connection) -> None:
    """Create (or bring up to date) the triggers that announce changes; does nothing when they are."""
    if connection.dialect.name == "postgresql":
        installed = connection.execute(text(
            "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE p.proname = 'callcenter_live_change' AND position(:version in p.prosrc) > 0 "
            "AND t.tgname = ANY(:names)"), {"version": VERSION, "names": list(_POSTGRES_TRIGGERS)}).scalar()
        if installed == len(_POSTGRES_TRIGGERS):
            return  # no DDL, so no table lock, on the usual start
        connection.execute(text(_POSTGRES_FUNCTION))
        for name, when in _POSTGRES_TRIGGERS.items():
            table = when.rsplit(" ", 1)[1]
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            connection.execute(text(f"CREATE TRIGGER {name} {when} FOR EACH ROW "
                                    "EXECUTE FUNCTION callcenter_live_change()"))
        return
    if connection.dialect.name != "sqlite":
        raise RuntimeError(f"no live-change triggers for {connection.dialect.name}")
    existing: dict[str, str] = dict(connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")).all())
    for name, body in _SQLITE_TRIGGERS.items():
        wanted = f"CREATE TRIGGER {name} {body}"
        if existing.get(name) != wanted:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            connection.execute(text(wanted))


# --- SQLite: following the journal ------------------------------------------------------------

JOURNAL_KEEP = 10_000  # rows kept behind the newest; a reader further behind than this reloads


def journal_end(session: Session) -> int:
    """The id of the newest change (0: none yet): where a new reader starts."""
    return session.scalar(select(func.max(LiveChange.id))) or 0


def journal_since(session: Session, cursor: int, limit: int = 1000) -> tuple[list[tuple[int, int | None, int | None]], bool]:
    """Changes after ``cursor`` as (id, ticket_id, call_id), oldest first, and whether some were
    purged before this reader saw them (then it cannot know what it missed)."""
    rows = [(change, ticket, call) for change, ticket, call in session.execute(
        select(LiveChange.id, LiveChange.ticket_id, LiveChange.call_id)
        .where(LiveChange.id > cursor).order_by(LiveChange.id).limit(limit))]
    oldest = session.scalar(select(func.min(LiveChange.id)))
    missed = cursor > 0 and oldest is not None and oldest > cursor + 1
    return rows, missed


def purge_journal(session: Session) -> int:
    """Forget all but the newest ``JOURNAL_KEEP`` changes; returns how many were deleted."""
    newest = journal_end(session)
    return affected_rows(session.execute(delete(LiveChange).where(LiveChange.id <= newest - JOURNAL_KEEP)))
