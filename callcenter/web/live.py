"""Live updates: the queue learns of new and changed tickets without reloading.

One poller per process watches the ticket-event table (every change to a ticket writes an
event there, whichever process made it: the console, a hotline process, a scheduler) and
fans the changed ticket ids out to every open Server-Sent-Events stream. Local writes poke
the poller so their own clients see them at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress

from aiohttp import web
from sqlalchemy import func, select

from callcenter.web.context import run_db
from core.store import TicketEvent

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0


class ChangeFeed:
    def __init__(self, app: web.Application):
        self.app = app
        self.cursor = 0
        self.subscribers: set[asyncio.Queue] = set()
        self.poked = asyncio.Event()

    def poke(self) -> None:
        self.poked.set()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=100)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    async def run(self) -> None:
        self.cursor = await run_db(self.app, lambda s: s.scalar(select(func.max(TicketEvent.id))) or 0)
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.poked.wait(), POLL_SECONDS)
            self.poked.clear()
            try:
                await self._publish_changes()
            except Exception:  # a database hiccup must not end live updates for good
                log.exception("live update poll failed; retrying")

    async def _publish_changes(self) -> None:
        if not self.subscribers:
            self.cursor = await run_db(self.app, lambda s: s.scalar(select(func.max(TicketEvent.id))) or 0)
            return
        cursor = self.cursor
        rows = await run_db(self.app, lambda s: s.execute(
            select(TicketEvent.id, TicketEvent.ticket_id).where(TicketEvent.id > cursor)
            .order_by(TicketEvent.id).limit(500)).all())
        if not rows:
            return
        self.cursor = rows[-1][0]
        message = {"ids": sorted({ticket_id for _, ticket_id in rows}), "cursor": self.cursor}
        for queue in list(self.subscribers):
            if queue.full():  # a stalled client: drop it rather than hold memory for it
                self.unsubscribe(queue)
            else:
                queue.put_nowait(message)

    def close(self) -> None:
        for queue in list(self.subscribers):
            with suppress(asyncio.QueueFull):
                queue.put_nowait(None)


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
    """Server-Sent Events: ``event: tickets`` with the ids of tickets that changed."""
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
            except asyncio.TimeoutError:
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
