"""Somebody else on the network, from another loopback address (127.0.0.2 by default): a SIP scanner
that sends INVITEs with fresh Call-IDs as fast as it is told (as sipvicious' "friendly-scanner"
does to every SIP port on the internet), header bombs of 64 KB, forged in-dialog requests, and RTP
sprayed at a call's media port. For tests/test_sip_hostile_e2e.py and bench/hostile.py; every
datagram goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import random
import socket
import threading
import time

from callcenter.ivr.media import RtpPacket

STRANGER = "127.0.0.2"


class Stranger:
    def __init__(self, target: tuple[str, int], host: str = STRANGER):
        assert target[0].startswith("127."), "loopback only"
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scanner_invite(self) -> bytes:
        number = random.getrandbits(48)
        return (f"INVITE sip:100@{self.target[0]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK-{number:x};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: \"sipvicious\" <sip:100@1.1.1.1>;tag={number:x}\r\n"
                f"To: <sip:100@{self.target[0]}>\r\nCall-ID: {number:x}@scanner\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:100@{self.host}:{self.port}>\r\nUser-Agent: friendly-scanner\r\n"
                f"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n").encode()

    @staticmethod
    def header_bomb(size: int = 64000) -> bytes:
        """A datagram of ``size`` bytes that is almost all empty header lines."""
        head = b"OPTIONS sip:hotline SIP/2.0\r\n"
        return head + b"X:\r\n" * ((size - len(head) - 2) // 4) + b"\r\n"

    def send(self, data: bytes, target: tuple[str, int] | None = None) -> None:
        try:
            self.sock.sendto(data, target or self.target)
            self.sent += 1
        except OSError:  # a full send buffer: the flood only gets more polite
            time.sleep(0.001)

    def bombs(self, count: int, size: int = 64000, every: float = 0.02) -> None:
        """``count`` header bombs, ``every`` seconds apart: a burst of 64 KB datagrams overflows the
        kernel's receive buffer (about three fit), and a dropped bomb tests nothing."""
        bomb = self.header_bomb(size)
        for _ in range(count):
            self.send(bomb)
            time.sleep(every)

    def flood(self, rate: float, seconds: float) -> threading.Thread:
        """Scanner INVITEs at ``rate`` per second for ``seconds``, on a thread (``wait`` for it)."""
        def run() -> None:
            started = time.monotonic()
            while not self._stop.is_set() and (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) + 1 - self.sent_in_flood
                for _ in range(max(0, due)):
                    self.send(self.scanner_invite())
                    self.sent_in_flood += 1
                time.sleep(0.005)
        self.sent_in_flood = 0
        self._thread = threading.Thread(target=run, name="scanner", daemon=True)
        self._thread.start()
        return self._thread

    def spray_rtp(self, target: tuple[str, int], packets: int, payload: bytes = b"\x80" * 160,
                  every: float = 0.005) -> None:
        """RTP that is not the caller's: full-scale noise, random SSRC, timestamps leaping ahead."""
        ssrc, sequence, timestamp = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        for _ in range(packets):
            sequence, timestamp = (sequence + 1) & 0xFFFF, (timestamp + 8000) & 0xFFFFFFFF
            self.send(RtpPacket(0, sequence, timestamp, ssrc, payload).to_bytes(), target)
            time.sleep(every)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.sock.close()
