"""Addresses and SIP URIs: ``host:port`` text, name-addr headers (RFC 3261 §20.10, §25.1), and
turning a host into an IPv4 address within a bounded time.

Lines are IPv4 (they bind one IPv4 interface address). A host name is looked up through
``lookup`` (``socket.gethostbyname``) on a small pool of resolver threads, and whoever asked waits
at most ``timeout`` seconds: a DNS server that does not answer costs a call-out half a second, not
the minutes a blocked ``gethostbyname`` can take, and never blocks a receive or timer thread.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from callcenter.sip.errors import SipError

Address = tuple[str, int]
RESOLVE_TIMEOUT = 0.5  # seconds a dial, BYE or ACK waits for DNS
lookup = socket.gethostbyname  # replaced in tests, which may send nothing beyond 127.0.0.0/8
_resolvers = ThreadPoolExecutor(4, thread_name_prefix="sip-dns")


def parse_host_port(text: str, default_port: int = 5060) -> Address:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port); ValueError if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if bracket and not rest else None)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if port is None or not host or (port and not port.isdigit()) or re.search(r"[\s/@;?<>\"]", host):
        raise ValueError(f"bad address {text!r}: expected host or host:port")
    number = int(port) if port else default_port
    if not (port == "" or 0 < number <= 65535):
        raise ValueError(f"bad address {text!r}: port {port} is not 1-65535")
    return host, number


def is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host.strip("[]"))
        return True
    except ValueError:
        return False


def resolve(address: Address, timeout: float = RESOLVE_TIMEOUT) -> Address:
    """An IPv4 literal as it is (no DNS); a host name looked up, waiting at most ``timeout`` s.
    SipError says why not: an IPv6 literal (our lines are IPv4), no such host, or no answer."""
    host, port = address
    if is_ipv4(host):
        return address
    if is_ipv6(host):
        raise SipError(f"{host} is an IPv6 address; this line speaks IPv4 only")
    try:
        return _resolvers.submit(lookup, host).result(timeout), port
    except FutureTimeout:
        raise SipError(f"no DNS answer for {host} within {timeout:g} s") from None
    except (OSError, UnicodeError, ValueError) as error:
        raise SipError(f"cannot resolve {host}: {error}") from None


# ---------------------------------------------------------------- name-addr and URIs

def uri_of(name_addr: str) -> str:
    """'"Name" <sip:u@h;x>;tag=1' -> 'sip:u@h;x' (RFC 3261 §20.10 name-addr / addr-spec)."""
    if "<" in name_addr:
        return name_addr.split("<", 1)[1].split(">", 1)[0].strip()
    return name_addr.split(";", 1)[0].strip()


def header_params(name_addr: str) -> str:
    """The header parameters after the URI (';tag=..;expires=..'), never the URI's own."""
    return name_addr.rsplit(">", 1)[-1] if "<" in name_addr else name_addr.partition(";")[2]


def param(params: str, name: str) -> str:
    match = re.search(rf";\s*{name}\s*=\s*([^;,\s]+)", ";" + params.lstrip(";"), re.IGNORECASE)
    return match.group(1) if match else ""


def tag_of(name_addr: str) -> str:
    return param(header_params(name_addr), "tag")


def user_of(uri: str) -> str:
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""


@dataclass(frozen=True)
class SipUri:
    """sip:[user@]host[:port][;params] (RFC 3261 §19.1.1); headers (?...) are dropped."""

    user: str
    host: str
    port: int | None
    params: str = ""
    scheme: str = "sip"

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.strip().partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise ValueError(f"not a sip: URI: {text!r}")
        rest = rest.split("?", 1)[0]
        user, at, hostpart = rest.rpartition("@")
        hostport, _, params = hostpart.partition(";")
        host, port = parse_host_port(hostport, default_port=0)
        return cls(user if at else "", host, port or None, params, scheme.lower())

    @property
    def address(self) -> Address:
        """Where a request for this URI goes (maddr and DNS SRV are not used)."""
        return self.host, self.port or 5060

    @property
    def loose_router(self) -> bool:
        return re.search(r"(^|;)\s*lr(\s*(=|;|$))", self.params) is not None


def uri_address(uri: str, timeout: float = RESOLVE_TIMEOUT) -> Address:
    """Where to send a request for this SIP URI, resolved; SipError when it cannot be reached."""
    try:
        return resolve(SipUri.parse(uri).address, timeout)
    except ValueError as error:
        raise SipError(str(error)) from None
