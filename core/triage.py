"""A caller's words -> a draft repair ticket: address, category, urgency, appointment, phone, summary.

``triage`` is called on every partial and final recognizer result, so it must be
fast and must never fail on half a sentence. Numbers are read by ``core.numerals``;
every keyword list lives in the tables below, one place per rule.

Emergency words are searched in the original text with only whitespace removed, so
their offsets map straight back to the string the recognizer gave us; everything
else reads the normalised text (spaces between Chinese tokens dropped, numbers as digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.numerals import normalize_numbers
from core.tickets import CATEGORY_NAMES, Urgency

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")

# ---------------------------------------------------------------- category words
# Weight 3 names the thing decisively, 2 names an object or a fault, 1 is a place or
# a vague part that only hints. The heaviest word wins, the earlier one on a tie,
# so 空调漏水 is an appliance and 天花板漏水 is plumbing.
CATEGORY_WORDS = {
    "plumbing": {
        2: "水管 管道 管子 漏水 渗水 滴水 堵塞 堵了 堵住 马桶 地漏 停水 断水 没水 暖气 暖气管 暖气片 "
           "下水道 下水 水龙头 龙头 水表 阀门 总阀 角阀 水压 水池 水槽 洗手盆 面盆 淋浴 花洒 反水 返水 "
           "污水 爆管 喷水 化粪池 水泵 不出水 自来水 地暖",
        1: "热水 堵 漏",
    },
    "electrical": {
        3: "停电 断电 没电 跳闸 漏电保护器 漏电开关 保护器",
        2: "插座 灯 电线 门铃 排风扇 换气扇 对讲 开关 电闸 总闸 空开 电表 灯泡 灯管 "
           "电路 线路 配电箱 漏电 短路 火花 浴霸 电源 保险丝",
    },
    "gas": {3: "燃气 煤气 天然气 液化气 燃气灶 煤气灶 燃气表 打不着火 点不着火 打不着 漏气"},
    "elevator": {3: "电梯 扶梯 直梯 轿厢 电梯门", 1: "电梯口 电梯厅 电梯间"},
    "doors_windows": {
        2: "锁 门锁 锁芯 窗 窗户 玻璃 柜门 门把手 合页 纱窗 防盗门 入户门 推拉门 窗框 窗扇 房门 卧室门 "
           "卫生间门 厨房门",
        1: "门 把手 钥匙",
    },
    "structure": {
        3: "漏雨 屋顶漏 楼顶漏 房顶漏 外墙瓷砖",
        2: "裂缝 开裂 裂了 地砖 瓷砖 墙砖 外墙 墙皮 墙面 空鼓 起皮 掉灰 防水 吊顶",
        1: "墙 天花板 地板 楼梯扶手",
    },
    "appliance": {3: "热水器 空调 油烟机 抽油烟机 洗衣机 冰箱 新风 燃气热水器 电热水器"},
    "public_facility": {
        3: "门禁 电动门 卷帘门 卷闸门 公共设施 道闸 车库门 单元门 健身器材 监控 消防栓 消防门 防火门 路灯 "
           "垃圾桶 栏杆 滑梯 秋千 游乐设施 烟雾报警器 烟感 消防",
        2: "大门",
    },
}
# Words that contain a keyword but are not about it: 上门 is a visit, 门口 a place.
NEUTRAL_WORDS = "门口 出门 进门 上门 门卫 门岗 门牌 部门 专门 门外 门前 窗口 电话 不漏 没漏 消防通道"

# ---------------------------------------------------------------- emergency words
CLAUSE_END_CHARS = "，。,.!?！？；;、"

WATER_DEVICES = ("水龙头", "龙头", "花洒", "喷头", "淋浴", "热水器", "马桶", "洗衣机", "厨房", "卫生间",
                 "洗手间", "阳台", "水池", "水槽")
POWER_DEVICES = ("插座", "灯", "开关", "门铃", "电视", "冰箱", "空调", "热水器", "厨房", "卫生间", "洗手间",
                 "卧室", "客厅", "房间", "一路", "这路", "半边", "手机", "电动车", "电瓶车", "油烟机",
                 "排风扇", "浴霸")
# Naming the whole home after a device (插座跳闸全家都没电) makes it an outage again.
WHOLE_HOME = ("家里", "家", "全家", "整个", "整栋", "全楼", "楼里", "小区", "全部", "所有", "都")
WATER_SUBJECTS = ("水", "阀", "总阀", "阀门", "龙头", "水龙头", "水管", "管子", "漏", "喷", "流", "冒")
CLOSABLE_NOT_WATER = ("门", "窗", "窗户", "柜门", "抽屉")
LIFT_WORDS = ("电梯", "梯", "轿厢")
HARMLESS_FALLS = ("柜门", "把手", "拉手", "抽屉", "门把", "墙皮", "漆", "壁纸", "挂钩", "毛巾架", "手机")
DANGEROUS_FALLS = ("外墙", "瓷砖", "玻璃", "窗", "天花板", "吊顶", "外机", "广告牌", "石头", "砖", "东西")


@dataclass(frozen=True)
class EmergencyRule:
    """One way of saying an emergency.

    The nearest subject word before the match (same clause) decides ambiguous words:
    a blocked subject cancels it (插座没电了 is one socket, not an outage), and with
    ``subject_required`` some allowed subject must be there (水关不住, but not 门关不住).
    """

    kind: str
    pattern: str
    allowed_subjects: tuple[str, ...] = ()
    blocked_subjects: tuple[str, ...] = ()
    subject_required: bool = False
    needs_anywhere: tuple[str, ...] = ()  # one of these must occur somewhere in the text


# Gaps inside a phrase may not hold a negation: 水管没爆 is not 水管…爆.
_G = rf"[^{CLAUSE_END_CHARS}不没未]"
EMERGENCY_RULES = (
    EmergencyRule("burst_pipe", rf"(?:水管子?|管子|管道|暖气管|暖气片|热水管|下水管|上水管|自来水管|进水管|软管|角阀|接头)"
                                rf"{_G}{{0,4}}?(?:爆|裂|崩|破了|破裂|断了|炸)|爆管|迸裂"),
    EmergencyRule("burst_pipe", r"喷水|往外喷|喷出来|呲水|滋水",
                  blocked_subjects=("花洒", "喷头", "淋浴", "喷泉")),
    EmergencyRule("flooding", r"止不住|关不住|堵不住|停不下来",
                  allowed_subjects=WATER_SUBJECTS, blocked_subjects=CLOSABLE_NOT_WATER, subject_required=True),
    EmergencyRule("flooding", rf"水漫|漫水|淹了|被淹|水淹|漫出来|跑水|水{_G}{{0,2}}?漫(?:到|进|过)"
                              r"|(?:满地|一地|地上|满屋子?|一屋子|屋里|到处)(?:全|都)?(?:是|的)?水(?![龙管表阀池槽压泵费])"),
    EmergencyRule("sewage", rf"污水外溢|外溢|反水|返水|倒灌|(?:污水|脏水|粪水|粪便|下水道|马桶|地漏|化粪池|下水)"
                            rf"{_G}{{0,5}}?(?:冒出来|冒上来|往上冒|往外冒|涌出来|返上来|反上来|溢出来?|漫出来|冒水)"),
    # A smoke alarm going off counts as smoke; the alarm's name alone does not.
    EmergencyRule("smoke", rf"冒[黑白青]?烟|有烟|起烟|浓烟|黑烟|烟雾(?!报警|探测)|烟味"
                           rf"|(?:烟雾报警器|烟雾探测器|烟感报警器|烟感){_G}{{0,4}}?(?:响|报警|叫)"),
    EmergencyRule("sparks", r"火花|火星"),
    EmergencyRule("burning_smell", r"烧焦|焦味|糊味|焦糊|胶皮味|烧糊"),
    # 打着火/点着火 is a stove lighting, not a fire.
    EmergencyRule("fire", r"(?<![打点])着了?火|起火|失火|火灾|烧起来|冒火(?![花星])"),
    EmergencyRule("short_circuit", r"短路"),
    # 漏电保护器/漏电开关 is the breaker's name, not a leak.
    EmergencyRule("electric_shock", r"漏电(?!保护|开关)|触电|被电[到了着一]|电到[人我手了]|电人|麻手"),
    EmergencyRule("power_outage", r"停电|断电|没有?电了?(?![话池视脑瓶费动])|电停了|全黑了|一点电都没有",
                  allowed_subjects=WHOLE_HOME, blocked_subjects=POWER_DEVICES),
    EmergencyRule("water_outage", r"停水|断水|没有?水了|水停了|没有?水用|一滴水都没有|不出水了?|没来水",
                  allowed_subjects=WHOLE_HOME, blocked_subjects=WATER_DEVICES),
    EmergencyRule("water_outage", rf"水泵{_G}{{0,4}}?(?:坏|故障|不转|停|不工作)"),
    EmergencyRule("gas_leak", rf"(?:燃气|煤气|天然气|液化气)报警器{_G}{{0,4}}?(?:响|报警|叫)"
                              rf"|(?:燃气|煤气|天然气|液化气){_G}{{0,4}}?(?:味|泄漏|泄露|漏(?!水))|漏气|臭鸡蛋味"
                              rf"|闻到{_G}{{0,4}}?(?:燃气|煤气|天然气)"),
    # Gas hissing out (燃气表嘶嘶的响) is a leak you can hear.
    EmergencyRule("gas_leak", r"嘶嘶|呲呲", needs_anywhere=("燃气", "煤气", "天然气", "液化气", "气表", "气管")),
    EmergencyRule("lift_trapped", rf"困人|(?:困|关|卡|锁)在了?电梯|电梯里?{_G}{{0,6}}?有?人{_G}{{0,4}}?(?:困|关|卡|出不来)"
                                  rf"|被?电梯门?{_G}{{0,2}}?夹"),
    EmergencyRule("lift_trapped", rf"被困|困住|(?:关|卡|锁|困)在里面|出不来|里面{_G}{{0,3}}?有人|有人在里面",
                  needs_anywhere=LIFT_WORDS),
    EmergencyRule("falling_object", r"掉下来|掉下去|掉到楼下|坠落|掉落|往下掉|砸下来|砸到人|砸伤|高空坠物|脱落"
                                    r"|(?:要|快)倒了|倒塌|坍塌|塌了|塌下来",
                  allowed_subjects=DANGEROUS_FALLS, blocked_subjects=HARMLESS_FALLS),
    EmergencyRule("caller_urgent", r"(?:特别|非常|很|挺|太|十分|真的|好|超级|极其)(?:着急|紧急|急)"
                                   r"|紧急|急死了?|十万火急|火急火燎"),
)

# A negator before the emergency word in the same clause cancels it. 不是/没有 negate
# a whole phrase (不是电梯困人, 没有人被困), so a few words may stand between; 不/没
# negate the next verb (灯不亮冒烟了 still smokes), so only these gap words may:
# 没闻到什么煤气味, 没看到有烟.
PHRASE_NEGATORS = r"并不是|不是|并没有|没有|并非"  # reach stops at 是: 不是漏水是水管爆了
PHRASE_NEGATION_REACH = 4
VERB_NEGATORS = r"没|不|无|未|别"
NEGATION_GAP_WORDS = r"看到|看见|闻到|听到|发现|感觉|觉得|什么|任何|出现|有|再|也|都|是|说|会|算|到|啥|还|怎么|一点"
# Clauses end at punctuation and at turns such as 但是/就是 (没有冒烟，就是灯不亮).
CLAUSE_BREAK = re.compile(rf"[{CLAUSE_END_CHARS}]|但是|就是|只是|可是|不过|而是")
SUBJECT_WINDOW = 10  # characters looked back for a subject or a negator

WATER_KINDS = frozenset({"burst_pipe", "flooding", "sewage"})
ELECTRIC_KINDS = frozenset({"sparks", "smoke", "burning_smell", "short_circuit", "electric_shock"})
HAZARD_KINDS = frozenset(rule.kind for rule in EMERGENCY_RULES) - {"caller_urgent"}
# Said after the hazard, these mean it is under control: 已经关了总阀，不漏了.
MITIGATIONS = (
    (rf"(?:关了|关掉了?|关上了?|关好了|拧紧了?){_G}{{0,3}}?(?:总阀|阀门|水阀|角阀|总闸门|阀)"
     rf"|(?:总阀|阀门|水阀|角阀){_G}{{0,3}}?(?:关了|关掉了|关上了|关好了)", WATER_KINDS),
    (r"不再?(?:漏|喷|渗|冒水)了|止住了", WATER_KINDS),
    (rf"(?:拉了|关了|断了|拉下来了?|关掉了?){_G}{{0,3}}?(?:总闸|电闸|闸|电源|空开)"
     rf"|(?:总闸|电闸|空开|电源){_G}{{0,3}}?(?:拉了|关了|断了|拉下来了?|关掉了)", ELECTRIC_KINDS),
    (r"不再?冒烟了|烟没了|火(?:已经)?灭了|扑灭了|灭掉了", frozenset({"fire", "smoke", "sparks", "burning_smell"})),
    (r"来电了|有电了|电来了", frozenset({"power_outage"})),
    (r"来水了|水来了", frozenset({"water_outage"})),
    (rf"(?:人|已经|都){_G}{{0,2}}?(?:出来了|救出来了)", frozenset({"lift_trapped"})),
    (r"已经(?:修)?好了|现在(?:没事|好)了|已经没事了|已经处理(?:好)?了", HAZARD_KINDS),
)
# ...unless the caller goes on to say it did not help (关了总阀还是漏).
MITIGATION_FAILED = ("还", "仍", "没用", "不管用", "依然", "照样")

# When no category word was said, the hazard names the trade.
CATEGORY_OF_KIND = {
    "burst_pipe": "plumbing", "flooding": "plumbing", "sewage": "plumbing", "water_outage": "plumbing",
    "smoke": "electrical", "sparks": "electrical", "burning_smell": "electrical", "short_circuit": "electrical",
    "electric_shock": "electrical", "power_outage": "electrical", "gas_leak": "gas",
    "lift_trapped": "elevator", "falling_object": "structure",
}
# These hazards decide the category even over heavier words (燃气热水器有煤气味 is a gas job).
CATEGORY_FORCED_BY_KIND = {"gas_leak": "gas", "lift_trapped": "elevator"}

# ---------------------------------------------------------------- address words
PUBLIC_AREAS = (
    "地下车库 地下停车场 停车场 车库 小区大门 小区门口 大门口 大门 北门 南门 东门 西门 单元门口 大堂 大厅 "
    "楼道 走廊 楼梯间 楼梯 消防通道 电梯厅 电梯间 电梯 楼顶 天台 屋顶 花园 绿化带 草坪 广场 健身区 "
    "地下室 垃圾房 垃圾站 水泵房 配电房 设备间 门卫室"
).split()
BUILDING = re.compile(r"(?<![\dA-Za-z])第?(\d{1,3}|[A-Za-z])(?:号楼|栋|幢|座|号院)"
                      r"|(?<![\d月])(\d{1,3})号(?=\d|单元|楼)")
DASHED_ADDRESS = re.compile(r"(?<!\d)(\d{1,3})-(\d{1,2})-(\d{3,4})(?!\d)")
UNIT = re.compile(r"(?<!\d)(\d{1,2})单元")
_NOT_A_ROOM_AFTER = r"(?![\d点:：年元块米分月日岁度个平%\-])"
# Most specific first: 11楼01 and 12楼3号 are read as floor + door; then 602室; then a
# number right after 单元/栋; then any lone 3-4 digit number.
ROOM_PATTERNS = (
    (re.compile(r"(?<![\d号])(\d{1,2})[楼层]的?(\d{2})(?:室|号|房|户)?(?![\d点:：])"), "floor_door"),
    (re.compile(r"(?<![\d号])(\d{1,2})[楼层]的?(\d)(?:室|号|房|户)"), "floor_door"),
    (re.compile(r"(?<![\d\-])(\d{3,4})(?:室|房|号房|户|号(?!楼))"), "room"),
    (re.compile(r"(?:单元|栋|幢|座|号楼|号)的?(\d{3,4})" + _NOT_A_ROOM_AFTER), "room"),
    (re.compile(r"(?<![\d\-.:：])(\d{3,4})(?![号栋幢座单元楼])" + _NOT_A_ROOM_AFTER), "room"),
)
PHONE = re.compile(r"(?<!\d)1[3-9](?:[\s\-，,、]?\d){9}(?!\d)")  # 138 1234 5678, 幺八六，幺二三四，…

# ---------------------------------------------------------------- appointment words
DAY_OFFSETS = {"大后天": 3, "后天": 2, "明天": 1, "明儿": 1, "明日": 1, "明早": 1, "明晚": 1,
               "今天": 0, "今儿": 0, "今日": 0, "今早": 0, "今晚": 0}
WEEKEND_VISIT_DAY = 5  # 周末 books the Saturday
WEEKDAY_INDEX = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6,
                 "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
# Repair visits happen in the day; these are the windows the desk books.
PART_OF_DAY_HOURS = {
    "上午": (9, 12), "早上": (9, 12), "早晨": (9, 12), "一早": (9, 12), "上半天": (9, 12), "明早": (9, 12),
    "今早": (9, 12), "中午": (12, 14), "下午": (14, 18), "下半天": (14, 18), "傍晚": (17, 19),
    "晚上": (18, 21), "今晚": (18, 21), "明晚": (18, 21), "夜里": (18, 21),
}
DAY_PARTS = ((9, 12), (12, 14), (14, 18), (18, 21))
WORKING_DAY_HOURS = (9, 18)  # a day named without a time
AFTER_WORK = re.compile(r"下班(?:以后|之后|后|回来|回家)")
AFTER_WORK_HOURS = (19, 21)
SLOT = timedelta(hours=1)  # a time of day (三点, 三点左右) books one hour
VISIT_WORDS = re.compile(r"来|上门|修|看|换|在家|有人|有空|方便|可以|行吗|都行|就行|吧")
TIME_PARTICLES = re.compile(r"[\s#吧啊呀的呢就都吗]|可以|行")
ASAP_WORDS = re.compile(r"现在|马上|尽快|立刻|立即|赶紧|越快越好|随时|什么时候都|啥时候都")

UNAVAILABLE = re.compile(r"(?:都|也)?(?:不在|没空|没时间|不方便|不行|没人)")  # 明天不在家, 后天上午来吧
DAY_WORD = re.compile("|".join(sorted(DAY_OFFSETS, key=len, reverse=True)))
WEEKDAY = re.compile(r"(?<!上)(?<!上个)(这个?|本|下个?)?(?:周|星期|礼拜)([一二三四五六日天1-7])|(这个?|本|下个?)?周末")
MONTH_DAY = re.compile(r"(?:(\d{1,2})月)?(\d{1,2})[号日](?![楼栋单元\d室院门])")
# A bare 15号 is a date only when a time or a visit follows (15号 下午, 15号来).
DATE_FOLLOWERS = re.compile(r"的?(?:上午|下午|中午|晚上|早上|\d{1,2}点|来|过来|上门|那天|左右|前后|以后|之后|之前|以前)")
PART_OF_DAY = re.compile("|".join(sorted(PART_OF_DAY_HOURS, key=len, reverse=True)))
_MINUTE = r"半|一刻|三刻|\d{1,2}"
CLOCK_RANGE = re.compile(rf"(\d{{1,2}})(?:[点:：]({_MINUTE})?分?)?(?:到|至|-|~)(上午|下午|中午|晚上)?"
                         rf"(\d{{1,2}})[点:：]({_MINUTE})?分?")
CLOCK = re.compile(rf"(\d{{1,2}})[点:：]({_MINUTE})?分?钟?(左右|前后|以后|之后|过后|以前|之前|后|前)?")
CLOCK_AFTER = ("以后", "之后", "过后", "后")
CLOCK_BEFORE = ("以前", "之前", "前")

# ---------------------------------------------------------------- summary words
FILLERS = re.compile("|".join(sorted(
    "喂 你好 您好 那个 就是 嗯 啊 呃 唉 哎 哦 噢 呀 嘛 然后 那什么 是这样的 是这样 请问 麻烦你们 麻烦 谢谢你们 谢谢 "
    "是物业吗 物业吗 物业你好 我想报个修 我要报个修 我想报修 我要报修 报个修 报修 我这边 我这里 听得到吗 对对对".split(),
    key=len, reverse=True)))
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


# ================================================================ results
@dataclass(frozen=True)
class Address:
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    area: str | None = None

    def to_dict(self) -> dict:
        return {"building": self.building, "unit": self.unit, "room": self.room, "area": self.area}


@dataclass(frozen=True)
class EmergencyWord:
    word: str
    kind: str
    start: int  # offsets into the text triage() was given
    end: int

    def to_dict(self) -> dict:
        return {"word": self.word, "kind": self.kind, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Appointment:
    start: datetime
    end: datetime

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class Draft:
    text: str  # the normalised text everything but emergency offsets was read from
    address: Address
    category: str
    urgency: Urgency
    emergency_words: tuple[EmergencyWord, ...]
    appointment: Appointment | None
    phone: str | None
    summary: str

    @property
    def is_emergency(self) -> bool:
        return self.urgency == Urgency.EMERGENCY

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES[self.category]

    def to_dict(self) -> dict:
        return {
            "address": self.address.to_dict(),
            "category": self.category,
            "urgency": str(self.urgency),
            "emergency_words": [word.to_dict() for word in self.emergency_words],
            "appointment": self.appointment.to_dict() if self.appointment else None,
            "phone": self.phone,
            "summary": self.summary,
            "text": self.text,
        }


def triage(text: str, now: datetime) -> Draft:
    """Read a (partial or final) transcript into draft ticket fields; ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("triage needs a timezone-aware now")
    now = now.astimezone(LOCAL_ZONE)
    normalized = normalize_numbers(text)
    emergencies = find_emergency_words(text)
    phone, phone_span = find_phone(normalized)
    without_phone = _blank(normalized, [phone_span] if phone_span else [])
    address, address_spans = find_address(without_phone)
    appointment, time_spans = find_appointment(without_phone, now)
    category = classify(normalized, emergencies)
    summary = summarize(normalized, phone_span, address_spans + time_spans)
    return Draft(
        text=normalized,
        address=address,
        category=category,
        urgency=Urgency.EMERGENCY if emergencies else Urgency.NORMAL,
        emergency_words=tuple(emergencies),
        appointment=appointment,
        phone=phone,
        summary=summary,
    )


# ================================================================ emergencies
_COMPILED_RULES = tuple((rule, re.compile(rule.pattern)) for rule in EMERGENCY_RULES)
_COMPILED_MITIGATIONS = tuple((re.compile(pattern), kinds) for pattern, kinds in MITIGATIONS)
_NEGATION_BEFORE = re.compile(rf"({PHRASE_NEGATORS})[^{CLAUSE_END_CHARS}是]{{0,{PHRASE_NEGATION_REACH}}}$"
                              rf"|({VERB_NEGATORS})(?:{NEGATION_GAP_WORDS}){{0,3}}$")


def find_emergency_words(text: str) -> list[EmergencyWord]:
    """Emergency words that are neither negated nor mitigated, with offsets into ``text``."""
    compact, offsets = _without_whitespace(text)
    matches = _non_overlapping(_rule_matches(compact))
    kept = [(kind, start, end) for kind, start, end in matches if not _is_negated(compact, start)]
    kept = _drop_mitigated(compact, kept)
    return [EmergencyWord(text[offsets[start]:offsets[end - 1] + 1], kind, offsets[start], offsets[end - 1] + 1)
            for kind, start, end in kept]


def _without_whitespace(text: str) -> tuple[str, list[int]]:
    offsets = [i for i, ch in enumerate(text) if not ch.isspace()]
    return "".join(text[i] for i in offsets), offsets


def _rule_matches(compact: str) -> list[tuple[str, int, int]]:
    found = []
    for rule, pattern in _COMPILED_RULES:
        if rule.needs_anywhere and not any(word in compact for word in rule.needs_anywhere):
            continue
        for match in pattern.finditer(compact):
            if _subject_allows(rule, compact, match.start()):
                found.append((rule.kind, match.start(), match.end()))
    return found


def _subject_allows(rule: EmergencyRule, compact: str, start: int) -> bool:
    if not (rule.allowed_subjects or rule.blocked_subjects):
        return True
    subject = _nearest_subject(_clause_before(compact, start), rule.allowed_subjects + rule.blocked_subjects)
    if subject in rule.blocked_subjects:
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


def _non_overlapping(matches: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Earliest first, the longest of matches starting together; later overlapping ones dropped."""
    kept: list[tuple[str, int, int]] = []
    for kind, start, end in sorted(matches, key=lambda m: (m[1], m[1] - m[2])):
        if not kept or start >= kept[-1][2]:
            kept.append((kind, start, end))
    return kept


def _is_negated(compact: str, start: int) -> bool:
    before = _clause_before(compact, start)
    negation = _NEGATION_BEFORE.search(before)
    if not negation:
        return False
    at = negation.start(1) if negation.group(1) is not None else negation.start(2)
    # 是不是短路了 / 有没有冒烟 ask, they do not deny: the same character on both sides
    # of the negator (A-not-A) makes a question.
    after = (before + compact[start:start + 1])[at + 1:at + 2]
    return at == 0 or before[at - 1] != after


def _drop_mitigated(compact: str, matches: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Hazards said before a mitigation of their kind are under control, unless the clause says it failed."""
    for pattern, kinds in _COMPILED_MITIGATIONS:
        for mitigation in pattern.finditer(compact):
            rest_of_clause = CLAUSE_BREAK.split(compact[mitigation.end():], maxsplit=1)[0]
            if any(word in rest_of_clause for word in MITIGATION_FAILED):
                continue
            matches = [m for m in matches if not (m[0] in kinds and m[2] <= mitigation.start())]
    return matches


# ================================================================ category
def _keyword_table() -> dict[str, tuple[str | None, int]]:
    table: dict[str, tuple[str | None, int]] = {word: (None, 0) for word in NEUTRAL_WORDS.split()}
    for category, by_weight in CATEGORY_WORDS.items():
        for weight, words in by_weight.items():
            table.update({word: (category, weight) for word in words.split()})
    return table


KEYWORDS = _keyword_table()


def classify(normalized: str, emergencies: list[EmergencyWord]) -> str:
    """The trade that should go: the heaviest category word, unless a hazard decides it."""
    kinds = [word.kind for word in emergencies]
    for kind in kinds:
        if kind in CATEGORY_FORCED_BY_KIND:
            return CATEGORY_FORCED_BY_KIND[kind]
    hits = [(category, weight, start) for category, weight, start in _category_hits(normalized) if category]
    if hits:
        return max(hits, key=lambda hit: (hit[1], -hit[2]))[0]
    return next((CATEGORY_OF_KIND[kind] for kind in kinds if kind in CATEGORY_OF_KIND), "other")


def _category_hits(text: str) -> list[tuple[str | None, int, int]]:
    """Every keyword occurrence not inside a longer keyword (电梯门 hides 门, 上门 hides 门)."""
    spans = []
    for word, (category, weight) in KEYWORDS.items():
        at = text.find(word)
        while at >= 0:
            spans.append((at, at + len(word), category, weight))
            at = text.find(word, at + 1)
    return [(category, weight, start) for start, end, category, weight in spans
            if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _, _ in spans)]


# ================================================================ address and phone
def find_phone(normalized: str) -> tuple[str | None, tuple[int, int] | None]:
    match = PHONE.search(normalized)
    if not match:
        return None, None
    return re.sub(r"\D", "", match.group()), match.span()


def find_address(text: str) -> tuple[Address, list[tuple[int, int]]]:
    spans: list[tuple[int, int]] = []
    dashed = DASHED_ADDRESS.search(text)
    if dashed:
        spans.append(dashed.span())
        building, unit, room = dashed.groups()
    else:
        building = _first_group(BUILDING, text, spans)
        unit = _first_group(UNIT, text, spans)
        room = _find_room(text, spans)
    if building and building.isalpha():
        building = building.upper()
    return Address(building, unit, room, _find_area(text)), spans


def _first_group(pattern: re.Pattern, text: str, spans: list[tuple[int, int]]) -> str | None:
    match = pattern.search(text)
    if not match:
        return None
    spans.append(match.span())
    return next(group for group in match.groups() if group)


def _find_room(text: str, spans: list[tuple[int, int]]) -> str | None:
    for pattern, shape in ROOM_PATTERNS:
        match = pattern.search(text)
        if match:
            spans.append(match.span())
            if shape == "floor_door":
                return match.group(1) + match.group(2).zfill(2)
            return match.group(1)
    return None


def _find_area(text: str) -> str | None:
    found = [(text.find(area), -len(area), area) for area in PUBLIC_AREAS if area in text]
    return min(found)[2] if found else None


# ================================================================ appointment
def find_appointment(text: str, now: datetime) -> tuple[Appointment | None, list[tuple[int, int]]]:
    """The visit window the caller asked for, resolved against ``now``; None for 'any time' or 'now'.

    Also returns the spans of the time words, so the summary can leave them out.
    """
    spans: list[tuple[int, int]] = []
    today = now.date()
    day, roll = _find_day(text, today, spans)
    part = _first_match(PART_OF_DAY, text, spans)
    window = _clock_window(text, part, spans)
    is_point_in_time = window is not None
    if not spans or not _asks_for_visit(text, spans, day, today):
        return None, []
    if window is None and part:
        window = (time(PART_OF_DAY_HOURS[part][0]), time(PART_OF_DAY_HOURS[part][1]))
    if window is None:
        if day is None or (day == today and ASAP_WORDS.search(text)):
            return None, spans
        window = (time(WORKING_DAY_HOURS[0]), time(WORKING_DAY_HOURS[1]))
    start, end = (datetime.combine(day or today, t, tzinfo=LOCAL_ZONE) for t in window)
    passed = start <= now if is_point_in_time else end <= now
    if roll and passed:
        start, end = start + timedelta(days=roll), end + timedelta(days=roll)
    return Appointment(start, end), spans


def _asks_for_visit(text: str, spans: list[tuple[int, int]], day: date | None, today: date) -> bool:
    """A later day always books a visit; 今天/晚上/三点 only when the caller asks for one then
    (晚上过来吧, 三点以后家里有人) or the time ends the clause (马桶堵了下午三点, or the bare answer
    to "什么时候方便?"). 晚上黑乎乎的 and 今天早上突然停水了 describe the fault, not the visit."""
    if day is not None and day > today:
        return True
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    clause_start = max((m.end() for m in CLAUSE_BREAK.finditer(text, 0, first)), default=0)
    next_break = CLAUSE_BREAK.search(text, last)
    clause_end = next_break.start() if next_break else len(text)
    said_after = TIME_PARTICLES.sub("", text[last:clause_end])
    return bool(VISIT_WORDS.search(_blank(text, spans, " ")[clause_start:clause_end])) or not said_after


def _first_match(pattern: re.Pattern, text: str, spans: list[tuple[int, int]]) -> str | None:
    match = pattern.search(text)
    if match:
        spans.append(match.span())
    return match.group() if match else None


def _find_day(text: str, today: date, spans: list[tuple[int, int]]) -> tuple[date | None, int]:
    """The day named and how far a passed time rolls it: a bare time rolls a day, a weekday a week."""
    word = next((w for w in DAY_WORD.finditer(text) if not UNAVAILABLE.match(text, w.end())), None)
    if word:
        spans.append(word.span())
        return today + timedelta(days=DAY_OFFSETS[word.group()]), 0
    weekday = WEEKDAY.search(text)
    if weekday:
        spans.append(weekday.span())
        return _weekday_date(weekday, today)
    month_day = _month_day(text, today, spans)
    if month_day:
        return month_day, 0
    return None, 1


def _weekday_date(match: re.Match, today: date) -> tuple[date, int]:
    """下周三 is in next calendar week; 周三/这周三 is the coming one (today if it is Wednesday)."""
    prefix = match.group(1) or match.group(3) or ""
    index = WEEKDAY_INDEX[match.group(2)] if match.group(2) else WEEKEND_VISIT_DAY
    if prefix.startswith("下"):
        next_monday = today + timedelta(days=7 - today.weekday())
        return next_monday + timedelta(days=index), 0
    return today + timedelta(days=(index - today.weekday()) % 7), 7


def _month_day(text: str, today: date, spans: list[tuple[int, int]]) -> date | None:
    for match in MONTH_DAY.finditer(text):
        month, day = match.group(1), int(match.group(2))
        if month is None and not DATE_FOLLOWERS.match(text, match.end()):
            continue
        found = _next_date(today, int(month) if month else None, day)
        if found:
            spans.append(match.span())
            return found
    return None


def _next_date(today: date, month: int | None, day: int) -> date | None:
    """The first date on or after today with this day (and month)."""
    candidates = ([(today.year, month), (today.year + 1, month)] if month
                  else [(today.year, today.month), (today.year + today.month // 12, today.month % 12 + 1)])
    for year, month_of in candidates:
        try:
            found = date(year, month_of, day)
        except ValueError:
            continue
        if found >= today:
            return found
    return None


def _clock_window(text: str, part: str | None, spans: list[tuple[int, int]]) -> tuple[time, time] | None:
    after_work = AFTER_WORK.search(text)
    if after_work:
        spans.append(after_work.span())
        return time(AFTER_WORK_HOURS[0]), time(AFTER_WORK_HOURS[1])
    ranged = CLOCK_RANGE.search(text)
    if ranged:
        window = _range_window(ranged, part)
        if window:
            spans.append(ranged.span())
            return window
    clock = CLOCK.search(text)
    if not clock:
        return None
    at = _clock_time(clock.group(1), clock.group(2), part)
    if at is None:
        return None
    spans.append(clock.span())
    return _modified_window(at, clock.group(3))


def _range_window(match: re.Match, part: str | None) -> tuple[time, time] | None:
    start = _clock_time(match.group(1), match.group(2), part)
    end = _clock_time(match.group(4), match.group(5), match.group(3) or part)
    if start is None or end is None:
        return None
    if end <= start and end.hour < 12:
        end = end.replace(hour=end.hour + 12)  # 十一点到一点 ends at 13:00
    return (start, end) if end > start else None


def _clock_time(hour_text: str, minute_text: str | None, part: str | None) -> time | None:
    hour = _day_hour(int(hour_text), part)
    minute = {"半": 30, "一刻": 15, "三刻": 45, None: 0}.get(minute_text)
    if minute is None:
        minute = int(minute_text)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _day_hour(hour: int, part: str | None) -> int:
    """12-hour speech -> 24-hour clock; with no part of day, 1-7 is afternoon (repairs happen by day)."""
    if part is None:
        return hour + 12 if 1 <= hour <= 7 else hour
    start_hour, _ = PART_OF_DAY_HOURS[part]
    if start_hour >= 14 and hour < 12:
        return hour + 12
    if start_hour == 12 and 1 <= hour <= 5:
        return hour + 12
    return hour


def _modified_window(at: time, modifier: str | None) -> tuple[time, time]:
    if modifier in CLOCK_AFTER:
        return at, _end_of_part(at)
    if modifier in CLOCK_BEFORE:
        return _start_of_part(at), at
    return at, _slot_end(at)  # 三点, 三点左右


def _slot_end(at: time) -> time:
    end = datetime.combine(date.min, at) + SLOT
    return end.time() if end.date() == date.min else time(23, 59)


def _end_of_part(at: time) -> time:
    """两点半以后 runs to the end of that afternoon; before 9:00 counts as morning."""
    for _, end_hour in DAY_PARTS:
        if at < time(end_hour):
            return time(end_hour)
    return _slot_end(at)


def _start_of_part(at: time) -> time:
    """十点前 starts when that morning does; 八点前 (before any part) gives the hour before."""
    for start_hour, end_hour in DAY_PARTS:
        if time(start_hour) < at <= time(end_hour):
            return time(start_hour)
    return time(max(at.hour - 1, 0), at.minute)


# ================================================================ summary
def summarize(normalized: str, phone_span: tuple[int, int] | None, spans: list[tuple[int, int]]) -> str:
    """The fault in a few words: address, phone, time, greetings and fillers taken out.

    When no clause names a fault (the caller only gave an address so far) the whole
    text, fillers removed, is kept: the summary is never empty for non-empty text.
    """
    if phone_span:
        spans = spans + [_with_phone_label(normalized, phone_span)]
    fault_clauses = [clause for clause in _clauses(_cut(normalized, spans))
                     if FAULT_WORDS.search(clause) or _names_a_category(clause)]
    summary = "，".join(fault_clauses or _clauses(normalized)) or normalized.strip()
    return _shorten(summary)


def _names_a_category(clause: str) -> bool:
    return any(category for category, _, _ in _category_hits(clause))


def _clauses(text: str) -> list[str]:
    text = REQUESTS.sub("", FILLERS.sub("", text))
    return [clause for clause in map(_tidy_clause, CLAUSE_BREAK.split(text)) if clause]


def _with_phone_label(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """Widen the phone span over its label (电话是138…, or …是我电话 after it)."""
    before = PHONE_LABEL_BEFORE.search(text[:span[0]])
    after = PHONE_LABEL_AFTER.match(text[span[1]:])
    return (before.start() if before else span[0], span[1] + (after.end() if after else 0))


def _tidy_clause(clause: str) -> str:
    clause = clause.strip(" 　，,#")
    lead_in = LEAD_IN.match(clause)
    if lead_in.end():
        clause = clause[lead_in.end():].removesuffix("的")  # 我是6号楼的 -> 6号楼
    clause = clause.rstrip(TRAILING_PARTICLES)
    return "" if clause in ("", "了", "是", "我", "的", "修", "换", "看", "处理", "维修") else clause


def _shorten(summary: str) -> str:
    if len(summary) <= SUMMARY_LIMIT:
        return summary
    cut = summary.rfind("，", 0, SUMMARY_LIMIT)
    return summary[:cut] if cut > SUMMARY_LIMIT // 2 else summary[:SUMMARY_LIMIT]


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the characters inside any of ``spans``."""
    inside = set()
    for start, end in spans:
        inside.update(range(start, end))
    return "".join(ch for i, ch in enumerate(text) if i not in inside)


def _blank(text: str, spans: list[tuple[int, int]], filler: str = "#") -> str:
    """``text`` with each span replaced by one filler character per character (offsets stay valid)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = filler * (end - start)
    return "".join(chars)
