"""Canned SIP requests for the tests that drive a line's dispatcher directly (no SIPp): an INVITE
with SDP as a phone would send it, and the requests of its dialog."""

from __future__ import annotations

import itertools

from callcenter.sip.message import SipMessage, encode

_numbers = itertools.count(1)


def sdp(media_ip: str = "127.0.0.1", media_port: int = 40000, payload_types: str = "0 101") -> str:
    return (f"v=0\r\no=phone 1 1 IN IP4 {media_ip}\r\ns=-\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n"
            f"m=audio {media_port} RTP/AVP {payload_types}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n")


def invite(line: tuple[str, int], source: tuple[str, int], *, call_id: str | None = None, caller: str = "13800138000",
           tag: str | None = None, branch: str | None = None, contact: str | None = None, body: str | None = None,
           to_tag: str = "", cseq: int = 1) -> bytes:
    number = next(_numbers)
    call_id = call_id or f"call-{number}@{source[0]}"
    host, port = source
    return encode(f"INVITE sip:hotline@{line[0]}:{line[1]} SIP/2.0", [
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch or f'z9hG4bK-{number}'}",
        f"From: <sip:{caller}@{host}:{port}>;tag={tag or f'caller-{number}'}",
        f"To: <sip:hotline@{line[0]}:{line[1]}>" + (f";tag={to_tag}" if to_tag else ""), f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE", f"Contact: {contact or f'<sip:{caller}@{host}:{port}>'}", "Max-Forwards: 70"],
        sdp() if body is None else body)


def in_dialog(method: str, the_invite: bytes, our_tag: str, source: tuple[str, int], *, cseq: int = 2,
              body: str = "", content_type: str = "application/sdp", from_tag: str | None = None) -> bytes:
    """A request of the caller's inside the dialog its INVITE made (our To-tag ``our_tag``)."""
    request = SipMessage.parse(the_invite)
    host, port = source
    return encode(f"{method} sip:hotline@{request.uri.split('@', 1)[1]} SIP/2.0", [
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{method.lower()}-{next(_numbers)}",
        f"From: {request.value('From').split(';tag=')[0]};tag={from_tag or request.from_tag}",
        f"To: {request.value('To')};tag={our_tag}", f"Call-ID: {request.call_id}",
        f"CSeq: {cseq if method != 'ACK' else request.cseq[0]} {method}", "Max-Forwards: 70"], body, content_type)


def cancel(the_invite: bytes) -> bytes:
    request = SipMessage.parse(the_invite)
    return encode(f"CANCEL {request.uri} SIP/2.0", [
        f"Via: {request.value('Via')}", f"From: {request.value('From')}", f"To: {request.value('To')}",
        f"Call-ID: {request.call_id}", f"CSeq: {request.cseq[0]} CANCEL", "Max-Forwards: 70"])


def options(line: tuple[str, int], source: tuple[str, int]) -> bytes:
    number = next(_numbers)
    return encode(f"OPTIONS sip:hotline@{line[0]}:{line[1]} SIP/2.0", [
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK-o{number}", f"From: <sip:pbx@{source[0]}>;tag=o{number}",
        f"To: <sip:hotline@{line[0]}>", f"Call-ID: options-{number}", "CSeq: 1 OPTIONS", "Max-Forwards: 70"])
