"""The number to call back, and callers who gave up, end to end: a SIPp resident (espeak-ng Mandarin
through G.711, RFC 4733 keys) calls the hotline on 127.0.0.1; the ticket and the 回拨 list are read
from the database as the desk would see them. Speech is the scripted stand-in recogniser (or the real
Chinese model with CALLCENTER_ASR_MODEL_PATH), as in tests/test_hotline_e2e.py, whose wiring this uses.

Keys are pressed over the prompt that asks for them (every question may be barged in on), a few
seconds after it starts, so that a few hundred milliseconds of scheduling never move a key into the
question before.
"""

from __future__ import annotations

from sqlalchemy import select

from core.callback_list import CallbackCall, CallbackItem
from tests.support.e2e import db_url, one, prompts, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript, SpokenScripts, utterance_script
from tests.support.sip import require, sipp  # noqa: F401 (fixtures)
from tests.test_hotline_e2e import (  # noqa: F401 (make_hotline and chinese_model are fixtures)
    RESIDENT,
    STRANGER,
    call_hotline,
    chinese_model,
    finished,
    make_hotline,
    speaking,
)

TEST_TIME_LIMIT = 150
ADDRESS = "三号楼二单元一一零一"
ADDRESS_WORDS = "三 号 楼 二 单元 一 一 零 一"
# With the day in it the hotline does not ask when to come: one question fewer to time.
LEAK = "卫生间的水龙头一直滴水，明天上午来修"
LEAK_WORDS = "卫生间 的 水龙头 一直 滴 水 明天 上午 来 修"
LEAK_WITH_PHONE = "卫生间的水龙头一直滴水，明天上午来修，电话一三九零零一三九零零零"
LEAK_WITH_PHONE_WORDS = LEAK_WORDS + " 电话 一 三 九 零 零 一 三 九 零 零 零"
SAID_NUMBER = "13900139000"


def seconds(pcm: bytes) -> float:
    return len(pcm) / 16000


def test_a_withheld_caller_keys_a_callback_number_re_enters_it_and_it_lands_on_the_ticket(
        make_hotline, sipp, tmp_path, voices, settings, chinese_model):
    address, leak = voices(ADDRESS), voices(LEAK)
    scripts = SpokenScripts(utterance_script(ADDRESS_WORDS, seconds(address)),
                            utterance_script(LEAK_WORDS, seconds(leak)))
    hotline = make_hotline(speaking(chinese_model, scripts, settings))
    line = hotline.trunk_line()

    caller = CallerScript()
    caller.keys(1.0, "1")
    caller.speak(3.0, address, "address")  # over "请说出您的楼号、单元和房号"
    caller.keys(10.0, "1")  # over "您的地址是三号楼二单元幺幺零幺，对吗": yes
    spoken_end = caller.speak(12.5, leak, "problem")  # over "请在提示音后说出需要维修的问题"
    # "请输入您的联系电话，以井号键结束" (no caller ID): a number, read back, 2 = key it again
    wrong_end = caller.keys(spoken_end + 4.0, "13700137000#")
    caller.keys(wrong_end + 4.0, "2")  # over "您输入的号码是幺三七…，确认请按1，重新输入请按2"
    right_end = caller.keys(wrong_end + 7.0, "13600136000#")  # over the question again
    confirmed_at = right_end + 4.0
    caller.keys(confirmed_at, "1")  # over the read-back: confirmed
    caller.keys(confirmed_at + 4.0, "1")  # over the summary: correct
    run = call_hotline(sipp, line.config.listen, caller, tmp_path, caller="anonymous", length=confirmed_at + 25,
                       timeout=confirmed_at + 40)
    finished(run, confirmed_at + 50)

    record = hotline.wait_for_call_record()
    ticket = one(hotline.tickets(), "ticket")
    assert (ticket.phone, ticket.building, ticket.unit, ticket.room) == ("13600136000", "3", "2", "1101")
    assert ticket.category == "plumbing" and ticket.appointment_start is not None
    [keyed] = [e for e in hotline.events(ticket.id) if e.note == "回拨号码：按键输入"]
    assert keyed.data["changes"]["phone"] == {"from": "", "to": "13600136000"}
    assert (record.outcome, record.caller, record.ticket_id) == ("completed", "anonymous", ticket.id)
    assert {"address", "callback_number", "summary"} <= set(record.transcript["confirmed"])
    assert len(run.received("BYE")) == 1  # the hotline said goodbye and hung up
    with hotline.sessions() as session:
        assert session.scalars(select(CallbackItem)).all() == []  # it did not give up


def test_a_number_said_in_the_description_is_offered_and_accepted(make_hotline, sipp, tmp_path, voices, settings,
                                                                  chinese_model):
    leak = voices(LEAK_WITH_PHONE)
    scripts = SpokenScripts(utterance_script(LEAK_WITH_PHONE_WORDS, seconds(leak)))
    hotline = make_hotline(speaking(chinese_model, scripts, settings))
    hotline.add_resident(**RESIDENT)
    line = hotline.trunk_line()

    caller = CallerScript()
    caller.keys(1.0, "1")
    caller.keys(2.2, "1101#")  # the room number: the caller ID is the resident's
    spoken_end = caller.speak(9.5, leak, "problem")
    caller.keys(spoken_end + 4.5, "1")  # over "您说的电话是幺三九零零幺三九零零零，作为回拨号码请按1"
    caller.keys(spoken_end + 9.0, "1")  # over the summary
    run = call_hotline(sipp, line.config.listen, caller, tmp_path, caller=RESIDENT["phone"],
                       length=spoken_end + 30, timeout=spoken_end + 45)
    finished(run, spoken_end + 55)

    record = hotline.wait_for_call_record()
    ticket = one(hotline.tickets(), "ticket")
    assert (ticket.phone, ticket.reporter_name, ticket.room) == (SAID_NUMBER, "王阿姨", "1101")
    [offered] = [e for e in hotline.events(ticket.id) if e.note == "回拨号码：来电人描述中的号码"]
    assert offered.data["changes"]["phone"] == {"from": RESIDENT["phone"], "to": SAID_NUMBER}
    assert (record.outcome, record.caller) == ("completed", RESIDENT["phone"])  # the call record keeps the caller ID
    assert {"caller_id_room", "callback_number", "summary"} <= set(record.transcript["confirmed"])


def test_callers_who_hang_up_after_the_greeting_land_on_the_callback_list_once_per_number(
        make_hotline, sipp, tmp_path):
    hotline = make_hotline(SpokenScripts())
    line = hotline.trunk_line()

    def gives_up(number: str, hang_up_at: float, key: str = "") -> None:
        caller = CallerScript()
        if key:
            caller.keys(1.0, key)
        run = call_hotline(sipp, line.config.listen, caller, tmp_path, caller=number, length=hang_up_at + 1,
                           hang_up_at=hang_up_at, timeout=20)
        finished(run, 30)
        hotline.wait_for_call_record()

    gives_up(STRANGER, 2.0)  # during the greeting
    gives_up(STRANGER, 4.0, key="1")  # pressed 1 (报修), then hung up while asked for the address
    gives_up("anonymous", 2.0)  # withheld: listed, but nobody can call it back
    records = hotline.call_records()
    assert [r.outcome for r in records] == ["caller_hung_up"] * 3 and hotline.tickets() == []
    with hotline.sessions() as session:
        items = session.scalars(select(CallbackItem).order_by(CallbackItem.id)).all()
        assert [(i.number, i.status, i.stage) for i in items] == [(STRANGER, "open", "key:1"), ("", "open", "greeting")]
        calls = session.scalars(select(CallbackCall).order_by(CallbackCall.call_id)).all()
        assert [(c.call_id, c.item_id, c.stage) for c in calls] == [
            (records[0].id, items[0].id, "greeting"), (records[1].id, items[0].id, "key:1"),
            (records[2].id, items[1].id, "greeting")]
        assert records[0].started_at <= items[0].first_call_at < items[0].last_call_at <= records[1].ended_at
    for record in records:  # each call's recording is there for the desk to play
        assert len(hotline.recording(record)) > 16000
