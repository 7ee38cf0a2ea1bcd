"""Password hashing on threads of its own, with a bounded queue.

scrypt is slow on purpose (core.accounts). Run on the threads that carry the database calls, a
burst of guessed logins made every page of the console wait behind it; here it has its own small
executor, so guessing can slow only logins, and once ``max_waiting`` checks are queued the next
login is told to come back (429) instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")


class PasswordsBusy(Exception):
    """Too many password checks queued already."""


class PasswordWorker:
    def __init__(self, workers: int | None = None, max_waiting: int = 16):
        # One core of two (or a quarter of many) for hashing: the rest stays for the console and the calls.
        self.workers = workers or max(1, (os.cpu_count() or 2) // 4)
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="password")
        self._waiting = 0  # only touched on the event loop's thread

    async def run(self, work: Callable[..., T], *args) -> T:
        if self._waiting >= self.max_waiting:
            raise PasswordsBusy()
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


PASSWORDS = web.AppKey("passwords", PasswordWorker)
