"""Caller-ID privacy (issue 14, item 8). A caller ID is easy to forge on VoIP and numbers are handed
on: a match in the resident directory proves nothing, so the hotline asks for the room number and
compares it, and never speaks the stored address to the caller. End to end: SIPp callers (one
through Kamailio, as a PBX extension), what the hotline sends them captured, the draft read back.
And ``residents import --replace`` drops the numbers a new directory file no longer has.

Heavy (SIPp, Kamailio, real calls): run under ``flock /tmp/cc-heavy.lock``.
"""

from __future__ import annotations

import random

from core.store import Resident
from tests.support.e2e import one, prompts, time_limit, voices  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript, SpokenScripts, utterance_script
from tests.support.rtp_capture import RtpCapture
from tests.support.sip import LOOPBACK, free_udp_ports, kamailio, sipp  # noqa: F401 (fixtures)
from tests.test_cli import run, stored
from tests.test_hotline_e2e import db_url, finished, make_hotline  # noqa: F401 (fixtures)

TEST_TIME_LIMIT = 150
# Not the address the prompts use as an example (三号楼二单元一一零一), so hearing it means it was read out.
RESIDENT = dict(phone="13800138000", name="王阿姨", building="7", unit="1", room="1502")
LEAK = "卫生间的水龙头一直滴水"


def call(sipp, target, script: CallerScript, tmp_path, *, length: float, hang_up_at: float | None = None):
    """The resident's number calls ``target``; returns the SIPp run and what the caller heard."""
    capture = RtpCapture()
    pcap = script.write_pcap(tmp_path / f"caller-{random.getrandbits(32):08x}.pcap", length)
    params = {"pcap": pcap, "caller": RESIDENT["phone"], "bye_timeout_ms": 100_000, "media_ip": LOOPBACK,
              "media_port": capture.port}
    if hang_up_at is None:
        return sipp.start("hotline_caller", target, port=free_udp_ports(), timeout=120, params=params), capture
    return sipp.start("hotline_caller_hangs_up", target, port=free_udp_ports(), timeout=120,
                      params=params | {"hold_ms": int(hang_up_at * 1000)}), capture


def test_a_forged_caller_id_hears_no_stored_address_and_does_not_get_it(make_hotline, kamailio, sipp, tmp_path,
                                                                         voices, prompts):
    """Somebody calls with the resident's number, through the PBX, and guesses the room wrong: the
    hotline goes on to ask for the address like for any caller; nothing of the directory is said or used."""
    address = voices("五号楼一单元六零二")
    hotline = make_hotline(SpokenScripts(utterance_script("五 号 楼 一 单元 六 零 二", len(address) / 16000)))
    hotline.add_resident(**RESIDENT)
    proxy = kamailio("WITH_RECORD_ROUTE")
    hotline.telephony(mode="register", server=proxy.address, user="hotline", register_expires=60)
    assert proxy.output.wait_for(r"REGISTERED hotline", timeout=10)

    caller = CallerScript()
    caller.keys(1.0, "1")  # 报修
    caller.keys(2.2, "1101#")  # 「为核实身份，请输入或说出您的房号」: a guess
    caller.speak(4.5, address, "address")  # over 「请说出您的楼号、单元和房号」
    caller.keys(14.0, "1")  # over the end of the read-back of what they said: right
    run_, heard = call(sipp, proxy.address, caller, tmp_path, length=20, hang_up_at=19.5)
    finished(run_, 60)
    heard.close()

    record = hotline.wait_for_call_record()
    ticket = one(hotline.tickets(), "ticket")
    assert (ticket.building, ticket.unit, ticket.room, ticket.reporter_name) == ("5", "1", "602", "")
    assert "caller_id_room" not in record.transcript["confirmed"]
    checked = one((u for u in record.transcript["utterances"] if u["step"] == "room_check"), "room check")
    assert checked["keys"] == "1101"
    assert heard.heard(prompts["hotline.verify_room"][:8000])  # the question was asked ...
    assert heard.heard(prompts.address("5", "1", "602"))  # ... what the caller said was read back to them ...
    assert not heard.heard(prompts.address("7", "1", "1502"))  # ... and the directory's address never was
    assert not heard.heard(prompts["hotline.registered_address"])
    events = hotline.events(ticket.id)
    assert "来电号码匹配住户，房号核对一致" not in [e.note for e in events]


def test_the_resident_confirms_by_the_room_number_and_the_address_is_still_not_read_out(make_hotline, sipp, tmp_path,
                                                                                       voices, prompts):
    leak = voices(LEAK)
    hotline = make_hotline(SpokenScripts(utterance_script("卫生间 的 水龙头 一直 滴 水", len(leak) / 16000)))
    hotline.add_resident(**RESIDENT)
    line = hotline.trunk_line()

    caller = CallerScript()
    caller.keys(1.0, "1")
    caller.keys(2.2, "1502#")  # the room number the directory has for this phone
    caller.speak(9.5, leak, "problem")  # after 「请在提示音后说出需要维修的问题」
    # silent after: the time question and the summary time out, the ticket number is read, goodbye
    run_, heard = call(sipp, line.config.listen, caller, tmp_path, length=70)
    finished(run_, 100)
    heard.close()

    record = hotline.wait_for_call_record()
    ticket = one(hotline.tickets(), "ticket")
    assert (ticket.building, ticket.unit, ticket.room, ticket.area) == ("7", "1", "1502", "")
    assert (ticket.reporter_name, ticket.phone, ticket.description) == ("王阿姨", RESIDENT["phone"], LEAK)
    assert {"address", "caller_id_room"} <= set(record.transcript["confirmed"])
    assert record.outcome == "completed"
    assert heard.heard(prompts["hotline.registered_address"])  # the summary says 「您登记的住址」 ...
    assert heard.heard(prompts.digits(ticket.number))  # ... the ticket number was read out ...
    assert not heard.heard(prompts.address("7", "1", "1502"))  # ... and never the address itself


def test_residents_import_replace_drops_the_numbers_missing_from_the_file(tmp_path):
    data_dir, directory = tmp_path / "data", tmp_path / "residents.csv"
    directory.write_text("phone,name,building,unit,room\n13800138000,王阿姨,7,1,1502\n13900139000,李先生,3,2,1101\n",
                         encoding="utf-8")
    assert run(["residents", "import", str(directory)], data_dir).returncode == 0
    # 13800138000 was given up; the operator handed it to somebody who is not a resident.
    directory.write_text("phone,name,building,unit,room\n13900139000,李先生,3,2,1102\n", encoding="utf-8")
    merged = run(["residents", "import", str(directory)], data_dir)
    assert merged.returncode == 0 and len(stored(data_dir, Resident)) == 2  # without --replace: only added/updated
    replaced = run(["residents", "import", "--replace", str(directory)], data_dir)
    assert replaced.returncode == 0, replaced.stderr
    assert "新增 0，更新 1" in replaced.stdout and "删除文件中没有的号码 1 个" in replaced.stdout
    assert [(r.phone, r.room) for r in stored(data_dir, Resident)] == [("13900139000", "1102")]
    broken = tmp_path / "broken.csv"
    broken.write_text("phone,name,building,unit,room\nnot-a-number,x,1,1,1\n", encoding="utf-8")
    refused = run(["residents", "import", "--replace", str(broken)], data_dir)
    assert refused.returncode == 1 and "未导入任何记录" in refused.stderr
    assert len(stored(data_dir, Resident)) == 1  # a bad file drops nothing
