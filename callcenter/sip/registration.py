"""Registration (RFC 3261 §10): keeping a register line's address-of-record bound at its registrar.

``step`` is one turn of the line's keeper thread (agent.py): register if not registered, refresh
at half the granted expiry, and in between ask the registrar what it has bound for us (a REGISTER
without Contact, RFC 3261 §10.2.3) every ``keepalive_interval`` seconds. That query notices both a
registrar that stopped answering and one that restarted and forgot us, and registers again at
once. Every failure is a RegistrationError; the keeper says it in health and tries again with
back-off. The registrar's host name is looked up on every attempt, so DNS trouble passes too.
"""

from __future__ import annotations

import logging
import threading
import time

from callcenter.sip.digest import answer_challenge, is_stale
from callcenter.sip.errors import RegistrationError, SipError
from callcenter.sip.line import Line
from callcenter.sip.message import SipMessage, encode, new_branch, new_call_id, new_tag
from callcenter.sip.uri import Address, SipUri, header_params, param, resolve, uri_of

log = logging.getLogger("callcenter.sip")

REGISTRAR_DNS_TIMEOUT = 2.0  # the keeper thread may wait longer than a call would


class Registration:
    def __init__(self, agent: Line, server: Address, user: str, password: str | None, expires: int,
                 keepalive_interval: float, timeout: float = 5.0):
        self.agent, self.server_name, self.user, self.password = agent, server, user, password
        self.expires, self.keepalive_interval, self.timeout = expires, keepalive_interval, timeout
        host, port = server
        self.server: Address | None = None  # resolved, once known
        self.registrar_uri = f"sip:{host}" + (f":{port}" if port != 5060 else "")
        self.aor = f"sip:{user}@{host}"
        self.call_id, self.tag, self.cseq = new_call_id(agent.address[0]), new_tag(), 0
        self.registered = threading.Event()
        self.next_refresh = 0.0

    @property
    def where(self) -> str:
        return f"registrar {self.server_name[0]}:{self.server_name[1]}"

    def step(self) -> float:
        """Register, refresh or check, as due; the seconds until the next step. RegistrationError if not."""
        try:
            if not self.registered.is_set() or time.monotonic() >= self.next_refresh:
                was_registered = self.registered.is_set()
                granted = self.register()
                self.registered.set()
                self.next_refresh = time.monotonic() + max(1.0, granted / 2)
                (log.debug if was_registered else log.info)(
                    "line %s: registered %s at %s (expires %d s)", self.agent.name, self.aor, self.where, granted)
            elif self.keepalive_interval and not self.still_bound():
                log.warning("line %s: %s no longer has our binding (restarted?); registering again",
                            self.agent.name, self.where)
                self.registered.clear()
                return 0.0
        except SipError as error:
            self.registered.clear()
            raise error if isinstance(error, RegistrationError) else RegistrationError(
                f"line {self.agent.name}: {self.where}: {error}") from None
        wait = self.next_refresh - time.monotonic()
        if self.keepalive_interval:
            wait = min(wait, self.keepalive_interval)
        return max(0.0, wait)

    def stop(self) -> None:
        """Unregister (best effort, one second) if registered."""
        if self.registered.is_set():
            try:
                self.register(timeout=1.0, expires=0)
            except SipError as error:
                log.info("line %s: unregister failed: %s", self.agent.name, error)
            self.registered.clear()

    def still_bound(self) -> bool:
        """Ask the registrar for our bindings; is our Contact among them? RegistrationError if no answer."""
        response = self._exchange(None, min(self.timeout, max(0.5, 2 * self.keepalive_interval)))
        return any(self._ours(contact) for contact in response.values("Contact"))

    def _ours(self, contact: str) -> bool:
        """Our Contact as the registrar lists it: the same user, host and port (it may add parameters)."""
        try:
            theirs, ours = SipUri.parse(uri_of(contact)), SipUri.parse(uri_of(self.agent.contact))
        except ValueError:
            return False
        return (theirs.user, theirs.host.lower(), theirs.address[1]) == (ours.user, ours.host.lower(), ours.address[1])

    def register(self, timeout: float | None = None, expires: int | None = None) -> int:
        """One REGISTER exchange, digest challenges included; the expiry the registrar granted."""
        expires = self.expires if expires is None else expires
        response = self._exchange(expires, timeout or self.timeout)
        return self._granted_expiry(response, expires)

    def _exchange(self, expires: int | None, timeout: float) -> SipMessage:
        """REGISTER with ``expires`` (None: a query, no Contact) until a 2xx; RegistrationError otherwise."""
        self.server = resolve(self.server_name, REGISTRAR_DNS_TIMEOUT)
        name, what = self.agent.name, "query" if expires is None else "REGISTER"
        authorization = ""
        for _ in range(4):
            self.cseq += 1
            branch = new_branch()
            headers = [self.agent.via(branch), "Max-Forwards: 70", f"From: <{self.aor}>;tag={self.tag}",
                       f"To: <{self.aor}>", f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} REGISTER"]
            if expires is not None:
                headers += [f"Contact: {self.agent.contact}", f"Expires: {expires}"]
            headers += [f"User-Agent: {self.agent.user_agent}", *([authorization] if authorization else [])]
            data = encode(f"REGISTER {self.registrar_uri} SIP/2.0", headers)
            response = self.agent.endpoint.request("REGISTER", branch, data, self.server).wait(timeout)
            if response is None:
                raise RegistrationError(f"line {name}: no reply from {self.where} to {what} for {self.user} "
                                        f"within {timeout:g} s")
            code = response.status_code
            if 200 <= code < 300:
                return response
            if code in (401, 407):
                if not self.password:
                    raise RegistrationError(f"line {name}: {self.where} asks for a password for {self.user} "
                                            f"({code}) and none is configured")
                if authorization and not is_stale(response):
                    raise RegistrationError(f"line {name}: {self.where} rejected the password for {self.user} "
                                            f"({code} {response.reason})")
                try:
                    authorization = answer_challenge(response, "REGISTER", self.registrar_uri, self.user,
                                                     self.password)
                except SipError as error:
                    raise RegistrationError(f"line {name}: {self.where}: {error}") from None
                continue
            if code == 423 and response.value("Min-Expires").isdigit() and expires:  # Interval Too Brief
                expires = int(response.value("Min-Expires"))
                continue
            raise RegistrationError(f"line {name}: {self.where} refused {what} for {self.user}: "
                                    f"{code} {response.reason}")
        raise RegistrationError(f"line {name}: {self.where} keeps challenging {what} for {self.user}")

    def _granted_expiry(self, response: SipMessage, requested: int) -> int:
        for contact in response.values("Contact"):
            granted = param(header_params(contact), "expires")
            if self._ours(contact) and granted.isdigit():
                return int(granted)
        header = response.value("Expires")
        return int(header) if header.isdigit() else requested
