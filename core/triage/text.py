"""What every section of the triage needs to read a sentence: clauses, and cutting spans out."""

from __future__ import annotations

import re
from collections.abc import Iterable

CLAUSE_END_CHARS = "，。,.!?！？；;、"
# Clauses end at punctuation and at turns such as 但是/就是 (没有冒烟，就是灯不亮).
CLAUSE_BREAK = re.compile(rf"[{CLAUSE_END_CHARS}]|但是|就是|只是|可是|不过|而是")

Span = tuple[int, int]


def alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words`` literally, the longest first (no words: matches nothing)."""
    ordered = sorted(set(words), key=lambda word: (-len(word), word))
    return "|".join(re.escape(word) for word in ordered) or "(?!)"


def cut(text: str, spans: list[Span]) -> str:
    """``text`` without the characters inside any of ``spans``."""
    inside: set[int] = set()
    for start, end in spans:
        inside.update(range(start, end))
    return "".join(ch for i, ch in enumerate(text) if i not in inside)


def blank(text: str, spans: list[Span], filler: str = "#") -> str:
    """``text`` with each span replaced by one filler character per character (offsets stay valid)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = filler * (end - start)
    return "".join(chars)
