"""Benchmark: simultaneous inbound calls on one trunk line, with real SIPp callers on 127.0.0.1.

Every call is answered, hears a prompt while its caller talks (RTP busy both ways), then is listened
to until the caller hangs up. Prints the INVITE -> 200 OK time measured by SIPp, the CPU this
process spends per call (user + system time over the busy period, per call, as a share of one
core; the idle line is measured first), and resident memory after each round (a soak check).

    .venv/bin/python bench/ivr_calls.py [--calls 10] [--seconds 10] [--rounds 3]

Needs sipp, espeak-ng and sox, and root (SIPp plays the callers' pcap through a raw socket).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.ivr.lines import Line, LineConfig  # noqa: E402
from tests.support import rtp_pcap  # noqa: E402
from tests.support.sip import LOOPBACK, Sipp, free_udp_ports, speech_wav  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hotline_like(prompt: bytes):
    def flow(call):
        call.answer()
        call.play(prompt)
        for _ in call.frames():
            pass
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="bench-ivr-"))
    voice = speech_wav("您好，我家厨房的水管漏水了，请派师傅来看一下。", work / "speech.wav")
    speech = rtp_pcap.read_pcm(voice)
    pcap = work / "speech.pcap"
    pcap.write_bytes(rtp_pcap.pcap_bytes(rtp_pcap.rtp_stream(speech)))
    sipp_port, rtp = free_udp_ports(), free_udp_ports(4 * args.calls)
    line = Line(LineConfig("bench", mode="trunk", listen=f"{LOOPBACK}:{free_udp_ports()}",
                           allow=[f"{LOOPBACK}:{sipp_port}"], max_calls=args.calls,
                           rtp_ports=(rtp, rtp + 4 * args.calls - 1)), hotline_like(speech))
    line.start()
    sipp = Sipp(work)
    try:
        before = cpu_seconds()
        time.sleep(2)
        idle = (cpu_seconds() - before) / 2
        print(f"idle line: {100 * idle:.2f} % of one core; RSS {rss_mb():.1f} MB")
        for round_number in range(1, args.rounds + 1):
            before_cpu, before_wall = cpu_seconds(), time.monotonic()
            run = sipp.start("caller", line.config.listen, port=sipp_port, calls=args.calls,
                             timeout=args.seconds + 30, params={"pcap": pcap, "hold_ms": int(args.seconds * 1000)})
            code = run.wait(args.seconds + 40)
            busy_cpu, wall = cpu_seconds() - before_cpu - idle * (time.monotonic() - before_wall), \
                time.monotonic() - before_wall
            times = sorted(run.response_times_ms())
            if code != 0 or len(times) != args.calls:
                print(f"round {round_number}: sipp exit {code}, {len(times)} of {args.calls} calls answered\n"
                      f"{run.report()[-2000:]}")
                continue
            print(f"round {round_number}: {args.calls} calls x {args.seconds:g} s; INVITE -> 200 OK median "
                  f"{statistics.median(times):.0f} ms, max {times[-1]:.0f} ms; CPU per call "
                  f"{100 * busy_cpu / wall / args.calls:.2f} % of one core; RSS {rss_mb():.1f} MB")
            time.sleep(1)
    finally:
        line.stop()


if __name__ == "__main__":
    main()
