"""What a line is to the parts that work for it: the status it reports, and the face
(``Line``) that its calls, its registration and its dialling see of the user agent (agent.py).

Those parts are typed against this shape, not against ``UserAgent``, so that the agent can
import them and none of them imports the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from callcenter.sip.guard import Guard
from callcenter.sip.rtp import PortPool
from callcenter.sip.transaction import Timers
from callcenter.sip.transport import SipEndpoint
from callcenter.sip.uri import Address


@dataclass
class LineStatus:
    """``starting``; ``registered`` or ``registering`` (register mode); ``listening`` or ``down`` (trunk)."""

    state: str = "starting"
    error: str = ""
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def up(self) -> bool:
        return self.state in ("registered", "listening")


class Line(Protocol):
    """The user agent as its calls and its registration use it."""

    name: str
    address: Address
    contact: str
    user_agent: str
    endpoint: SipEndpoint
    guard: Guard
    ports: PortPool
    symmetric_rtp: bool
    rtp_timeout: float

    @property
    def timers(self) -> Timers: ...

    def send(self, data: bytes, destination: Address) -> None: ...

    def via(self, branch: str) -> str: ...

    def forget(self, call: Any) -> None: ...
