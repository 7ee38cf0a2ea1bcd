"""Benchmark: the console with 10,000 tickets in the database.

Prints the time to seed, then latency (median and 95th percentile over repeated requests,
through real HTTP on loopback) of the page and the API calls the front desk makes all day.

    .venv/bin/python bench/desk.py [--tickets 10000] [--database-url URL] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.web.app import create_app  # noqa: E402
from core import desk, migrate, moves  # noqa: E402
from core.accounts import add_user  # noqa: E402
from core.base import Actor  # noqa: E402
from core.desk import NewTicket  # noqa: E402
from core.settings import DatabaseSettings, load_settings  # noqa: E402
from core.store import Engineer, make_engine, make_session_factory  # noqa: E402
from core.tickets import Role, Status, TransitionRequest, Urgency  # noqa: E402

CATEGORIES = ["plumbing", "electrical", "doors_windows", "structure", "appliance", "elevator"]


def seed(sessions, settings, count: int) -> float:
    """``count`` tickets over the last 60 days, in a realistic mix of states."""
    rng = random.Random(7)
    clerk = Actor("bench", Role.FRONTDESK)
    start = time.perf_counter()
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        engineers = [Engineer(name=f"工程师{i}", phone=f"1380000{i:04d}") for i in range(20)]
        session.add_all(engineers)
        session.flush()
        add_user(session, "bench", "bench-password", "manager", now)
    batch = 500
    for first in range(0, count, batch):
        with sessions() as session, session.begin():
            for i in range(first, min(first + batch, count)):
                reported = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
                ticket = desk.create_ticket(session, NewTicket(
                    description=f"第{i}号测试报修：厨房水龙头漏水", phone=f"139{i:08d}",
                    building=str(rng.randrange(1, 31)), unit=str(rng.randrange(1, 5)),
                    room=f"{rng.randrange(1, 33)}0{rng.randrange(1, 5)}",
                    category=rng.choice(CATEGORIES),
                    urgency=Urgency.EMERGENCY if rng.random() < 0.05 else Urgency.NORMAL,
                ), clerk, reported, settings)
                if rng.random() < 0.8:
                    steps = [TransitionRequest(Status.DISPATCHED, engineer_id=rng.choice(engineers).id),
                             TransitionRequest(Status.ACCEPTED), TransitionRequest(Status.ON_SITE),
                             TransitionRequest(Status.COMPLETED, actual_item="更换")]
                    for minutes, step in enumerate(steps[: rng.randrange(1, 5)], start=1):
                        moves.move_ticket(session, ticket, step, clerk, reported + timedelta(minutes=15 * minutes),
                                        settings)
    return time.perf_counter() - start


async def measure(base: str, repeat: int) -> list[tuple[str, list[float]]]:
    results = []
    # unsafe=True: accept cookies from an IP address host (127.0.0.1); Origin: as the console's pages send it
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     headers={"Origin": base.rstrip("/")}) as client:
        await client.post("/api/login", json={"username": "bench", "password": "bench-password"})
        today = datetime.now().date()
        created = await (await client.post("/api/tickets", json={
            "description": "基准测试", "building": "1", "unit": "1", "room": "101"})).json()
        cases = [
            ("GET /desk (page HTML)", "GET", "/desk", None),
            ("GET /api/tickets (queue, 200 rows)", "GET", "/api/tickets", None),
            ("GET /api/tickets?overdue=true", "GET", "/api/tickets?overdue=true", None),
            ("GET /api/tickets?building=7&status=received,dispatched", "GET",
             "/api/tickets?building=7&status=received,dispatched", None),
            ("GET /api/tickets?q=13900000042 (search)", "GET", "/api/tickets?q=13900000042", None),
            ("GET /api/tickets/{id} (with history)", "GET", f"/api/tickets/{created['id']}", None),
            ("POST /api/tickets", "POST", "/api/tickets",
             {"description": "基准测试", "building": "1", "unit": "1", "room": "101"}),
            ("POST /api/tickets/{id}/notes", "POST", f"/api/tickets/{created['id']}/notes", {"note": "基准"}),
            ("POST /api/triage (the form reads a description)", "POST", "/api/triage",
             {"text": "三号楼二单元1101厨房水管爆了，水漫出来了，明天上午来，电话13812345678"}),
            # The slowest text of its length found: 2000 characters of keywords between blanks.
            ("POST /api/triage (2000 characters, all keywords)", "POST", "/api/triage", {"text": " 水 管" * 500}),
            ("GET /api/reports/tickets (60 days)", "GET",
             f"/api/reports/tickets?from={today - timedelta(days=60)}&to={today}", None),
        ]
        for label, method, path, body in cases:
            timings = []
            for _ in range(repeat):
                begin = time.perf_counter()
                async with client.request(method, path, json=body) as response:
                    await response.read()
                    assert response.status < 300, (path, response.status, await response.text())
                timings.append((time.perf_counter() - begin) * 1000)
            results.append((label, timings))
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    settings = load_settings(environ={"CALLCENTER_DATA_DIR": str(workdir)})
    if args.database_url:
        settings = replace(settings, database=DatabaseSettings(url=args.database_url))
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    seconds = seed(sessions, settings, args.tickets)
    print(f"database: {engine.url.get_backend_name()}; seeded {args.tickets} tickets in {seconds:.1f} s")
    runner = web.AppRunner(create_app(settings, sessions))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    results = await measure(f"http://127.0.0.1:{port}", args.repeat)
    print(f"{'request':58} {'median ms':>10} {'p95 ms':>8}")
    for label, timings in results:
        p95 = statistics.quantiles(timings, n=20)[-1]
        print(f"{label:58} {statistics.median(timings):10.1f} {p95:8.1f}")
    await runner.cleanup()
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
