"""Sends the group-chat alerts ``core.alerts`` keeps in its outbox to a 企业微信 or 钉钉 group robot.

Every node runs one sender on its event loop (``serve``); they share the outbox, and a claim in
the database decides which node sends an alert. A send is one HTTPS POST of
``{"msgtype": "text", "text": {"content": ...}}``, the text message both robots take. They
answer HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; any other status or errcode is a
failure, retried later with a doubling wait (``core.alerts.failed``). Each send and each failure
is logged; the robot's URL is logged without its query string, which holds its key.

钉钉 robots secured by 加签 (``alerts.webhook_secret``, the ``SEC...`` string) want ``timestamp``
(milliseconds) and ``sign`` query parameters: sign = Base64(HMAC-SHA256(key = secret,
message = f"{timestamp}\\n{secret}")), URL-encoded; the timestamp must be within an hour of
钉钉's clock. See 钉钉 开放平台, 自定义机器人安全设置 "加签".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote_plus, urlsplit, urlunsplit

import aiohttp
from sqlalchemy.orm import sessionmaker

from core import alerts
from core.settings import AlertSettings, Settings

log = logging.getLogger("callcenter.alerts")

POLL_SECONDS = 2.0
PURGE_EVERY_SECONDS = 3600


class SendError(Exception):
    """The robot did not take the message; the text says why (status, errcode, errmsg)."""


def robot_message(text: str) -> dict:
    return {"msgtype": "text", "text": {"content": text}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query parameter of a 钉钉 加签 robot, URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    """The URL to post to: as configured, plus ``&timestamp=…&sign=…`` when a secret is set."""
    if not secret:
        return url
    timestamp_ms = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    joiner = "&" if urlsplit(url).query else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def shown_url(url: str) -> str:
    """The URL fit for a log line: the robot's key (in the query) left out."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def post(client: aiohttp.ClientSession, settings: AlertSettings, text: str) -> None:
    """Post one text message to the robot; SendError says why it was not taken."""
    url = signed_url(settings.webhook_url, settings.webhook_secret)
    try:
        async with client.post(url, json=robot_message(text),
                               timeout=aiohttp.ClientTimeout(total=alerts.SEND_TIMEOUT_SECONDS)) as response:
            body = await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        reason = str(error).replace(url, shown_url(url)).replace(settings.webhook_url, shown_url(url))
        raise SendError(f"{type(error).__name__}: {reason}") from None
    if not 200 <= response.status < 300:
        raise SendError(f"HTTP {response.status}: {body[:200]}")
    try:
        answer = json.loads(body)
    except ValueError:
        return  # a relay that answers in plain text: its 2xx is all we get
    if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
        raise SendError(f"errcode {answer.get('errcode')}: {answer.get('errmsg', '')}")


async def send_now(settings: AlertSettings, text: str) -> None:
    """One message, straight away (``callcenter alerts test``)."""
    async with aiohttp.ClientSession(trust_env=True) as client:
        await post(client, settings, text)


class AlertSender:
    """This node's sender: claims due alerts, posts them, records the outcome; until stopped."""

    def __init__(self, settings: Settings, sessions: sessionmaker,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 poll_seconds: float = POLL_SECONDS):
        self.settings, self.sessions, self.clock, self.poll_seconds = settings, sessions, clock, poll_seconds
        self.node = settings.node_name
        self._purged_at = 0.0

    async def run(self) -> None:
        where = shown_url(self.settings.alerts.webhook_url)
        log.info("group-chat alerts go to %s (node %s sends its share)", where, self.node)
        async with aiohttp.ClientSession(trust_env=True) as client:
            while True:
                try:
                    await self.send_due(client)
                    await self._purge_now_and_then()
                except Exception:  # the database away for a moment: the alerts wait there
                    log.exception("alerts: cannot read the outbox; trying again in %g s", self.poll_seconds)
                await asyncio.sleep(self.poll_seconds)

    async def send_due(self, client: aiohttp.ClientSession) -> int:
        """Send every alert due now that this node wins; how many went out."""
        sent = 0
        for alert_id in await asyncio.to_thread(self._due):
            claimed = await asyncio.to_thread(self._claim, alert_id)
            if claimed is not None:
                sent += await self._send(client, claimed)
        return sent

    async def _send(self, client: aiohttp.ClientSession, alert: alerts.Claimed) -> int:
        where = shown_url(self.settings.alerts.webhook_url)
        try:
            await post(client, self.settings.alerts, alert.text)
        except SendError as error:
            retry = await asyncio.to_thread(self._failed, alert.id, str(error))
            of = f"{alert.attempt} of {self.settings.alerts.max_attempts}"
            if retry is None:
                log.error("alert %d (%s) to %s failed (attempt %s), given up: %s", alert.id, alert.kind, where, of,
                          error)
            else:
                log.warning("alert %d (%s) to %s failed (attempt %s): %s; again at %s", alert.id, alert.kind,
                            where, of, error, retry.isoformat(timespec="seconds"))
            return 0
        await asyncio.to_thread(self._sent, alert.id)
        log.info("alert %d (%s) sent to %s (attempt %d)", alert.id, alert.kind, where, alert.attempt)
        return 1

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
            self._purged_at = time.monotonic()
            await asyncio.to_thread(self._in_transaction, lambda session: alerts.purge(session, self.clock()))

    # -- the database, on a worker thread

    def _in_transaction(self, work):
        with self.sessions() as session, session.begin():
            return work(session)

    def _due(self) -> list[int]:
        with self.sessions() as session:
            return alerts.due(session, self.clock())

    def _claim(self, alert_id: int) -> alerts.Claimed | None:
        return self._in_transaction(lambda session: alerts.claim(session, alert_id, self.node, self.clock()))

    def _sent(self, alert_id: int) -> None:
        self._in_transaction(lambda session: alerts.sent(session, alert_id, self.clock()))

    def _failed(self, alert_id: int, error: str) -> datetime | None:
        return self._in_transaction(
            lambda session: alerts.failed(session, alert_id, error, self.clock(), self.settings))
