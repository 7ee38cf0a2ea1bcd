"""One UDP socket per line, its receive thread, and the order in which a datagram is judged.

Cheapest first, so that whatever a stranger sends costs us next to nothing:

1. a keep-alive (CRLF, NUL) is ignored; a datagram over ``MAX_DATAGRAM`` bytes is dropped unread;
2. the first line only: not SIP -> dropped; a request from an address the line does not know
   (``screen`` says no: not on the allow-list, not the peer of a call) -> dropped, or answered 403
   within the guard's small budget; a response from anywhere we sent nothing to -> dropped;
3. only then the whole message is parsed (linear, capped) and handed on.

Every drop is counted by the line's ``Guard``, never logged one by one.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

from callcenter.sip.errors import BadMessage, SipError
from callcenter.sip.guard import Guard
from callcenter.sip.message import MAX_DATAGRAM, SipMessage, StartLine, build_response, new_tag, start_line
from callcenter.sip.transaction import ClientTransaction, Timers
from callcenter.sip.uri import Address
from core import log_context

log = logging.getLogger("callcenter.sip")

WILDCARDS = ("", "0.0.0.0", "::", "*")


class SipEndpoint:
    """The socket, the receive loop and the client transactions of one line.

    ``on_request(message, source)`` runs on the receive thread for every request that passed the
    checks; ``screen(source)`` says whether a request from there may be read at all."""

    def __init__(self, name: str, address: Address, on_request: Callable[[SipMessage, Address], None],
                 screen: Callable[[Address], bool], guard: Guard):
        if address[0] in WILDCARDS:
            raise ValueError(f"line {name}: listen address must be one interface address, not {address[0]!r}")
        self.name, self.address, self.on_request, self.screen, self.guard = name, address, on_request, screen, guard
        self.timers: Timers | None = None
        self._sock: socket.socket | None = None
        self._transactions: dict[tuple[str, str], ClientTransaction] = {}
        self._destinations: Counter[str] = Counter()  # IPs with a transaction of ours: responses come from there
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the line's address (SipError if it cannot) and start receiving."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except (OSError, OverflowError) as error:
            sock.close()
            raise SipError(f"line {self.name}: cannot listen on {self.address[0]}:{self.address[1]}: {error}") from None
        if sock.getsockname() != self.address:
            sock.close()
            raise SipError(f"line {self.name}: socket bound {sock.getsockname()}, not {self.address}")
        sock.settimeout(0.25)
        self._sock, self._running = sock, True
        self.timers = Timers(self.name)
        self._thread = threading.Thread(target=self._receive_loop, name=f"sip-recv {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread and self._thread is not threading.current_thread():
            self._wake()
            self._thread.join(2)
        if self.timers:
            self.timers.stop()
        if self._sock:
            self._sock.close()

    def _wake(self) -> None:
        """An empty datagram to ourselves: the receive loop sees it is to stop without waiting out its timeout."""
        sock = self._sock
        if sock is None:  # never started: no receive loop to wake
            return
        try:
            sock.sendto(b"", sock.getsockname())
        except OSError:
            pass

    @property
    def started(self) -> bool:
        return self._running

    @property
    def socket_address(self) -> Address:
        return self._sock.getsockname() if self._sock else self.address

    def send(self, data: bytes, destination: Address) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, destination)
        except (OSError, OverflowError, TypeError) as error:  # a bad port or host from a peer's header
            log.warning("line %s: cannot send to %s: %s", self.name, destination, error)

    def request(self, method: str, branch: str, data: bytes, destination: Address,
                on_provisional: Callable[[SipMessage], None] | None = None) -> ClientTransaction:
        transaction = ClientTransaction(self, method, branch, data, destination, on_provisional)
        with self._lock:
            self._transactions[(branch, method)] = transaction
            self._destinations[destination[0]] += 1
        transaction.start()
        return transaction

    def forget(self, transaction: ClientTransaction) -> None:
        with self._lock:
            if self._transactions.pop((transaction.branch, transaction.method), None) is not None:
                self._destinations[transaction.destination[0]] -= 1
                if self._destinations[transaction.destination[0]] <= 0:
                    del self._destinations[transaction.destination[0]]

    # ---- receiving

    def _receive_loop(self) -> None:
        with log_context.bound(line=self.name):  # every line this thread logs names its line
            self._receive()

    def _receive(self) -> None:
        sock = self._sock
        if sock is None:
            raise SipError(f"line {self.name}: receive loop started before the socket was bound")
        while self._running:
            try:
                data, source = sock.recvfrom(65535)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError as error:  # e.g. an ICMP port-unreachable reported late: keep serving
                if not self._running:
                    return
                log.debug("line %s: SIP socket error: %s", self.name, error)
                time.sleep(0.01)
                continue
            if not self._running:
                return
            try:
                self.dispatch(data, source)
            except Exception:  # nothing a datagram does may end this loop
                self.guard.error(f"failed on a datagram from {source[0]}:{source[1]}")

    def dispatch(self, data: bytes, source: Address) -> None:
        """Judge one datagram (module docstring) and hand it on; never raises for what it contains."""
        if len(data) <= 4 and not data.strip(b"\r\n\x00"):
            return  # RFC 5626 §4.4.1 keep-alive (CRLF), or a NUL ping
        if len(data) > MAX_DATAGRAM:
            self.guard.drop("oversized", source)
            return
        try:
            start = start_line(data)
        except BadMessage as error:
            self.guard.drop(error.kind, source)
            return
        if start.is_request and not self.screen(source):
            self.guard.drop("not_allowed", source)
            if start.method not in ("ACK", "CANCEL") and self.guard.may_answer():
                self._forbid(data, start, source)
            return
        if not start.is_request and source[0] not in self._destinations:
            self.guard.drop("unexpected_response", source)
            return
        try:
            message = SipMessage.parse(data, start)
        except BadMessage as error:
            self.guard.drop(error.kind, source)
            return
        try:
            if message.is_request:
                self.on_request(message, source)
            else:
                transaction = self._transactions.get((message.branch, message.cseq[1]))
                if transaction and transaction.method in ("REGISTER", "OPTIONS"):  # the line's, no call's
                    transaction.receive(message)
                elif transaction:
                    with log_context.bound(call_id=message.call_id[:128]):
                        transaction.receive(message)
        except Exception:
            self.guard.error(f"failed handling {message.method or message.status_code} from {source[0]}:{source[1]} "
                             f"(call {message.call_id[:80]})")
            if message.is_request and message.method != "ACK":
                self.send(build_response(message, 500), source)

    def _forbid(self, data: bytes, start: StartLine, source: Address) -> None:
        try:
            message = SipMessage.parse(data, start)
        except BadMessage:
            return
        self.send(build_response(message, 403, to_tag=new_tag()), source)
