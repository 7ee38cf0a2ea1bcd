"""Wiring: configuration -> database -> web console (and, as they arrive, the voice parts)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timezone

from aiohttp import web
from sqlalchemy import select

from callcenter.asr.model import ModelError, broken_status, load_model, model_status
from callcenter.ivr.flows.hotline import HotlineServices
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.service import Telephony, recognizer_factory
from callcenter.web.app import create_app
from callcenter.web.context import HEALTH
from core import migrate
from core.accounts import add_user
from core.calls import CallLog
from core.intake import PhoneDrafts
from core.settings import Settings
from core.store import User, make_session_factory

log = logging.getLogger("callcenter")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def ensure_first_admin(settings: Settings, sessions) -> None:
    """On a first start with no accounts, make ``admin`` with a random password kept in a
    file only the service user can read, so nobody ships or guesses a default password."""
    with sessions() as session, session.begin():
        if session.scalar(select(User.id).limit(1)) is not None:
            return
        password = secrets.token_urlsafe(12)
        add_user(session, "admin", password, "admin", datetime.now(timezone.utc), "管理员")
    path = settings.data_dir / "initial-admin-password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    log.warning("first start: log in as 'admin' with the password in %s, then change it", path)


def load_speech(settings: Settings):
    """The shared speech model, or None; either way one plain log line says which and why."""
    status = model_status(settings.asr.model_path or None, settings.data_dir)
    if not status.ready:
        log.warning("%s", status.message)
        return status, None
    try:
        model = load_model(status.path)
    except ModelError as error:
        status = broken_status(status.path, str(error))
        log.error("%s", status.message)
        return status, None
    log.info("%s", status.message)
    return status, model


def build_app(settings: Settings) -> web.Application:
    engine = migrate.open_database(settings.database_url)
    sessions = make_session_factory(engine)
    ensure_first_admin(settings, sessions)
    app = create_app(settings, sessions)
    speech, model = load_speech(settings)
    app[HEALTH]["asr"] = lambda: {"state": speech.state, "message": speech.message}
    hotline = HotlineServices(settings=settings, prompts=Prompts(), drafts=PhoneDrafts(sessions, settings),
                              calls=CallLog(sessions), new_recognizer=recognizer_factory(model, settings))
    telephony = Telephony(settings, hotline)
    app[HEALTH]["lines"] = telephony.health

    async def run_telephony(_app):
        await asyncio.to_thread(telephony.start)
        yield
        await asyncio.to_thread(telephony.stop)

    app.cleanup_ctx.append(run_telephony)

    async def dispose_engine(_app):
        engine.dispose()

    app.on_cleanup.append(dispose_engine)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    host = host or settings.web.host
    port = port or settings.web.port
    log.info("data directory %s, database %s", settings.data_dir,
             settings.database_url.split("@")[-1])  # never log a password from the URL
    app = build_app(settings)
    log.info("web console on http://%s:%d/", host, port)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
