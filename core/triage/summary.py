"""The fault in a few words, for the ticket's summary and the read-back to the caller."""

from __future__ import annotations

import re

from core.triage.category import CategoryReader
from core.triage.text import CLAUSE_BREAK, Span, alternation, cut
from core.triage.vocabulary import Vocabulary

# "Come and fix it" is the call itself, not the fault: 明天来修一下空调 -> 修空调.
REQUESTS = re.compile(r"(?:能不能|能|可以|请)?(?:你们)?(?:派个?人|派个?师傅|安排个?师傅|安排个?人)?(?:过来|上门|来)"
                      r"(?=修|换|看|处理|维修)|(?:过来|来)一下|派个?人来|派个?师傅来|快来人|一下|看看|看一下|可以吗|好吗|行吗|"
                      r"都可以|都行|就行|随时|什么时候|之间|过来|都在家|在家")
PHONE_LABEL_BEFORE = re.compile(r"(?:我的|我)?(?:联系电话|电话号码|手机号码|手机号|电话|手机|号码)(?:号码|号)?是?$")
PHONE_LABEL_AFTER = re.compile(r"^是?我的?(?:电话|手机)(?:号码?)?")
LEAD_IN = re.compile(r"^(?:我是|我家是|我家住在?|我住在?|住在|这里是|这边是)?的?(?:业主)?的?")
TRAILING_PARTICLES = "吧呢吗啊"
FAULT_WORDS = re.compile(r"漫|淹|爆|喷|冒|闪|歪|倒|塌|烧|坏|不亮|不响|不转|漏|堵|裂|打不开|关不上|锁不上|打不着|不热"
                         r"|不制冷|不出|没反应|掉|松|异响|噪音|滴|渗|臭|味|不动|卡|断|停|没电|没水|烟|火|急|困")
SUMMARY_LIMIT = 60


class Summarizer:
    """Summaries with the vocabulary's ``[summary] fillers`` left out."""

    def __init__(self, vocabulary: Vocabulary, categories: CategoryReader):
        self.fillers = re.compile(alternation(vocabulary.words("summary", "fillers")))
        self.categories = categories

    def summarize(self, normalized: str, phone_span: Span | None, spans: list[Span]) -> str:
        """The fault in a few words: address, phone, time, greetings and fillers taken out.

        When no clause names a fault (the caller only gave an address so far) the whole
        text, fillers removed, is kept: the summary is never empty for non-empty text.
        """
        if phone_span:
            spans = spans + [_with_phone_label(normalized, phone_span)]
        fault_clauses = [clause for clause in self._clauses(cut(normalized, spans))
                         if FAULT_WORDS.search(clause) or self.categories.names_a_category(clause)]
        summary = "，".join(fault_clauses or self._clauses(normalized)) or normalized.strip()
        return _shorten(summary)

    def _clauses(self, text: str) -> list[str]:
        text = REQUESTS.sub("", self.fillers.sub("", text))
        return [clause for clause in map(_tidy_clause, CLAUSE_BREAK.split(text)) if clause]


def _with_phone_label(text: str, span: Span) -> Span:
    """Widen the phone span over its label (电话是138…, or …是我电话 after it)."""
    before = PHONE_LABEL_BEFORE.search(text[:span[0]])
    after = PHONE_LABEL_AFTER.match(text[span[1]:])
    return (before.start() if before else span[0], span[1] + (after.end() if after else 0))


def _tidy_clause(clause: str) -> str:
    clause = clause.strip(" 　，,#")
    lead_in = LEAD_IN.match(clause)
    if lead_in and lead_in.end():
        clause = clause[lead_in.end():].removesuffix("的")  # 我是6号楼的 -> 6号楼
    clause = clause.rstrip(TRAILING_PARTICLES)
    return "" if clause in ("", "了", "是", "我", "的", "修", "换", "看", "处理", "维修") else clause


def _shorten(summary: str) -> str:
    if len(summary) <= SUMMARY_LIMIT:
        return summary
    at = summary.rfind("，", 0, SUMMARY_LIMIT)
    return summary[:at] if at > SUMMARY_LIMIT // 2 else summary[:SUMMARY_LIMIT]
