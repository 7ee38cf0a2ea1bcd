"""What the work under way is about, for every log line it writes: the call, the line, the ticket.

Set where a call's or a ticket's work begins, on the thread (or asyncio task) that does it, and
every log line written inside carries it, without each log call having to say so::

    with log_context.bound(call_id=call.call_id, line=call.line.name):
        ...                                    # every line logged here has call_id and line
        log_context.note(ticket="20261122007")  # known only later: from here on as well

    @log_context.scoped                        # or: notes made inside end when it returns
    def answer(call): log_context.note(call_id=call.call_id); ...

The values live in a ``contextvars.ContextVar``: each thread starts empty (a new thread does not
inherit them), each asyncio task gets a copy of its creator's. ``callcenter.logs`` puts them on
each log record (and into each JSON line); this module only keeps them, so ``core`` may use it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TypeVar

FIELDS = ("call_id", "line", "ticket")

# Never changed in place: each bound/note sets a new mapping, so a context never sees another's fields.
_current: ContextVar[Mapping[str, str]] = ContextVar("callcenter_log_context", default=MappingProxyType({}))
Work = TypeVar("Work", bound=Callable)


def current() -> dict[str, str]:
    """The fields known here and now (a copy)."""
    return dict(_current.get())


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """These fields (empty values ignored) for the duration of the block, on top of what is known."""
    token = _current.set({**_current.get(), **_clean(fields)})
    try:
        yield
    finally:
        _current.reset(token)


def scoped(work: Work) -> Work:
    """A function whose ``note``s end when it returns (the entry point of a call's thread, say)."""
    @functools.wraps(work)
    def run(*args, **kwargs):
        with bound():
            return work(*args, **kwargs)
    return run  # type: ignore[return-value]


def note(**fields: object) -> None:
    """Fields learnt on the way (a ticket's number once the draft is saved): from here to the end of
    the enclosing ``bound`` block. Use it inside one: outside, a pooled thread would carry the
    fields into its next piece of work."""
    _current.set({**_current.get(), **_clean(fields)})


def _clean(fields: dict[str, object]) -> dict[str, str]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"log context fields are {FIELDS}, not {sorted(unknown)}")
    return {name: str(value) for name, value in fields.items() if value not in (None, "")}
