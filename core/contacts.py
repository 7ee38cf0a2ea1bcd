"""Who can be rung: a phone number (or PBX extension) or a SIP address. One rule, checked when
engineers are imported, when the roster is loaded and when the settings are read, so that a typo
is refused with its line number instead of failing an emergency call-out at night.

A number is 3-20 digits, optionally with a leading +, after spaces, dashes and brackets are
removed. A SIP address is ``sip:`` or ``sips:``, an optional user, and a host that is a name, an
IPv4 address or a bracketed IPv6 address, with an optional port 1-65535 and URI parameters. The
host is not looked up here: a name that does not resolve fails its ring at once, and the call-out
moves on.
"""

from __future__ import annotations

import ipaddress
import re

from core.phones import PHONE_PATTERN, normalise_phone


class ContactError(ValueError):
    """Not a number or SIP address that can be rung; the message is Chinese, with the reason."""


_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")  # RFC 3261 §25.1 user (unreserved, escaped, user-unreserved)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PARAMS = re.compile(r"(;[A-Za-z0-9\-_.!~*'()%]+(=[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]*)?)*")


def is_sip_address(contact: str) -> bool:
    return contact.strip().lower().startswith(("sip:", "sips:"))


def check_contact(contact: str) -> str:
    """The contact as it is to be stored (a number without spaces or dashes; a SIP address as
    given), or ContactError saying what is wrong with it."""
    text = (contact or "").strip()
    if not text:
        raise ContactError("缺少电话号码或 SIP 地址 / no number or SIP address")
    if is_sip_address(text):
        problem = _sip_problem(text)
        if problem:
            raise ContactError(f"SIP 地址无效 {text!r}：{problem}")
        return text
    number = normalise_phone(text)
    if not PHONE_PATTERN.match(number):
        raise ContactError(f"电话号码或 SIP 地址无效 {text!r}：号码应为 3-20 位数字（或以 sip: 开头的地址）")
    return number


def is_valid_contact(contact: str) -> bool:
    try:
        check_contact(contact)
        return True
    except ContactError:
        return False


def _sip_problem(uri: str) -> str:
    """What is wrong with a sip:/sips: URI, or ''."""
    if len(uri) > 255 or re.search(r"[\s<>\"]", uri):
        return "过长或含空格、引号、尖括号 / too long, or spaces, quotes or angle brackets"
    rest = uri.split(":", 1)[1].split("?", 1)[0]
    user, at, hostpart = rest.rpartition("@")
    if at and not _USER.fullmatch(user):
        return "用户名部分无效 / bad user part"
    hostport, semicolon, params = hostpart.partition(";")
    if semicolon and not _PARAMS.fullmatch(";" + params):
        return "参数无效 / bad URI parameters"
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return "端口无效 / bad port"
        port = port[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "IPv6 地址无效 / bad IPv6 address"
    else:
        host, _, port = hostport.partition(":")
        if not host:
            return "缺少主机名 / no host"
        if not (_is_ipv4(host) or all(_LABEL.fullmatch(label) for label in host.rstrip(".").split("."))):
            return "主机名无效 / bad host name"
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        return "端口应为 1-65535 / port must be 1-65535"
    return ""


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def is_phone_number(text: str) -> bool:
    """A number that can be called back (not a SIP address): the desk's phone rule."""
    return bool(text) and bool(PHONE_PATTERN.match(normalise_phone(text)))
