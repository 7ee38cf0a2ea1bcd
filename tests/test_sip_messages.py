"""callcenter/sip/ without a network: canned messages in, parsed values out (the way Home Assistant's
voip-utils tests its SIP code). Real messages as Kamailio and SIPp sent them (tests/data/sip/),
the RFC 2617 and RFC 7616 digest examples, SDP offer/answer, and the ACK, CANCEL and BYE a call
builds from its INVITE and route set. Milliseconds, no root, no peers.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from callcenter.ivr.media import PCMA, PCMU
from callcenter.sip import uri as sip_uri
from callcenter.sip.dialing import _ack_for_failure, _from_invite
from callcenter.sip.dialog import SipCall
from callcenter.sip.digest import answer_challenge, digest_authorization, parse_challenge, strongest
from callcenter.sip.errors import BadMessage, SipError
from callcenter.sip.message import MAX_DATAGRAM, MAX_HEADERS, SipMessage, build_response, encode, split_header_list, start_line
from callcenter.sip.sdp import SdpError, parse_sdp, session_description
from callcenter.sip.uri import SipUri, parse_host_port, resolve, tag_of, uri_of, user_of

DATA = Path(__file__).parent / "data" / "sip"


def canned(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


def parse(text: str | bytes) -> SipMessage:
    return SipMessage.parse(text.encode() if isinstance(text, str) else text)


MINIMAL = ("OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK1\r\n"
           "From: <sip:a@b>;tag=x\r\nTo: <sip:hotline@127.0.0.1>\r\nCall-ID: 1@b\r\nCSeq: 7 OPTIONS\r\n")


# ---------------------------------------------------------------- parsing real messages

def test_an_invite_through_a_record_routing_proxy():
    invite = parse(canned("invite_via_record_routing_proxy"))
    assert (invite.method, invite.uri, invite.call_id, invite.cseq) == \
        ("INVITE", "sip:hotline@127.0.0.1:41236", "1-26772@127.0.0.1", (1, "INVITE"))
    assert invite.branch == "z9hG4bK8b64.1cff6c5da26d5d5a33e329671b874620.0"  # the top Via: the proxy's
    assert len(invite.values("Via")) == 2 and invite.from_tag == "26772SIPpTag001" and invite.to_tag == ""
    assert invite.values("Record-Route") == ["<sip:127.0.0.1:49426;lr;ftag=26772SIPpTag001>"]
    assert invite.value("content-length") == "172" and len(invite.content) == 172  # "Content-Length:   172"
    assert user_of(uri_of(invite.value("From"))) == "13800138000"


def test_an_invite_with_an_empty_header_from_sipp():
    """pyVoIP dropped an INVITE carrying "Supported:" without a word."""
    invite = parse(canned("invite_with_empty_supported"))
    assert invite.value("Supported") == "" and "supported" in invite.headers
    assert invite.value("Subject") == "repair hotline test"


def test_responses_challenges_and_in_dialog_requests_parse():
    assert parse(canned("unauthorized_register_qop")).status_code == 401
    assert parse(canned("proxy_auth_invite")).value("Proxy-Authenticate").startswith("Digest realm=")
    ok = parse(canned("ok_register"))
    assert (ok.status_code, ok.reason, ok.cseq) == (200, "OK", (2, "REGISTER"))
    assert ok.values("Contact") == ["<sip:hotline@127.0.0.1:41236>;expires=300"]
    bye, cancel, ack = parse(canned("bye")), parse(canned("cancel")), parse(canned("ack_via_proxy"))
    assert (bye.method, bye.to_tag, cancel.method, cancel.to_tag) == ("BYE", "b4f7faa43d54", "CANCEL", "")
    assert ack.cseq == (1, "ACK") and ack.to_tag == "da07b279534c"


def test_compact_folded_repeated_and_empty_headers():
    message = parse("OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK1\r\n"
                    "f: <sip:a@b>;tag=x\r\nt: <sip:hotline@127.0.0.1>\r\ni: 1@b\r\nCSeq: 7 OPTIONS\r\nk:\r\n"
                    "Record-Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\nRECORD-ROUTE: <sip:p3;lr>\r\n"
                    "Subject: a leak\r\n\tin the kitchen\r\nContact: \"A, B\" <sip:a@b>\r\n\r\n")
    assert (message.call_id, message.cseq, message.branch, message.from_tag) == ("1@b", (7, "OPTIONS"), "z9hG4bK1", "x")
    assert message.value("Supported") == ""
    assert message.values("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert message.value("Subject") == "a leak in the kitchen"
    assert message.values("Contact") == ['"A, B" <sip:a@b>']  # a comma inside quotes splits nothing


def test_bare_line_feeds_are_read_too():
    message = parse(MINIMAL.replace("\r\n", "\n") + "\n")
    assert message.call_id == "1@b" and message.cseq == (7, "OPTIONS")


@pytest.mark.parametrize("data, kind", [
    (MINIMAL.encode() + b"X-Pad: " + b"a" * MAX_DATAGRAM + b"\r\n\r\n", "oversized"),
    (MINIMAL.encode() + b"".join(b"X-%d:\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n", "too_many_headers"),
    (MINIMAL.replace("Call-ID: 1@b\r\n", "").encode() + b"\r\n", "malformed"),
    (MINIMAL.replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE").encode() + b"\r\n", "malformed"),
    (MINIMAL.replace("CSeq: 7 OPTIONS", "CSeq: seven").encode() + b"\r\n", "malformed"),
    (MINIMAL.encode() + b"Content-Length: 200\r\n\r\nv=0", "malformed"),
    (MINIMAL.encode() + b"Content-Length: -5\r\n\r\n", "malformed"),
    (MINIMAL.encode(), "malformed"),  # no empty line after the headers
    ("INVITE 水管 SIP/2.0\r\n\r\n".encode(), "malformed"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed"),
    (b"\xff\xfe" * 300, "malformed"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "malformed"),
])
def test_what_is_not_a_usable_message_says_what_it_is(data, kind):
    with pytest.raises(BadMessage) as refused:
        SipMessage.parse(data)
    assert refused.value.kind == kind


def test_the_first_line_alone_says_request_or_response():
    assert start_line(b"INVITE sip:a@b SIP/2.0\r\n" + b"\x00" * 60000).method == "INVITE"
    assert start_line(b"SIP/2.0 486 Busy Here\r\n").status_code == 486
    with pytest.raises(BadMessage):
        start_line(b"INVITE " + b"a" * 5000 + b" SIP/2.0\r\n")  # the line end is not looked for past 1 KB


def best_of(function, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


@pytest.mark.parametrize("filler", [
    lambda n: b"Record-Route: " + b"<sip:p;lr>," * (n // 11) + b"\r\n",  # one huge list header
    lambda n: b"Subject: a\r\n" + b" b\r\n" * (n // 4),  # thousands of folded lines
    lambda n: b"".join(b"X-%d: " % i + b'"<,' * (n // 300) + b"\r\n" for i in range(MAX_HEADERS - 10)),
    lambda n: b"WWW-Authenticate: Digest " + b'a="a=' * (n // 5) + b"\r\n",  # unterminated quotes
])
@pytest.mark.serial
def test_parsing_costs_linear_time_in_the_size(filler):
    """Eight times the bytes may cost about eight times as long, not 64 (the old parser scanned the
    header list once per header)."""
    def message(size: int) -> bytes:
        return MINIMAL.encode() + filler(size) + b"\r\n"

    def work(data: bytes):
        def run():
            parsed = SipMessage.parse(data)
            parsed.values("Record-Route")
            for value in parsed.headers.get("www-authenticate", []):
                parse_challenge(value)
        return run
    small, large = message(900), message(7200)
    assert len(large) <= MAX_DATAGRAM
    ratio = best_of(work(large)) / best_of(work(small))
    assert ratio < 20, f"8x the bytes cost {ratio:.1f}x the time"


# ---------------------------------------------------------------- building responses

def test_a_response_copies_the_vias_in_order_and_adds_our_tag():
    invite = parse(canned("invite_via_record_routing_proxy"))
    response = parse(build_response(invite, 180, to_tag="ours", headers=["Contact: <sip:hotline@127.0.0.1:5070>"]))
    assert response.status_code == 180 and response.reason == "Ringing"
    assert response.values("Via") == invite.values("Via")
    assert (response.call_id, response.cseq, response.from_tag, response.to_tag) == \
        (invite.call_id, (1, "INVITE"), invite.from_tag, "ours")
    assert response.value("Content-Length") == "0"


# ---------------------------------------------------------------- digest (RFC 2617, RFC 7616, RFC 8760)

def test_rfc_2617_example():
    challenge = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    answer = digest_authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in answer
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in answer and "nc=00000001" in answer


@pytest.mark.parametrize("algorithm, response", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc_7616_examples(algorithm, response):
    challenge = parse_challenge(f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
                                'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                                'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    answer = digest_authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life",
                                  cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert f'response="{response}"' in answer and f"algorithm={algorithm}" in answer


def test_the_strongest_offered_algorithm_is_answered():
    """RFC 8760 §2.4: a registrar offering SHA-256 and MD5 gets SHA-256."""
    challenge = strongest(['Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
                           'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'])
    assert (challenge["algorithm"], challenge["nonce"]) == ("SHA-256", "n2")
    with pytest.raises(SipError, match="cannot answer"):
        strongest(['Digest realm="r", nonce="n", algorithm=SHA-1'])
    with pytest.raises(SipError, match="qop"):
        digest_authorization(parse_challenge('Digest realm="r", nonce="n", qop="auth-int"'), "REGISTER", "sip:r",
                             "u", "p")


def test_kamailios_401_and_407_are_answered():
    def expected(challenge: dict, method: str, uri: str, cnonce: str, nc: str) -> str:
        md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
        ha1, ha2 = md5(f"hotline:{challenge['realm']}:s3cret"), md5(f"{method}:{uri}")
        return md5(f"{ha1}:{challenge['nonce']}:{nc}:{cnonce}:auth:{ha2}")

    for name, method, header in (("unauthorized_register_qop", "REGISTER", "Authorization"),
                                 ("proxy_auth_invite", "INVITE", "Proxy-Authorization")):
        response = parse(canned(name))
        line = answer_challenge(response, method, "sip:127.0.0.1", "hotline", "s3cret")
        assert line.startswith(f"{header}: Digest ")
        fields = parse_challenge(line.split(": ", 1)[1])
        challenge = parse_challenge(response.value("WWW-Authenticate") or response.value("Proxy-Authenticate"))
        assert fields["response"] == expected(challenge, method, "sip:127.0.0.1", fields["cnonce"], fields["nc"])


def test_sha256_sess_and_userhash():
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-256-sess, qop="auth", userhash=true')
    fields = parse_challenge(digest_authorization(challenge, "REGISTER", "sip:r", "8001", "pw", cnonce="c"))
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    ha1 = sha(f"{sha('8001:r:pw')}:n:c")
    assert fields["username"] == sha("8001:r") and fields["userhash"] == "true"
    assert fields["response"] == sha(f"{ha1}:n:00000001:c:auth:{sha('REGISTER:sip:r')}")


# ---------------------------------------------------------------- SDP offer / answer (RFC 3264)

def test_the_callers_offer_and_our_answer():
    offer = parse_sdp(parse(canned("invite_via_record_routing_proxy")).content)
    assert (offer.address, offer.port, offer.payload_types, offer.event_payload_type) == ("127.0.0.1", 55886, (0, 101), 101)
    assert offer.choose_codec([PCMU, PCMA]) == PCMU and not offer.on_hold
    answer = parse_sdp(session_description("127.0.0.1", 20000, 1, 1, [offer.choose_codec([PCMA, PCMU])], 101).encode())
    assert (answer.port, answer.payload_types, answer.event_payload_type) == (20000, (0, 101), 101)


def test_the_offerers_order_decides_and_no_common_codec_is_none():
    offer = parse_sdp(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    assert offer.choose_codec([PCMU, PCMA]) == PCMA and offer.choose_codec([PCMU]) == PCMU
    assert parse_sdp(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 18\r\n").choose_codec([PCMU, PCMA]) is None


def test_hold_and_media_level_connection():
    held = parse_sdp(b"v=0\r\nc=IN IP4 192.0.2.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n")
    assert held.on_hold and held.sends
    silent = parse_sdp(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n")
    assert silent.on_hold and not silent.sends
    moved = parse_sdp(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 5000 RTP/AVP 31\r\nm=audio 0 RTP/AVP 0\r\n"
                      b"m=audio 4002 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\na=inactive\r\n")
    assert (moved.address, moved.port, moved.direction) == ("192.0.2.9", 4002, "inactive")


@pytest.mark.parametrize("body, problem", [
    (b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n", "not 1-65535"),
    (b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n", "no audio"),
    (b"v=0\r\nc=IN IP6 ::1\r\nm=audio 4000 RTP/AVP 0\r\n", "IPv6"),
    (b"v=0\r\nc=IN IP4 pbx.example\r\nm=audio 4000 RTP/AVP 0\r\n", "not an IPv4"),
    (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "no c= line"),
    (b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n", "RTP/AVP"),
    (b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP zero\r\n", "payload types"),
    (b"", "no audio"),
])
def test_an_sdp_we_cannot_use_says_why(body, problem):
    with pytest.raises(SdpError, match=problem):
        parse_sdp(body)


# ---------------------------------------------------------------- ACK, CANCEL and BYE from an INVITE and its route set

class FakeAgent:
    """What a SipCall asks of its line when it builds requests (no sockets)."""

    address = ("127.0.0.1", 5070)
    contact = "<sip:hotline@127.0.0.1:5070>"
    user_agent = "test"

    def via(self, branch: str) -> str:
        return f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport"


def inbound_call(invite: SipMessage, source=("127.0.0.1", 49426)) -> SipCall:
    media = parse_sdp(invite.content)
    return SipCall.inbound(FakeAgent(), invite, source, media, PCMU)


def test_our_bye_for_a_call_that_came_through_a_record_routing_proxy():
    invite = parse(canned("invite_via_record_routing_proxy"))
    call = inbound_call(invite)
    bye = parse(call.in_dialog_request("BYE")[0])
    assert bye.uri == "sip:13800138000@127.0.0.1:46718"  # the caller's Contact
    assert bye.values("Route") == ["<sip:127.0.0.1:49426;lr;ftag=26772SIPpTag001>"]
    assert (bye.call_id, bye.from_tag, bye.to_tag, bye.cseq) == (invite.call_id, call.local_tag, invite.from_tag,
                                                                 (101, "BYE"))
    assert call.request_destination() == ("127.0.0.1", 49426)  # to the proxy, not the phone
    assert call.peer_hosts == {"127.0.0.1"}


def test_a_strict_router_gets_the_request_uri_and_the_target_goes_last():
    invite = parse(canned("invite_via_record_routing_proxy").replace(b";lr;ftag", b";ftag"))
    bye = parse(inbound_call(invite).in_dialog_request("BYE")[0])
    assert bye.uri == "sip:127.0.0.1:49426;ftag=26772SIPpTag001"
    assert bye.values("Route") == ["<sip:13800138000@127.0.0.1:46718>"]


@pytest.mark.parametrize("contact", [b"<sip:13800138000@[::1]:46718>", b"<sip:13800138000@caller.invalid:46718>",
                                     b"<sip:13800138000@127.0.0.1:99999>", b"<http://x>", b"<>"])
def test_a_contact_we_cannot_reach_sends_the_bye_where_the_invite_came_from(monkeypatch, contact):
    monkeypatch.setattr(sip_uri, "lookup", _no_such_host)
    invite = parse(canned("invite_with_empty_supported").replace(b"<sip:13800138000@127.0.0.1:44400>\r\nMax", contact
                                                                 + b"\r\nMax"))
    call = inbound_call(invite, source=("127.0.0.1", 44400))
    assert call.request_destination() == ("127.0.0.1", 44400)
    parse(call.in_dialog_request("BYE")[0])


def test_the_ack_to_our_answered_invite_carries_the_callees_tag_and_the_reversed_route_set():
    ok = parse(canned("ok_invite_with_sdp_and_record_route"))
    call = SipCall(FakeAgent(), ok.call_id, "outbound", "hotline", "uas-37552")
    call.local_party, call.local_tag, call.peer = ok.value("From"), ok.from_tag, ("127.0.0.1", 49426)
    call.take_answer(ok)
    ack = parse(call.in_dialog_request("ACK", cseq=ok.cseq[0])[0])
    assert ack.uri == "sip:engineer@127.0.0.1:37552;transport=UDP"
    assert tag_of(ack.value("To")) == "engineer-phone-7"  # pyVoIP #272 put a fresh random tag here
    assert ack.values("Route") == ["<sip:127.0.0.1:49426;lr;ftag=4436442c3d38>"] and ack.cseq == (102, "ACK")
    assert call.remote_tag == "engineer-phone-7" and call.request_destination() == ("127.0.0.1", 49426)


def test_cancel_and_the_ack_to_a_refusal_are_built_from_our_invite():
    invite = encode("INVITE sip:engineer@127.0.0.1:5080 SIP/2.0", [
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport", "Max-Forwards: 70",
        "Route: <sip:127.0.0.1:5060;lr>", "From: <sip:hotline@127.0.0.1>;tag=ours", "To: <sip:engineer@127.0.0.1:5080>",
        "Call-ID: c1@127.0.0.1", "CSeq: 102 INVITE", "Contact: <sip:hotline@127.0.0.1:5070>"], "v=0\r\n")
    cancel = parse(_from_invite(invite, "CANCEL", ["To"], ["CSeq: 102 CANCEL"]))
    assert (cancel.method, cancel.uri, cancel.branch, cancel.cseq) == \
        ("CANCEL", "sip:engineer@127.0.0.1:5080", "z9hG4bKabc", (102, "CANCEL"))
    assert cancel.values("Route") == ["<sip:127.0.0.1:5060;lr>"] and cancel.to_tag == "" and not cancel.content
    busy = parse(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n"
                 b"From: <sip:hotline@127.0.0.1>;tag=ours\r\nTo: <sip:engineer@127.0.0.1:5080>;tag=theirs\r\n"
                 b"Call-ID: c1@127.0.0.1\r\nCSeq: 102 INVITE\r\nContent-Length: 0\r\n\r\n")
    ack = parse(_ack_for_failure(invite, busy))
    assert (ack.method, ack.branch, ack.to_tag, ack.cseq) == ("ACK", "z9hG4bKabc", "theirs", (102, "ACK"))


# ---------------------------------------------------------------- addresses and URIs

def test_host_port_and_sip_uris():
    assert parse_host_port("pbx.example") == ("pbx.example", 5060)
    assert parse_host_port("[::1]:5070") == ("::1", 5070) and parse_host_port("10.0.0.1", 0) == ("10.0.0.1", 0)
    for bad in ("10.0.0.1:99999", "10.0.0.1:0", "10.0.0.1:x", "a b:5060", "", "[::1"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
    uri = SipUri.parse("sip:8001@[2001:db8::1]:5080;transport=udp?subject=x")
    assert (uri.user, uri.host, uri.port, uri.params, uri.address) == \
        ("8001", "2001:db8::1", 5080, "transport=udp", ("2001:db8::1", 5080))
    assert SipUri.parse("sips:pbx.example").address == ("pbx.example", 5060)
    assert SipUri.parse("sip:p;lr").loose_router and not SipUri.parse("sip:p;lrx=1").loose_router
    assert split_header_list('<sip:a;x="1,2">, "B, b" <sip:b>,,') == ['<sip:a;x="1,2">', '"B, b" <sip:b>']


def _no_such_host(host: str) -> str:
    raise OSError(-2, "Name or service not known")


def _dns_that_never_answers(host: str) -> str:
    time.sleep(3)
    raise OSError(-3, "Temporary failure in name resolution")


def test_resolving_is_bounded_in_time_and_ipv4_only(monkeypatch):
    assert resolve(("127.0.0.1", 5060)) == ("127.0.0.1", 5060)
    with pytest.raises(SipError, match="IPv6"):
        resolve(("::1", 5060))
    monkeypatch.setattr(sip_uri, "lookup", _no_such_host)
    with pytest.raises(SipError, match="cannot resolve pbx.invalid"):
        resolve(("pbx.invalid", 5060))
    monkeypatch.setattr(sip_uri, "lookup", _dns_that_never_answers)
    started = time.monotonic()
    with pytest.raises(SipError, match="no DNS answer"):
        resolve(("pbx.example", 5060), timeout=0.3)
    assert time.monotonic() - started < 2.0  # the lookup itself hangs for 3 s
