"""SDP (RFC 4566) as the hotline uses it: read the peer's audio stream, write our offer or answer
(RFC 3264). One audio stream, G.711 and RFC 4733 telephone events; IPv4 only.

Whatever the peer sends is checked here, so a call never starts with an address we cannot send
to: ports outside 1-65535, a host name or IPv6 address in ``c=``, or no audio at all is an
``SdpError`` (the INVITE gets 488).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.ivr.media import Codec
from callcenter.sip.errors import SipError
from callcenter.sip.uri import is_ipv4

EVENT_PAYLOAD_TYPE = 101
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_FORMATS = 32


class SdpError(SipError):
    """A session description we cannot use; the message says what is wrong with it."""


@dataclass(frozen=True)
class RemoteMedia:
    """The peer's audio stream: where to send RTP (and, by default, whence it comes)."""

    address: str
    port: int
    payload_types: tuple[int, ...]
    event_payload_type: int | None
    direction: str = "sendrecv"

    @property
    def on_hold(self) -> bool:  # RFC 3264 §8.4; c=0.0.0.0 is the RFC 2543 way
        return self.address == "0.0.0.0" or self.direction in ("sendonly", "inactive")

    @property
    def sends(self) -> bool:
        """Does the peer send us audio at all (so that silence from it means trouble)?"""
        return self.address != "0.0.0.0" and self.direction in ("sendrecv", "sendonly")

    def choose_codec(self, allowed: Sequence[Codec]) -> Codec | None:
        """The first codec in the offerer's order that we support (RFC 3264 §6.1)."""
        return next((codec for pt in self.payload_types for codec in allowed if codec.payload_type == pt), None)


def parse_sdp(body: bytes) -> RemoteMedia:
    """The first audio stream of a session description with a port (a declined stream has 0)."""
    session_address = media_address = None
    session_direction = media_direction = None
    media: list[str] | None = None
    rtpmaps: dict[int, str] = {}
    for line in body.decode("utf-8", "replace").split("\n"):
        kind, equals, value = line.rstrip("\r").partition("=")
        if not equals or len(kind) != 1:
            continue
        if kind == "m":
            if media is not None:
                break  # the audio stream is complete; later streams are not ours
            fields = value.split()
            if len(fields) >= 4 and fields[0] == "audio" and fields[1] != "0":
                media = fields
        elif kind == "c":
            if media is None:
                session_address = value
            else:
                media_address = value
        elif kind == "a":
            name, _, rest = value.partition(":")
            name = name.strip()
            if name in DIRECTIONS:
                if media is None:
                    session_direction = name
                else:
                    media_direction = name
            elif name == "rtpmap" and media is not None:
                number, _, encoding = rest.partition(" ")
                if number.strip().isdigit():
                    rtpmaps[int(number)] = encoding.strip().lower()
    if media is None:
        raise SdpError("no audio stream in the SDP")
    port = media[1].split("/", 1)[0]
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise SdpError(f"audio port {media[1][:12]!r} is not 1-65535")
    if not media[2].upper().startswith("RTP/AVP"):
        raise SdpError(f"media transport {media[2][:20]!r} is not RTP/AVP")
    formats = media[3:]
    if len(formats) > MAX_FORMATS or not all(pt.isdigit() and int(pt) < 128 for pt in formats):
        raise SdpError(f"bad payload types {' '.join(formats)[:60]!r}")
    address = _connection(media_address or session_address)
    event = next((pt for pt, encoding in rtpmaps.items() if encoding.startswith("telephone-event/")), None)
    return RemoteMedia(address, int(port), tuple(int(pt) for pt in formats),
                       event if event is not None and str(event) in formats else None,
                       media_direction or session_direction or "sendrecv")


def _connection(value: str | None) -> str:
    """'IN IP4 192.0.2.1' -> '192.0.2.1' (RFC 4566 §5.7); an IPv4 literal only."""
    if value is None:
        raise SdpError("no c= line for the audio stream")
    fields = value.split()
    if len(fields) != 3 or fields[0] != "IN" or fields[1] != "IP4":
        raise SdpError(f"connection {value[:40]!r} is not IN IP4 (IPv6 and others are not supported)")
    address = fields[2].split("/", 1)[0]
    if not is_ipv4(address):
        raise SdpError(f"connection address {address[:40]!r} is not an IPv4 address")
    return address


def session_description(address: str, port: int, session_id: int, version: int, codecs: Sequence[Codec],
                        event_payload_type: int | None = EVENT_PAYLOAD_TYPE, direction: str = "sendrecv") -> str:
    """Our offer (every codec of the line) or answer (the chosen one) for one audio stream."""
    formats = [str(codec.payload_type) for codec in codecs]
    lines = ["v=0", f"o=callcenter {session_id} {version} IN IP4 {address}", "s=callcenter",
             f"c=IN IP4 {address}", "t=0 0"]
    if event_payload_type is not None:
        formats.append(str(event_payload_type))
    lines.append(f"m=audio {port} RTP/AVP {' '.join(formats)}")
    lines += [f"a=rtpmap:{codec.payload_type} {codec.name}/8000" for codec in codecs]
    if event_payload_type is not None:
        lines += [f"a=rtpmap:{event_payload_type} telephone-event/8000", f"a=fmtp:{event_payload_type} 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"
