"""Caller sentences -> draft ticket fields (core.triage)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.settings import Settings, TriageSettings
from core.triage import CATEGORY_NAMES, triage
from tests.triage_cases import CASES, NOW, SHANGHAI

PHONE_SENTENCES = Path(__file__).parent / "data" / "phone_sentences.txt"
DRAFT_KEYS = {"address", "category", "urgency", "emergency_words", "appointment", "phone", "summary", "text"}


def _settings(case) -> Settings:
    return Settings(triage=TriageSettings(lift_fault_is_emergency=case.lift_fault_is_emergency))


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.text[:24], marks=marks)


def _fields(draft: dict) -> dict:
    appointment = draft["appointment"]
    return {
        "address": draft["address"],
        "category": draft["category"],
        "urgency": draft["urgency"],
        "phone": draft["phone"],
        "appointment": (appointment["start"], appointment["end"]) if appointment else None,
    }


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_caller_sentence(case):
    draft = triage(case.text, NOW, _settings(case)).to_dict()
    expected = {"address": case.address, "category": case.category, "urgency": case.urgency,
                "phone": case.phone, "appointment": case.appointment}
    assert _fields(draft) == expected
    if case.kinds is not None:
        assert {word["kind"] for word in draft["emergency_words"]} == case.kinds


def test_the_case_set_is_large_and_covers_every_category_and_kind():
    assert len(CASES) >= 170
    assert {case.category for case in CASES} == set(CATEGORY_NAMES)
    stated_kinds = set().union(*(case.kinds for case in CASES if case.kinds))
    assert stated_kinds == {
        "burst_pipe", "flooding", "sewage", "smoke", "sparks", "burning_smell", "fire", "short_circuit",
        "electric_shock", "power_outage", "water_outage", "gas_leak", "lift_trapped", "lift_fault",
        "falling_object", "caller_urgent"}
    passing = [case for case in CASES if not case.xfail]
    assert len(passing) / len(CASES) >= 0.95


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.text[:24])
def test_draft_shape(case):
    draft = triage(case.text, NOW, _settings(case)).to_dict()
    assert set(draft) == DRAFT_KEYS
    assert set(draft["address"]) == {"building", "unit", "room", "area"}
    json.dumps(draft, ensure_ascii=False)
    assert draft["category"] in CATEGORY_NAMES
    assert (draft["urgency"] == "emergency") == bool(draft["emergency_words"])
    assert 0 < len(draft["summary"]) <= 60
    for word in draft["emergency_words"]:
        assert case.text[word["start"]:word["end"]] == word["word"]  # offsets into the original text


# ---------------------------------------------------------------- emergency words
STOPPED_LIFTS = [case for case in CASES if not case.lift_fault_is_emergency and case.urgency == "normal"]


@pytest.mark.parametrize("case", STOPPED_LIFTS, ids=lambda case: case.text[:24])
def test_a_stopped_lift_is_an_emergency_unless_the_site_says_otherwise(case):
    """The cases read with triage.lift_fault_is_emergency = false are lifts stopped with nobody inside."""
    draft = triage(case.text, NOW)  # the default: PROCESS.md lists 电梯故障 among the emergencies
    assert draft.is_emergency and draft.category == "elevator"
    assert {word.kind for word in draft.emergency_words} == (case.kinds or set()) | {"lift_fault"}


def test_people_trapped_in_a_lift_are_an_emergency_whatever_the_setting():
    for lift_fault_is_emergency in (True, False):
        settings = Settings(triage=TriageSettings(lift_fault_is_emergency=lift_fault_is_emergency))
        draft = triage("电梯卡在五楼和六楼中间了，里面有人出不来", NOW, settings)
        assert {word.kind for word in draft.emergency_words} == {"lift_trapped"}


def test_emergency_offsets_point_into_the_recognizer_text_with_its_spaces():
    text = "喂 你好 我家 水管 爆 了 水 止 不 住"
    words = triage(text, NOW).to_dict()["emergency_words"]
    assert words == [
        {"word": "水管 爆", "kind": "burst_pipe", "start": 8, "end": 12},
        {"word": "止 不 住", "kind": "flooding", "start": 17, "end": 22},
    ]


def test_a_partial_result_already_flags_the_emergency():
    partial = triage("我家厨房水管爆", NOW)
    assert partial.is_emergency
    assert partial.to_dict()["emergency_words"] == [{"word": "水管爆", "kind": "burst_pipe", "start": 4, "end": 7}]
    final = triage("我家厨房水管爆了，水止不住", NOW).to_dict()
    assert final["emergency_words"] == [
        {"word": "水管爆", "kind": "burst_pipe", "start": 4, "end": 7},
        {"word": "止不住", "kind": "flooding", "start": 10, "end": 13},
    ]


@pytest.mark.parametrize("growing", [
    ["我 家", "我 家 厨房 水管", "我 家 厨房 水管 爆", "我 家 厨房 水管 爆 了 快 来"],
    ["三号楼电梯", "三号楼电梯困", "三号楼电梯困人", "三号楼电梯困人了"],
])
def test_partials_turn_emergency_once_the_word_is_complete_and_stay_so(growing):
    urgencies = [triage(text, NOW).to_dict()["urgency"] for text in growing]
    first = urgencies.index("emergency")
    assert "normal" in urgencies[:first] and set(urgencies[first:]) == {"emergency"}


@pytest.mark.parametrize("text", [
    "没有冒烟，就是灯不亮",
    "不是漏气，打不着火",
    "不着急",
    "已经关了总阀，不漏了",
    "没闻到什么煤气味",
    "不是电梯困人",
    "没有人被困",
    "水管没爆",
])
def test_negated_and_mitigated_hazards_are_not_emergencies(text):
    assert triage(text, NOW).to_dict()["emergency_words"] == []


@pytest.mark.parametrize("text, kind", [
    ("是不是短路了", "short_circuit"),  # a question, not a denial
    ("有没有冒烟我也不知道", "smoke"),
    ("灯不亮冒烟了", "smoke"),  # 不 negates 亮, not 冒烟
    ("关了总阀还是漏，水止不住", "flooding"),  # the mitigation failed
    ("不 是 漏水 是 水管 爆 了", "burst_pipe"),
])
def test_negation_reaches_only_what_it_negates(text, kind):
    assert [word["kind"] for word in triage(text, NOW).to_dict()["emergency_words"]] == [kind]


# ---------------------------------------------------------------- time
def _at(*parts):
    return datetime(*parts, tzinfo=SHANGHAI).isoformat()


@pytest.mark.parametrize("now, text, start, end", [
    # Sunday 23:50: tomorrow is Monday, which is also next week's Monday
    (datetime(2024, 6, 16, 23, 50, tzinfo=SHANGHAI), "明天上午来", (2024, 6, 17, 9), (2024, 6, 17, 12)),
    (datetime(2024, 6, 16, 23, 50, tzinfo=SHANGHAI), "周一上午来", (2024, 6, 17, 9), (2024, 6, 17, 12)),
    (datetime(2024, 6, 16, 23, 50, tzinfo=SHANGHAI), "下周一上午来", (2024, 6, 17, 9), (2024, 6, 17, 12)),
    (datetime(2024, 6, 16, 23, 50, tzinfo=SHANGHAI), "三点来", (2024, 6, 17, 15), (2024, 6, 17, 16)),
    (datetime(2024, 6, 16, 23, 50, tzinfo=SHANGHAI), "周日下午来", (2024, 6, 23, 14), (2024, 6, 23, 18)),
    # 16:30 UTC is already Thursday 00:30 in Shanghai
    (datetime(2024, 6, 12, 16, 30, tzinfo=UTC), "明天上午来", (2024, 6, 14, 9), (2024, 6, 14, 12)),
    (datetime(2024, 6, 12, 16, 30, tzinfo=UTC), "今天下午来", (2024, 6, 13, 14), (2024, 6, 13, 18)),
    # Saturday 16:00: this afternoon's 3 o'clock is gone, the evening is not
    (datetime(2024, 6, 15, 16, 0, tzinfo=SHANGHAI), "周六下午三点来", (2024, 6, 22, 15), (2024, 6, 22, 16)),
    (datetime(2024, 6, 15, 16, 0, tzinfo=SHANGHAI), "周六晚上来", (2024, 6, 15, 18), (2024, 6, 15, 21)),
    (datetime(2024, 6, 15, 16, 0, tzinfo=SHANGHAI), "周六上午来", (2024, 6, 22, 9), (2024, 6, 22, 12)),
    # New Year's Eve
    (datetime(2024, 12, 31, 20, 0, tzinfo=SHANGHAI), "明天上午来", (2025, 1, 1, 9), (2025, 1, 1, 12)),
    (datetime(2024, 12, 31, 20, 0, tzinfo=SHANGHAI), "下周三来", (2025, 1, 8, 9), (2025, 1, 8, 18)),
    (datetime(2024, 12, 31, 20, 0, tzinfo=SHANGHAI), "一号上午来", (2025, 1, 1, 9), (2025, 1, 1, 12)),
    (datetime(2024, 12, 31, 20, 0, tzinfo=SHANGHAI), "三点来", (2025, 1, 1, 15), (2025, 1, 1, 16)),
    # June has no 31st
    (NOW, "三十一号来", (2024, 7, 31, 9), (2024, 7, 31, 18)),
])
def test_appointment_resolves_against_now(now, text, start, end):
    assert triage(text, now).to_dict()["appointment"] == {"start": _at(*start), "end": _at(*end)}


def test_appointment_times_carry_the_shanghai_offset():
    appointment = triage("明天下午三点", datetime(2024, 6, 12, 2, 0, tzinfo=UTC)).to_dict()["appointment"]
    assert appointment == {"start": "2024-06-13T15:00:00+08:00", "end": "2024-06-13T16:00:00+08:00"}


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError):
        triage("明天上午", datetime(2024, 6, 12, 10, 0))


@pytest.mark.parametrize("text", ["晚上黑乎乎的，楼道灯坏了", "今天早上突然停水了", "三点的时候突然跳闸了"])
def test_times_that_describe_the_fault_are_not_appointments(text):
    assert triage(text, NOW).to_dict()["appointment"] is None


# ---------------------------------------------------------------- summary
@pytest.mark.parametrize("text, summary", [
    ("喂，你好，我是三号楼二单元六零二的，那个，卫生间马桶堵了，我电话是一三八一二三四五六七八。", "卫生间马桶堵了"),
    ("嗯 就是 我 家 厨房 水管 爆 了 明天 上午 来 一下", "我家厨房水管爆了"),
    ("这周五下午来修空调吧。", "修空调"),
    ("有人被困在二号楼电梯里了！", "有人被困在电梯里了"),
    ("一 三 九 零 零 幺 幺 二 二 三 三 是 我 电话 热水器 坏 了", "热水器坏了"),
    ("我 是 六 号 楼 的", "6号楼"),  # no fault yet: keep what there is
    ("喂", "喂"),
])
def test_summary_keeps_the_fault_and_drops_the_rest(text, summary):
    assert triage(text, NOW).to_dict()["summary"] == summary


def test_summary_of_a_long_call_is_cut_at_a_clause():
    text = "我家卫生间马桶堵了，" + "厨房水龙头也一直在滴水，" * 6
    summary = triage(text, NOW).to_dict()["summary"]
    assert len(summary) <= 60 and summary.startswith("我家卫生间马桶堵了") and not summary.endswith("，")


def test_empty_text_gives_an_empty_draft():
    draft = triage("", NOW).to_dict()
    assert draft["summary"] == "" and draft["urgency"] == "normal" and draft["category"] == "other"


def test_text_is_the_normalised_transcript():
    assert triage("三 号 楼 二 单元 六 零 二 灯 坏 了", NOW).to_dict()["text"] == "3号楼2单元602灯坏了"


# ---------------------------------------------------------------- speech-synthesis sentences
def _phone_sentences():
    for line in PHONE_SENTENCES.read_text(encoding="utf-8").splitlines():
        text, expected = line.split("\t")
        yield text, json.loads(expected)


def test_phone_sentences_are_thirty_short_mixed_cases():
    sentences = list(_phone_sentences())
    assert len(sentences) == 30
    assert {expected["urgency"] for _, expected in sentences} == {"emergency", "normal"}
    assert all(len(text) <= 30 for text, _ in sentences)
    case_texts = {case.text for case in CASES if not case.xfail}
    assert all(text in case_texts for text, _ in sentences)


@pytest.mark.parametrize("text, expected", list(_phone_sentences()), ids=lambda value: str(value)[:16])
def test_phone_sentence(text, expected):
    case = next(case for case in CASES if case.text == text)
    draft = triage(text, NOW, _settings(case)).to_dict()
    address = draft["address"]
    assert {"urgency": draft["urgency"], "building": address["building"], "unit": address["unit"],
            "room": address["room"]} == expected
