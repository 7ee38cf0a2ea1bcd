"""The web console's application factory."""

from __future__ import annotations

import collections
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy.orm import sessionmaker

from callcenter.web import (
    api_admin,
    api_audit,
    api_callbacks,
    api_callout,
    api_calls,
    api_consent,
    api_followups,
    api_incidents,
    api_metrics,
    api_roster,
    api_tickets,
    api_triage,
    api_watch,
    auth,
    live,
    pages,
    security,
)
from callcenter.web.context import CLOCK, HEALTH, SESSIONS, SETTINGS, WAKE_CALLOUTS, system_clock
from callcenter.web.passwords import PASSWORDS, PasswordWorker
from core.settings import Settings
from core.triage import Triage


def create_app(settings: Settings, sessions: sessionmaker,
               clock: Callable[[], datetime] = system_clock) -> web.Application:
    """The console on an open database; the caller owns the engine (see callcenter.app)."""
    app = web.Application(middlewares=[security.guard_middleware, auth.errors_middleware, auth.auth_middleware],
                          client_max_size=1024**2)
    app.on_response_prepare.append(security.add_headers)
    app[SETTINGS] = settings
    app[security.ALLOWED_HOSTS] = settings.web.allowed_hosts()
    app[PASSWORDS] = PasswordWorker()
    app[auth.CHECKING] = collections.Counter()
    app[SESSIONS] = sessions
    app[CLOCK] = clock
    app[HEALTH] = {}
    app[WAKE_CALLOUTS] = lambda: None
    app[api_metrics.METRICS] = api_metrics.new_metrics(sessions)  # its own registry; build_app wires the voice
    app[api_consent.CONSENT_CALLS] = None  # set by callcenter.app when this node can dial
    app[api_tickets.WHO_IS_COMING] = lambda ticket_id: None  # likewise
    app[api_triage.TRIAGE] = Triage.for_settings(settings)  # a bad triage.words_file raises here
    app[live.FEED] = live.ChangeFeed(app)
    for table in (auth.routes, api_tickets.routes, api_calls.routes, api_admin.routes, api_audit.routes, live.routes,
                  api_roster.routes, api_callout.routes, api_followups.routes, api_triage.routes,
                  api_callbacks.routes, api_metrics.routes, api_watch.routes,
                  api_incidents.routes, api_consent.routes, pages.routes):
        app.add_routes(table)
    app.router.add_static("/static/", pages.STATIC, append_version=True)
    app.cleanup_ctx.append(live.feed_context)
    app.on_shutdown.append(live.close_streams)

    async def close_passwords(_app):
        app[PASSWORDS].close()

    app.on_cleanup.append(close_passwords)
    return app
