"""Benchmark: how fast a resident's emergency reaches the engineer's phone, and the chain's pace.

Everything on 127.0.0.1, as in tests/test_callout_e2e.py: the service as ``callcenter serve``
wires it (a hotline trunk line, an outbound line registered at Kamailio, the call-out runner), a
resident calling from SIPp who says 「厨房水管爆了」 (espeak-ng through G.711), engineers' phones that
are SIPp behind Kamailio. Printed:

  word -> INVITE   from the moment the caller's audio that completes 「爆了」 has reached the hotline
                   (the stand-in recogniser names the word there; a real recogniser adds its own
                   lag on top, see bench/asr.py) to the INVITE arriving at the engineer's phone
  word -> 180      ... to the engineer's phone ringing (its 180 Ringing)
  hook -> INVITE   from the hotline marking the ticket an emergency to that INVITE: our own part
  third person     from the desk's 紧急派单 to the INVITE at the third person of the chain while the
                   first two do not answer, each rung for --ring-seconds; and the time beyond the
                   ring times (the goal: the phone rings within 2 s of the word)

Times are SIPp's message traces (wall clock, microseconds) and the ticket's events. The word's
moment is SIPp's ACK plus where the word is in the caller's audio: good to about ±20 ms (when SIPp
logs the ACK against when its pcap starts playing), so "hook -> INVITE" may come out the larger.

    .venv/bin/python bench/callout.py [--calls 3] [--ring-seconds 25]

Needs kamailio, sipp, espeak-ng and sox, and root (SIPp plays the caller's pcap through a raw socket).
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from callcenter.app import build_voice  # noqa: E402
from core import callouts, migrate, roster_store  # noqa: E402
from core.base import Actor  # noqa: E402
from core.desk import HOTLINE, NewTicket, create_ticket  # noqa: E402
from core.settings import DatabaseSettings, load_settings  # noqa: E402
from core.store import Engineer, Resident, TicketEvent, make_engine, make_session_factory  # noqa: E402
from core.tickets import Channel, Role, Urgency  # noqa: E402
from tests.support.hotline_caller import CallerScript, SpokenScripts, voice  # noqa: E402
from tests.support.sip import LOOPBACK, Kamailio, Sipp, SippRun, free_udp_ports  # noqa: E402

BURST = "厨房水管爆了，水喷得到处都是"
SPEAK_AT = 9.5  # seconds after the answer: after 「请在提示音后说出需要维修的问题」
WORD_AT = 2.4  # seconds into the sentence where the stand-in recogniser has 「爆了」
RESIDENT = dict(phone="13800138000", name="王阿姨", building="3", unit="2", room="1101")


def sipp_times(run: SippRun, direction: str, first_line: str) -> list[float]:
    """When SIPp sent or received (``direction``) each message whose first line starts so (epoch s)."""
    times = []
    for stamp, block in re.findall(r"-{20,} (\S+ \S+)\n(.*?)(?=\n-{20,} |\Z)", run.messages(), re.S):
        head, _, message = block.partition("\n")
        if head.startswith(f"UDP message {direction}") and message.lstrip().startswith(first_line):
            times.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp())  # SIPp logs local time
    return times


def site(directory: Path, proxy: Kamailio, ring_seconds: int):
    base = load_settings(environ={"CALLCENTER_DATA_DIR": str(directory / "data")})
    settings = replace(base, database=DatabaseSettings(url=f"sqlite:///{directory / 'callcenter.db'}"),
                       callout=replace(base.callout, line="out", rounds=1, ring_seconds=ring_seconds,
                                       incident_window_minutes=0))  # every call its own incident
    hotline_rtp, out_rtp = free_udp_ports(40), free_udp_ports(40)
    settings = replace(settings, lines=(
        {"name": "hotline", "mode": "trunk", "listen": f"{LOOPBACK}:{free_udp_ports()}", "allow": [LOOPBACK],
         "rtp_ports": [hotline_rtp, hotline_rtp + 39]},
        {"name": "out", "mode": "register", "server": proxy.address, "user": "callout", "flow": "none",
         "listen": f"{LOOPBACK}:{free_udp_ports()}", "rtp_ports": [out_rtp, out_rtp + 39]}))
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    return settings, make_session_factory(engine)


def on_duty(sessions, phones: dict[str, SippRun], proxy: Kamailio) -> None:
    with sessions() as session, session.begin():
        for name, run in phones.items():  # tests/support/kamailio.cfg relays uas-PORT to 127.0.0.1:PORT
            session.add(Engineer(name=name, sip_uri=f"sip:uas-{run.port}@{proxy.address}"))
        session.flush()
        roster_store.replace_shifts(session, [{"name": "全天", "weekdays": "1-7", "start": "00:00", "end": "00:00",
                                               "skill": "", "chain": ">".join(phones)}])


def emergency_rings(directory: Path, proxy: Kamailio, sipp: Sipp, calls: int) -> list[tuple[float, float, float]]:
    """(word -> INVITE, word -> 180, hook -> INVITE) for each of ``calls`` emergency calls, one after another."""
    settings, sessions = site(directory / "word", proxy, ring_seconds=3)
    with sessions() as session, session.begin():
        session.add(Resident(**RESIDENT))
    engineer = sipp.start("callee_rings", calls=calls, timeout=60 * calls).wait_ready()
    on_duty(sessions, {"张工": engineer}, proxy)
    burst = voice(BURST, directory)
    seconds = len(burst) / 16000
    scripts = SpokenScripts(*[[(0.8, "partial", "厨房"), (1.6, "partial", "厨房 水管"), (WORD_AT, "partial", "厨房 水管 爆 了"),
                               (seconds + 0.8, "final", "厨房 水管 爆 了 水 喷 得 到处 都 是")]] * calls)
    service = build_voice(settings, sessions, scripts)
    service.start()
    script = CallerScript()
    script.keys(1.0, "1")
    script.keys(2.2, "1101#")  # the room number confirms the caller ID
    script.speak(SPEAK_AT, burst)
    pcap = script.write_pcap(directory / "caller.pcap", SPEAK_AT + seconds + 2)
    figures = []
    try:
        for _ in range(calls):
            caller = sipp.start("hotline_caller_hangs_up", service.telephony.line("hotline").config.listen,
                                port=free_udp_ports(), timeout=60,
                                params={"pcap": pcap, "caller": RESIDENT["phone"],
                                        "hold_ms": int((SPEAK_AT + seconds + 2) * 1000)})
            caller.wait(60)
            time.sleep(settings.callout.ring_seconds + 1)  # the engineer's phone has stopped ringing
            [answered] = sipp_times(caller, "sent", "ACK")[-1:]
            word = answered + SPEAK_AT + WORD_AT
            invite = sipp_times(engineer, "received", "INVITE")[len(figures)]
            ringing = sipp_times(engineer, "sent", "SIP/2.0 180")[len(figures)]
            with sessions() as session:
                raised = session.scalars(select(TicketEvent.at).where(TicketEvent.note == "识别到紧急情况")
                                         .order_by(TicketEvent.id)).all()[len(figures)]
            hook = raised.replace(tzinfo=UTC).timestamp() if raised.tzinfo is None else raised.timestamp()
            figures.append((invite - word, ringing - word, invite - hook))
    finally:
        service.stop()
        engineer.stop()
    return figures


def third_person(directory: Path, proxy: Kamailio, sipp: Sipp, ring_seconds: int) -> float:
    """Seconds from the desk's 紧急派单 to the INVITE at the third person (the first two never answer)."""
    settings, sessions = site(directory / "chain", proxy, ring_seconds)
    phones = {name: sipp.start("callee_rings", timeout=3 * ring_seconds + 60).wait_ready()
              for name in ("张工", "李工", "王主管")}
    on_duty(sessions, phones, proxy)
    now = datetime.now(UTC)
    facts = NewTicket(description="厨房水管爆了", building="3", unit="2", room="1101", category="plumbing",
                      urgency=Urgency.EMERGENCY, channel=Channel.PHONE, reported_at=now)
    with sessions() as session, session.begin():
        ticket_id = create_ticket(session, facts, HOTLINE, now, settings).id
    service = build_voice(settings, sessions, None)
    service.start()
    try:
        started = time.time()
        with sessions() as session, session.begin():
            callouts.start_callout(session, ticket_id, Actor("desk1", Role.FRONTDESK), now, settings)
        service.callouts.wake()
        third = phones["王主管"]
        third.wait_received("INVITE", timeout=3 * ring_seconds + 30)
        return sipp_times(third, "received", "INVITE")[0] - started
    finally:
        service.stop()
        for run in phones.values():
            run.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="emergency calls to time, one after another")
    parser.add_argument("--ring-seconds", type=int, default=load_settings(environ={}).callout.ring_seconds,
                        help="how long each link of the chain rings (default: callout.ring_seconds)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        proxy = Kamailio(directory).start()
        try:
            sipp = Sipp(directory)
            figures = emergency_rings(directory, proxy, sipp, args.calls)
            reach = third_person(directory, proxy, sipp, args.ring_seconds)
        finally:
            proxy.stop()
    for name, column in (("word -> INVITE", 0), ("word -> 180", 1), ("hook -> INVITE", 2)):
        values = [1000 * figure[column] for figure in figures]
        print(f"{name:15s} median {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms   "
              f"({len(values)} calls)")
    print(f"third person    {reach:7.2f} s with {args.ring_seconds} s ring times: "
          f"{reach - 2 * args.ring_seconds:.2f} s beyond the two unanswered rings")


if __name__ == "__main__":
    main()
