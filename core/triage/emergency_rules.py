"""The ways of saying an emergency, and of saying it is over: the table ``emergency.py`` reads with.

A rule's pattern may name a ``[subjects]`` word list of the vocabulary as ``{name}``
and the gap allowed inside a phrase as ``{gap}``; quantifiers such as ``{0,4}`` are
left alone. The plain phrases of words.toml's ``[emergency]`` are rules of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.triage.text import CLAUSE_END_CHARS


@dataclass(frozen=True)
class EmergencyRule:
    """One way of saying an emergency.

    The nearest subject word before the match decides ambiguous words: a blocked subject
    cancels it (插座没电了 is one socket, not an outage), and with ``subject_required``
    some allowed subject must be there (水关不住, but not 门关不住). The subject is looked
    for in the clause; a required one also in the clause before (管子一直漏，堵都止不住).
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
    # Water that will not stop, stands on the floor, or runs where it must not: a leak said
    # to be severe or spreading is no longer a general repair.
    EmergencyRule("flooding", r"止不住|关不住|堵不住|停不下来|关不上|拧不上|拧不住",
                  allowed_subjects="water_subjects", blocked_subjects="closable_not_water", subject_required=True),
    EmergencyRule("flooding", r"水{gap}{0,2}?漫(?:到|进|过)"
                              r"|(?:(?:满地|一地|地上|满屋子?|一屋子|屋里|到处)(?:全|都)?(?:是|的)?|(?:全|都|尽)是)"
                              r"水(?![龙管表阀池槽压泵费垢渍印])(?!的?(?:问题|原因))"),
    EmergencyRule("flooding", r"(?:漏|流|喷)得(?:很|特别|非常|好|贼|老|挺|太|蛮|忒|可)?(?:厉害|凶|猛|大|多|严重|急)"
                              r"|漏水?(?:很|特别|非常|太|挺|好|老|贼)?(?:严重|厉害)"
                              r"|越(?:漏|流|渗)越(?:大|多|厉害|凶)|(?:跟|像|和)下雨(?:一样|似的)"
                              r"|接都接不(?:过来|住|完)|接不过来|没过了?(?:脚|小腿|膝盖)"
                              r"|(?:流|淌|灌|涌|冲|漫|漏)(?:到|进|入)了?{gap}{0,2}?(?:{spread_places})"
                              r"|(?:流|淌|灌|涌|冲|漫)(?:到|进|入)了?{gap}{0,2}?(?:{flooded_rooms})"
                              r"|往{gap}{0,4}?(?:{spread_places})(?:那边|这边|那儿|里面?|里头|下|口)?(?:流|淌|灌|涌)"
                              r"|(?:积|漏|流|淌|出)了?(?:好多|很多|老多|一大堆|一大片|一大滩)的?水"
                              r"|(?:流|淌)[了得]?(?:一地|满地|一屋子?|满屋子?|到处都是)",
                  needs_anywhere="water_words"),
    # Water running out or down, except where it is meant to (马桶冲水的时候水往下流).
    EmergencyRule("flooding", r"往[外下](?:流|淌|灌|涌)(?!不|得?(?:很|特别|太)?慢)|哗哗|哗啦啦",
                  blocked_subjects="drains", needs_anywhere="water_words"),
    # Water standing in a shared place (the lift's shaft or car, a garage, a stairwell) or in the home.
    EmergencyRule("flooding", r"(?:{common_places})(?:里面?|里头|内|底下|上)?{gap}{0,3}?"
                              r"(?:进水|进了水|积水|积了水|有水|灌水|淹|泡水|全是水|都是水)"
                              r"|(?:满地|地上|屋里|家里|到处|客厅|卧室)(?:全|都)?积(?:了|满了)?(?:好多|一层)?水"),
    EmergencyRule("flooding", r"泡(?:起来|坏|烂|水|在水里|了)",
                  allowed_subjects="soaked_floors", blocked_subjects="soaked_not_floor", subject_required=True),
    EmergencyRule("sewage", r"(?:污水|脏水|粪水|粪便|下水道|马桶|地漏|化粪池|下水)"
                            r"{gap}{0,5}?(?:冒出来|冒上来|往上冒|往外冒|涌出来|返上来|反上来|溢出来?|漫出来|冒水)"),
    # A smoke alarm going off counts as smoke; the alarm's name alone does not.
    EmergencyRule("smoke", r"冒[黑白青]?烟|烟雾(?!报警|探测)|(?<![油香])烟味"
                           r"|(?:烟雾报警器|烟雾探测器|烟感报警器|烟感){gap}{0,4}?(?:响|报警|叫)"),
    # 打着火/点着火 is a stove lighting, not a fire.
    EmergencyRule("fire", r"(?<![打点])着了?火|冒火(?![花星])"),
    # A socket or wire that burnt (插座烧了); a blown fuse or bulb (保险丝烧了) is a normal repair.
    EmergencyRule("burning_smell", r"烧(?:了|坏了?|黑了?|焦了?|化了?|糊了?|着了)",
                  allowed_subjects="wiring", blocked_subjects="burnt_harmlessly", subject_required=True),
    # 漏电保护器/漏电开关 is the breaker's name, not a leak.
    EmergencyRule("electric_shock", r"漏电(?!保护|开关)|触电|被电[到了着一]|电到[人我手了]|电人|麻手"),
    EmergencyRule("power_outage", r"停电|断电|没有?电了?(?![话池视脑瓶费动])|电停了|全黑了|一点电都没有"
                                  r"|黑灯瞎火|一片漆黑",
                  allowed_subjects="whole_home", blocked_subjects="power_devices"),
    EmergencyRule("water_outage", r"停水|断水|没有?水(?:了|用|喝)?(?![压管表龙费垢渍])|水停了|不出水了?|没来水"
                                  r"|(?:一滴|一点儿?|半点)水(?:都|也)没有?",
                  allowed_subjects="whole_home", blocked_subjects="water_devices"),
    EmergencyRule("water_outage", r"水泵{gap}{0,4}?(?:坏|故障|不转|停|不工作)"),
    EmergencyRule("gas_leak", r"(?:{gases})报警器{gap}{0,4}?(?:响|报警|叫)"
                              r"|(?:{gases}){gap}{0,4}?(?:味|泄漏|泄露|漏(?!水))|闻到{gap}{0,4}?(?:{gases})"),
    # A smell said where gas is named (总阀关了，屋里味儿还挺大), unless it is another smell.
    EmergencyRule("gas_leak", r"(?:一股子?|有股子?|股子|好大的?|很大的?|闻到|闻着|闻见|有点儿?)(?:一股)?"
                              r"(?:[怪臭]|刺鼻的?)?味"
                              r"|味[儿道]?(?:很|挺|特别|好|老|贼|太|还挺|还是挺|越来越)?(?:大|重|冲|浓|呛)",
                  blocked_subjects="other_smells", needs_anywhere="gases"),
    # Gas hissing out (燃气表嘶嘶的响) is a leak you can hear.
    EmergencyRule("gas_leak", r"嘶嘶|呲呲", needs_anywhere="gas_things"),
    EmergencyRule("lift_trapped", r"(?:困|关|卡|锁)在了?电梯|电梯里?{gap}{0,6}?有?人{gap}{0,4}?(?:困|关|卡|出不来)"
                                  r"|被?电梯门?{gap}{0,2}?夹"),
    EmergencyRule("lift_trapped", r"被困|困住|(?:关|卡|锁|困)在?(?:里面|里头|里边)|出不来|出不去|里面{gap}{0,3}?有人"
                                  r"|有人在里面|[关卡困]着?人",
                  needs_anywhere="lift_words"),
    # A lift out of service with nobody inside (电梯停在十一楼不动了); only where the site
    # treats it as an emergency (triage.lift_fault_is_emergency), and never beside 困人.
    EmergencyRule("lift_fault", r"停了|停住了?|停着|停在|停运|停用|停摆|不动了?|不走了?|不运行|不能用|用不了|动不了"
                                r"|坐不了|没法用|用不成|卡住|卡在|卡了|坏了|坏掉|故障|罢工|趴窝|不来|死机|不下来|不上来",
                  allowed_subjects="lifts", blocked_subjects="lift_parts", subject_required=True),
    # Something fell or gave way, whether or not anyone was hurt.
    EmergencyRule("falling_object", r"掉下来|掉下去|掉到楼下|坠落|掉落|往下掉|砸下来|砸到人|砸着人|砸伤|脱落"
                                    r"|(?:要|快)倒了|倒塌|坍塌|塌了|塌下来|塌陷|垮下来|垮了|垮塌|落下来|跌下来",
                  allowed_subjects="dangerous_falls", blocked_subjects="harmless_falls"),
    # 吊顶扣板掉了好几块; but a few wall tiles, or glass 掉了一地 (on the floor), are not.
    EmergencyRule("falling_object", r"(?:掉|落|脱)了(?!一地|满地)",
                  allowed_subjects="overhead", blocked_subjects="harmless_falls", subject_required=True),
    EmergencyRule("falling_object", r"(?:整片|整块|一大片|一大块|大片|大块|整面|一整面|成片|大面积|整扇|全)[都的]?"
                                    r"{gap}{0,2}?(?:掉|脱落|塌|垮|落|倒)"
                                    r"|(?:要|快|随时都?会?|眼看|马上|差点|就要|快要)要?(?:掉|塌|倒|垮|砸|落)"
                                    r"(?!价|色|线|漆|头发|眼泪|链子)|倒了|歪出来|摇摇欲坠",
                  allowed_subjects="dangerous_falls", blocked_subjects="harmless_falls", subject_required=True),
    EmergencyRule("caller_urgent", r"(?:特别|非常|很|挺|太|十分|真的|好|超级|极其)(?:着急|紧急|急)|急死了?"),
)
# Every kind, as the ``kind`` of an EmergencyWord; words.toml has a phrase list for each.
KINDS = ("burst_pipe", "flooding", "sewage", "smoke", "sparks", "burning_smell", "fire", "short_circuit",
         "electric_shock", "power_outage", "water_outage", "gas_leak", "lift_trapped", "lift_fault",
         "falling_object", "caller_urgent")
LIFT_FAULT = "lift_fault"  # the kind a site may turn off (triage.lift_fault_is_emergency)
# People trapped say more than a stopped lift: a lift_fault beside a lift_trapped is dropped.
SUBSUMED_BY = {LIFT_FAULT: "lift_trapped"}

# A negator before the emergency word in the same clause cancels it. 不是/没有 negate
# a whole phrase (不是电梯困人, 没有人被困), so a few words may stand between; 不/没
# negate the next verb (灯不亮冒烟了 still smokes), so only these gap words may:
# 没闻到什么煤气味, 没看到有烟, 没人被困.
PHRASE_NEGATORS = r"并不是|不是|并没有|没有|并非"  # reach stops at 是: 不是漏水是水管爆了
PHRASE_NEGATION_REACH = 4
VERB_NEGATORS = r"没|不|无|未|别"
NEGATION_GAP_WORDS = r"看到|看见|闻到|听到|发现|感觉|觉得|什么|任何|出现|有|再|也|都|是|说|会|算|到|啥|还|怎么|一点|人"
NEGATION_BEFORE = re.compile(rf"({PHRASE_NEGATORS})[^{CLAUSE_END_CHARS}是]{{0,{PHRASE_NEGATION_REACH}}}$"
                             rf"|({VERB_NEGATORS})(?:{NEGATION_GAP_WORDS}){{0,3}}$")

# Said after the hazard, these mean it is over: 来电了, 人已经出来了, 已经修好了. What the caller did
# about it (关了水阀, 断了电, 关了燃气总阀) is no such word: the burst pipe, the smoke or
# the gas is still there, and the home may now have no water or power.
HAZARD_KINDS = frozenset(KINDS) - {"caller_urgent"}
MITIGATIONS = tuple((re.compile(pattern), kinds) for pattern, kinds in (
    # No row for water or smoke stopping (不漏了, 止住了, 不冒烟了): after the caller shut the valve
    # or the power, the burst pipe, the flood and the faulty wiring are still there to repair.
    (r"火(?:已经)?灭了|扑灭了|灭掉了", frozenset({"fire"})),
    (r"来电了|有电了|电来了", frozenset({"power_outage"})),
    (r"来水了|水来了", frozenset({"water_outage"})),
    (rf"(?:人|已经|都){GAP}{{0,2}}?(?:出来了|救出来了)", frozenset({"lift_trapped"})),
    (r"恢复(?:正常|运行)?了|又能(?:用|坐|动)了|能(?:用|坐)了", frozenset({"lift_fault"})),
    (r"已经(?:修)?好了|现在(?:没事|好)了|已经没事了|已经处理(?:好)?了", HAZARD_KINDS),
))
# ...unless the caller says it did not help (关了总阀还是漏) or holds only for now (暂时不喷了).
MITIGATION_FAILED = ("还", "仍", "没用", "不管用", "依然", "照样")
FOR_NOW = re.compile(r"(?:暂时|临时|暂且|勉强|先)\S?$")
