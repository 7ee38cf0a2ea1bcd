"""Emergency call-outs end to end (issue 7): a resident's emergency on the hotline, or the front
desk's 紧急派单, rings the engineers on duty through a PBX (Kamailio) on 127.0.0.1. The engineers'
phones are SIPp: they answer and press 1 or 2 (RFC 4733), never answer, or are busy (486).

What the desk would check is read from the database: the ticket, its history, the call-out's
attempts. What a person would hear is checked at their phone: the SDP of every SIPp phone names
a socket of the test as its media address, so "the engineer heard the caller's words" means those
very samples (through G.711) arrived at the engineer's phone.

The service is the one ``callcenter serve`` builds (``callcenter.app.build_voice``): a hotline
trunk line, an outbound line registered at the PBX, the call-out runner; in (e) also the real
``callcenter serve`` process, killed. Speech: the scripted stand-in recogniser of
tests/support/hotline_caller.py, timed from the caller's real speech. Each link rings 3 s.

SIPp plays pcaps through a raw socket: run as root. Missing tools skip these tests, or fail them
with CALLCENTER_REQUIRE_SIP=1.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from callcenter.app import Voice, build_voice
from callcenter.metrics import Metrics
from callcenter.sip import uri as sip_uri
from core import callouts, desk, migrate, roster_store
from core.base import Actor
from core.desk import NewTicket
from core.dispatch import ANSWERED_CALL_SECONDS
from core.settings import DatabaseSettings, load_settings
from core.store import CallOut, CallOutAttempt, CallRecord, Engineer, Resident, Ticket, TicketEvent, make_engine, make_session_factory
from core.tickets import Channel, Role, Urgency
from tests.support.e2e import db_url, located, one, plain, prompts, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript, SpokenScripts, read_recording
from tests.support.postgres import free_port
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, REQUIRE_SIP, Kamailio, Sipp, SippRun, free_udp_ports, kamailio, require, sipp  # noqa: F401

TEST_TIME_LIMIT = 90
RING = 3  # seconds each engineer's phone rings (callout.ring_seconds)
RESIDENT = dict(phone="13800138000", name="王阿姨", building="3", unit="2", room="1101")
NEIGHBOUR = dict(phone="13700137000", name="李先生", building="3", unit="2", room="1201")
BURST = "厨房水管爆了，水喷得到处都是"
ENGINEER_SAYS = "我是维修师傅，马上就到"
CALLER_SAYS = "好的，我在楼下等您"
CLERK = Actor("desk1", Role.FRONTDESK)


# ---------------------------------------------------------------- phones, the site, the service

@dataclass
class Phone:
    """Someone's phone: a SIPp run that the PBX reaches as ``contact``; what the service sends it is
    captured."""

    name: str
    run: SippRun
    capture: RtpCapture
    pbx: str  # the PBX's address

    @property
    def contact(self) -> str:
        return f"sip:uas-{self.run.port}@{self.pbx}"  # tests/support/kamailio.cfg relays uas-PORT to 127.0.0.1:PORT

    def invites(self) -> int:
        return len(self.run.received("INVITE"))

    def heard(self, pcm: bytes) -> bool:
        return self.capture.heard(pcm)


class Site:
    """One test's property company: its database, the PBX, people's phones, the duty roster and
    the service (as ``callcenter serve`` wires it)."""

    def __init__(self, settings, sessions, sipp: Sipp, proxy: Kamailio, tmp_path: Path):
        self.settings = replace(settings, callout=replace(settings.callout, ring_seconds=RING))
        self.sessions, self.sipp, self.proxy, self.tmp_path = sessions, sipp, proxy, tmp_path
        self.phones: list[Phone] = []
        self.voices: list[Voice] = []
        self.metrics = Metrics(process=False)  # what /metrics would show (callcenter/metrics.py)

    # -- people

    def phone(self, name: str, scenario: str = "engineer_answers", *, script: CallerScript | None = None,
              length: float = 60.0, calls: int = 1, params: dict | None = None) -> Phone:
        """``engineer_answers`` picks up after 0.3 s and sends ``script`` (keys, voice) from then on;
        ``callee_rings`` never answers; ``callee_refuses`` is busy."""
        capture = RtpCapture()
        params = {"media_ip": LOOPBACK, "media_port": capture.port, "ring_ms": 300, "bye_timeout_ms": 80000,
                  **(params or {})}
        if scenario == "engineer_answers":
            pcap = self.tmp_path / f"phone-{random.getrandbits(32):08x}.pcap"
            params["pcap"] = (script or CallerScript()).write_pcap(pcap, length)
        run = self.sipp.start(scenario, calls=calls, timeout=TEST_TIME_LIMIT, params=params).wait_ready()
        phone = Phone(name, run, capture, self.proxy.address)
        self.phones.append(phone)
        return phone

    def on_duty(self, *phones: Phone, ring_seconds: int | None = None) -> dict[str, int]:
        """These engineers on a 24-hour shift every day, rung in this order (for ``ring_seconds`` each,
        if given: else callout.ring_seconds); their ids by name."""
        with self.sessions() as session, session.begin():
            for phone in phones:
                session.add(Engineer(name=phone.name, sip_uri=phone.contact))
            session.flush()
            chain = ">".join(phone.name + (f":{ring_seconds}" if ring_seconds else "") for phone in phones)
            roster_store.replace_shifts(session, [{"name": "全天", "weekdays": "1-7", "start": "00:00",
                                                   "end": "00:00", "skill": "", "chain": chain}])
        with self.sessions() as session:
            return {e.name: e.id for e in session.scalars(select(Engineer))}

    def resident(self, **values) -> None:
        with self.sessions() as session, session.begin():
            session.add(Resident(**values))

    def emergency_ticket(self, **fields) -> int:
        """A burst pipe at 3-2-1101 left as a phone draft, as the hotline leaves one."""
        facts = {"description": "厨房水管爆了", "building": "3", "unit": "2", "room": "1101", "category": "plumbing",
                 "urgency": Urgency.EMERGENCY, "channel": Channel.PHONE, "phone": RESIDENT["phone"]} | fields
        now = datetime.now(UTC)
        with self.sessions() as session, session.begin():
            return desk.create_ticket(session, NewTicket(reported_at=now, **facts), desk.HOTLINE, now,
                                      self.settings).id

    # -- the service

    def service_settings(self, out: dict | None = None, **callout):
        """``out``: changes to the outbound line (registered at the PBX unless told otherwise)."""
        hotline_rtp, out_rtp = free_udp_ports(40), free_udp_ports(40)
        lines = ({"name": "hotline", "mode": "trunk", "listen": f"{LOOPBACK}:{free_udp_ports()}",
                  "allow": [LOOPBACK], "rtp_ports": [hotline_rtp, hotline_rtp + 39]},
                 {"name": "out", "mode": "register", "server": self.proxy.address, "user": "callout", "flow": "none",
                  "listen": f"{LOOPBACK}:{free_udp_ports()}", "rtp_ports": [out_rtp, out_rtp + 39],
                  "register_expires": 60, **(out or {})})
        return replace(self.settings, lines=lines,
                       callout=replace(self.settings.callout, **{"line": "out", "rounds": 1, **callout}))

    def start(self, new_recognizer=None, clock=None, hotline=None, out=None, **callout) -> Voice:
        settings = self.service_settings(out, **callout)
        if hotline:
            settings = replace(settings, hotline=replace(settings.hotline, **hotline))
        voice = build_voice(settings, self.sessions, new_recognizer,
                            clock or (lambda: datetime.now(UTC)), metrics=self.metrics)
        self.voices.append(voice)
        voice.start()
        return voice

    def start_callout(self, ticket_id: int, voice: Voice | None = None) -> int:
        """The desk's 紧急派单, as POST /api/tickets/{id}/callout does it (the API then wakes the runner)."""
        with self.sessions() as session, session.begin():
            callout_id = callouts.start_callout(session, ticket_id, CLERK, datetime.now(UTC),
                                                self.settings).id
        if voice is not None:
            voice.callouts.wake()
        return callout_id

    def stop(self) -> None:
        for voice in self.voices:
            voice.stop()
        for phone in self.phones:
            phone.run.stop()
            phone.capture.close()

    # -- what the desk sees

    def wait_for(self, what: str, found, timeout: float = 40.0):
        deadline = time.monotonic() + timeout
        while not (result := found()):
            assert time.monotonic() < deadline, f"no {what} after {timeout} s"
            time.sleep(0.1)
        return result

    def callout_state(self, ticket_id: int) -> str | None:
        with self.sessions() as session:
            callout = callouts.latest_callout(session, ticket_id)
            return callout.state if callout else None

    def attempts(self, ticket_id: int) -> list[tuple]:
        """(who, round, position, outcome) of every ring of the ticket's call-outs, in order."""
        with self.sessions() as session:
            rows = session.execute(select(CallOutAttempt, Engineer.name).join(CallOut, CallOutAttempt.callout_id == CallOut.id)
                                   .outerjoin(Engineer, CallOutAttempt.engineer_id == Engineer.id)
                                   .where(CallOut.ticket_id == ticket_id).order_by(CallOutAttempt.id)).all()
            return [(name or attempt.contact, attempt.round, attempt.position, attempt.outcome)
                    for attempt, name in rows]

    def rang_seconds(self, ticket_id: int) -> list[float]:
        with self.sessions() as session:
            return list(session.scalars(select(CallOutAttempt.rang_seconds)
                                        .join(CallOut, CallOutAttempt.callout_id == CallOut.id)
                                        .where(CallOut.ticket_id == ticket_id).order_by(CallOutAttempt.id)))

    def ticket_list(self) -> list[int]:
        with self.sessions() as session:
            return list(session.scalars(select(Ticket.id).order_by(Ticket.id)))

    def ticket(self, ticket_id: int) -> SimpleNamespace:
        with self.sessions() as session:
            return plain(session.get(Ticket, ticket_id))

    def events(self, ticket_id: int) -> list[SimpleNamespace]:
        with self.sessions() as session:
            return [plain(e) for e in session.scalars(
                select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))]

    def moves(self, ticket_id: int) -> list[tuple[str, str, str]]:
        return [(e.actor, e.from_status, e.to_status) for e in self.events(ticket_id) if e.kind == "transition"]

    def call_records(self) -> list[SimpleNamespace]:
        with self.sessions() as session:
            return [plain(r) for r in session.scalars(select(CallRecord).order_by(CallRecord.id))]


@pytest.fixture
def site(settings, sessions, sipp, kamailio, tmp_path):
    site = Site(settings, sessions, sipp, kamailio(), tmp_path)
    yield site
    site.stop()


@dataclass
class Caller:
    """A resident calling the hotline from SIPp; what the hotline sends them is captured."""

    run: SippRun
    capture: RtpCapture
    script: CallerScript

    def heard(self, pcm: bytes) -> bool:
        return self.capture.heard(pcm)


def call_hotline(site: Site, voice: Voice, script: CallerScript, *, caller: str, hang_up_at: float) -> Caller:
    capture = RtpCapture()
    pcap = script.write_pcap(site.tmp_path / f"caller-{random.getrandbits(32):08x}.pcap", hang_up_at)
    run = site.sipp.start("hotline_caller_hangs_up", voice.telephony.line("hotline").config.listen,
                          port=free_udp_ports(), timeout=TEST_TIME_LIMIT,
                          params={"pcap": pcap, "caller": caller, "hold_ms": int(hang_up_at * 1000),
                                  "media_ip": LOOPBACK, "media_port": capture.port})
    return Caller(run, capture, script)


def emergency_words(seconds: float) -> SpokenScripts:
    """The stand-in recogniser hears the burst pipe: 「爆了」 in a partial 2.4 s into the sentence."""
    return SpokenScripts([(0.8, "partial", "厨房"), (1.6, "partial", "厨房 水管"), (2.4, "partial", "厨房 水管 爆 了"),
                          (seconds + 0.8, "final", "厨房 水管 爆 了 水 喷 得 到处 都 是")])


def middle(pcm: bytes, seconds: float = 1.0) -> bytes:
    """A stretch from the middle of some speech, whole 20 ms frames: enough to know it was heard."""
    start = (len(pcm) // 2 - int(8000 * seconds)) // 320 * 320
    return pcm[max(0, start):max(0, start) + int(16000 * seconds)]


def again_and_again(script: CallerScript, pcm: bytes, start: float, end: float) -> None:
    """Say the same thing over and over from ``start`` until ``end`` (someone who keeps talking)."""
    while start + len(pcm) / 16000 < end:
        start = script.speak(start, pcm) + 0.5


# ---------------------------------------------------------------- (b) no answer, declined, accepted

def test_no_answer_then_a_decline_then_the_supervisor_accepts(site, prompts):
    zhang = site.phone("张工", "callee_rings")
    li_keys, wang_keys = CallerScript(), CallerScript()
    li_keys.keys(0.5, "2")  # 无法接单
    wang_keys.keys(0.5, "1")  # 接单
    li = site.phone("李工", script=li_keys, length=15)
    wang = site.phone("王主管", script=wang_keys, length=30)
    people = site.on_duty(zhang, li, wang)
    ticket = site.emergency_ticket()
    voice = site.start()
    site.start_callout(ticket, voice)

    site.wait_for("acceptance", lambda: site.callout_state(ticket) == "accepted")
    assert site.attempts(ticket) == [("张工", 1, 0, "no_answer"), ("李工", 1, 1, "declined"),
                                     ("王主管", 1, 2, "accepted")]
    assert RING <= site.rang_seconds(ticket)[0] < RING + 1.5
    ticket_now = site.ticket(ticket)
    assert (ticket_now.status, ticket_now.engineer_id) == ("accepted", people["王主管"])
    rings = [e.note for e in site.events(ticket) if e.kind == "callout" and e.data.get("outcome")]
    assert [note.split("：")[-1].split("，")[0] for note in rings] == ["无人接听", "拒绝", "接单"]
    assert li.run.wait(20) == 0, li.run.report()  # 李工 was told and hung up on
    assert li.heard(prompts["callout.declined"]) and wang.heard(prompts["callout.alert"])
    assert zhang.invites() == 1


# ---------------------------------------------------------------- (c) nobody answers: last resort, alert

def test_nobody_answers_so_the_last_resort_is_rung_and_the_managers_alerted(site, prompts):
    zhang = site.phone("张工", "callee_rings", calls=2)
    li = site.phone("李工", "callee_refuses", calls=2, params={"code": 486})  # busy
    control_room = site.phone("控制室", "callee_rings")
    manager = site.phone("经理", length=20)  # picks up the alert, says nothing
    site.on_duty(zhang, li)
    ticket = site.emergency_ticket()
    voice = site.start(rounds=2, last_resort=control_room.contact,
                       alert_contacts=(manager.contact,))
    site.start_callout(ticket, voice)

    site.wait_for("the alert", lambda: any("已电话提醒" in e.note for e in site.events(ticket)), timeout=60)
    assert site.attempts(ticket) == [("张工", 1, 0, "no_answer"), ("李工", 1, 1, "busy"),
                                     ("张工", 2, 0, "no_answer"), ("李工", 2, 1, "busy"),
                                     (control_room.contact, 0, 0, "no_answer")]
    assert site.callout_state(ticket) == "exhausted"
    notes = [e.note for e in site.events(ticket)]
    assert f"紧急呼叫无人接单，需通知主管：{manager.contact}" in notes
    assert f"紧急呼叫无人接单，已电话提醒 {manager.contact}：已接听" in notes
    assert manager.heard(prompts["callout.alert_unanswered"])
    alerts = [r for r in site.call_records() if r.called == manager.contact]  # every call leaves a record
    assert [(r.direction, r.outcome, r.ticket_id) for r in alerts] == [("outbound", "completed", ticket)]
    assert (zhang.invites(), li.invites(), control_room.invites()) == (2, 2, 1)
    assert site.ticket(ticket).status == "draft"  # nobody has it: the desk's queue still shows it
    metric = site.metrics.registry.get_sample_value
    assert metric("callcenter_callouts_total", {"state": "exhausted"}) == 1  # the alert rule's figure
    assert metric("callcenter_callout_first_ring_seconds_count") == 1
    assert metric("callcenter_callout_first_ring_seconds_sum") < 2  # the first engineer dialled at once
    rung = {outcome: metric("callcenter_calls_total", {"line": "out", "direction": "outbound", "outcome": outcome})
            for outcome in ("no_answer", "busy", "completed")}
    assert rung == {"no_answer": 3, "busy": 2, "completed": 1}  # the five rings and the manager's alert


def test_an_engineer_whose_sip_address_does_not_resolve_is_skipped_at_once(site, monkeypatch):
    """A contact that passes the rule but whose host does not resolve (here: a DNS server that never
    answers; nothing leaves 127.0.0.0/8) fails its ring within a second, and the chain moves on."""
    def dns_that_never_answers(host):
        time.sleep(5)
        raise OSError(-3, "Temporary failure in name resolution")
    monkeypatch.setattr(sip_uri, "lookup", dns_that_never_answers)
    li = site.phone("李工", "callee_rings")
    with site.sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", sip_uri="sip:zhang@pbx.nowhere.example"),
                         Engineer(name="李工", sip_uri=li.contact)])
        session.flush()
        roster_store.replace_shifts(session, [{"name": "全天", "weekdays": "1-7", "start": "00:00", "end": "00:00",
                                               "skill": "", "chain": "张工>李工"}])
    ticket = site.emergency_ticket()
    # An outbound trunk with no server dials a sip: URI itself (looking up its host), here through the PBX.
    voice = site.start(out={"mode": "trunk", "server": None, "allow": [LOOPBACK]})
    started = time.monotonic()
    site.start_callout(ticket, voice)
    site.wait_for("李工's phone ringing", lambda: li.invites() == 1, timeout=10)
    # Well under the 5 s the dead DNS server would hold each ring (margin for a loaded CI box).
    assert time.monotonic() - started < 4.0
    site.wait_for("the end of the call-out", lambda: site.callout_state(ticket) == "exhausted", timeout=20)
    assert site.attempts(ticket) == [("张工", 1, 0, "failed"), ("李工", 1, 1, "no_answer")]
    assert site.rang_seconds(ticket)[0] < 3.0


# ---------------------------------------------------------------- (d) the same incident: attached, no second page

def test_a_second_caller_about_the_same_burst_pipe_is_attached_not_paged_again(site, voices, prompts):
    burst = voices(BURST)
    site.resident(**NEIGHBOUR)
    zhang = site.phone("张工", "callee_rings")
    site.on_duty(zhang, ring_seconds=40)
    first = site.emergency_ticket()
    voice = site.start(emergency_words(len(burst) / 16000))
    site.start_callout(first, voice)
    assert zhang.run.wait_received("INVITE", timeout=5)

    script = CallerScript()
    script.keys(1.0, "1")
    script.keys(2.2, "1201#")  # the room number: the caller ID is confirmed
    script.speak(9.5, burst, "problem")
    caller = call_hotline(site, voice, script, caller=NEIGHBOUR["phone"], hang_up_at=23.0)
    caller.run.wait(40)

    second = one(t for t in site.ticket_list() if t != first)
    assert site.ticket(second).urgency == "emergency" and site.ticket(second).room == "1201"
    attached = one(e for e in site.events(second) if e.kind == "callout")
    assert attached.note == f"同一事件已有紧急呼叫（维修单 {site.ticket(first).number}），不再重复呼叫"
    assert attached.data["incident_ticket_id"] == first
    assert site.callout_state(second) is None and site.callout_state(first) == "ringing"
    assert caller.heard(prompts["hotline.emergency_attached"])
    assert zhang.invites() == 1


# ---------------------------------------------------------------- (e) killed mid call-out, restarted

def test_a_call_out_goes_on_after_the_service_is_killed_without_ringing_anyone_twice(site):
    zhang = site.phone("张工", "callee_rings")
    li_keys = CallerScript()
    li_keys.keys(0.5, "1")
    li = site.phone("李工", script=li_keys, length=30)
    people = site.on_duty(zhang, li, ring_seconds=20)
    ticket = site.emergency_ticket()
    service = serve_in_a_process(site)
    try:
        site.start_callout(ticket)  # the running service finds it by itself (as one the API started)
        assert zhang.run.wait_received("INVITE", timeout=45), service.stdout  # a fresh process starts slowly on a loaded box
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait(5)
    assert site.attempts(ticket) == [("张工", 1, 0, None)]  # cut off while it rang

    # Back after the cut-off, whose ring was cut off is counted as failed and the chain goes on.
    later = timedelta(seconds=20 + ANSWERED_CALL_SECONDS)
    site.start(clock=lambda: datetime.now(UTC) + later)
    site.wait_for("acceptance", lambda: site.callout_state(ticket) == "accepted")
    assert site.attempts(ticket) == [("张工", 1, 0, "failed"), ("李工", 1, 1, "accepted")]
    assert f"呼叫 第1轮·主班 张工（{zhang.contact}）：呼叫失败（呼叫中断，未得到结果）" in \
        [e.note for e in site.events(ticket)]
    assert site.ticket(ticket).engineer_id == people["李工"]
    assert zhang.invites() == 1


def serve_in_a_process(site: Site) -> subprocess.Popen:
    """``callcenter serve`` on the site's database, its call-out line registered at the PBX."""
    settings = site.service_settings(ring_seconds=20)
    out = settings.lines[1]
    config = site.tmp_path / "site.toml"
    config.write_text(f"""data_dir = "{site.tmp_path / 'serve-data'}"
[database]
url = "{settings.database_url}"
[web]
port = {free_port()}
[callout]
line = "out"
rounds = 1
[[lines]]
name = "out"
mode = "register"
flow = "none"
server = "{out['server']}"
user = "{out['user']}"
listen = "{out['listen']}"
rtp_ports = {out['rtp_ports']}
register_expires = 60
""", encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CALLCENTER_")}
    return subprocess.Popen([sys.executable, "-m", "callcenter.cli", "--config", str(config), "serve"],
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- the hotline's 0: put through to the front desk

def test_zero_puts_the_caller_through_to_the_front_desk_and_both_hear_each_other(site, voices):
    desk_voice, caller_voice = voices("前台您好，请讲"), voices(CALLER_SAYS)
    desk_script = CallerScript()
    again_and_again(desk_script, desk_voice, 0.5, 10.0)
    front_desk = site.phone("前台", script=desk_script, length=12)
    voice = site.start(hotline={"desk_extension": f"sip:desk@{LOOPBACK}:{front_desk.run.port}",
                                "desk_hours": ("00:00-23:59:59",)})

    script = CallerScript()
    script.keys(1.0, "0")  # over the greeting: 转人工服务
    again_and_again(script, caller_voice, 6.0, 12.0)
    caller = call_hotline(site, voice, script, caller=RESIDENT["phone"], hang_up_at=13.0)

    record = site.wait_for("the call record", lambda: [r for r in site.call_records() if r.outcome != "in_progress"])
    assert one(record).outcome == "transferred"
    assert front_desk.run.wait(10) == 0, front_desk.run.report()  # hung up on once the caller left
    assert caller.heard(middle(desk_voice)) and front_desk.heard(middle(caller_voice))
    located(read_recording(site.settings.recordings_dir / one(record).recording_path), caller_voice)


# ---------------------------------------------------------------- (a) + (f) the hotline's emergency, accepted, bridged
# This call lasts a minute, most of it prompts: it starts with the module, on a database and PBX of
# its own, runs alongside the other tests, and its test (last in the file) collects it.

@dataclass
class BurstPipeCall:
    site: Site
    caller: Caller
    zhang: Phone
    li: Phone
    people: dict[str, int]
    burst: bytes
    engineer_voice: bytes
    caller_voice: bytes


def a_resident_reports_a_burst_pipe(site: Site, voices) -> BurstPipeCall:
    """王阿姨 reports a burst pipe and holds for the engineer; 张工, on duty, accepts and asks to talk;
    they talk until she hangs up. 李工 (busy) comes next in the chain."""
    burst, engineer_voice, caller_voice = voices(BURST), voices(ENGINEER_SAYS), voices(CALLER_SAYS)
    site.resident(**RESIDENT)
    zhang_script = CallerScript()  # from 张工's answer on
    zhang_script.keys(16.0, "1")  # after the alert, the address, the category and the caller's words: 接单
    zhang_script.keys(28.0, "1")  # 「报修人还在线上，按1与报修人通话」
    again_and_again(zhang_script, engineer_voice, 36.0, 60.0)
    zhang = site.phone("张工", script=zhang_script, length=60)
    li = site.phone("李工", "callee_refuses", params={"code": 486})
    people = site.on_duty(zhang, li)
    voice = site.start(emergency_words(len(burst) / 16000))

    script = CallerScript()  # from the hotline's answer on
    script.keys(1.0, "1")  # over the greeting: 报修
    script.keys(2.2, "1101#")  # 「为核实身份，请输入或说出您的房号」
    script.speak(9.5, burst, "problem")
    script.keys(23.0, "1")  # the summary is right
    script.keys(31.0, "1")  # after her ticket number, 「维修人员接单后可以直接与您通话，需要请按1」
    again_and_again(script, caller_voice, 52.0, 62.0)
    caller = call_hotline(site, voice, script, caller=RESIDENT["phone"], hang_up_at=64.0)
    return BurstPipeCall(site, caller, zhang, li, people, burst, engineer_voice, caller_voice)


@pytest.fixture(scope="module", autouse=True)
def burst_pipe_call(request, tmp_path_factory, voices):
    """Starts (a)+(f) at once when its test is among those collected; None otherwise."""
    if not any(item.originalname == "test_an_emergency_call_rings_the_engineer_who_accepts_and_talks_with_the_caller"
               for item in request.session.items):
        yield None
        return
    directory = tmp_path_factory.mktemp("burst-pipe")
    base = load_settings(environ={"CALLCENTER_DATA_DIR": str(directory / "data")})
    settings = replace(base, database=DatabaseSettings(url=f"sqlite:///{directory / 'callcenter.db'}"))
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    proxy = site = None
    try:
        require_sip_peers()
        proxy = Kamailio(directory).start()
        site = Site(settings, make_session_factory(engine), Sipp(directory), proxy, directory)
        started = a_resident_reports_a_burst_pipe(site, voices)
    except BaseException as error:  # a skip or failure (tools missing): its test reports it
        started = error
    yield started
    if site is not None:
        site.stop()
    if proxy is not None:
        proxy.stop()
    engine.dispose()


def require_sip_peers() -> None:
    """What the ``sipp`` and ``kamailio`` fixtures check, for a call started outside a test."""
    require("kamailio", "sipp", "espeak-ng", "sox")
    if os.geteuid() != 0:
        reason = "SIPp plays pcap audio through a raw socket: run the SIP tests as root"
        pytest.fail(reason) if REQUIRE_SIP else pytest.skip(reason)


def test_an_emergency_call_rings_the_engineer_who_accepts_and_talks_with_the_caller(burst_pipe_call, prompts):
    """(a) An emergency on the hotline rings the engineer on duty, who accepts and gets the ticket;
    (f) both press 1 and talk."""
    if isinstance(burst_pipe_call, BaseException):
        raise burst_pipe_call
    call = burst_pipe_call
    site, caller, zhang = call.site, call.caller, call.zhang
    [ticket] = site.wait_for("the caller's ticket", site.ticket_list)
    site.wait_for("acceptance", lambda: site.callout_state(ticket) == "accepted")
    assert site.attempts(ticket) == [("张工", 1, 0, "accepted")]  # the backup was never rung
    ticket_now = site.ticket(ticket)
    assert (ticket_now.status, ticket_now.engineer_id, ticket_now.urgency) == (
        "accepted", call.people["张工"], "emergency")
    assert site.moves(ticket) == [("callout", "draft", "received"), ("callout", "received", "dispatched"),
                                  ("callout", "dispatched", "accepted")]
    # The engineer's phone rang within 2 s of the emergency word reaching the hotline.
    raised = one(e for e in site.events(ticket) if e.note == "识别到紧急情况")
    with site.sessions() as session:
        rung = session.scalar(select(CallOutAttempt.started_at))
    assert (rung - raised.at).total_seconds() < 2.0
    # 张工 heard the alert and the caller's own words before pressing 1.
    assert zhang.heard(prompts["callout.alert"]) and zhang.heard(call.burst), "张工 did not hear the caller's words"

    # (f) Both pressed 1: put through. Each hears the other, and the hotline call is still recorded.
    site.wait_for("the end of the hotline call", lambda: all(r.outcome != "in_progress" for r in site.call_records()),
                  timeout=70)
    assert caller.heard(prompts["callout.engineer_coming_suffix"])
    assert caller.heard(middle(call.engineer_voice)), "the caller did not hear the engineer"
    assert zhang.heard(middle(call.caller_voice)), "the engineer did not hear the caller"
    record = one(r for r in site.call_records() if r.direction == "inbound")
    assert (record.outcome, record.ticket_id) == ("completed", ticket)
    located(read_recording(site.settings.recordings_dir / record.recording_path), call.caller_voice)
    outbound = one(r for r in site.call_records() if r.direction == "outbound")
    assert (outbound.called, outbound.outcome, outbound.ticket_id) == (zhang.contact, "completed", ticket)
    assert call.li.invites() == 0
