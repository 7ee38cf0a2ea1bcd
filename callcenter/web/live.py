"""Live updates: every node's console learns of new and changed tickets and calls at once.

The database announces each ticket event and each call record change itself (core.changes),
whichever node wrote it. One feed per process takes those announcements and fans the changed
ticket (and call) ids out to every open Server-Sent-Events stream:

- PostgreSQL: the feed LISTENs on its own connection; notifications arrive when the writer
  commits, in commit order, so an event committed after a later-numbered one still arrives.
  When the connection is lost the feed reconnects and tells every stream to reload
  (``"ids": null``), since notifications sent meanwhile are gone.
- SQLite: the feed follows the ``live_changes`` journal by id (ids are in commit order there),
  every ``POLL_SECONDS`` or at once when a local write pokes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import Any

import psycopg
from aiohttp import web
from sqlalchemy.engine import Engine

from callcenter.web.context import SESSIONS, run_db
from core import changes

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
POLL_SECONDS = 1.0  # SQLite: how often the journal is read
GATHER_SECONDS = 0.05  # a burst of changes (a ticket saved with several events) goes out as one message
HEARTBEAT_SECONDS = 15.0  # SSE keep-alive; also how often an idle LISTEN connection is checked
RECONNECT_SECONDS = (0.5, 1, 2, 5)  # PostgreSQL: waits between attempts to listen again
PURGE_EVERY = 600  # SQLite: journal polls between purges of old rows
STREAM_QUEUE = 100  # messages a slow client may have waiting before it is dropped
LISTENER_NAME = "callcenter-live"  # the LISTEN connection, as pg_stat_activity shows it


class ChangeFeed:
    def __init__(self, app: web.Application):
        self.app = app
        self.subscribers: set[asyncio.Queue] = set()
        self.poked = asyncio.Event()
        self.connected = asyncio.Event()  # PostgreSQL: LISTEN is in place (tests wait for it)
        self._tickets: set[int] = set()
        self._calls: set[int] = set()
        self._reload = False

    # -- what the web handlers and the streams use

    def poke(self) -> None:
        """A local write: look now rather than at the next poll."""
        self.poked.set()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=STREAM_QUEUE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    def close(self) -> None:
        for queue in list(self.subscribers):
            with suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # -- the feed

    @property
    def engine(self) -> Engine:
        return self.app[SESSIONS].kw["bind"]

    async def run(self) -> None:
        if self.engine.dialect.name == "postgresql":
            listener = asyncio.create_task(self._listen())
            try:
                await self._publish_loop(poll=None)
            finally:
                listener.cancel()
                with suppress(asyncio.CancelledError):
                    await listener
        else:
            await self._publish_loop(poll=await self._journal_poller())

    async def _publish_loop(self, poll) -> None:
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.poked.wait(), POLL_SECONDS if poll else None)
            await asyncio.sleep(GATHER_SECONDS)
            self.poked.clear()
            try:
                if poll is not None:
                    await poll()
            except Exception:  # a database hiccup must not end live updates for good
                log.exception("live updates: reading the changes failed; trying again")
            self._publish()

    def _note(self, ticket_id: int | None, call_id: int | None) -> None:
        if ticket_id is not None:
            self._tickets.add(ticket_id)
        if call_id is not None:
            self._calls.add(call_id)

    def _publish(self) -> None:
        if self._reload:
            message: dict[str, Any] = {"ids": None, "calls": None}  # reload everything shown
        elif self._tickets or self._calls:
            message = {"ids": sorted(self._tickets), "calls": sorted(self._calls)}
        else:
            return
        self._tickets, self._calls, self._reload = set(), set(), False
        for queue in list(self.subscribers):
            if queue.full():  # a stalled client: drop it rather than hold memory for it
                self.unsubscribe(queue)
            else:
                queue.put_nowait(message)

    # -- PostgreSQL: LISTEN

    async def _listen(self) -> None:
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        attempt, first = 0, True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                                 application_name=LISTENER_NAME) as connection:
                    await connection.execute(f"LISTEN {changes.CHANNEL}")
                    attempt = 0
                    if not first:  # whatever was announced while we were away is lost: reload
                        log.warning("live updates: listening again; every console reloads")
                        self._reload = True
                        self.poke()
                    first = False
                    self.connected.set()
                    while True:
                        async for note in connection.notifies(timeout=HEARTBEAT_SECONDS):
                            self._take(note.payload)
                        await connection.execute("SELECT 1")  # a quiet connection may be a dead one
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as error:
                self.connected.clear()
                wait = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
                attempt += 1
                log.warning("live updates: lost the database connection (%s); again in %s s", error, wait)
                await asyncio.sleep(wait)

    def _take(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            self._note(change.get("ticket"), change.get("call"))
        except (ValueError, AttributeError):
            log.warning("live updates: unreadable notification %r", payload[:200])
            return
        self.poke()

    # -- SQLite: the journal

    async def _journal_poller(self):
        cursor = await run_db(self.app, changes.journal_end)
        polls = 0

        async def poll() -> None:
            nonlocal cursor, polls
            if not self.subscribers:  # nobody watches: skip what happened meanwhile
                cursor = await run_db(self.app, changes.journal_end)
                return
            start = cursor
            rows, missed = await run_db(self.app, lambda session: changes.journal_since(session, start))
            if missed:
                self._reload = True
            for change_id, ticket_id, call_id in rows:
                self._note(ticket_id, call_id)
                cursor = change_id
            if rows and len(rows) == 1000:
                self.poke()  # more to read
            polls += 1
            if polls % PURGE_EVERY == 0:
                await run_db(self.app, changes.purge_journal)

        return poll


FEED = web.AppKey("feed", ChangeFeed)


async def feed_context(app: web.Application):
    task = asyncio.create_task(app[FEED].run())
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def close_streams(app: web.Application) -> None:
    app[FEED].close()


@routes.get("/api/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``event: tickets`` with the ids of tickets (and calls) that changed;
    ``"ids": null`` asks the page to reload everything it shows."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    feed = request.app[FEED]
    queue = feed.subscribe()
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(f"event: tickets\ndata: {json.dumps(message)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(queue)
    return response
