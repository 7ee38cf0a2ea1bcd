"""Emergency words: what in a caller's words makes a ticket 紧急, and where it was said.

Emergency words are searched in the original text with only whitespace removed, so
their offsets map straight back to the string the recognizer gave us. A rule's pattern
may name a ``[subjects]`` word list of the vocabulary as ``{name}`` and the gap allowed
inside a phrase as ``{gap}``; the plain phrases of ``[emergency]`` are rules of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.triage.text import CLAUSE_BREAK, CLAUSE_END_CHARS, alternation
from core.triage.vocabulary import Vocabulary


@dataclass(frozen=True)
class EmergencyWord:
    word: str
    kind: str
    start: int  # offsets into the text triage() was given
    end: int

    def to_dict(self) -> dict:
        return {"word": self.word, "kind": self.kind, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class EmergencyRule:
    """One way of saying an emergency.

    The nearest subject word before the match (same clause) decides ambiguous words:
    a blocked subject cancels it (插座没电了 is one socket, not an outage), and with
    ``subject_required`` some allowed subject must be there (水关不住, but not 门关不住).
    Subjects are named by their ``[subjects]`` list in the vocabulary.
    """

    kind: str
    pattern: str
    allowed_subjects: str | None = None
    blocked_subjects: str | None = None
    subject_required: bool = False
    needs_anywhere: str | None = None  # a word of this list must occur somewhere in the text


# Gaps inside a phrase may not hold a negation: 水管没爆 is not 水管…爆.
GAP = rf"[^{CLAUSE_END_CHARS}不没未]"
RULES = (
    EmergencyRule("burst_pipe", r"(?:{pipes}){gap}{0,4}?(?:爆|裂|崩|破了|破裂|断了|炸)"),
    EmergencyRule("burst_pipe", r"喷水|往外喷|喷出来|呲水|滋水", blocked_subjects="spray_fittings"),
    EmergencyRule("flooding", r"止不住|关不住|堵不住|停不下来",
                  allowed_subjects="water_subjects", blocked_subjects="closable_not_water", subject_required=True),
    EmergencyRule("flooding", r"水{gap}{0,2}?漫(?:到|进|过)"
                              r"|(?:满地|一地|地上|满屋子?|一屋子|屋里|到处)(?:全|都)?(?:是|的)?水(?![龙管表阀池槽压泵费])"),
    EmergencyRule("sewage", r"(?:污水|脏水|粪水|粪便|下水道|马桶|地漏|化粪池|下水)"
                            r"{gap}{0,5}?(?:冒出来|冒上来|往上冒|往外冒|涌出来|返上来|反上来|溢出来?|漫出来|冒水)"),
    # A smoke alarm going off counts as smoke; the alarm's name alone does not.
    EmergencyRule("smoke", r"冒[黑白青]?烟|烟雾(?!报警|探测)"
                           r"|(?:烟雾报警器|烟雾探测器|烟感报警器|烟感){gap}{0,4}?(?:响|报警|叫)"),
    # 打着火/点着火 is a stove lighting, not a fire.
    EmergencyRule("fire", r"(?<![打点])着了?火|冒火(?![花星])"),
    # 漏电保护器/漏电开关 is the breaker's name, not a leak.
    EmergencyRule("electric_shock", r"漏电(?!保护|开关)|触电|被电[到了着一]|电到[人我手了]|电人|麻手"),
    EmergencyRule("power_outage", r"停电|断电|没有?电了?(?![话池视脑瓶费动])|电停了|全黑了|一点电都没有",
                  allowed_subjects="whole_home", blocked_subjects="power_devices"),
    EmergencyRule("water_outage", r"停水|断水|没有?水了|水停了|没有?水用|一滴水都没有|不出水了?|没来水",
                  allowed_subjects="whole_home", blocked_subjects="water_devices"),
    EmergencyRule("water_outage", r"水泵{gap}{0,4}?(?:坏|故障|不转|停|不工作)"),
    EmergencyRule("gas_leak", r"(?:{gases})报警器{gap}{0,4}?(?:响|报警|叫)"
                              r"|(?:{gases}){gap}{0,4}?(?:味|泄漏|泄露|漏(?!水))|闻到{gap}{0,4}?(?:{gases})"),
    # Gas hissing out (燃气表嘶嘶的响) is a leak you can hear.
    EmergencyRule("gas_leak", r"嘶嘶|呲呲", needs_anywhere="gas_things"),
    EmergencyRule("lift_trapped", r"(?:困|关|卡|锁)在了?电梯|电梯里?{gap}{0,6}?有?人{gap}{0,4}?(?:困|关|卡|出不来)"
                                  r"|被?电梯门?{gap}{0,2}?夹"),
    EmergencyRule("lift_trapped", r"被困|困住|(?:关|卡|锁|困)在里面|出不来|里面{gap}{0,3}?有人|有人在里面",
                  needs_anywhere="lift_words"),
    EmergencyRule("falling_object", r"掉下来|掉下去|掉到楼下|坠落|掉落|往下掉|砸下来|砸到人|砸伤|脱落"
                                    r"|(?:要|快)倒了|倒塌|坍塌|塌了|塌下来",
                  allowed_subjects="dangerous_falls", blocked_subjects="harmless_falls"),
    EmergencyRule("caller_urgent", r"(?:特别|非常|很|挺|太|十分|真的|好|超级|极其)(?:着急|紧急|急)|急死了?"),
)
# Every kind, as the ``kind`` of an EmergencyWord; words.toml has a phrase list for each.
KINDS = ("burst_pipe", "flooding", "sewage", "smoke", "sparks", "burning_smell", "fire", "short_circuit",
         "electric_shock", "power_outage", "water_outage", "gas_leak", "lift_trapped", "falling_object",
         "caller_urgent")

# A negator before the emergency word in the same clause cancels it. 不是/没有 negate
# a whole phrase (不是电梯困人, 没有人被困), so a few words may stand between; 不/没
# negate the next verb (灯不亮冒烟了 still smokes), so only these gap words may:
# 没闻到什么煤气味, 没看到有烟.
PHRASE_NEGATORS = r"并不是|不是|并没有|没有|并非"  # reach stops at 是: 不是漏水是水管爆了
PHRASE_NEGATION_REACH = 4
VERB_NEGATORS = r"没|不|无|未|别"
NEGATION_GAP_WORDS = r"看到|看见|闻到|听到|发现|感觉|觉得|什么|任何|出现|有|再|也|都|是|说|会|算|到|啥|还|怎么|一点"
NEGATION_BEFORE = re.compile(rf"({PHRASE_NEGATORS})[^{CLAUSE_END_CHARS}是]{{0,{PHRASE_NEGATION_REACH}}}$"
                             rf"|({VERB_NEGATORS})(?:{NEGATION_GAP_WORDS}){{0,3}}$")
SUBJECT_WINDOW = 10  # characters looked back for a subject or a negator

WATER_KINDS = frozenset({"burst_pipe", "flooding", "sewage"})
ELECTRIC_KINDS = frozenset({"sparks", "smoke", "burning_smell", "short_circuit", "electric_shock"})
HAZARD_KINDS = frozenset(KINDS) - {"caller_urgent"}
# Said after the hazard, these mean it is under control: 已经关了总阀，不漏了.
MITIGATIONS = tuple((re.compile(pattern.replace("{gap}", GAP)), kinds) for pattern, kinds in (
    (r"(?:关了|关掉了?|关上了?|关好了|拧紧了?){gap}{0,3}?(?:总阀|阀门|水阀|角阀|总闸门|阀)"
     r"|(?:总阀|阀门|水阀|角阀){gap}{0,3}?(?:关了|关掉了|关上了|关好了)", WATER_KINDS),
    (r"不再?(?:漏|喷|渗|冒水)了|止住了", WATER_KINDS),
    (r"(?:拉了|关了|断了|拉下来了?|关掉了?){gap}{0,3}?(?:总闸|电闸|闸|电源|空开)"
     r"|(?:总闸|电闸|空开|电源){gap}{0,3}?(?:拉了|关了|断了|拉下来了?|关掉了)", ELECTRIC_KINDS),
    (r"不再?冒烟了|烟没了|火(?:已经)?灭了|扑灭了|灭掉了", frozenset({"fire", "smoke", "sparks", "burning_smell"})),
    (r"来电了|有电了|电来了", frozenset({"power_outage"})),
    (r"来水了|水来了", frozenset({"water_outage"})),
    (r"(?:人|已经|都){gap}{0,2}?(?:出来了|救出来了)", frozenset({"lift_trapped"})),
    (r"已经(?:修)?好了|现在(?:没事|好)了|已经没事了|已经处理(?:好)?了", HAZARD_KINDS),
))
# ...unless the caller goes on to say it did not help (关了总阀还是漏).
MITIGATION_FAILED = ("还", "仍", "没用", "不管用", "依然", "照样")

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

    def __init__(self, vocabulary: Vocabulary, off: frozenset[str] = frozenset()):
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
    subject = _nearest_subject(_clause_before(compact, start), rule.allowed + rule.blocked)
    if subject in rule.blocked:
        return False
    return subject is not None or not rule.subject_required


def _clause_before(compact: str, start: int) -> str:
    """The clause so far, at most SUBJECT_WINDOW characters back (Vosk text has no punctuation)."""
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
            matches = [m for m in matches if not (m[0] in kinds and m[2] <= mitigation.start())]
    return matches
