"""``GET /metrics``: the Prometheus text of this process (callcenter/metrics.py), without a login,
for the addresses of ``web.metrics_allow`` only (default: this machine); anyone else gets 403.
Behind a proxy of ``web.trusted_proxies`` the address the proxy saw counts, not the proxy's own:
otherwise a proxy on this machine would open the metrics to the whole internet."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from sqlalchemy.orm import sessionmaker

from callcenter.metrics import Metrics
from callcenter.web.context import SETTINGS, public
from callcenter.web.security import client_address
from core import ticket_counts

METRICS = web.AppKey("metrics", Metrics)
routes = web.RouteTableDef()


def new_metrics(sessions: sessionmaker) -> Metrics:
    """An app's metrics, the open tickets read from its database at each scrape."""
    metrics = Metrics()

    def open_tickets(now):
        with sessions() as session:
            return ticket_counts.open_tickets(session, now)

    metrics.state.open_tickets = open_tickets
    return metrics


def may_scrape(address: str, allowed: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 from a dual-stack socket
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network.strip(), strict=False) for network in allowed)


@routes.get("/metrics")
@public
async def metrics(request: web.Request) -> web.Response:
    if not may_scrape(client_address(request), request.app[SETTINGS].web.metrics_allow):
        return web.Response(status=403, text="metrics are not served to this address (web.metrics_allow)\n")
    # The text format Prometheus asks for (its Accept header), as the client library's own server does.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    # The tickets are counted in the database: off the event loop.
    body = await asyncio.to_thread(encode, request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
