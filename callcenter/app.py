"""Wiring: configuration -> database -> web console (and, as they arrive, the voice parts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from callcenter.alert_sender import AlertSender
from callcenter.asr.capacity import StreamSlots, max_streams_for
from callcenter.asr.model import ModelError, broken_status, load_model, model_status
from callcenter.asr.stream import Recognizer
from callcenter.ivr.bridge import Meetings
from callcenter.ivr.callout_runner import CalloutRunner
from callcenter.ivr.consent_call import ConsentCalls, ConsentCallServices
from callcenter.ivr.flows.hotline import HotlineServices
from callcenter.ivr.flows.survey import SurveyServices
from callcenter.ivr.followup_dialler import FollowupServices
from callcenter.ivr.incident_callback import dial_outbound
from callcenter.ivr.notice_calls import NoticeServices
from callcenter.ivr.prompts import Prompts
from callcenter.ivr.service import Telephony, recognizer_factory
from callcenter.ivr.who_is_coming import CallBack
from callcenter.metrics import NO_METRICS, CountedCallLog, Metrics
from callcenter.watchdog import Watchdog
from callcenter.web.api_consent import CONSENT_CALLS
from callcenter.web.api_metrics import METRICS
from callcenter.web.api_tickets import WHO_IS_COMING
from callcenter.web.app import create_app
from callcenter.web.context import HEALTH, WAKE_CALLOUTS
from core import migrate
from core.accounts import add_user
from core.call_pool import DialFollowup
from core.callout_service import CallOutService
from core.followup_service import FollowUpCalls
from core.intake import PhoneDrafts
from core.jobs import Jobs
from core.nodes import NodeHeartbeat
from core.notice_service import NoticeCallService
from core.settings import Settings
from core.store import User, make_session_factory
from core.triage import Triage
from core.watch_jobs import NoticeCalls

log = logging.getLogger("callcenter")


def ensure_first_admin(settings: Settings, sessions) -> None:
    """On a first start with no accounts, make ``admin`` with a random password kept in a
    file only the service user can read, so nobody ships or guesses a default password."""
    try:
        with sessions() as session, session.begin():
            if session.scalar(select(User.id).limit(1)) is not None:
                return
            password = secrets.token_urlsafe(12)
            add_user(session, "admin", password, "admin", datetime.now(UTC), "管理员")
    except IntegrityError:  # another node starting at the same moment made it first
        log.info("the first admin account was made by another node")
        return
    path = settings.data_dir / "initial-admin-password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    log.warning("first start: log in as 'admin' with the password in %s, then change it", path)


def load_speech(settings: Settings):
    """The shared speech model, or None; either way one plain log line says which and why."""
    status = model_status(settings.asr.model_path or None, settings.data_dir)
    if not status.ready or status.path is None:  # ready: a path
        # Without a hotline line nothing listens to callers: an optional part not installed, no warning.
        answers_calls = any(line.get("flow", "hotline") == "hotline" for line in settings.lines)
        log.log(logging.WARNING if answers_calls else logging.INFO, "%s", status.message)
        return status, None
    try:
        model = load_model(status.path)
    except ModelError as error:
        status = broken_status(status.path, str(error))
        log.error("%s", status.message)
        return status, None
    log.info("%s", status.message)
    return status, model


@dataclass
class Voice:
    """The telephone side of one process: the lines (hotline flow on each), the call-out runner and
    the follow-up dialler the scheduler hands due follow-ups to (None without ``followup.line``)."""

    telephony: Telephony
    callouts: CalloutRunner
    dial_followup: DialFollowup | None = None  # a follow-up's id, or an incident's call-back
    notices: NoticeCalls | None = None  # a complaint's manager ring, a late arrival's apology (core.watch_jobs)
    consent_calls: ConsentCalls | None = None  # 有偿服务电话确认, on followup.line too

    def start(self) -> None:
        self.telephony.start()
        self.callouts.start()

    def stop(self) -> None:
        self.callouts.stop()  # no more rings; one under way is called off
        if self.consent_calls is not None:
            self.consent_calls.executor.shutdown(wait=False, cancel_futures=True)  # hung up with the lines below
        self.telephony.stop()  # hangs up every call, an engineer still listening included
        self.callouts.join(5.0)  # each ring's outcome is stored before the threads end


def build_voice(settings: Settings, sessions, new_recognizer: Callable[[list[str] | None], Recognizer] | None,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                node_run_id: int | None = None, metrics: Metrics = NO_METRICS) -> Voice:
    prompts, meetings = Prompts(), Meetings()
    # Every call record says which node took it; every call is counted when its record closes.
    calls = CountedCallLog(sessions, settings.node_name, node_run_id, metrics)
    # The one count of this node's recogniser streams, for the hotline's and the follow-ups' calls.
    streams = StreamSlots(max_streams_for(settings.asr.max_streams)) if new_recognizer is not None else None
    new_recognizer = metrics.counted_recognizers(new_recognizer)
    metrics.state.stream_slots = streams
    drafts = PhoneDrafts(sessions, settings)
    hotline = HotlineServices(settings=settings, prompts=prompts, drafts=drafts,
                              calls=calls, new_recognizer=new_recognizer, meetings=meetings, clock=clock,
                              streams=streams, metrics=metrics)
    telephony = Telephony(settings, hotline)
    callouts = CalloutRunner(settings, CallOutService(sessions, settings), calls, prompts, meetings, telephony.line,
                             clock)
    callouts.metrics = metrics
    if settings.followup.line:  # a caller no longer on the line is phoned with who is coming
        callouts.call_back = CallBack(settings, drafts.tickets, prompts, calls, telephony.line, clock).start
    hotline.on_emergency = callouts.answer_emergency  # an emergency word on the hotline rings the chain
    dial_followup = consent_calls = None
    if settings.followup.line:
        survey = SurveyServices(settings, prompts, hotline.calls, new_recognizer, clock, streams)
        # Follow-ups and incident call-backs (「已恢复供水」) share the pool and the line.
        followups = FollowupServices(survey, FollowUpCalls(sessions, settings), drafts.incidents,
                                     telephony.line, metrics)
        dial_followup = partial(dial_outbound, services=followups)
        consent_calls = ConsentCalls(ConsentCallServices(settings, prompts, drafts.tickets, calls, telephony.line,
                                                         new_recognizer, clock))
    notices = NoticeServices(settings, NoticeCallService(sessions, settings), prompts, calls, telephony.line, callouts,
                             clock).as_notice_calls()
    return Voice(telephony, callouts, dial_followup, notices, consent_calls)


def build_app(settings: Settings) -> web.Application:
    Triage.for_settings(settings)  # a bad triage.words_file stops the start, not the first call
    engine = migrate.open_database(settings.database_url)
    sessions = make_session_factory(engine)
    ensure_first_admin(settings, sessions)
    app = create_app(settings, sessions)
    speech, model = load_speech(settings)
    app[HEALTH]["asr"] = lambda: {"state": speech.state, "message": speech.message}
    # This process among the nodes sharing the database: registered before it takes any call.
    heartbeat = NodeHeartbeat(sessions, settings.node_name, settings.cluster, settings.recordings_dir)
    heartbeat.register()
    app[HEALTH]["node"] = lambda: {"name": settings.node_name, "run": heartbeat.run_id,
                                   "recordings_not_shared_with": heartbeat.unshared}

    async def run_heartbeat(_app):
        heartbeat.start()
        yield
        await asyncio.to_thread(heartbeat.stop)  # after the calls are hung up (cleanup runs in reverse)

    app.cleanup_ctx.append(run_heartbeat)
    metrics = app[METRICS]
    voice = build_voice(settings, sessions, recognizer_factory(model, settings), node_run_id=heartbeat.run_id,
                        metrics=metrics)
    telephony = voice.telephony
    metrics.state.lines = lambda: telephony.lines
    metrics.state.asr_model_loaded = lambda: model is not None
    app[HEALTH]["telephony"] = telephony.health  # {"up": false, ...} makes /api/health degraded (503)
    app[WAKE_CALLOUTS] = voice.callouts.wake  # the desk's 紧急派单 and its stop ring (or hang up) at once
    if voice.consent_calls is not None:
        app[CONSENT_CALLS] = voice.consent_calls.place
    app[WHO_IS_COMING] = voice.callouts.tell_who_is_coming  # an emergency accepted on the console

    async def run_telephony(_app):
        await asyncio.to_thread(voice.start)
        yield
        await asyncio.to_thread(voice.stop)

    app.cleanup_ctx.append(run_telephony)
    jobs = Jobs(settings, engine, dial_followup=voice.dial_followup, notice_calls=voice.notices)
    app[HEALTH]["scheduler"] = jobs.health
    metrics.state.scheduler_owner = lambda: jobs.lease_held

    async def run_jobs(_app):
        await asyncio.to_thread(jobs.start)  # takes part in the scheduler's election unless scheduler.owner is false
        yield
        await asyncio.to_thread(jobs.stop)

    app.cleanup_ctx.append(run_jobs)

    if settings.alerts.webhook_url:
        app.cleanup_ctx.append(partial(run_alert_sender, AlertSender(settings, sessions)))
        app.cleanup_ctx.append(partial(run_watchdog, Watchdog(settings, sessions, lambda: telephony.lines)))
    else:  # optional: said once
        log.info("no alerts.webhook_url configured: no alerts to a group chat")

    async def dispose_engine(_app):
        engine.dispose()

    app.on_cleanup.append(dispose_engine)
    return app


async def run_alert_sender(sender: AlertSender, _app):
    """Every node sends its share of the outbox (core.alerts) while it runs."""
    task = asyncio.create_task(sender.run(), name="alert sender")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_watchdog(watchdog: Watchdog, _app):
    """Lines down and the scheduled jobs without an owner, alerted once per outage (callcenter/watchdog.py)."""
    task = asyncio.create_task(watchdog.run(), name="watchdog")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    host = host or settings.web.host
    port = port or settings.web.port
    log.info("data directory %s, database %s", settings.data_dir,
             settings.database_url.split("@")[-1])  # never log a password from the URL
    app = build_app(settings)
    log.info("web console on http://%s:%d/", host, port)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
