"""Calling out (RFC 3261 §13.2): INVITE, answer a 401/407 challenge once, CANCEL when the ring time
is up or whoever dials gives up, ACK the answer with the 200's own To-tag and route set.

Every way a dial can fail ends as a DialError with the SIP code when there was one, and frees
what the attempt took (the slot, the RTP port): a target that does not parse or resolve fails at
once (``RESOLVE_TIMEOUT``), never minutes later.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from callcenter.ivr.media import Codec
from callcenter.sip.dialog import ALLOW, CallListener, CallState, SipCall
from callcenter.sip.digest import answer_challenge
from callcenter.sip.errors import DialError, SipError
from callcenter.sip.line import Line, LineStatus
from callcenter.sip.message import SipMessage, encode, new_branch, new_call_id
from callcenter.sip.sdp import SdpError, parse_sdp, session_description
from callcenter.sip.transaction import TRANSACTION_TIMEOUT, ClientTransaction
from callcenter.sip.uri import Address, SipUri, resolve, user_of

log = logging.getLogger("callcenter.sip")


class DialingLine(Line, Protocol):
    """The user agent as its dialling uses it: this module is the outbound half of agent.py, so
    it takes a call slot under the agent's own lock."""

    user: str
    server: Address | None
    password: str | None
    status: LineStatus
    codecs: list[Codec]
    max_calls: int
    _lock: threading.Lock
    _calls: dict[str, SipCall]
    _peer_hosts: Counter[str]

    def add_call(self, call: SipCall) -> None: ...


def dial(agent: DialingLine, target: str, timeout: float, make_listener: Callable[[SipCall], CallListener],
         cancel: threading.Event | None = None) -> SipCall:
    """INVITE ``target`` and return the call once answered. DialError with the SIP code otherwise:
    the callee's refusal, 408 after ``timeout`` s of ringing, 487 once ``cancel`` is set (whoever
    dials gave up: a stopped call-out, a service shutting down)."""
    if not agent.endpoint.started:
        raise DialError(f"line {agent.name}: not listening ({agent.status.error or agent.status.state}); "
                        f"cannot dial {target}")
    uri, destination = _target(agent, target)
    with agent._lock:
        if len(agent._calls) >= agent.max_calls:
            raise DialError(f"line {agent.name}: {len(agent._calls)} calls active (max_calls={agent.max_calls}); "
                            f"not dialing {target}", 486)
        call = SipCall(agent, new_call_id(agent.address[0]), "outbound", agent.user, user_of(uri) or target)
        call.peer = destination
        call.learn_peers()
        agent.add_call(call)
    try:
        call.listener = make_listener(call)
        from_host = agent.server[0] if agent.server else agent.address[0]
        call.local_party = f"<sip:{agent.user}@{from_host}>;tag={call.local_tag}"
        call.remote_party = f"<{uri}>"
        call.port = port = agent.ports.acquire()
        return _invite(agent, call, port, uri, destination, timeout, cancel)
    except BaseException as error:
        if call.state == CallState.ANSWERED:
            call.hangup(f"dial failed: {error}")  # answered, then unusable: BYE it
        else:
            with call.lock:
                call._end(f"dial failed: {error}")
        if isinstance(error, DialError) or not isinstance(error, Exception):
            raise
        raise DialError(f"call {call.call_id}: dialing {uri} failed: {error}") from error


def _target(agent: DialingLine, target: str) -> tuple[str, Address]:
    """The Request-URI and where the INVITE goes: the line's server if it has one, else the URI's host."""
    target = target.strip()
    if not target or re.search(r"[\s<>\"\x00-\x1f]", target):  # it goes into our headers as it is
        raise DialError(f"line {agent.name}: cannot dial {target!r}: not a number, extension or SIP URI")
    if target.lower().startswith(("sip:", "sips:")) or "@" in target:
        uri = target if target.lower().startswith(("sip:", "sips:")) else f"sip:{target}"
    elif agent.server:
        port = f":{agent.server[1]}" if agent.server[1] != 5060 else ""
        uri = f"sip:{target}@{agent.server[0]}{port}"
    else:
        raise DialError(f"line {agent.name}: a trunk without a server can only dial full sip: URIs, not {target!r}")
    try:
        parsed = SipUri.parse(uri)
        destination = resolve(agent.server or parsed.address)
    except (ValueError, SipError) as error:
        raise DialError(f"line {agent.name}: cannot dial {target}: {error}") from None
    return uri, destination


def _invite(agent: DialingLine, call: SipCall, port: int, uri: str, destination: Address, timeout: float,
            cancel: threading.Event | None) -> SipCall:
    """``port``: our RTP port (``call.port``), offered in the SDP and used once answered."""
    deadline = time.monotonic() + timeout
    offer = session_description(agent.address[0], port, call.session_id, call.sdp_version, agent.codecs)
    authorization = ""
    for _ in range(3):
        call.local_cseq += 1
        branch = new_branch()
        headers = [agent.via(branch), "Max-Forwards: 70", f"From: {call.local_party}", f"To: {call.remote_party}",
                   f"Call-ID: {call.call_id}", f"CSeq: {call.local_cseq} INVITE", f"Contact: {agent.contact}",
                   f"Allow: {ALLOW}", f"User-Agent: {agent.user_agent}", *([authorization] if authorization else [])]
        data = encode(f"INVITE {uri} SIP/2.0", headers, offer)
        log.info("call %s: INVITE %s via %s:%d", call.call_id, uri, *destination)
        transaction = agent.endpoint.request("INVITE", branch, data, destination)
        response = _final_response(transaction, deadline, cancel)
        if response is None:
            response = _cancel(agent, call, transaction, data)
            if response is None or response.status_code >= 300:
                if cancel is not None and cancel.is_set():
                    raise DialError(f"call {call.call_id}: dialing {uri} called off", 487)
                raise DialError(f"call {call.call_id}: no answer from {uri} within {timeout:g} s", 408)
        code = response.status_code
        if code < 300:
            return _established(agent, call, port, transaction, response)
        transaction.acknowledge(_ack_for_failure(data, response), destination)
        # Both challenges (pyVoIP hung on 407) are answered once.
        if code in (401, 407) and agent.password and not authorization:
            try:
                authorization = answer_challenge(response, "INVITE", uri, agent.user, agent.password)
            except SipError as error:
                raise DialError(f"call {call.call_id}: {uri}: {error}", code) from None
            log.info("call %s: %d %s; INVITE again with credentials", call.call_id, code, response.reason)
            continue
        raise DialError(f"call {call.call_id}: {uri} answered {code} {response.reason}", code)
    raise DialError(f"call {call.call_id}: {uri} keeps challenging the INVITE", 407)


def _final_response(invite: ClientTransaction, deadline: float, cancel: threading.Event | None) -> SipMessage | None:
    """The INVITE's final response, or None at ``deadline`` or within 0.1 s of ``cancel`` being set."""
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        wait = remaining if cancel is None else min(remaining, 0.1)
        response = invite.wait(wait, abandon=False)
        if response is not None or wait >= remaining or (cancel is not None and cancel.is_set()):
            return response


def _cancel(agent: DialingLine, call: SipCall, invite: ClientTransaction, invite_data: bytes) -> SipMessage | None:
    """Ring timeout: CANCEL (RFC 3261 §9.1) once the callee has sent a provisional response, then
    wait for the INVITE's final response (487, or a 200 that raced the CANCEL)."""
    if invite.provisional is None:
        invite.abandon()
        return None
    cancel = _from_invite(invite_data, "CANCEL", ["To"], [f"CSeq: {call.local_cseq} CANCEL"])
    agent.endpoint.request("CANCEL", invite.branch, cancel, invite.destination)
    log.info("call %s: no answer in time; CANCEL sent", call.call_id)
    response = invite.wait(TRANSACTION_TIMEOUT / 8)
    if response is not None and response.status_code >= 300:
        invite.acknowledge(_ack_for_failure(invite_data, response), invite.destination)
    return response


def _from_invite(invite_data: bytes, method: str, also_keep: Sequence[str], headers: Sequence[str]) -> bytes:
    """A CANCEL or non-2xx ACK made from our INVITE: its Request-URI, Via (so its branch), From,
    Call-ID, Route and Max-Forwards, plus ``also_keep`` and ``headers`` (RFC 3261 §9.1, §17.1.1.3)."""
    head = invite_data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = ("Via", "From", "Call-ID", "Route", "Max-Forwards", *also_keep)
    lines = [line for line in head[1:] if line.split(":", 1)[0] in keep] + list(headers)
    return encode(f"{method} {head[0].split(' ')[1]} SIP/2.0", lines)


def _ack_for_failure(invite_data: bytes, response: SipMessage) -> bytes:
    """ACK for a non-2xx final response: same branch and Request-URI as the INVITE, To from the
    response (RFC 3261 §17.1.1.3)."""
    return _from_invite(invite_data, "ACK", [], [f"To: {response.value('To')}", f"CSeq: {response.cseq[0]} ACK"])


def _established(agent: DialingLine, call: SipCall, port: int, invite: ClientTransaction,
                 response: SipMessage) -> SipCall:
    """The 200: the dialog takes its To (with the callee's tag: pyVoIP #272 put a fresh random tag in
    the ACK, and the callee hung up after 32 s), Contact and reversed Record-Route (RFC 3261
    §12.1.2), and the ACK is built from them (§13.2.2.4). Unusable answers are ACKed and hung up."""
    with call.lock:
        with agent._lock:
            agent._peer_hosts.subtract(call.peer_hosts)
            call.take_answer(response)
            agent._peer_hosts.update(call.peer_hosts)
        call.state = CallState.ANSWERED  # from here on, hanging up means a BYE
        call.acked.set()
    destination = call.request_destination()
    ack, _ = call.in_dialog_request("ACK", cseq=response.cseq[0])
    invite.acknowledge(ack, destination)
    try:
        call.remote_media = parse_sdp(response.content)
        call.codec = call.remote_media.choose_codec(agent.codecs)
        if call.codec is None:
            raise SdpError(f"the answer has no codec we offered ({call.remote_media.payload_types})")
        stream = call.new_stream(port)
        stream.start()
    except (SipError, OSError, OverflowError) as error:
        call.hangup(f"answered but unusable: {error}")
        raise DialError(f"call {call.call_id}: answered but unusable: {error}") from None
    call.stream = stream
    log.info("call %s: %s answered (%s, RTP %s:%d <-> %s:%d)", call.call_id, call.called, call.codec.name,
             *stream.local_address, call.remote_media.address, call.remote_media.port)
    return call
