"""How long a login must wait after failed ones: per account and per client address, growing delays.

Counted from the audit log's failed logins (so every process sharing the database counts the
same), within ``WINDOW`` and since that account's (or address's) last successful login. A few
failures are free; after that each one doubles the wait, up to a cap. The account's cap is short
(a minute), so somebody guessing at a real user's account cannot lock that user out for long; the
address's cap is long, so one machine guessing at many accounts soon stops getting answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import audit

WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Limit:
    free: int  # failures before any wait
    cap_seconds: float  # the longest wait

    def wait(self, failures: int, last_failure: datetime | None, now: datetime) -> float:
        """Seconds still to wait before the next try (0: go ahead)."""
        if failures < self.free or last_failure is None:
            return 0.0
        delay = min(2.0 ** (failures - self.free), self.cap_seconds)
        return max(0.0, (last_failure + timedelta(seconds=delay) - now).total_seconds())


PER_ACCOUNT = Limit(free=5, cap_seconds=60)
PER_ADDRESS = Limit(free=20, cap_seconds=15 * 60)


def wait_seconds(session: Session, username: str, address: str, now: datetime, checking_account: int = 0,
                 checking_address: int = 0) -> float:
    """0 when this login may be tried now, else how many seconds until it may. ``checking_*``: logins
    of this account (from this address) whose password is being checked right now; they count as
    failures just made, so a burst of simultaneous guesses is throttled as one after another would be."""
    since = now - WINDOW
    waits = [_wait(PER_ACCOUNT, audit.failures_since(session, username=username, since=since), checking_account, now)]
    if address:
        waits.append(_wait(PER_ADDRESS, audit.failures_since(session, address=address, since=since), checking_address,
                           now))
    return max(waits)


def _wait(limit: Limit, failures: tuple[int, datetime | None], checking: int, now: datetime) -> float:
    count, last = failures
    if checking:
        count, last = count + checking, now
    return limit.wait(count, last, now)
