"""What a phone hears: a UDP socket on 127.0.0.1 that a SIPp phone names as its media address in its
SDP, so every RTP packet the service sends that phone arrives here, kept per stream (SSRC)."""

from __future__ import annotations

import socket
import threading

from callcenter.ivr.media import PCMU, MediaError, RtpPacket
from tests.support.sip import LOOPBACK


class RtpCapture:
    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._streams: dict[int, list[bytes]] = {}  # SSRC -> PCMU payloads in arrival order
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._receive, name=f"rtp capture {self.port}", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                packet = RtpPacket.parse(self._sock.recv(2048))
            except (OSError, MediaError):
                continue
            if packet.payload_type == PCMU.payload_type:
                with self._lock:
                    self._streams.setdefault(packet.ssrc, []).append(packet.payload)

    def streams(self) -> list[bytes]:
        """The audio of each call that reached this phone, decoded to 16-bit PCM."""
        with self._lock:
            return [PCMU.decode(b"".join(payloads)) for payloads in self._streams.values()]

    def heard(self, pcm: bytes) -> bool:
        """Did ``pcm`` (as a phone line carries it) reach this phone bit for bit, in one call?"""
        wanted = PCMU.decode(PCMU.encode(pcm))
        return any(_find_even(stream, wanted) >= 0 for stream in self.streams())

    def close(self) -> None:
        self._running = False
        self._thread.join(1)
        self._sock.close()


def _find_even(haystack: bytes, needle: bytes) -> int:
    """The first sample-aligned place of ``needle`` in 16-bit PCM, or -1."""
    index = haystack.find(needle)
    while index >= 0 and index % 2:
        index = haystack.find(needle, index + 1)
    return index
