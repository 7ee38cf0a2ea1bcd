"""Live updates across nodes, on both databases: two consoles (two apps, as two nodes run them)
on one database; whatever one node (or a call's thread) writes reaches the other's open stream,
also a change committed after a later-numbered one, and a lost LISTEN connection makes the pages
reload instead of silently missing changes (issue 13)."""

import asyncio
import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from callcenter.web.app import create_app
from callcenter.web.live import FEED, LISTENER_NAME
from core import changes, desk
from core.calls import CallLog
from core.desk import HOTLINE, NewTicket
from core.store import LiveChange
from core.tickets import Channel
from tests.conftest import STAFF_PASSWORD, console_client

WAIT = 5.0  # seconds a change may take to show (SQLite polls every second; PostgreSQL is at once)


class Stream:
    """An open /api/stream of one console."""

    def __init__(self, response):
        self.response = response

    async def next(self, timeout: float = WAIT) -> dict:
        async def read():
            while True:
                line = (await self.response.content.readline()).decode()
                if line.startswith("data:"):
                    return json.loads(line[5:])
        return await asyncio.wait_for(read(), timeout)

    async def until(self, wanted, timeout: float = WAIT) -> list[dict]:
        """Messages until ``wanted(message)``; all of them."""
        messages = []
        async with asyncio.timeout(timeout):
            while True:
                messages.append(await self.next(timeout))
                if wanted(messages[-1]):
                    return messages


@pytest.fixture
async def consoles(aiohttp_client, settings, sessions, clock, people):
    """Two nodes' consoles on one database; ``await consoles(n)`` -> (client logged in as boss, stream)."""
    apps = [create_app(settings, sessions, clock) for _ in range(2)]
    clients = []
    for app in apps:
        client = await console_client(aiohttp_client, app)
        assert (await client.post("/api/login", json={"username": "boss", "password": STAFF_PASSWORD})).status == 200
        clients.append(client)
    for app in apps:
        if sessions.kw["bind"].dialect.name == "postgresql":
            await asyncio.wait_for(app[FEED].connected.wait(), WAIT)
    streams = [Stream(await client.get("/api/stream")) for client in clients]
    await asyncio.sleep(0.3)  # the SQLite feeds take their starting point
    return clients, streams, apps


def new_ticket(sessions, settings, room="1101") -> int:
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        return desk.create_ticket(session, NewTicket(description="厨房水管漏水", building="3", unit="2", room=room,
                                                     channel=Channel.PHONE, reported_at=now), HOTLINE, now, settings).id


async def test_a_ticket_changed_on_one_node_appears_on_the_others_console(consoles, sessions, settings):
    (one, _), (_, other_stream), _ = consoles
    from tests.test_api import TICKET

    ticket = await (await one.post("/api/tickets", json=TICKET)).json()
    assert ticket["id"] in (await other_stream.until(lambda m: ticket["id"] in m["ids"]))[-1]["ids"]
    await one.post(f"/api/tickets/{ticket['id']}/notes", json={"note": "又来电催"})
    assert (await other_stream.next())["ids"] == [ticket["id"]]


async def test_a_call_written_by_a_telephone_thread_reaches_every_console(consoles, sessions, settings):
    _, streams, _ = consoles
    ticket_id = new_ticket(sessions, settings)
    for stream in streams:
        await stream.until(lambda m: ticket_id in m["ids"])
    calls = CallLog(sessions, "node-1")
    call_id = await asyncio.to_thread(calls.open, sip_call_id="c1@127.0.0.1", direction="inbound", line="hotline",
                                      caller="13800138000", called="hotline")
    for stream in streams:
        await stream.until(lambda m: call_id in m["calls"])
    await asyncio.to_thread(calls.update, call_id, ticket_id=ticket_id)
    await asyncio.to_thread(calls.close, call_id, "completed")
    for stream in streams:
        message = (await stream.until(lambda m: call_id in m["calls"] and ticket_id in m["ids"]))[-1]
        assert message["ids"] == [ticket_id]


async def test_an_event_committed_after_a_later_numbered_one_is_not_missed(consoles, sessions, settings, db_url):
    """Transaction A writes its event first (the lower id) and commits only after B's event (a higher
    id) has reached the console: a reader following ids would have moved past A's for good (the
    defect of issue 13). On SQLite B cannot commit before A (one writer at a time), so there A
    commits after a while and B follows."""
    _, (stream, _), _ = consoles
    first, second = new_ticket(sessions, settings, "1101"), new_ticket(sessions, settings, "1102")
    await stream.until(lambda m: {first, second} <= set(m["ids"]))
    a_wrote, b_shown = threading.Event(), threading.Event()

    def slow_writer():
        with sessions() as session, session.begin():
            desk.add_note(session, desk.get_ticket(session, first), "A", HOTLINE, datetime.now(UTC))
            session.flush()
            a_wrote.set()
            b_shown.wait(3)

    def quick_writer():
        a_wrote.wait(5)
        with sessions() as session, session.begin():
            desk.add_note(session, desk.get_ticket(session, second), "B", HOTLINE, datetime.now(UTC))

    slow = threading.Thread(target=slow_writer)
    slow.start()
    quick = asyncio.create_task(asyncio.to_thread(quick_writer))
    seen: list[int] = []
    async with asyncio.timeout(2 * WAIT):
        while first not in seen:
            message = await stream.next(2 * WAIT)
            assert message["ids"] is not None
            seen += message["ids"]
            if second in seen:
                b_shown.set()
    await quick
    await asyncio.to_thread(slow.join, 10)
    if db_url.startswith("postgresql"):
        assert seen.index(second) < seen.index(first)  # B's event really was shown before A committed


async def test_a_lost_listen_connection_makes_the_pages_reload_and_updates_go_on(consoles, sessions, settings, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's LISTEN connection")
    _, streams, apps = consoles
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        killed = connection.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE application_name = :name"), {"name": LISTENER_NAME}).scalar()
    admin.dispose()
    assert killed == 2
    for stream in streams:
        assert (await stream.until(lambda m: m["ids"] is None, timeout=10))[-1] == {"ids": None, "calls": None}
    for app in apps:
        await asyncio.wait_for(app[FEED].connected.wait(), 10)
    ticket_id = new_ticket(sessions, settings)
    for stream in streams:
        await stream.until(lambda m: ticket_id in (m["ids"] or []))


def test_the_sqlite_journal_is_purged_and_a_reader_left_behind_knows_it(sessions, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("the journal is SQLite's")
    with sessions() as session, session.begin():
        session.add_all(LiveChange(ticket_id=n) for n in range(changes.JOURNAL_KEEP + 50))
    with sessions() as session, session.begin():
        assert changes.purge_journal(session) == 50
    with sessions() as session:
        end = changes.journal_end(session)
        rows, missed = changes.journal_since(session, 10)
        assert missed and rows[0][0] == 51  # ids 11..50 are gone: this reader must reload
        rows, missed = changes.journal_since(session, end - 3)
        assert not missed and [row[0] for row in rows] == [end - 2, end - 1, end]
    with sessions() as session, session.begin():  # ids are never handed out again
        session.query(LiveChange).delete()
    with sessions() as session, session.begin():
        session.add(LiveChange(ticket_id=1))
    with sessions() as session:
        assert changes.journal_end(session) == end + 1
