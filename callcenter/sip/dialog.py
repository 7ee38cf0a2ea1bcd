"""Calls: a dialog (RFC 3261 §12-15) with its RTP stream, for one inbound or outbound call.

A dialog belongs to its peer: requests inside it are matched by Call-ID, our tag and theirs, and
come from the peer's hosts (where the INVITE came from or went to, its Contact, its first Route)
or from the line's allow-list; anything else is counted and dropped, so a stranger who learns a
Call-ID can neither end the call, nor press keys in it, nor move its audio to themselves.

Whatever fails, a call ends cleanly: ``hangup`` always ends the call here even when no BYE can be
built or sent (a bad Contact or Route, an address that does not resolve), and ``_end`` frees the
call's slot, its RTP port and threads, and tells the listener, whichever step fails.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from callcenter.ivr.media import Codec
from callcenter.sip.errors import CallEnded, SipError
from callcenter.sip.line import Line
from callcenter.sip.message import SipMessage, build_response, encode, new_branch, new_tag, reason_phrase
from callcenter.sip.rtp import RtpStream
from callcenter.sip.sdp import RemoteMedia, SdpError, parse_sdp, session_description
from callcenter.sip.transaction import T1, T2, TRANSACTION_TIMEOUT
from callcenter.sip.uri import Address, SipUri, is_ipv4, resolve, uri_of, user_of

log = logging.getLogger("callcenter.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"


class CallState(StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(frozen=True)
class RefusedCall:
    """An INVITE answered with an error before it became a call (busy, codec, refused by the owner)."""

    call_id: str
    caller: str
    called: str
    code: int
    reason: str


@dataclass(frozen=True)
class Invitation:
    """A new INVITE as the line's owner sees it when deciding whether to take it (``admit``)."""

    call_id: str
    caller: str
    called: str
    headers: dict[str, str]  # lower-case name -> the first value of each header field

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


class CallListener(Protocol):
    """What a call reports, from the SIP and RTP threads; implementations must only queue."""

    def on_frame(self, pcm: bytes) -> None: ...
    def on_digit(self, key: str) -> None: ...
    def on_ended(self, reason: str) -> None: ...


def host_of(uri: str) -> str | None:
    """The host of a URI if it is an IPv4 literal (a peer we may hear from), else None."""
    try:
        host = SipUri.parse(uri).host
    except ValueError:
        return None
    return host if is_ipv4(host) else None


class SipCall:
    """The signalling and RTP stream of one call."""

    def __init__(self, agent: Line, call_id: str, direction: str, caller: str, called: str):
        self.agent, self.call_id, self.direction = agent, call_id, direction
        self.caller, self.called = caller, called
        self.state = CallState.DIALING if direction == "outbound" else CallState.RINGING
        self.end_reason = ""
        self.end_outcome: str | None = None  # "media_timeout" when the call ended for lack of RTP
        self.listener: CallListener | None = None
        self.lock = threading.RLock()
        self.local_tag, self.remote_tag = new_tag(), ""
        self.local_party = self.remote_party = ""  # From/To values as used in our requests, with tags
        self.remote_target = ""
        self.route_set: list[str] = []
        self.peer: Address | None = None  # where the dialog's requests went or came from first
        self.peer_hosts: set[str] = set()  # hosts whose in-dialog requests are this call's
        self.local_cseq = 100
        self.invite: SipMessage | None = None  # inbound: the INVITE we answer
        self.remote_media: RemoteMedia | None = None
        self.codec: Codec | None = None
        self.port: int | None = None  # our RTP port, taken from the line's pool until the call ends
        self.stream: RtpStream | None = None
        self.session_id = random.randint(1, 2**31)
        self.sdp_version = 1
        self.acked = threading.Event()
        self._last_response = b""
        self._ok_sent_at = 0.0

    def __repr__(self) -> str:
        return f"<SipCall {self.call_id} {self.direction} {self.caller}->{self.called} {self.state}>"

    # ---- inbound

    @classmethod
    def inbound(cls, agent: Line, invite: SipMessage, source: Address, media: RemoteMedia,
                codec: Codec) -> SipCall:
        call = cls(agent, invite.call_id, "inbound", user_of(uri_of(invite.value("From"))) or "anonymous",
                   user_of(invite.uri) or user_of(uri_of(invite.value("To"))))
        call.invite, call.peer, call.remote_media, call.codec = invite, source, media, codec
        call.remote_tag = invite.from_tag
        call.local_party = f"{invite.value('To')};tag={call.local_tag}"
        call.remote_party = invite.value("From")
        call.remote_target = uri_of(invite.value("Contact")) or uri_of(invite.value("From"))
        call.route_set = invite.values("Record-Route")  # RFC 3261 §12.1.1: in order for the UAS
        call.learn_peers()
        return call

    def take_answer(self, response: SipMessage) -> None:
        """Our INVITE's 2xx makes the dialog (RFC 3261 §12.1.2): the callee's To with its tag (the ACK
        must carry it), its Contact as the remote target, the Record-Route reversed as the route set."""
        self.remote_party = response.value("To")
        self.remote_tag = response.to_tag
        self.remote_target = uri_of(response.value("Contact")) or uri_of(self.remote_party)
        self.route_set = list(reversed(response.values("Record-Route")))
        self.learn_peers()

    def learn_peers(self) -> None:
        """The hosts that may send requests in this dialog: the peer, its Contact, its first Route."""
        hosts = {self.peer[0]} if self.peer else set()
        for uri in (self.remote_target, uri_of(self.route_set[0]) if self.route_set else ""):
            host = host_of(uri) if uri else None
            if host:
                hosts.add(host)
        self.peer_hosts = hosts

    def ring(self) -> None:
        self._respond(180, headers=[f"Contact: {self.agent.contact}"])

    def answer(self) -> None:
        """200 OK with our SDP. CallEnded if the caller already went (or no RTP port is free: 503)."""
        with self.lock:
            if self.state != CallState.RINGING:
                raise CallEnded(f"call {self.call_id}: cannot answer, {self.end_reason or self.state}")
            try:
                stream = self._open_stream()
            except (SipError, OSError) as error:
                self._respond(503)
                self._end(f"cannot answer: {error}")
                raise CallEnded(f"call {self.call_id}: cannot answer: {error}") from None
            # RFC 3261 §12.1.1: the 2xx copies Record-Route and carries our Contact
            headers = [f"Record-Route: {route}" for route in self.route_set]
            headers += [f"Contact: {self.agent.contact}", f"Allow: {ALLOW}"]
            self._respond(200, headers=headers, body=self._session_description())
            self.state = CallState.ANSWERED
            self._ok_sent_at = time.monotonic()
        codec, media = self._negotiated()
        log.info("call %s: answered (%s, RTP %s:%d <-> %s:%d)", self.call_id, codec.name,
                 *stream.local_address, media.address, media.port)
        self.agent.timers.call_later(T1, lambda: self._retransmit_ok(T1))

    def _retransmit_ok(self, interval: float) -> None:
        """RFC 3261 §13.3.1.4: the 2xx is retransmitted until the ACK comes, at most 64*T1."""
        if self.acked.is_set() or self.state != CallState.ANSWERED:
            return
        if time.monotonic() - self._ok_sent_at >= TRANSACTION_TIMEOUT:
            log.warning("call %s: no ACK for our 200 OK within %g s; hanging up", self.call_id, TRANSACTION_TIMEOUT)
            self.hang_up_soon("no ACK for our 200 OK")
            return
        self.agent.send(self._last_response, self._peer())
        self.agent.timers.call_later(min(interval * 2, T2), lambda: self._retransmit_ok(min(interval * 2, T2)))

    def reject(self, code: int = 486) -> None:
        with self.lock:
            if self.state != CallState.RINGING:
                return
            self._respond(code)
            self._end(f"rejected with {code} {reason_phrase(code)}")

    def _respond(self, code: int, headers: Sequence[str] = (), body: str = "") -> None:
        if self.invite is None:
            raise SipError(f"call {self.call_id}: no INVITE to answer {code} to (an outbound call)")
        self._last_response = build_response(self.invite, code, to_tag=self.local_tag, headers=headers, body=body)
        self.agent.send(self._last_response, self._peer())

    def retransmit_last_response(self) -> None:
        if self._last_response:
            self.agent.send(self._last_response, self._peer())

    def _peer(self) -> Address:
        """Where the dialog's requests came from first: set for every call before it sends anything."""
        if self.peer is None:
            raise SipError(f"call {self.call_id}: no peer address yet")
        return self.peer

    def _negotiated(self) -> tuple[Codec, RemoteMedia]:
        """The codec and the other side's media: every call has them once offer and answer are done."""
        if self.codec is None or self.remote_media is None:
            raise SipError(f"call {self.call_id}: no media negotiated yet")
        return self.codec, self.remote_media

    # ---- requests from the other side (receive thread: quick, never blocks on the network)

    def match(self, request: SipMessage, source: Address, source_allowed: bool) -> str:
        """"ok"; "wrong_source" (not the peer, not on the allow-list: drop it unanswered); or
        "mismatch" (our Call-ID, not our dialog or transaction: 481/482)."""
        if not (source_allowed or source[0] in self.peer_hosts):
            return "wrong_source"
        if request.method == "CANCEL" or (request.method == "INVITE" and not request.to_tag):
            same = (self.invite is not None and request.branch == self.invite.branch
                    and request.from_tag == self.remote_tag and source == self.peer)
        else:
            same = request.to_tag == self.local_tag and request.from_tag == self.remote_tag
        return "ok" if same else "mismatch"

    def on_cancel(self, cancel: SipMessage, source: Address) -> None:
        # RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE, and the call is over.
        with self.lock:
            self.agent.send(build_response(cancel, 200, to_tag=self.local_tag), source)
            if self.state == CallState.RINGING:
                self._respond(487)
                self._end("cancelled by the caller before answer")

    def on_ack(self, ack: SipMessage) -> None:
        self.acked.set()

    def on_bye(self, bye: SipMessage, source: Address) -> None:
        with self.lock:
            self.agent.send(build_response(bye, 200), source)
            if self.state != CallState.ENDED:
                self._end("hung up by the other side")

    def on_reinvite(self, invite: SipMessage, source: Address) -> None:
        """One stream for the whole call: a re-INVITE points it elsewhere (or on hold)."""
        with self.lock:
            if self.state != CallState.ANSWERED or self.stream is None:
                code = 491 if self.state in (CallState.RINGING, CallState.DIALING) else 481
                self.agent.send(build_response(invite, code), source)
                return
            codec, media = self._negotiated()
            try:
                if invite.content:
                    media = parse_sdp(invite.content)
                if codec.payload_type not in media.payload_types:
                    raise SdpError(f"{codec.name} is no longer offered ({media.payload_types})")
            except SdpError as error:
                log.warning("call %s: re-INVITE refused: %s", self.call_id, error)
                self.agent.send(build_response(invite, 488), source)
                return
            self.remote_media = media
            self.stream.retarget(media)
            if invite.value("Contact"):
                self.remote_target = uri_of(invite.value("Contact"))  # RFC 3261 §12.2.2 target refresh
            self.sdp_version += 1
            headers = [f"Contact: {self.agent.contact}", f"Allow: {ALLOW}"]
            self.agent.send(build_response(invite, 200, headers=headers, body=self._session_description()), source)
        log.info("call %s: re-INVITE: RTP now to %s:%d%s", self.call_id, media.address, media.port,
                 " (on hold)" if media.on_hold else "")

    def on_info(self, info: SipMessage, source: Address) -> None:
        """SIP INFO DTMF (application/dtmf-relay, "Signal=5"), which some PBXs send instead of RFC 4733."""
        self.agent.send(build_response(info, 200), source)
        match = re.search(rb"Signal\s*=\s*([0-9*#A-Da-d])", info.content)
        if match and self.listener and info.value("Content-Type").lower() == "application/dtmf-relay":
            self.listener.on_digit(match.group(1).decode().upper())

    # ---- our requests within the dialog

    def hangup(self, reason: str = "hung up by us") -> None:
        """BYE if answered, 480 if still ringing, nothing if over. The call ends here whatever
        happens to the BYE (it cannot be built, its target does not resolve, the send fails)."""
        destination, problem = None, None
        if self.state == CallState.ANSWERED:  # looked up before the lock: the receive thread may want it
            try:
                destination = self.request_destination()
            except Exception as error:
                problem = error
        with self.lock:
            if self.state == CallState.RINGING:
                self.reject(480)
                return
            if self.state != CallState.ANSWERED:
                return
            try:
                if destination is None:
                    raise SipError(f"no address for the BYE: {problem}")
                data, branch = self.in_dialog_request("BYE")
                self.agent.endpoint.request("BYE", branch, data, destination)
                log.info("call %s: BYE sent to %s:%d%s", self.call_id, *destination,
                         f" (Route: {', '.join(self.route_set)})" if self.route_set else "")
            except Exception as error:
                log.warning("call %s: no BYE could be sent (%s); the call ends here", self.call_id, error)
            finally:
                self._end(reason)

    def hang_up_soon(self, reason: str, outcome: str | None = None) -> None:
        """Hang up from a thread that must not wait (timer, RTP): on a short thread of its own."""
        def run() -> None:
            if outcome:
                self.end_outcome = outcome
            self.hangup(reason)
        threading.Thread(target=contextvars.copy_context().run, args=(run,), name=f"hangup {self.call_id}",
                         daemon=True).start()

    def request_destination(self) -> Address:
        """Where an in-dialog request goes (RFC 3261 §12.2.1.1): the first Route, else the remote
        target, resolved within a bounded time. When that address cannot be had (an IPv6 or host
        name Contact, DNS down, a malformed Route), the peer the dialog's INVITE came from or went to."""
        uri = uri_of(self.route_set[0]) if self.route_set else self.remote_target
        try:
            return resolve(SipUri.parse(uri).address)
        except (SipError, ValueError) as error:
            if self.peer is None:
                raise SipError(f"call {self.call_id}: nowhere to send to: {error}") from None
            log.info("call %s: %s unusable (%s); sending to %s:%d instead", self.call_id, uri[:80], error, *self.peer)
            return self.peer

    def in_dialog_request(self, method: str, cseq: int | None = None) -> tuple[bytes, str]:
        """A request inside the dialog: Request-URI and Route from the route set (RFC 3261 §12.2.1.1).
        The route set is the one the proxy record-routed (pyVoIP #7 sent BYE without it)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        request_uri, routes = self.remote_target, list(self.route_set)
        if routes and not SipUri.parse(uri_of(routes[0])).loose_router:  # a strict router (RFC 2543)
            request_uri, routes = uri_of(routes[0]), routes[1:] + [f"<{self.remote_target}>"]
        branch = new_branch()
        headers = [self.agent.via(branch), "Max-Forwards: 70", *[f"Route: {route}" for route in routes],
                   f"From: {self.local_party}", f"To: {self.remote_party}", f"Call-ID: {self.call_id}",
                   f"CSeq: {cseq} {method}", f"User-Agent: {self.agent.user_agent}"]
        return encode(f"{method} {request_uri} SIP/2.0", headers), branch

    # ---- media and ending

    def new_stream(self, port: int) -> RtpStream:
        codec, media = self._negotiated()
        return RtpStream(self.call_id, (self.agent.address[0], port), media, codec,
                         on_frame=self._frame, on_digit=self._digit, on_silence=self._silent,
                         peer_host=self.peer[0] if self.peer else "", guard=self.agent.guard,
                         symmetric=self.agent.symmetric_rtp, timeout=self.agent.rtp_timeout)

    def _open_stream(self) -> RtpStream:
        for _ in range(10):
            port = self.agent.ports.acquire()
            stream = self.new_stream(port)
            try:
                stream.start()
            except (OSError, OverflowError) as error:
                log.warning("call %s: RTP port %d unusable (%s); trying another", self.call_id, port, error)
                continue  # the port stays out of the pool: something else holds it
            self.port, self.stream = port, stream
            return stream
        raise SipError(f"call {self.call_id}: no usable RTP port in {self.agent.ports.range}")

    def _frame(self, pcm: bytes) -> None:
        if self.listener:
            self.listener.on_frame(pcm)

    def _digit(self, key: str) -> None:
        log.info("call %s: DTMF %s", self.call_id, key)
        if self.listener:
            self.listener.on_digit(key)

    def _silent(self) -> None:
        _, media = self._negotiated()
        log.warning("call %s: no RTP from %s:%d for %g s; hanging up", self.call_id, media.address,
                    media.port, self.agent.rtp_timeout)
        self.hang_up_soon(f"no RTP for {self.agent.rtp_timeout:g} s", outcome="media_timeout")

    def _session_description(self) -> str:
        codec, media = self._negotiated()
        if self.port is None:
            raise SipError(f"call {self.call_id}: no RTP port to describe")
        return session_description(self.agent.address[0], self.port, self.session_id, self.sdp_version,
                                   [codec], media.event_payload_type)

    def _end(self, reason: str) -> None:
        """Over: free the RTP port and threads, the call's slot, and tell the listener. Each step on its
        own, so that one failing cannot keep the others from happening."""
        if self.state == CallState.ENDED:
            return
        self.state, self.end_reason = CallState.ENDED, reason
        if self.stream is not None:
            try:
                self.stream.stop()
            except Exception:
                log.exception("call %s: stopping its RTP stream failed", self.call_id)
        if self.port is not None:
            self.agent.ports.release(self.port)
            self.port = None
        try:
            self.agent.forget(self)
        except Exception:
            log.exception("call %s: could not be forgotten", self.call_id)
        log.info("call %s: ended: %s", self.call_id, reason)
        if self.listener:
            try:
                self.listener.on_ended(reason)
            except Exception:
                log.exception("call %s: its listener failed on the end", self.call_id)
