"""Chinese numerals in recognizer text -> Arabic digits, in one place.

Vosk writes numbers as words, often one token per character ("三 号 楼 二 单元
六 零 二"), and callers read numbers two ways: digit by digit for rooms and
phones (一一零一, 幺三八, 洞 = 0) and positionally for floors, hours and counts
(十一, 二十三, 一百零二). ``normalize_numbers`` rewrites only the runs that are
numbers in context, so words that merely contain a numeral (一下, 一直, 有一点,
万一, 乱七八糟) are left alone; ``chinese_to_int`` reads one numeral string.
"""

from __future__ import annotations

import re

DIGIT_VALUES = {
    "零": 0, "〇": 0, "洞": 0,
    "一": 1, "幺": 1,
    "二": 2, "两": 2,
    "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "拐": 7, "八": 8, "九": 9, "勾": 9,
}
MULTIPLIER_VALUES = {"十": 10, "百": 100, "千": 1000, "万": 10000}

# Radio-style digits (幺三八, 洞 = 0, 拐 = 7, 勾 = 9) are numbers only in a run of numerals:
# alone they are words (墙上一个洞, 拐弯, 打勾).
RADIO_DIGITS = frozenset("洞幺拐勾")

# A lone numeral is a number only when one of these follows it (三号楼, 二单元, 五点).
UNITS_AFTER_SINGLE = (
    "号", "栋", "幢", "楼", "单元", "室", "点", "层", "座", "分", "月", "日", "周", "期", "区",
)
# Units after which an approximate pair such as 三四 names a place, not "three or four".
ADDRESS_UNITS = ("号", "栋", "幢", "楼", "单元", "室", "层", "座")

# Whole runs that are words, not numbers.
NUMERAL_WORDS = frozenset({"万一", "千万", "一一", "三三两两", "七七八八", "一五一十"})

# After these a numeral is a weekday (周三, 星期一) and stays a word.
WEEKDAY_PREFIXES = ("周", "星期", "礼拜")
WEEKDAY_NUMERALS = frozenset("一二三四五六")

# 一点 is "a little" unless time context says "one o'clock".
TIME_OF_DAY_WORDS = ("上午", "下午", "中午", "晚上", "凌晨", "早上", "夜里", "到", "至")
AFTER_ONE_OCLOCK = ("半", "钟", "左右", "以后", "之后", "以前", "之前", "前后", "整", "到", "至", "过来")
ADJECTIVE_BEFORE_A_LITTLE = frozenset("早晚快慢好大小多少高低有差稍轻重强弱")

# Adjacent values said together mean "about": 两三天, 三四点.
APPROXIMATE_PAIRS = frozenset({(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9)})

NUMERAL_RUN = re.compile("[" + "".join(DIGIT_VALUES) + "".join(MULTIPLIER_VALUES) + "]+")
CJK = r"\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
SPACE_BESIDE_CJK = re.compile(rf"(?<=[{CJK}])\s+|\s+(?=[{CJK}])")
FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def compact_spaces(text: str) -> str:
    """Drop the spaces Vosk puts between Chinese tokens; keep spaces between Latin/digit tokens."""
    return SPACE_BESIDE_CJK.sub("", text.translate(FULLWIDTH_DIGITS)).strip()


def chinese_to_int(numeral: str) -> int | None:
    """Value of one numeral string, read digit by digit or positionally; None if it is not a number.

    "一一零一" -> 1101, "幺三八" -> 138, "十一" -> 11, "一百零二" -> 102, "两千三" -> 2300.
    """
    numeral = re.sub(r"\s+", "", numeral.translate(FULLWIDTH_DIGITS))
    if numeral.isdigit() and numeral.isascii():
        return int(numeral)
    digits = _digit_string(numeral)
    return int(digits) if digits is not None else None


def normalize_numbers(text: str) -> str:
    """Rewrite the numbers in ``text`` as Arabic digits (三号楼二单元六零二 -> 3号楼2单元602)."""
    text = compact_spaces(text)
    pieces: list[str] = []
    cursor = 0
    for run in NUMERAL_RUN.finditer(text):
        pieces.append(text[cursor:run.start()])
        pieces.append(_rewrite_run(text, run.start(), run.end()))
        cursor = run.end()
    pieces.append(text[cursor:])
    return "".join(pieces)


def _rewrite_run(text: str, start: int, end: int) -> str:
    run = text[start:end]
    if text[:start].endswith(WEEKDAY_PREFIXES) and run[0] in WEEKDAY_NUMERALS:
        # 周三三点: the first numeral is the weekday, the rest is its own run.
        rest = _rewrite_run(text, start + 1, end) if end > start + 1 else ""
        return run[0] + rest
    if not _is_number_in_context(text, start, end):
        return run
    pair = _approximate_pair(run)
    if pair and not text.startswith(ADDRESS_UNITS, end):
        # 三四点 -> 3到4点, read later as a range; 两三天 stays a word.
        return f"{pair[0]}到{pair[1]}" if text.startswith("点", end) else run
    digits = _digit_string(run)
    return digits if digits is not None else run


def _is_number_in_context(text: str, start: int, end: int) -> bool:
    run = text[start:end]
    if run == "幺" and text.startswith(ADDRESS_UNITS, end):
        return True  # 十七楼幺号, 幺单元: "one" said the radio way before an address unit
    if run in NUMERAL_WORDS or run in RADIO_DIGITS or run in ("洞洞", "洞"):
        return False  # 墙上有个洞(洞); 洞洞洞洞 read out in a phone number is 0000
    if len(run) > 1:
        return True
    if run in MULTIPLIER_VALUES and run != "十":
        return False  # 百分之, 千 alone: not a number by itself
    after = text[end:]
    if run == "一" and after.startswith("点"):
        return _is_one_oclock(text, start, end)
    if run == "十" and after.startswith("分"):
        return text[:start].endswith("点")  # 三点十分 yes, 十分着急 ("very") no
    return after.startswith(UNITS_AFTER_SINGLE)


def _is_one_oclock(text: str, start: int, end: int) -> bool:
    before, after_dot = text[:start], text[end + 1:]
    if before and before[-1] in ADJECTIVE_BEFORE_A_LITTLE:
        return False  # 早一点, 有一点, 快一点
    return before.endswith(TIME_OF_DAY_WORDS) or after_dot.startswith(AFTER_ONE_OCLOCK)


def _approximate_pair(run: str) -> tuple[int, int] | None:
    if len(run) != 2 or any(ch not in DIGIT_VALUES for ch in run):
        return None
    pair = (DIGIT_VALUES[run[0]], DIGIT_VALUES[run[1]])
    return pair if pair in APPROXIMATE_PAIRS else None


def _digit_string(numeral: str) -> str | None:
    """Digits of a numeral as a string, keeping leading zeros of digit-by-digit readings (零一 -> "01")."""
    if not numeral:
        return None
    if all(ch in DIGIT_VALUES for ch in numeral):
        return "".join(str(DIGIT_VALUES[ch]) for ch in numeral)
    if any(ch not in DIGIT_VALUES and ch not in MULTIPLIER_VALUES for ch in numeral):
        return None
    value = _positional_value(numeral)
    return str(value) if value is not None else None


def _positional_value(numeral: str) -> int | None:
    """一千一百零一 -> 1101; colloquial 一百五 -> 150, 三万五 -> 35000; None when malformed."""
    total = section = 0
    pending: int | None = None  # a digit waiting for its multiplier
    last_multiplier = 10**9  # multipliers inside a section must descend: 一百一千 is malformed
    previous = ""
    for ch in numeral:
        if ch in DIGIT_VALUES:
            if pending:  # two digits in a row (other than after 零): not positional
                return None
            pending = DIGIT_VALUES[ch]
        else:
            multiplier = MULTIPLIER_VALUES[ch]
            if pending is None and not (ch == "十" and previous in ("", "零")) and not (ch == "万" and section):
                return None  # 百, 千 need a digit before them; 十 alone means 一十; 十万 is fine
            if multiplier == 10000:
                total, section, last_multiplier = (section + (pending or 0)) * 10000, 0, 10**9
            elif multiplier >= last_multiplier:
                return None
            else:
                section += (pending or 1) * multiplier
                last_multiplier = multiplier
            pending = None
        previous = ch
    if pending:
        # 一百五 is 150: a last digit straight after 百/千/万 counts in the next lower place.
        follows = numeral[-2] if len(numeral) > 1 else ""
        section += pending * (MULTIPLIER_VALUES[follows] // 10 if follows in ("百", "千", "万") else 1)
    return total + section
