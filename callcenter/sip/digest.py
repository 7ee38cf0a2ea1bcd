"""HTTP Digest authentication as SIP uses it: RFC 2617 (MD5), RFC 7616 (SHA-256, SHA-512/256,
the -sess variants, userhash) and RFC 8760 (those algorithms in SIP). For 401 (WWW-Authenticate,
answered with Authorization) and 407 (Proxy-Authenticate, answered with Proxy-Authorization).

A registrar may offer several challenges, one per algorithm; RFC 8760 §2.4 has the client take
the strongest it supports, which ``answer_challenge`` does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable

from callcenter.sip.errors import SipError
from callcenter.sip.message import SipMessage, split_header_list


def _hasher(name: str) -> Callable[[str], str] | None:
    try:
        hashlib.new(name)
    except ValueError:  # an OpenSSL without it
        return None
    return lambda text: hashlib.new(name, text.encode()).hexdigest()


ALGORITHMS = {name: hasher for name, hasher in (("SHA-512-256", _hasher("sha512_256")),
                                                ("SHA-256", _hasher("sha256")), ("MD5", _hasher("md5")))
              if hasher is not None}
PREFERENCE = tuple(ALGORITHMS)  # strongest first
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def parse_challenge(header: str) -> dict[str, str]:
    """'Digest realm="x", nonce="y", qop="auth"' -> {"realm": "x", "nonce": "y", "qop": "auth"}."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(f"unsupported authentication scheme {scheme[:20]!r}")
    return _auth_params(params)


def _auth_params(text: str) -> dict[str, str]:
    """key=value, key="quoted \\"value\\"" ... in one pass (each character looked at once)."""
    params, i, n = {}, 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] in _TOKEN:
            i += 1
        key = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        if not key or i >= n or text[i] != "=":
            while i < n and text[i] != ",":
                i += 1
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        value: list[str] = []
        if i < n and text[i] == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
        else:
            while i < n and text[i] not in " \t,":
                value.append(text[i])
                i += 1
        params[key] = "".join(value)
    return params


def algorithm_of(challenge: dict[str, str]) -> tuple[str, bool]:
    """('SHA-256', session?) for a challenge's algorithm; MD5 when it names none (RFC 7616 §3.3)."""
    name = challenge.get("algorithm", "MD5").upper()
    session = name.endswith("-SESS")
    return (name[:-5] if session else name), session


def digest_authorization(challenge: dict[str, str], method: str, uri: str, user: str, password: str,
                         cnonce: str | None = None, nc: int = 1) -> str:
    """The Authorization / Proxy-Authorization value answering one Digest challenge (qop=auth, or
    none for an RFC 2069 style challenge). ``cnonce`` is random unless given (tests)."""
    name, session = algorithm_of(challenge)
    digest = ALGORITHMS.get(name)
    if digest is None:
        raise SipError(f"unsupported digest algorithm {challenge.get('algorithm')!r} (we have {', '.join(PREFERENCE)})")
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise SipError(f"unsupported digest qop {challenge['qop']!r} (we answer qop=auth)")
    realm, nonce, opaque = challenge.get("realm", ""), challenge.get("nonce", ""), challenge.get("opaque")
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = digest(f"{user}:{realm}:{password}")
    if session:  # RFC 7616 §3.4.2
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
    ha2 = digest(f"{method}:{uri}")
    username = digest(f"{user}:{realm}") if challenge.get("userhash", "").lower() == "true" else user
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qops:
        count = f"{nc:08x}"
        fields += [f'response="{digest(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")}"', "qop=auth",
                   f"nc={count}", f'cnonce="{cnonce}"']
    else:
        if session:
            raise SipError("a -sess digest challenge without qop cannot be answered")
        fields.append(f'response="{digest(f"{ha1}:{nonce}:{ha2}")}"')
    fields.append(f"algorithm={challenge.get('algorithm', 'MD5')}")
    if opaque is not None:
        fields.append(f'opaque="{opaque}"')
    if "userhash" in challenge:
        fields.append(f"userhash={challenge['userhash']}")
    return "Digest " + ", ".join(fields)


def strongest(headers: list[str]) -> dict[str, str]:
    """Of the challenges in these header values, the one with the strongest algorithm we support."""
    challenges = []
    for header in headers:
        for part in _challenges_in(header):
            try:
                challenges.append(parse_challenge(part))
            except SipError:
                continue
    usable = [c for c in challenges if algorithm_of(c)[0] in ALGORITHMS]
    if not usable:
        offered = ", ".join(c.get("algorithm", "MD5") for c in challenges) or "no Digest challenge"
        raise SipError(f"cannot answer the challenge ({offered}; we have {', '.join(PREFERENCE)})")
    return min(usable, key=lambda c: PREFERENCE.index(algorithm_of(c)[0]))


def _challenges_in(header: str) -> list[str]:
    """One header may carry several challenges separated by commas (RFC 7235 §4.1)."""
    parts: list[str] = []
    for item in split_header_list(header):
        if re.match(r"[A-Za-z-]+\s+[A-Za-z0-9_-]+\s*=", item) or not parts:
            parts.append(item)
        else:
            parts[-1] += ", " + item
    return parts


def answer_challenge(response: SipMessage, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization (401) or Proxy-Authorization (407) header line for a challenged request."""
    if response.status_code == 401:
        challenge = strongest(response.headers.get("www-authenticate", []))
        return "Authorization: " + digest_authorization(challenge, method, uri, user, password)
    challenge = strongest(response.headers.get("proxy-authenticate", []))
    return "Proxy-Authorization: " + digest_authorization(challenge, method, uri, user, password)


def is_stale(response: SipMessage) -> bool:
    """A challenge saying only the nonce expired (RFC 7616 §3.3): the password was right."""
    challenge = response.value("WWW-Authenticate") or response.value("Proxy-Authenticate")
    return re.search(r"stale\s*=\s*\"?true", challenge, re.IGNORECASE) is not None
