"""What the end-to-end call tests share: a time limit on every test, the prompts and the voices,
rows read back as plain values, and finding a caller's audio in a call's recording.

Import the fixtures into a test module to use them; ``time_limit`` then applies to every test of
that module: ``TEST_TIME_LIMIT`` seconds (default 150), or ``TIME_LIMITS[test name]``.
"""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from callcenter.ivr.media import PCMU
from callcenter.ivr.prompts import Prompts
from tests.support.hotline_caller import voice


@pytest.fixture(autouse=True)
def time_limit(request):
    """No test may hang CI."""
    limit = getattr(request.module, "TIME_LIMITS", {}).get(request.node.originalname,
                                                           getattr(request.module, "TEST_TIME_LIMIT", 150))

    def expired(signum, frame):
        raise TimeoutError(f"test still running after {limit} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def db_url(tmp_path):
    """Calls are slow: SQLite only (the database layer is tested on both databases elsewhere)."""
    return f"sqlite:///{tmp_path / 'callcenter.db'}"


@pytest.fixture(scope="module")
def prompts():
    return Prompts()


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """voices(text, language="cmn") -> espeak-ng speech as 8 kHz 16-bit PCM (cached for the module)."""
    directory = tmp_path_factory.mktemp("voices")
    return lambda text, language="cmn": voice(text, directory, language)


def one(items, what=""):
    """The single item of ``items``; else an error that shows them all."""
    items = list(items)
    assert len(items) == 1, f"expected one {what}, got {len(items)}: {items}"
    return items[0]


def plain(row) -> SimpleNamespace:
    return SimpleNamespace(**{column.key: getattr(row, column.key) for column in row.__table__.columns})


# How far the caller's timeline and the recording's may be apart: a flow starts recording once it
# runs, a moment after the answer, and on a loaded box (four test workers on two cores) that moment
# has reached 0.6 s. Audio lost or doubled in the middle of a call shows as whole seconds.
RECORDING_OFFSET = 1.0


def located(recording: bytes, pcm: bytes, after: float = 0.0) -> float:
    """Where the caller's audio ``pcm`` is, bit for bit (after G.711), in the call's recording: seconds
    (its first place from ``after`` seconds on)."""
    sent = PCMU.decode(PCMU.encode(pcm))
    index = recording.find(sent, int(after * 8000) * 2)
    assert index >= 0 and index % 2 == 0, "the caller's speech is not in the recording intact"
    return index / 16000
