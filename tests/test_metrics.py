"""GET /metrics (issue 16.1) on the real console app and a real database (SQLite file and PostgreSQL):
served without a login to ``web.metrics_allow`` only, behind a trusted proxy by the address the proxy
saw; parsed with the client library's own parser. The voice side's metrics after real calls:
tests/test_metrics_e2e.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from callcenter.metrics import CountedCallLog, Metrics
from callcenter.web.api_metrics import may_scrape
from callcenter.web.app import create_app
from core import desk
from core.desk import Actor, NewTicket
from core.settings import WebSettings
from core.store import utcnow
from core.tickets import Role, Urgency

CLERK = Actor("desk1", Role.FRONTDESK)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def with_web(settings, **web):
    return replace(settings, web=replace(settings.web, **web))


def new_ticket(sessions, settings, urgency: Urgency, reported):
    with sessions() as session, session.begin():
        desk.create_ticket(session, NewTicket(description="厨房漏水", building="3", unit="2", room="1101",
                                              phone="13800138000", urgency=urgency, category="plumbing"),
                           CLERK, reported, settings)


async def test_metrics_are_served_to_this_machine_without_a_login(aiohttp_client, settings, sessions):
    now = utcnow()
    new_ticket(sessions, settings, Urgency.EMERGENCY, now - timedelta(days=3))  # long past its deadline
    new_ticket(sessions, settings, Urgency.NORMAL, now)
    new_ticket(sessions, settings, Urgency.NORMAL, now)
    client = await aiohttp_client(create_app(settings, sessions))  # from 127.0.0.1
    response = await client.get("/metrics", allow_redirects=False)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    scraped = samples(await response.text())
    assert scraped[("callcenter_tickets_open", (("urgency", "emergency"),))] == 1
    assert scraped[("callcenter_tickets_open", (("urgency", "normal"),))] == 2
    assert scraped[("callcenter_tickets_open", (("urgency", "low"),))] == 0
    assert scraped[("callcenter_tickets_overdue", (("urgency", "emergency"),))] == 1
    assert scraped[("callcenter_tickets_overdue", (("urgency", "normal"),))] == 0
    assert scraped[("callcenter_scheduler_owner", ())] == 0  # no scheduler in this app
    assert scraped[("callcenter_asr_model_loaded", ())] == 0
    assert scraped[("process_resident_memory_bytes", ())] > 0  # the client's process metrics
    # Declared before anything happened, so a graph starts at 0 rather than at "no data".
    assert scraped[("callcenter_speech_to_saved_seconds_count", ())] == 0


async def test_another_address_is_refused(aiohttp_client, settings, sessions):
    client = await aiohttp_client(create_app(with_web(settings, metrics_allow=("127.0.0.1",)), sessions))
    assert (await client.get("/metrics")).status == 200
    # From 127.0.0.2, "somebody else": refused, and a forged X-Forwarded-For does not help (not a proxy of ours).
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
            async with other.get(client.make_url("/metrics"), headers=headers, allow_redirects=False) as response:
                assert response.status == 403, headers
                assert "metrics_allow" in await response.text()


async def test_behind_a_trusted_proxy_the_address_it_saw_counts(aiohttp_client, settings, sessions):
    # An HTTPS proxy on this machine: without this, everyone on the internet would be "127.0.0.1".
    app = create_app(with_web(settings, metrics_allow=("127.0.0.1",), trusted_proxies=("127.0.0.1",)), sessions)
    client = await aiohttp_client(app)
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.2"})).status == 403
    # The client wrote its own X-Forwarded-For; the proxy appended who really connected.
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1, 127.0.0.2"})).status == 403
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})).status == 200


def test_who_may_scrape():
    loopback = WebSettings().metrics_allow
    assert may_scrape("127.0.0.1", loopback) and may_scrape("127.9.8.7", loopback) and may_scrape("::1", loopback)
    assert may_scrape("::ffff:127.0.0.1", loopback)  # IPv4 on a dual-stack socket
    assert not may_scrape("10.0.0.5", loopback) and not may_scrape("", loopback) and not may_scrape("x", loopback)
    assert may_scrape("10.1.2.3", ("10.0.0.0/8",)) and not may_scrape("10.1.2.3", ("10.1.2.4",))


def test_a_bad_allow_entry_is_a_clear_error():
    from core.settings import SettingsError, load_settings

    try:
        load_settings(environ={"CALLCENTER_WEB_METRICS_ALLOW": "127.0.0.1, localhost"})
    except SettingsError as error:
        assert "web.metrics_allow" in str(error) and "localhost" in str(error)
    else:
        raise AssertionError("accepted a host name in web.metrics_allow")


def test_each_call_is_counted_once_when_its_record_closes(settings, sessions):
    metrics = Metrics(process=False)
    calls = CountedCallLog(sessions, "node-a", None, metrics)
    record = calls.open(sip_call_id="a", direction="inbound", line="hotline", caller="1", called="2")
    assert samples_of(metrics).get(("callcenter_calls_total", "hotline", "inbound", "completed")) is None
    calls.close(record, "completed")
    calls.close(record, "completed")  # closed twice (a flow's finally): counted once
    calls.record_finished(sip_call_id="", direction="outbound", line="callout", caller="x", called="y",
                          outcome="no_answer", ended_at=utcnow())
    counted = samples_of(metrics)
    assert counted[("callcenter_calls_total", "hotline", "inbound", "completed")] == 1
    assert counted[("callcenter_calls_total", "callout", "outbound", "no_answer")] == 1


def test_apps_in_one_process_keep_their_own_figures(settings, sessions):
    first, second = Metrics(process=False), Metrics(process=False)
    first.followups.labels("done").inc()
    assert first.registry.get_sample_value("callcenter_followups_total", {"status": "done"}) == 1
    assert second.registry.get_sample_value("callcenter_followups_total", {"status": "done"}) is None


def samples_of(metrics: Metrics) -> dict[tuple, float]:
    return {(s.name, *s.labels.values()): s.value for family in metrics.registry.collect()
            for s in family.samples if s.name == "callcenter_calls_total"}


def test_recognisers_are_counted_from_their_making_to_their_release():
    from tests.support.scripted_recognizer import ScriptedRecognizer

    metrics = Metrics(process=False)
    make = metrics.counted_recognizers(lambda grammar: ScriptedRecognizer([(0.1, "final", "漏水")]))
    active = lambda: metrics.registry.get_sample_value("callcenter_asr_streams_active")  # noqa: E731
    first, second = make(None), make(["是", "不是"])
    assert active() == 2
    assert [event.text for event in first.accept(bytes(3200))] == ["漏水"]  # still the recogniser it wraps
    first.release()
    first.release()  # twice: counted once
    assert active() == 1
    second.release()
    assert active() == 0
    assert metrics.counted_recognizers(None) is None  # no speech model: nothing to count


def test_how_full_the_recognisers_are_is_scraped_from_the_nodes_one_count():
    from callcenter.asr.capacity import StreamSlots

    metrics = Metrics(process=False)
    value = metrics.registry.get_sample_value
    assert value("callcenter_asr_slots") is None  # no speech model: no recognisers to count
    slots = metrics.state.stream_slots = StreamSlots(2)
    assert slots.reserve("call-1") and slots.reserve("call-2") and not slots.reserve("call-3")
    slots.note_refused()
    slots.note_without_speech("call-4")
    assert (value("callcenter_asr_slots"), value("callcenter_asr_slots_in_use")) == (2, 2)
    assert value("callcenter_asr_full_refused_total") == 1
    assert value("callcenter_asr_full_without_speech_total") == 1
