"""The two alerts nobody else raises (issue 16.3): a telephone line down for ``alerts.line_down_minutes``
and the scheduled jobs without an owner for ``alerts.no_owner_minutes``, watched by every node
(callcenter/watchdog.py), one alert per outage however many checks and nodes see it, posted to a
robot's webhook (a real HTTP server on 127.0.0.1, tests/support/robot.py).

The line is a real register line of the service's wiring (Telephony) to a registrar on 127.0.0.1
that refuses, then accepts, then refuses again; the lease is core.lease's, on the real database
(SQLite file and PostgreSQL). The watchdogs' clocks are moved by hand, so minutes pass at once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from callcenter.ivr.flows.hotline import HotlineServices
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.service import Telephony
from callcenter.sip.message import SipMessage, build_response
from callcenter.watchdog import Watchdog
from core.calls import CallLog
from core.intake import PhoneDrafts
from core.lease import Lease
from core.store import OutboxAlert, utcnow
from tests.support.sip import LOOPBACK, free_udp_ports
from tests.test_alerts import Clock, robot, send_until_quiet, sender, with_webhook  # noqa: F401 (fixture)
from tests.test_line_health import ReluctantRegistrar


class Pbx(ReluctantRegistrar):
    """A registrar on 127.0.0.1 that refuses (503) until ``awake``, then keeps the binding it granted
    and lists it when a keep-alive query (no Contact) asks, as a real one does: the line stays up."""

    def _run(self):
        bound = ""
        while self.running:
            try:
                data, source = self.sock.recvfrom(8192)
            except OSError:
                continue
            request = SipMessage.parse(data)
            if not self.awake.is_set():
                self.sock.sendto(build_response(request, 503), source)
                continue
            bound = request.value("Contact") or bound
            headers = [f"Contact: {bound};expires=60"] if bound else []
            self.sock.sendto(build_response(request, 200, headers=headers), source)


def outbox(sessions, kind: str | None = None) -> list[OutboxAlert]:
    with sessions() as session:
        alerts = session.scalars(select(OutboxAlert).order_by(OutboxAlert.id))
        return [alert for alert in alerts if kind in (None, alert.kind)]


def wait_until(condition, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


async def test_a_line_down_two_minutes_is_one_alert_and_a_new_outage_another(sessions, settings, robot):
    settings = replace(with_webhook(settings, robot, line_down_minutes=2), node_name="node-b")
    pbx = Pbx()  # refuses (503) until awake
    rtp = free_udp_ports(8)
    lines = ({"name": "hotline", "mode": "trunk", "listen": f"{LOOPBACK}:{free_udp_ports()}", "allow": [LOOPBACK],
              "rtp_ports": [rtp, rtp + 3]},
             {"name": "pbx", "mode": "register", "server": pbx.address, "user": "8001", "flow": "none",
              "listen": f"{LOOPBACK}:{free_udp_ports()}", "rtp_ports": [rtp + 4, rtp + 7], "retry_interval": 1,
              "keepalive_interval": 0.3})
    services = HotlineServices(settings, Prompts(), PhoneDrafts(sessions, settings), CallLog(sessions), None)
    telephony = Telephony(replace(settings, lines=lines), services)
    clock = Clock(utcnow())
    watchdog = Watchdog(settings, sessions, lambda: telephony.lines, clock)
    telephony.start()
    try:
        pbx_line = telephony.line("pbx")
        assert not pbx_line.up
        watchdog.check()  # down from now on
        clock.now += timedelta(minutes=1, seconds=59)
        watchdog.check()
        assert outbox(sessions, "line_down") == []  # not two minutes yet
        clock.now += timedelta(seconds=1)
        for _ in range(5):  # every later check of the same outage: still one alert
            watchdog.check()
            clock.now += timedelta(minutes=1)
        [first] = outbox(sessions, "line_down")
        assert first.kind == "line_down" and "线路 pbx" in first.text and "503" in first.text

        pbx.awake.set()  # the PBX accepts again: the outage is over
        wait_until(lambda: pbx_line.up)
        time.sleep(1.5)  # three keep-alive queries: still up
        assert pbx_line.up
        watchdog.check()
        assert "pbx" not in watchdog.down_since
        pbx.awake.clear()  # and refuses again: the keep-alive query notices, the line goes down
        wait_until(lambda: not pbx_line.up)
        watchdog.check()
        clock.now += timedelta(minutes=1)
        watchdog.check()
        assert len(outbox(sessions, "line_down")) == 1  # the new outage is one minute old
        clock.now += timedelta(minutes=1)
        watchdog.check()
        alerts = outbox(sessions, "line_down")
        assert len(alerts) == 2 and alerts[0].key != alerts[1].key
        assert all("hotline" not in alert.key for alert in alerts)  # the trunk line was up all along

        await send_until_quiet(sender(settings, sessions, clock), clock=clock, rounds=2)
        posts = [post for post in robot.wait_for(3) if "线路故障" in post.content]  # and: no scheduler owner
        assert len(posts) == 2 and all("节点 node-b 的线路 pbx" in post.content for post in posts)
    finally:
        telephony.stop()
        pbx.stop()


async def test_no_scheduler_owner_for_five_minutes_is_one_alert_from_however_many_nodes(sessions, settings, robot):
    settings = with_webhook(settings, robot, no_owner_minutes=5)
    clock = Clock(utcnow())
    holder = Lease(sessions, "scheduler", "node-a/1", 30, clock=clock)
    watchdogs = [Watchdog(replace(settings, node_name=f"node-{n}"), sessions, lambda: (), clock) for n in "abc"]
    assert holder.acquire().held
    clock.now += timedelta(minutes=10)
    assert holder.acquire().held  # renewed: held all along
    for watchdog in watchdogs:
        watchdog.check()
    assert outbox(sessions) == []

    holder.release()  # node-a stops; nobody else may own the jobs (scheduler.owner = false)
    released = clock.now
    clock.now += timedelta(minutes=4, seconds=59)
    for watchdog in watchdogs:
        watchdog.check()
    assert outbox(sessions) == []
    for _ in range(3):
        clock.now += timedelta(seconds=30)
        for watchdog in watchdogs:  # all three notice, every check
            watchdog.check()
    [alert] = outbox(sessions)
    assert alert.kind == "no_scheduler_owner" and alert.key == f"scheduler:{released.isoformat()}"

    await send_until_quiet(sender(settings, sessions, clock, "node-a"), sender(settings, sessions, clock, "node-b"),
                           clock=clock, rounds=2)
    [post] = robot.wait_for(1)
    assert post.content.startswith("【报修热线·定时任务无人执行】")
    assert len(robot.posts) == 1

    assert holder.acquire().held  # back: a later vacancy is another alert
    clock.now += timedelta(seconds=5)
    for watchdog in watchdogs:
        watchdog.check()
    assert len(outbox(sessions)) == 1


async def test_a_lease_nobody_ever_held_counts_from_the_first_look(sessions, settings, robot):
    settings = with_webhook(settings, robot, no_owner_minutes=5)
    clock = Clock(utcnow())
    first, second = (Watchdog(replace(settings, node_name=name), sessions, lambda: (), clock) for name in ("a", "b"))
    first.check()  # every node is scheduler.owner = false: nobody takes the lease
    started = clock.now
    clock.now += timedelta(minutes=3)
    second.check()
    assert outbox(sessions) == []
    clock.now += timedelta(minutes=2)
    second.check()
    first.check()
    [alert] = outbox(sessions)
    assert alert.key == f"scheduler:{started.isoformat()}"
