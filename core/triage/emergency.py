"""Emergency words: what in a caller's words makes a ticket 紧急, and where it was said.

Emergency words are searched in the original text with only whitespace removed, so
their offsets map straight back to the string the recognizer gave us. The rules are the
table of ``emergency_rules`` plus the plain phrases of the vocabulary's ``[emergency]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.triage.emergency_rules import (
    FOR_NOW,
    GAP,
    KINDS,
    MITIGATION_FAILED,
    MITIGATIONS,
    NEGATION_BEFORE,
    RULES,
    SUBSUMED_BY,
    EmergencyRule,
)
from core.triage.text import CLAUSE_BREAK, alternation
from core.triage.vocabulary import Vocabulary

SUBJECT_WINDOW = 10  # characters looked back for a subject or a negator


@dataclass(frozen=True)
class EmergencyWord:
    word: str
    kind: str
    start: int  # offsets into the text triage() was given
    end: int

    def to_dict(self) -> dict:
        return {"word": self.word, "kind": self.kind, "start": self.start, "end": self.end}


Match = tuple[str, int, int]  # kind, start, end in the compact text


@dataclass(frozen=True)
class _CompiledRule:
    kind: str
    pattern: re.Pattern
    allowed: tuple[str, ...]
    blocked: tuple[str, ...]
    subject_required: bool
    needs_anywhere: tuple[str, ...]


class EmergencyReader:
    """The emergency rules compiled for one vocabulary; ``off`` names kinds the site does not treat as emergencies."""

    def __init__(self, vocabulary: Vocabulary, off: frozenset[str] | set[str] = frozenset()):
        def subjects(name: str | None) -> tuple[str, ...]:
            return vocabulary.words("subjects", name) if name else ()

        def expand(pattern: str) -> str:
            return re.sub(r"\{([a-z_]+)\}",
                          lambda m: GAP if m[1] == "gap" else alternation(subjects(m[1])), pattern)

        phrases = [EmergencyRule(kind, alternation(words)) for (section, kind), words in vocabulary.lists.items()
                   if section == "emergency"]
        unknown = {rule.kind for rule in phrases} - set(KINDS)
        if unknown:
            raise ValueError(f"words.toml names emergency kinds the rules do not know: {sorted(unknown)}")
        self.rules = tuple(
            _CompiledRule(rule.kind, re.compile(expand(rule.pattern)), subjects(rule.allowed_subjects),
                          subjects(rule.blocked_subjects), rule.subject_required, subjects(rule.needs_anywhere))
            for rule in (*RULES, *phrases) if rule.kind not in off)

    def find(self, text: str) -> list[EmergencyWord]:
        """Emergency words that are neither negated nor mitigated, with offsets into ``text``."""
        compact, offsets = _without_whitespace(text)
        matches = _non_overlapping(self._rule_matches(compact))
        kept = [(kind, start, end) for kind, start, end in matches if not _is_negated(compact, start)]
        kept = _drop_mitigated(compact, kept)
        said = {kind for kind, _, _ in kept}
        kept = [m for m in kept if SUBSUMED_BY.get(m[0]) not in said]
        return [EmergencyWord(text[offsets[start]:offsets[end - 1] + 1], kind, offsets[start],
                              offsets[end - 1] + 1) for kind, start, end in kept]

    def _rule_matches(self, compact: str) -> list[Match]:
        found = []
        for rule in self.rules:
            if rule.needs_anywhere and not any(word in compact for word in rule.needs_anywhere):
                continue
            for match in rule.pattern.finditer(compact):
                if _subject_allows(rule, compact, match.start()):
                    found.append((rule.kind, match.start(), match.end()))
        return found


def _without_whitespace(text: str) -> tuple[str, list[int]]:
    offsets = [i for i, ch in enumerate(text) if not ch.isspace()]
    return "".join(text[i] for i in offsets), offsets


def _subject_allows(rule: _CompiledRule, compact: str, start: int) -> bool:
    if not (rule.allowed or rule.blocked):
        return True
    subjects = rule.allowed + rule.blocked
    subject = _nearest_subject(_clause_before(compact, start), subjects)
    if subject is None and rule.subject_required:  # 管子一直漏，拿毛巾堵都止不住
        subject = _nearest_subject(_clause_before(compact, start - len(_clause_before(compact, start)) - 1), subjects)
    if subject in rule.blocked:
        return False
    return subject is not None or not rule.subject_required


def _clause_before(compact: str, start: int) -> str:
    """The clause so far, at most SUBJECT_WINDOW characters back (Vosk text has no punctuation)."""
    if start <= 0:
        return ""
    before = compact[max(0, start - SUBJECT_WINDOW):start]
    breaks = list(CLAUSE_BREAK.finditer(before))
    return before[breaks[-1].end():] if breaks else before


def _nearest_subject(clause: str, subjects: tuple[str, ...]) -> str | None:
    """The subject word ending last in ``clause`` (the longer one when two end together)."""
    best, best_key = None, (-1, 0)
    for word in subjects:
        at = clause.rfind(word)
        if at >= 0 and (at + len(word), len(word)) > best_key:
            best, best_key = word, (at + len(word), len(word))
    return best


def _non_overlapping(matches: list[Match]) -> list[Match]:
    """Earliest first, the longest of matches starting together; later overlapping ones dropped."""
    kept: list[Match] = []
    for kind, start, end in sorted(matches, key=lambda m: (m[1], m[1] - m[2])):
        if not kept or start >= kept[-1][2]:
            kept.append((kind, start, end))
    return kept


def _is_negated(compact: str, start: int) -> bool:
    before = _clause_before(compact, start)
    negation = NEGATION_BEFORE.search(before)
    if not negation:
        return False
    at = negation.start(1) if negation.group(1) is not None else negation.start(2)
    # 是不是短路了 / 有没有冒烟 ask, they do not deny: the same character on both sides
    # of the negator (A-not-A) makes a question.
    after = (before + compact[start:start + 1])[at + 1:at + 2]
    return at == 0 or before[at - 1] != after


def _drop_mitigated(compact: str, matches: list[Match]) -> list[Match]:
    """Hazards said before a mitigation of their kind are under control, unless the clause says it failed."""
    for pattern, kinds in MITIGATIONS:
        for mitigation in pattern.finditer(compact):
            rest_of_clause = CLAUSE_BREAK.split(compact[mitigation.end():], maxsplit=1)[0]
            if any(word in rest_of_clause for word in MITIGATION_FAILED):
                continue
            if FOR_NOW.search(compact[max(0, mitigation.start() - 3):mitigation.start()]):
                continue
            matches = [m for m in matches if not (m[0] in kinds and m[2] <= mitigation.start())]
    return matches
