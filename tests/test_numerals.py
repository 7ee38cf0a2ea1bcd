"""Chinese numerals in recognizer text: which runs are numbers, and what they are worth."""

import pytest

from core.numerals import chinese_to_int, compact_spaces, normalize_numbers


@pytest.mark.parametrize("numeral, value", [
    ("一一零一", 1101),  # rooms read digit by digit
    ("幺三八", 138),  # 幺 is the radio 1
    ("洞洞拐", 7),  # radio 0 and 7
    ("两", 2),
    ("十", 10),
    ("十一", 11),
    ("二十三", 23),
    ("一百零二", 102),
    ("一千一百零一", 1101),
    ("两千零一", 2001),
    ("一千零十", 1010),
    ("一百五", 150),  # colloquial: 一百五十
    ("两千三", 2300),
    ("三万五", 35000),
    ("十万", 100000),
    ("二十万零五", 200005),
    ("〇六", 6),
    ("１２３", 123),  # full-width digits
    ("1101", 1101),
    ("三 号", None),
    ("万一", None),  # "in case"
    ("百", None),
    ("一二十", None),
    ("一百一千", None),
    ("", None),
])
def test_chinese_to_int(numeral, value):
    assert chinese_to_int(numeral) == value


@pytest.mark.parametrize("text, expected", [
    # Vosk output: one token per character, numbers as words
    ("三 号 楼 二 单元 六 零 二", "3号楼2单元602"),
    ("我 住 五 栋 一 单元 一 一 零 一", "我住5栋1单元1101"),
    ("十一楼零一", "11楼01"),
    ("六零二室", "602室"),
    ("一千一百零一", "1101"),
    ("12楼03", "12楼03"),  # Arabic digits untouched
    ("3号楼六零二", "3号楼602"),
    ("电话 幺 三 八 幺 二 三 四 五 六 七 八", "电话13812345678"),
    ("幺 三 八 洞 洞 拐 拐 八 八 九 九", "13800778899"),
    ("138 1234 5678", "138 1234 5678"),  # spaces between Latin tokens stay
    ("十点到十二点", "10点到12点"),
    ("下午两点半以后", "下午2点半以后"),
    ("三点十分", "3点10分"),
    ("二十分钟", "20分钟"),
    ("五 月 三 号", "5月3号"),
    ("一楼大堂", "1楼大堂"),
    ("下午一点半", "下午1点半"),
    ("一点钟", "1点钟"),
    ("一点左右", "1点左右"),
    ("周三三点", "周三3点"),  # weekday, then the hour
    ("星期一上午", "星期一上午"),
    ("下礼拜六", "下礼拜六"),
    ("三四点", "3到4点"),  # "three or four o'clock" becomes a range
    ("三四楼", "34楼"),
    ("洞洞洞洞", "0000"),
    ("十七楼幺号", "17楼1号"),  # a lone 幺 before an address unit is "one"
    ("幺单元幺幺零幺", "1单元1101"),
])
def test_numbers_become_digits(text, expected):
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize("text", [
    "等一下",
    "一直漏水",
    "有一点漏",  # a little
    "早一点来",
    "快一点",
    "一个插座",
    "万一漏电",
    "千万别碰",
    "十分着急",  # very
    "百分之百",
    "两三天了",  # about two or three days
    "乱七八糟",
    "一一检查",
    "墙上有个洞",
    "墙上好几个洞洞",
    "拐弯那里",
    "我家幺儿",
    "第一次",
    "统一",
])
def test_words_that_contain_numerals_stay_words(text):
    assert normalize_numbers(text) == text


def test_spaces_go_only_beside_chinese():
    assert compact_spaces(" 我 家 a 座  138 1234 ") == "我家a座138 1234"
