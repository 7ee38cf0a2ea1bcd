"""A line's SIP user agent: its socket, its keeper thread, inbound calls and the way out.

Trunk mode never registers: out-of-dialog requests are taken only from the allow-list, and every
response goes back where its request came from (RFC 3581 symmetric response). Register mode
registers ``user`` at ``server`` and takes calls from the registrar (and the allow-list).

The keeper thread brings the line up and keeps it up, whatever goes wrong: it binds the socket,
looks up the allow-list's host names, registers (register mode), refreshes and checks; every
failure (bind error, unknown host, no answer, 403, 5xx, a challenge it cannot meet) is kept as
the line's status with the time it began, and retried after 1, 2, 4 ... seconds, never more than
``retry_interval`` (at most 30) from one try to the next. ``start`` waits for the first outcome and
raises it, but the keeper goes on either way; nothing a line does stops another line or the web
console. A watchdog on the line's timer restarts a keeper that died.

``admit(invitation) -> int | None`` lets the owner refuse an INVITE before it rings: return a SIP
code (say 503 when this node has no recogniser free, so Kamailio's dispatcher tries the next
node) or None to take the call. It is asked once per INVITE, after the line's own checks (allow-list,
``max_calls``, codecs), so an INVITE it lets in becomes a call; it runs on the receive thread and
must answer at once. A 503 carries ``Retry-After``. The owner counts and logs its own refusals:
they are not reported to ``on_refused`` (a call refused so that another node takes it is not a
failed call); a retransmission of a refused INVITE gets the same answer without asking again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from callcenter.ivr.media import CODECS_BY_PAYLOAD_TYPE, Codec
from callcenter.sip.dialing import dial
from callcenter.sip.dialog import ALLOW, CallListener, Invitation, RefusedCall, SipCall
from callcenter.sip.errors import SipError
from callcenter.sip.guard import SUMMARY_SECONDS, Guard
from callcenter.sip.line import LineStatus
from callcenter.sip.message import USER_AGENT, SipMessage, build_response, new_tag
from callcenter.sip.registration import Registration
from callcenter.sip.rtp import PortPool
from callcenter.sip.sdp import SdpError, parse_sdp
from callcenter.sip.transaction import TRANSACTION_TIMEOUT, Timers
from callcenter.sip.transport import SipEndpoint
from callcenter.sip.uri import Address, resolve, uri_of, user_of
from core import log_context

log = logging.getLogger("callcenter.sip")

MAX_RETRY_INTERVAL = 30.0
RETRY_AFTER_SECONDS = 5  # in a 503 the owner asked for: a full node may have a recogniser free by then
WATCHDOG_SECONDS = 5.0


class UserAgent:
    def __init__(self, name: str, address: Address, *, user: str, mode: str = "register",
                 server: Address | None = None, password: str | None = None,
                 allow: Iterable[tuple[str, int | None]] = (), max_calls: int = 10,
                 rtp_ports: tuple[int, int] = (20000, 20999), codecs: Sequence[Codec] = (),
                 register_expires: int = 300, keepalive_interval: float = 30.0, retry_interval: float = 30.0,
                 symmetric_rtp: bool = True, rtp_timeout: float = 30.0,
                 on_incoming: Callable[[SipCall], None] = lambda call: call.reject(480),
                 on_refused: Callable[[RefusedCall], None] = lambda refused: None,
                 admit: Callable[[Invitation], int | None] | None = None):
        self.name, self.address, self.user, self.mode = name, address, user, mode
        self.server, self.password = server, password
        self.allow_config = list(allow)
        self.max_calls, self.codecs = max_calls, list(codecs) or list(CODECS_BY_PAYLOAD_TYPE.values())
        self.retry_interval = min(retry_interval, MAX_RETRY_INTERVAL)
        self.symmetric_rtp, self.rtp_timeout = symmetric_rtp, rtp_timeout
        self.ports = PortPool(*rtp_ports)
        self.on_incoming, self.on_refused, self.admit = on_incoming, on_refused, admit  # receive thread: quick
        self.user_agent = USER_AGENT
        self.guard = Guard(name)
        self.endpoint = SipEndpoint(name, address, self._on_request, self.screen, self.guard)
        self.registration: Registration | None = None
        if mode == "register":
            if server is None:
                raise SipError(f"line {name}: register mode needs a registrar (server)")
            self.registration = Registration(self, server, user, password, register_expires, keepalive_interval)
        self.contact = f"<sip:{user}@{address[0]}:{address[1]}>"
        self.status = LineStatus()
        self._allowed: dict[str, set[int | None]] = {}  # IP -> ports (None: any), once resolved
        self._calls: dict[str, SipCall] = {}
        self._ended: dict[str, SipCall] = {}  # kept 32 s to absorb retransmitted INVITE/BYE/ACK
        self._refused: dict[str, tuple[str, int]] = {}  # Call-ID -> (branch, code) refused in the last 32 s
        self._peer_hosts: Counter[str] = Counter()  # hosts of live (and just ended) calls
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._first_outcome = threading.Event()
        self._first_error: Exception | None = None
        self._keeper: threading.Thread | None = None

    @property
    def timers(self) -> Timers:
        timers = self.endpoint.timers
        if timers is None:
            raise SipError(f"line {self.name}: not started (no timers yet)")
        return timers

    @property
    def calls(self) -> list[SipCall]:
        return list(self._calls.values())

    # ---- up and down

    def start(self, timeout: float = 5.0) -> None:
        """Start the keeper; wait up to ``timeout`` s for its first outcome and raise it if it failed
        (SipError, RegistrationError). The keeper keeps trying either way, until ``stop``."""
        self.begin()
        error = self.first_outcome(timeout + 1.0)
        if error is not None:
            raise error

    def begin(self) -> None:
        """Start the keeper and return at once (``first_outcome`` tells how its first try went)."""
        if self._keeper is None:
            self._start_keeper()

    def first_outcome(self, timeout: float) -> Exception | None:
        """The first try's failure, or None when it succeeded or has not ended within ``timeout`` s."""
        self._first_outcome.wait(timeout)
        return self._first_error

    def _start_keeper(self) -> None:
        self._keeper = threading.Thread(target=self._keep, name=f"sip-line {self.name}", daemon=True)
        self._keeper.start()

    def stop(self) -> None:
        self._stopping.set()
        for call in self.calls:
            call.hangup()
        if self._keeper and self._keeper is not threading.current_thread():
            self._keeper.join(7)
        if self.registration and self.endpoint.started:
            self.registration.stop()
        self.guard.summarise()
        self.endpoint.stop()

    def _keep(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                wait = self._step()
                failures = 0
                self._first_outcome.set()
            except Exception as error:  # whatever went wrong: kept as the status, tried again
                failures += 1
                self._failed(error, failures)
                backoff = min(self.retry_interval, 2.0 ** (failures - 1))
                wait = max(0.0, backoff - (time.monotonic() - started))
            if self._stopping.wait(wait):
                return

    def _step(self) -> float:
        if not self.endpoint.started:
            self._resolve_allow_list()
            self.endpoint.start()
            self.timers.every(SUMMARY_SECONDS, self.guard.summarise)
            self.timers.every(WATCHDOG_SECONDS, self._watch_keeper)
            log.info("line %s: listening on %s:%d", self.name, *self.address)
        if self.registration is None:
            if self.status.state != "listening":
                self._set_status("listening")
                log.info("line %s: trunk on %s:%d, taking INVITEs from %s", self.name, *self.address,
                         ", ".join(f"{ip}:{'/'.join(str(p or '*') for p in ports)}" for ip, ports in self._allowed.items()))
            return 60.0
        wait = self.registration.step()
        if self.registration.registered.is_set():
            self._set_status("registered")
        return wait

    def _resolve_allow_list(self) -> None:
        allowed: dict[str, set[int | None]] = {}
        for host, port in self.allow_config:
            ip = resolve((host, 0), 2.0)[0]
            allowed.setdefault(ip, set()).add(port)
        self._allowed = allowed

    def _failed(self, error: Exception, failures: int) -> None:
        message = str(error) if isinstance(error, SipError) else f"{type(error).__name__}: {error}"
        if not message.startswith(f"line {self.name}:"):
            message = f"line {self.name}: {message}"
        state = "registering" if self.registration else "down"
        if failures == 1 or self.status.error != message:
            log.error("%s; trying again, at most every %g s", message, self.retry_interval)
        if not isinstance(error, SipError):
            log.debug("line %s: keeper step failed", self.name, exc_info=error)
        self._set_status(state, message)
        if not self._first_outcome.is_set():
            self._first_error = error
            self._first_outcome.set()

    def _set_status(self, state: str, error: str = "") -> None:
        if state != self.status.state:
            self.status = LineStatus(state, error)
        else:
            self.status.error = error

    def _watch_keeper(self) -> None:
        """A keeper that died (it should not: it catches everything) is noticed and started again."""
        if self._stopping.is_set() or (self._keeper and self._keeper.is_alive()):
            return
        log.error("line %s: its keeper thread stopped; starting it again", self.name)
        self._set_status("registering" if self.registration else "down", "the line's keeper thread stopped")
        self._start_keeper()

    def current_status(self) -> LineStatus:
        if not self._stopping.is_set() and self._keeper is not None and not self._keeper.is_alive():
            return LineStatus("registering" if self.registration else "down", "the line's keeper thread stopped",
                              self.status.since)
        return self.status

    # ---- who may send what

    def allowed(self, source: Address) -> bool:
        """On the allow-list (or the registrar, which sends us our calls)."""
        ports = self._allowed.get(source[0])
        if ports is not None and (None in ports or source[1] in ports):
            return True
        server = self.registration.server if self.registration else None
        return server is not None and source[0] == server[0]

    def screen(self, source: Address) -> bool:
        """May a request from there be read at all: allowed, or the peer of a call of ours."""
        return self.allowed(source) or source[0] in self._peer_hosts

    def send(self, data: bytes, destination: Address) -> None:
        self.endpoint.send(data, destination)

    def via(self, branch: str) -> str:
        return f"Via: SIP/2.0/UDP {self.address[0]}:{self.address[1]};branch={branch};rport"

    def add_call(self, call: SipCall) -> None:
        """Takes a slot (callers check max_calls under ``_lock``) and trusts the call's peer hosts."""
        self._calls[call.call_id] = call
        self._peer_hosts.update(call.peer_hosts)

    def forget(self, call: SipCall) -> None:
        """The call ended: its slot is free at once; its dialog is remembered 32 s for retransmissions."""
        with self._lock:
            if self._calls.get(call.call_id) is call:
                del self._calls[call.call_id]
                self._ended[call.call_id] = call
            else:
                return
        if self.endpoint.timers:
            self.timers.call_later(TRANSACTION_TIMEOUT, lambda: self._drop_ended(call))
        else:
            self._drop_ended(call)

    def _drop_ended(self, call: SipCall) -> None:
        with self._lock:
            if self._ended.get(call.call_id) is call:
                del self._ended[call.call_id]
            self._peer_hosts.subtract(call.peer_hosts)
            self._peer_hosts += Counter()  # drop the zeros

    # ---- requests arriving (receive thread: quick, never blocks)

    def _on_request(self, request: SipMessage, source: Address) -> None:
        call = self._calls.get(request.call_id) or self._ended.get(request.call_id)
        if call is not None:
            with log_context.bound(call_id=call.call_id):
                self._in_dialog(call, request, source)
            return
        method = request.method
        if method == "ACK":
            return
        if request.to_tag:
            self.send(build_response(request, 481), source)  # a dialog we do not have (any more)
        elif not self.allowed(source):  # the peer of another call may talk to us about that call only
            self.guard.drop("not_allowed", source)
        elif method == "INVITE":
            with log_context.bound(call_id=request.call_id[:128]):  # a new call, also one refused
                self._incoming(request, source)
        elif method == "OPTIONS":  # PBX health checks (pyVoIP answered nothing)
            self.send(build_response(request, 200, to_tag=new_tag(),
                                     headers=[f"Allow: {ALLOW}", "Accept: application/sdp"]), source)
        elif method == "CANCEL":
            self.send(build_response(request, 481), source)
        else:
            self.send(build_response(request, 405, headers=[f"Allow: {ALLOW}"]), source)

    def _in_dialog(self, call: SipCall, request: SipMessage, source: Address) -> None:
        method = request.method
        verdict = call.match(request, source, self.allowed(source))
        if verdict == "wrong_source":
            self.guard.drop("wrong_source", source)
        elif verdict == "mismatch":
            if method == "INVITE" and not request.to_tag:
                self.send(build_response(request, 482), source)  # Loop Detected: same Call-ID, new INVITE
            elif method != "ACK":
                self.send(build_response(request, 481), source)
        elif method == "ACK":
            call.on_ack(request)
        elif method == "CANCEL":
            call.on_cancel(request, source)
        elif method == "BYE":
            call.on_bye(request, source)
        elif method == "INFO":
            call.on_info(request, source)
        elif method == "INVITE":
            call.retransmit_last_response() if not request.to_tag else call.on_reinvite(request, source)
        elif method == "OPTIONS":  # an in-dialog keep-alive from the other phone
            self.send(build_response(request, 200, headers=[f"Allow: {ALLOW}"]), source)
        else:
            self.send(build_response(request, 405, headers=[f"Allow: {ALLOW}"]), source)

    def _incoming(self, invite: SipMessage, source: Address) -> None:
        caller = user_of(uri_of(invite.value("From"))) or "anonymous"
        branch, code = self._refused.get(invite.call_id, ("", 0))
        if branch and branch == invite.branch:  # a retransmission of an INVITE we refused: the same answer
            self._refuse(invite, source, code, "")
            return
        with self._lock:
            # pyVoIP took every INVITE until the box fell over; beyond max_calls: 486 Busy Here.
            if len(self._calls) >= self.max_calls:
                self._refuse(invite, source, 486, f"INVITE from {caller}: line {self.name} has "
                                                  f"{len(self._calls)} of {self.max_calls} calls")
                return
            try:
                media = parse_sdp(invite.content)
                codec = media.choose_codec(self.codecs)
                if codec is None:
                    raise SdpError(f"no common codec in {media.payload_types} (we take "
                                   f"{', '.join(c.name for c in self.codecs)})")
            except SdpError as error:
                self._refuse(invite, source, 488, f"INVITE from {caller}: {error}")
                return
            if self.admit is not None:
                invitation = Invitation(invite.call_id, caller, user_of(invite.uri) or user_of(uri_of(invite.value("To"))),
                                        {name: values[0] for name, values in invite.headers.items() if values})
                refusal = self.admit(invitation)
                if refusal is not None:
                    self._refuse(invite, source, refusal, "", report=False)
                    return
            call = SipCall.inbound(self, invite, source, media, codec)
            self.add_call(call)
        call.ring()
        log.info("call %s: INVITE from %s to %s via %s:%d on line %s (%s offered)", call.call_id, call.caller,
                 call.called, *source, self.name, codec.name)
        self.on_incoming(call)  # at once: pyVoIP answered through a 1 s Timer

    def _refuse(self, invite: SipMessage, source: Address, code: int, why: str, report: bool = True) -> None:
        """Answer an INVITE with a final error before any call exists; report each refused call once
        (a retransmitted INVITE gets the answer again, not a second report). ``report=False``: the
        owner refused it through ``admit`` and keeps its own count; nothing is logged or reported."""
        headers = [f"Retry-After: {RETRY_AFTER_SECONDS}"] if code == 503 else []
        self.send(build_response(invite, code, to_tag=new_tag(), headers=headers), source)
        if invite.call_id in self._refused:
            return
        self._refused[invite.call_id] = (invite.branch, code)
        self.timers.call_later(TRANSACTION_TIMEOUT, lambda: self._refused.pop(invite.call_id, None))
        if not report:
            return
        log.warning("call %s: refused (%d): %s", invite.call_id, code, why)
        self.on_refused(RefusedCall(invite.call_id, user_of(uri_of(invite.value("From"))) or "anonymous",
                                    user_of(uri_of(invite.value("To"))), code, why))

    # ---- outbound

    def dial(self, target: str, timeout: float, make_listener: Callable[[SipCall], CallListener],
             cancel: threading.Event | None = None) -> SipCall:
        """INVITE ``target`` (a number through the server, or a sip: URI) and return the call once
        answered; DialError with the SIP code otherwise (dialing.py)."""
        return dial(self, target, timeout, make_listener, cancel)
