"""One call's RTP: a socket on the line's address, a receive thread and a paced send thread that
move bytes between the network and the pure media pieces of ``ivr/media.py``.

Media belongs to the call's peer. A packet is taken only from the address the peer's SDP named,
or, with ``symmetric`` (the ``symmetric_rtp`` setting), from the first address that sends from the
peer's signalling or SDP host: a caller behind NAT sends from a port its SDP cannot know. That
address is then latched: nothing else is taken, and when its host differs from the SDP's (the
caller is behind NAT) our audio goes there too. An SSRC change from the peer is fine (media.py
starts the stream afresh). Anything from elsewhere is counted and dropped. A peer that should be
sending and sends nothing for ``timeout`` seconds is reported once through ``on_silence``.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable

from callcenter.ivr.media import SILENCE, Codec, MediaError, RtpAudioInput, RtpAudioOutput
from callcenter.sip.errors import SipError
from callcenter.sip.guard import Guard
from callcenter.sip.sdp import RemoteMedia
from callcenter.sip.uri import Address

log = logging.getLogger("callcenter.sip")

OUTGOING_FRAMES = 10  # 200 ms of prompt queued ahead of the sender: with 60 ms, prompts broke up beyond ~20 calls (bench/calls.py)
FRAME_SECONDS = 0.020


class RtpStream:
    def __init__(self, call_id: str, local: Address, remote: RemoteMedia, codec: Codec, *,
                 on_frame: Callable[[bytes], None], on_digit: Callable[[str], None],
                 on_silence: Callable[[], None], peer_host: str, guard: Guard, symmetric: bool = True,
                 timeout: float = 30.0):
        self.call_id, self.local, self.codec = call_id, local, codec
        self.on_frame, self.on_digit, self.on_silence = on_frame, on_digit, on_silence
        self.peer_host, self.guard, self.symmetric, self.timeout = peer_host, guard, symmetric, timeout
        self.input = RtpAudioInput({codec.payload_type: codec}, remote.event_payload_type)
        # RFC 3550 §5.1: random initial sequence number, timestamp and SSRC
        self.output = RtpAudioOutput(codec, ssrc=random.getrandbits(32), sequence=random.getrandbits(16),
                                     timestamp=random.getrandbits(32))
        self.outgoing: queue.Queue[bytes] = queue.Queue(OUTGOING_FRAMES)
        self.packets_sent = self.packets_taken = 0
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._running = False
        self._stopped = threading.Event()
        self._retarget(remote)

    def _retarget(self, remote: RemoteMedia) -> None:
        self.remote = remote
        self._expected: Address = (remote.address, remote.port)
        self._send_to: Address = self._expected
        self._latched: Address | None = None
        self._last_heard = time.monotonic()
        self._silence_reported = False

    def retarget(self, remote: RemoteMedia) -> None:
        """A re-INVITE moved the peer's media (or put us on hold): one stream, pointed elsewhere."""
        self._retarget(remote)

    @property
    def on_hold(self) -> bool:
        return self.remote.on_hold

    @property
    def local_address(self) -> Address:
        return self._sock.getsockname() if self._sock else self.local

    def start(self) -> None:
        """Bind the local port (OSError if taken) and start both threads."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self.local)  # the line's address, never 0.0.0.0
        except (OSError, OverflowError):
            sock.close()
            raise
        sock.settimeout(0.2)
        self._sock, self._running = sock, True
        # Each thread logs in the context of whoever started the stream (the call's id and line).
        self._threads = [threading.Thread(target=contextvars.copy_context().run, args=(work,),
                                          name=f"rtp-{kind} {self.call_id}", daemon=True)
                         for kind, work in (("recv", self._receive), ("send", self._transmit))]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads, then take what is still in the socket: a caller's last words before BYE."""
        self._running = False
        self._stopped.set()
        if self._sock is None:
            return
        try:
            self._sock.sendto(b"", self._sock.getsockname())  # the receive thread wakes at once
        except OSError:
            pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(1)
        self._sock.setblocking(False)
        while True:
            try:
                data, source = self._sock.recvfrom(2048)
            except OSError:
                break
            if data and self._accepts(source):
                self._take(data, time.monotonic())
        self._sock.close()

    # ---- receiving

    def _receive(self) -> None:
        sock = self._sock
        if sock is None:
            raise RuntimeError(f"call {self.call_id}: RTP receive thread started before the socket was bound")
        while self._running:
            try:
                data, source = sock.recvfrom(2048)
            except TimeoutError:
                self._check_silence()
                continue
            except OSError:
                if not self._running:
                    return
                time.sleep(0.01)  # e.g. an ICMP error for our own sends: keep receiving
                continue
            if not self._running:
                return  # stop() drains what is left
            if self._accepts(source):
                self._last_heard = time.monotonic()
                self._take(data, self._last_heard)
            else:
                self.guard.drop("rtp_wrong_source", source)
                self._check_silence()

    def _accepts(self, source: Address) -> bool:
        if source == self._expected:
            self._latched = self._latched or source  # the peer sends from where it said: nothing to learn
            return True
        if self._latched is not None:
            return source == self._latched
        if self.symmetric and source[0] in (self.peer_host, self._expected[0]):
            self._latched = source
            if source[0] != self._expected[0]:
                self._send_to = source  # behind NAT: answer where its packets come from
            log.info("call %s: RTP from %s:%d taken (SDP said %s:%d)", self.call_id, *source, *self._expected)
            return True
        return False

    def _take(self, data: bytes, now: float) -> None:
        # Media errors are the sender's problem (counted in debug only); nothing may end this thread.
        try:
            received = self.input.process_packet(data, now)
            self.packets_taken += 1
            for frame in received.frames:
                self.on_frame(frame)
            if received.digit:
                self.on_digit(received.digit)
        except MediaError as error:
            log.debug("call %s: RTP packet dropped: %s", self.call_id, error)
        except Exception:
            self.guard.error(f"call {self.call_id}: RTP packet handling failed")

    def _check_silence(self) -> None:
        if (self.remote.sends and not self._silence_reported and self.timeout > 0
                and time.monotonic() - self._last_heard > self.timeout):
            self._silence_reported = True
            try:
                self.on_silence()
            except Exception:
                self.guard.error(f"call {self.call_id}: ending a silent call failed")

    # ---- sending

    def _transmit(self) -> None:
        # Pacing is by deadline, no drift; packets carry the negotiated codec (media.RtpAudioOutput).
        sock = self._sock
        if sock is None:
            raise RuntimeError(f"call {self.call_id}: RTP send thread started before the socket was bound")
        next_send = time.monotonic()
        while self._running:
            try:
                frame = self.outgoing.get_nowait()
            except queue.Empty:
                frame = SILENCE
            packet = self.output.process_frame(frame)
            if not self.remote.on_hold:
                try:
                    sock.sendto(packet, self._send_to)
                    self.packets_sent += 1
                except (OSError, OverflowError):
                    pass
            next_send += FRAME_SECONDS
            delay = next_send - time.monotonic()
            if delay > 0:
                if self._stopped.wait(delay):  # a sleep that ``stop`` cuts short
                    return
            elif delay < -0.2:
                next_send = time.monotonic()  # fell far behind: do not burst to catch up

    def send_frame(self, frame: bytes, timeout: float) -> bool:
        try:
            self.outgoing.put(frame, timeout=timeout)
            return True
        except queue.Full:
            return False

    def flush(self) -> None:
        while True:
            try:
                self.outgoing.get_nowait()
            except queue.Empty:
                return


class PortPool:
    """Even RTP ports of a line's range (RFC 3550 §11: RTP on even ports)."""

    def __init__(self, low: int, high: int):
        self._free = list(range(low + low % 2, high + 1, 2))
        random.shuffle(self._free)
        self._lock = threading.Lock()
        self.range = (low, high)

    def acquire(self) -> int:
        with self._lock:
            if not self._free:
                raise SipError(f"no free RTP port left in {self.range[0]}-{self.range[1]}")
            return self._free.pop()

    def release(self, port: int) -> None:
        with self._lock:
            if port not in self._free:
                self._free.insert(0, port)

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._free)
