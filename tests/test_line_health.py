"""/api/health says what each telephone line is doing, and is 503 "degraded" while any configured line
is not up, so that a load balancer or a monitor notices a hotline that cannot take calls.

The service's own wiring (Telephony from [[lines]] settings) with a register line whose registrar
(a socket on 127.0.0.1) refuses, then accepts; and a trunk line beside it that is up all along.
(A registrar that does not answer at all: tests/test_sip_hostile_e2e.py.)
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest

from callcenter.ivr.flows.hotline import HotlineServices
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.service import Telephony
from callcenter.sip.message import SipMessage, build_response
from callcenter.web.app import create_app
from callcenter.web.context import HEALTH
from core.calls import CallLog
from core.intake import PhoneDrafts
from tests.conftest import STAFF_PASSWORD, console_client
from tests.support.sip import LOOPBACK, free_udp_ports


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'callcenter.db'}"


class ReluctantRegistrar:
    """Answers 503 until ``awake``; then every REGISTER 200 (with the Contact it was sent)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.1)
        self.awake, self.running = threading.Event(), True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def _run(self):
        while self.running:
            try:
                data, source = self.sock.recvfrom(8192)
            except OSError:
                continue
            request = SipMessage.parse(data)
            if self.awake.is_set():
                contact = request.value("Contact") or "<sip:pbx@127.0.0.1:1>"
                self.sock.sendto(build_response(request, 200, headers=[f"Contact: {contact};expires=60"]), source)
            else:
                self.sock.sendto(build_response(request, 503), source)

    def stop(self):
        self.running = False
        self.thread.join(1)
        self.sock.close()


async def test_health_is_degraded_until_every_line_is_up(aiohttp_client, settings, sessions, people):
    pbx = ReluctantRegistrar()
    rtp = free_udp_ports(8)
    lines = ({"name": "hotline", "mode": "trunk", "listen": f"{LOOPBACK}:{free_udp_ports()}", "allow": [LOOPBACK],
              "rtp_ports": [rtp, rtp + 3]},
             {"name": "pbx", "mode": "register", "server": pbx.address, "user": "8001", "flow": "none",
              "listen": f"{LOOPBACK}:{free_udp_ports()}", "rtp_ports": [rtp + 4, rtp + 7], "retry_interval": 1,
              "keepalive_interval": 0})
    services = HotlineServices(settings, Prompts(), PhoneDrafts(sessions, settings), CallLog(sessions), None)
    telephony = Telephony(replace(settings, lines=lines), services)
    app = create_app(settings, sessions)
    app[HEALTH]["telephony"] = telephony.health  # as callcenter/app.py wires it
    anonymous = await aiohttp_client(app)
    client = await console_client(aiohttp_client, app)  # staff see why; anyone sees the status
    assert (await client.post("/api/login", json={"username": "desk", "password": STAFF_PASSWORD})).status == 200
    started = time.monotonic()
    telephony.start()  # the register line does not come up: said in the log, nothing else stops
    try:
        assert time.monotonic() - started < 5  # nobody waits for the refusing registrar
        response = await client.get("/api/health")
        body = await response.json()
        assert response.status == 503 and body["status"] == "degraded" and body["database"] == "ok"
        response = await anonymous.get("/api/health")
        assert (response.status, await response.json()) == (503, {"status": "degraded"})
        pbx_line, hotline = body["telephony"]["lines"]["pbx"], body["telephony"]["lines"]["hotline"]
        assert (pbx_line["state"], hotline["state"], body["telephony"]["up"]) == ("registering", "listening", False)
        assert "503 Service Unavailable" in pbx_line["error"] and pbx_line["since"]
        assert hotline["error"] is None and hotline["hostile_packets"] == 0

        pbx.awake.set()  # the PBX comes back
        deadline = time.monotonic() + 5
        while telephony.line("pbx").status != "registered" and time.monotonic() < deadline:
            time.sleep(0.05)
        response = await client.get("/api/health")
        body = await response.json()
        assert response.status == 200 and body["status"] == "ok" and body["telephony"]["up"]
        assert body["telephony"]["lines"]["pbx"]["state"] == "registered"
    finally:
        telephony.stop()
        pbx.stop()
