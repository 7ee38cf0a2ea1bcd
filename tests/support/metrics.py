"""Recognition accuracy, as the Chinese recogniser tests and bench/asr.py measure it."""

from __future__ import annotations

from callcenter.asr.grammar import normalize


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance over characters / reference length, ignoring spaces and punctuation (Chinese
    models put spaces between words and no punctuation). Used by the bench and the Chinese tests."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return float(bool(hyp))
    previous = list(range(len(hyp) + 1))
    for i, ref_char in enumerate(ref, 1):
        current = [i]
        for j, hyp_char in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char)))
        previous = current
    return previous[-1] / len(ref)
