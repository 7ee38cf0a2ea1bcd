"""Full is not busy (issue 13.7), end to end on one node with SIPp callers: with ``asr.max_streams = 1``
and one call holding the recogniser, a second INVITE that the dispatcher could send elsewhere gets
503, and one that has nowhere else to go is answered in keypad-and-recording mode: the room by keys,
the problem in the recording only, a draft for the desk to listen to. The service's own wiring
([[lines]] -> Telephony -> admission -> hotline flow); the scripted stand-in recogniser (the streams
are counted, not the words). SIPp plays pcaps through a raw socket: run as root, under the heavy lock.
"""

from __future__ import annotations

from callcenter.asr.capacity import StreamSlots
from callcenter.kamailio_config import NEXT_NODE_HEADER
from core.intake import PENDING_DESCRIPTION
from tests.support.e2e import RECORDING_OFFSET, db_url, located, one, prompts, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript, SpokenScripts
from tests.support.sip import LOOPBACK, free_udp_ports, sipp  # noqa: F401 (fixture)
from tests.test_hotline_e2e import LEAK, STRANGER, call_hotline, finished, make_hotline  # noqa: F401 (fixture)

TEST_TIME_LIMIT = 150


def test_a_full_node_refuses_what_another_node_can_take_and_answers_the_rest_on_keys(make_hotline, sipp, tmp_path,
                                                                                       voices):
    leak = voices(LEAK)
    hotline = make_hotline(SpokenScripts())
    streams = hotline.services.streams = StreamSlots(1)  # asr.max_streams = 1
    holder_port, refused_port, keypad_port = free_udp_ports(), free_udp_ports(), free_udp_ports()
    telephony = hotline.telephony(mode="trunk", allow=[LOOPBACK])
    listen = telephony.lines[0].config.listen

    # 1. A caller who keeps the one recogniser while the others call (silent; hangs up after 8 s).
    holder = call_hotline(sipp, listen, CallerScript(), tmp_path, caller="13700137000", length=9, hang_up_at=8,
                          timeout=20, port=holder_port)
    assert holder.wait_received("200")
    assert streams.in_use == 1

    # 2. The dispatcher has another node to try: 503, with Retry-After, and no call record.
    refused = sipp.run("caller_refused", listen, port=refused_port, timeout=10,
                       params={"code": 503, "extra_header": f"\n      {NEXT_NODE_HEADER}: sip:127.0.0.2:5070"})
    [answer] = refused.received("503")
    assert "Retry-After:" in answer

    # 3. No other node (a single node, or the last one the dispatcher tries): answered on keys.
    caller = CallerScript()
    caller.keys(1.0, "1")  # over the greeting; then "语音识别繁忙，请按提示用电话按键输入房号…" plays whole
    caller.keys(13.5, "7#")  # over "请用电话按键输入楼号"
    caller.keys(15.0, "2#")
    caller.keys(16.5, "301#")
    speech_start = 26.0  # after "请在提示音后描述问题，说完按井号键结束"
    speech_end = caller.speak(speech_start, leak, "problem")
    caller.keys(speech_end + 0.7, "#")
    caller.keys(34.0, "1")  # over the summary
    keypad = call_hotline(sipp, listen, caller, tmp_path, caller=STRANGER, length=75, timeout=90, port=keypad_port)
    finished(holder, 30)
    finished(keypad, 100)

    records = [r for r in hotline.call_records()]
    assert len(records) == 2, records  # the holder's and the keypad call's: the 503 was no call of ours
    record = one((r for r in records if r.caller == STRANGER), "keypad call record")
    assert record.outcome == "completed" and record.transcript["without_speech"] == "recognisers_busy"
    ticket = one(hotline.tickets(), "ticket")
    assert (record.ticket_id, ticket.status, ticket.phone) == (ticket.id, "draft", STRANGER)
    assert (ticket.building, ticket.unit, ticket.room, ticket.description) == ("7", "2", "301", PENDING_DESCRIPTION)
    problem = one(record.transcript["utterances"], "utterance")
    assert (problem["step"], problem["text"], problem["words"]) == ("problem", "", [])  # recorded, not recognised
    at = located(hotline.recording(record), leak)  # the desk hears the problem in the call's recording
    assert abs(at - speech_start) < RECORDING_OFFSET and at - 0.3 <= problem["start"] <= at + 0.3, problem

    health = telephony.health()["recognisers"]
    assert health == {"max_streams": 1, "in_use": 0, "refused_full": 1, "answered_without_speech": 1}, health
