"""Guessed logins must not slow the console: an admin's GET /api/tickets while 400 anonymous logins
are tried 20 at a time, against a real ``callcenter serve`` (its own data directory, SQLite).

Two storms: from one address (the login throttle answers 429 after a few, before any hashing),
and from 400 addresses with 400 names (through a trusted proxy's X-Forwarded-For), so every
try that gets through costs a full scrypt: that one shows what the password executor of its own
is for. Prints the admin's latency before and during each storm, and how the logins were answered.

    flock /tmp/cc-heavy.lock python -m bench.login_storm [--logins 400] [--concurrency 20]

Works against an older tree too (``PYTHONPATH=/path/to/old``): unknown settings are ignored there.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.support.postgres import free_port


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   ({len(ms)} requests)"


class Service:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = directory / "data"
        env = os.environ | {"CALLCENTER_DATA_DIR": str(self.data), "CALLCENTER_WEB_PORT": str(self.port),
                            "CALLCENTER_WEB_TRUSTED_PROXIES": "127.0.0.1"}
        env.pop("CALLCENTER_CONFIG", None)
        self.log = open(directory / "serve.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "callcenter.cli", "serve"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{self.url}/api/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"callcenter serve did not answer; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


async def admin_latency(admin: aiohttp.ClientSession, url: str, until: asyncio.Event | None, count: int = 200
                        ) -> list[float]:
    """GET /api/tickets one after another: ``count`` times, or until ``until`` is set."""
    samples = []
    while (until is None and len(samples) < count) or (until is not None and not until.is_set()):
        started = time.perf_counter()
        async with admin.get(f"{url}/api/tickets") as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)  # a person clicking, not a loop hammering
    return samples


async def storm(url: str, logins: int, concurrency: int, many_addresses: bool) -> tuple[collections.Counter, float]:
    answers: collections.Counter = collections.Counter()
    gate = asyncio.Semaphore(concurrency)
    headers = {"Origin": url}

    async def one(n: int, session: aiohttp.ClientSession) -> None:
        forwarded = {"X-Forwarded-For": f"10.{n // 250}.{n % 250}.{random.randint(1, 250)}"} if many_addresses else {}
        name = f"guess{n}" if many_addresses else "admin"
        async with gate, session.post(f"{url}/api/login", json={"username": name, "password": f"pw-{n:08d}"},
                                      headers=headers | forwarded) as response:
            await response.read()
            answers[response.status] += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(one(n, session) for n in range(logins)))
    return answers, time.perf_counter() - started


async def main(logins: int, concurrency: int, tickets: int) -> None:
    with tempfile.TemporaryDirectory(prefix="callcenter-login-storm-") as directory:
        service = Service(Path(directory))
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": service.url}) as admin:
                await service.ready(admin)
                password = (service.data / "initial-admin-password").read_text().strip()
                async with admin.post(f"{service.url}/api/login", json={"username": "admin", "password": password}) as r:
                    assert r.status == 200, await r.text()
                for n in range(tickets):
                    body = {"description": f"厨房水管漏水 {n}", "building": str(1 + n % 9), "unit": "1", "room": "1101",
                            "phone": "13800138000"}
                    async with admin.post(f"{service.url}/api/tickets", json=body) as r:
                        assert r.status == 201, await r.text()
                print(f"callcenter serve on {service.url}, {tickets} tickets; {os.cpu_count()} cores")
                print(f"{'admin GET /api/tickets, quiet':44s} {figures(await admin_latency(admin, service.url, None))}")
                for label, many in (("one address guessing", False), ("400 addresses, 400 names", True)):
                    done = asyncio.Event()
                    watching = asyncio.create_task(admin_latency(admin, service.url, done))
                    answers, seconds = await storm(service.url, logins, concurrency, many)
                    done.set()
                    samples = await watching
                    print(f"{'admin, ' + label:44s} {figures(samples)}")
                    print(f"{'':44s} {logins} logins in {seconds:5.1f} s, {concurrency} at a time: "
                          + ", ".join(f"{count} × {status}" for status, count in sorted(answers.items())))
        finally:
            service.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--tickets", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.logins, args.concurrency, args.tickets))
