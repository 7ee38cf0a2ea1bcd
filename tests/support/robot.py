"""A group-chat robot's webhook on 127.0.0.1, as 企业微信 and 钉钉 run them: it takes
``{"msgtype": "text", "text": {"content": ...}}`` and answers ``{"errcode": 0, "errmsg": "ok"}``.

With a ``secret`` it checks 钉钉's 加签 the way 钉钉 does: ``timestamp`` (ms) within an hour, and
``sign`` = Base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), else errcode 310000. Its first
answers can be scripted (``failures``) to be refusals. It runs on a thread with its own event loop,
so sync tests, async tests and other processes can all post to it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.postgres import free_port

TOKEN = "test-robot-token"


@dataclass
class Post:
    query: dict[str, str]
    body: dict
    accepted: bool  # answered 200 with errcode 0

    @property
    def content(self) -> str:
        return self.body["text"]["content"]


@dataclass
class Robot:
    secret: str = ""
    # Answers for the first posts, in order, as (HTTP status, JSON body); after them: accepted.
    failures: list[tuple[int, dict]] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="robot", daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/robot/send?access_token={TOKEN}"

    def accepted(self) -> list[Post]:
        with self._lock:
            return [post for post in self.posts if post.accepted]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Post]:
        """The first ``count`` accepted messages, waiting for them."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            assert time.monotonic() < deadline, f"{len(self.accepted())} of {count} messages after {timeout} s: " \
                                                f"{self.posts}"
            time.sleep(0.05)
        return self.accepted()

    def start(self) -> Robot:
        self._thread.start()
        assert self._ready.wait(10), "robot did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the server

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/robot/send", self._take)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = dict(request.query)
        status, answer = 200, {"errcode": 0, "errmsg": "ok"}
        with self._lock:
            if query.get("access_token") != TOKEN:
                answer = {"errcode": 300001, "errmsg": "token is not exist"}
            elif self.secret and not self._signed(query):
                answer = {"errcode": 310000, "errmsg": "sign not match"}
            elif body.get("msgtype") != "text" or not body.get("text", {}).get("content"):
                answer = {"errcode": 40008, "errmsg": "invalid message type"}
            elif self.failures:
                status, answer = self.failures.pop(0)
            self.posts.append(Post(query, body, status == 200 and answer.get("errcode") == 0))
        return web.json_response(answer, status=status)

    def _signed(self, query: dict[str, str]) -> bool:
        try:
            timestamp = int(query["timestamp"])
        except (KeyError, ValueError):
            return False
        if abs(time.time() * 1000 - timestamp) > 3600 * 1000:
            return False
        expected = base64.b64encode(hmac.new(self.secret.encode(), f"{timestamp}\n{self.secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        return hmac.compare_digest(query.get("sign", ""), expected)  # aiohttp has URL-decoded it
