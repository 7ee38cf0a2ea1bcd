"""The hotline script turn by turn: every prompt and branch, with a fake call and virtual time.

Each test plays a caller (tests/support/fake_call.py) and checks what a caller hears (the
prompts in order) and what the desk finds afterwards (the draft ticket, the call record). The
SIPp tests (test_hotline_e2e.py) run the same flow over real SIP and RTP as the smoke layer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from callcenter.ivr.bridge import Meetings
from callcenter.ivr.flows import hotline
from callcenter.ivr.flows.hotline import HotlineServices, answer_hotline
from core.callouts import EmergencyReply
from core.calls import CallLog
from core.intake import PhoneDrafts
from core.store import CallRecord, Resident, Ticket
from tests.support.fake_call import FakeCall, FakeLine, HangUp, Silence, press, say
from tests.support.flow_env import flow_sessions, flow_settings, labelled_prompts, migrated_database, virtual_time  # noqa: F401

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai: the desk is staffed
NIGHT = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
LEAK = "三号楼二单元五零一厨房水管漏水了"


@pytest.fixture
def run(flow_settings, flow_sessions, labelled_prompts, virtual_time):
    """Run the hotline on a fake call; returns the call, the call record and the draft (or None)."""
    emergencies: list[int] = []

    def run(*turns, speech=True, now=NOW, reply=EmergencyReply.CALLING, settings=flow_settings, meetings=None,
            **call_args):
        call = FakeCall(list(turns), virtual_time, **call_args)

        def on_emergency(ticket_id):
            emergencies.append(ticket_id)
            with flow_sessions() as session:
                run.described_at_emergency.append(session.get(Ticket, ticket_id).description)
            return reply

        services = HotlineServices(settings=settings, prompts=labelled_prompts,
                                   drafts=PhoneDrafts(flow_sessions, settings), calls=CallLog(flow_sessions),
                                   new_recognizer=call.new_recognizer if speech else None,
                                   on_emergency=on_emergency, meetings=meetings, clock=lambda: now)
        answer_hotline(call, services)
        with flow_sessions() as session:
            record = session.scalars(select(CallRecord)).one()
            ticket = session.get(Ticket, record.ticket_id) if record.ticket_id else None
            session.expunge_all()
        return call, record, ticket

    run.emergencies, run.described_at_emergency = emergencies, []
    return run


def add_resident(sessions, phone="13800138000", building="3", unit="2", room="501", name="王女士"):
    with sessions() as session, session.begin():
        session.add(Resident(phone=phone, name=name, building=building, unit=unit, room=room))


def steps(record) -> list[str]:
    return [u["step"] for u in record.transcript["utterances"]]


OPENING = ["hotline.greeting", "hotline.menu"]
READBACK = ["hotline.readback_prefix", "pieces.digit_3", "pieces.building", "pieces.digit_2", "pieces.unit",
            "pieces.digit_5", "pieces.digit_0", "pieces.digit_1", "hotline.readback_suffix"]


def ending(call) -> list[str]:
    """What follows the summary's 「正确请按1」: the ticket number digit by digit, then goodbye."""
    at = call.played.index("hotline.ticket_number_prefix")
    assert call.played[-1] == "hotline.goodbye"
    return call.played[at + 1:-1]


# -- the ordinary report ------------------------------------------------------------------

def test_caller_says_the_problem_confirms_address_time_and_summary_and_hears_the_ticket_number(run):
    call, record, ticket = run(say(LEAK, partials=("三号楼",)), say("是"), say("明天上午十点"), press("1"), HangUp())
    assert call.played[:2] == OPENING
    assert call.played[2:2 + len(READBACK)] == READBACK
    after = call.played[2 + len(READBACK):]
    assert after[:2] == ["hotline.ask_time", "hotline.summary_prefix"]
    assert "pieces.tomorrow" in after and "pieces.morning" in after and "hotline.summary_confirm" in after
    assert record.outcome == "completed" and record.ticket_id == ticket.id
    assert ticket.status == "draft" and ticket.description == LEAK.replace(" ", "")
    assert (ticket.building, ticket.unit, ticket.room, ticket.category) == ("3", "2", "501", "plumbing")
    assert ticket.appointment_start is not None
    assert steps(record) == ["problem", "time"]
    assert set(record.transcript["confirmed"]) == {"address", "summary"}
    assert call.recording is not None and record.recording_path


def test_the_ticket_number_is_read_digit_by_digit(run):
    call, _, ticket = run(say(LEAK), say("是"), Silence(), press("1"), HangUp())
    spoken = "".join(piece.removeprefix("pieces.digit_") for piece in ending(call))
    assert spoken == "".join(c for c in ticket.number if c.isdigit())


def test_a_caller_who_hangs_up_after_the_ticket_number_completed_the_call(run):
    call, record, ticket = run(say(LEAK), say("是"), Silence(), press("1"), HangUp(during="hotline.goodbye"))
    assert record.outcome == "completed" and ticket.description == LEAK
    assert call.played[-1] == "hotline.goodbye"


def test_a_summary_not_confirmed_asks_for_the_problem_again_and_adds_it(run):
    call, record, ticket = run(say(LEAK), say("是"), Silence(), press("2"), say("还有卫生间灯不亮"), HangUp())
    at = call.played.index("hotline.summary_confirm")
    assert call.played[at + 1] == "hotline.ask_problem"
    assert ticket.description == LEAK + "；还有卫生间灯不亮"
    assert "summary" not in record.transcript["confirmed"] and record.outcome == "completed"


def test_no_answer_to_the_summary_is_not_a_confirmation(run):
    call, record, ticket = run(say(LEAK), say("是"), Silence(), Silence(), HangUp())
    assert "hotline.ticket_number_prefix" in call.played
    assert "summary" not in record.transcript["confirmed"]


def test_a_time_said_in_the_description_is_not_asked_again(run):
    call, _, ticket = run(say(LEAK + "明天下午三点来修"), say("是"), press("1"), HangUp())
    assert "hotline.ask_time" not in call.played and ticket.appointment_start is not None


@pytest.mark.parametrize("words, category", [("三号楼电梯坏了", "elevator"),
                                             ("三号楼二单元五零一小区路灯不亮", "public_facility")])
def test_no_visit_time_is_asked_for_a_repair_that_needs_no_home_visit(run, words, category):
    call, _, ticket = run(say(words), say("是"), press("1"), HangUp())
    assert ticket.category == category
    assert "hotline.ask_time" not in call.played


# -- the address ----------------------------------------------------------------------------

def test_the_address_is_asked_when_the_description_has_none_and_read_back(run):
    call, record, ticket = run(say("厨房水管漏水了"), say("三号楼二单元五零一"), say("是"), Silence(), press("1"),
                               HangUp())
    at = call.played.index("hotline.ask_address")
    assert call.played[at + 1:at + 1 + len(READBACK)] == READBACK
    assert (ticket.building, ticket.unit, ticket.room) == ("3", "2", "501")
    assert steps(record)[:2] == ["problem", "address"]


def test_an_address_refused_twice_is_keyed(run):
    call, record, ticket = run(say(LEAK), say("不是"), say("三号楼二单元五零一"), press("2"),
                               say("三号楼二单元五零一"), press("2"), press("12#"), press("1#"), press("1101#"),
                               Silence(), press("1"), HangUp())
    assert call.played.count("hotline.ask_address") == 2
    keyed = ["hotline.keypad_building", "hotline.keypad_unit", "hotline.keypad_room"]
    assert [p for p in call.played if p.startswith("hotline.keypad")] == keyed
    assert (ticket.building, ticket.unit, ticket.room, ticket.area) == ("12", "1", "1101", "")
    assert "address_keypad" in record.transcript["confirmed"] and "address" not in record.transcript["confirmed"]


def test_an_address_not_understood_is_asked_twice_then_keyed(run):
    call, _, ticket = run(say("厨房水管漏水了"), Silence(), say("嗯"), press("5#"), press("#"), press("302#"),
                          Silence(), press("1"), HangUp())
    assert call.played.count("hotline.ask_address") == 2
    assert "hotline.readback_prefix" not in call.played
    assert (ticket.building, ticket.unit, ticket.room) == ("5", "", "302")


def test_a_resident_in_the_directory_who_gives_their_room_is_not_asked_the_address(run, flow_sessions):
    add_resident(flow_sessions)
    call, record, ticket = run(say("厨房水管漏水了"), press("501#"), Silence(), press("1"), HangUp())
    assert call.played[2] == "hotline.verify_room"
    assert "hotline.ask_address" not in call.played and "hotline.readback_prefix" not in call.played
    at = call.played.index("hotline.summary_prefix")
    assert call.played[at + 1] == "hotline.registered_address"  # the directory's address is never read out
    assert (ticket.building, ticket.unit, ticket.room, ticket.reporter_name) == ("3", "2", "501", "王女士")
    assert {"address", hotline.CALLER_ID_CONFIRMED} <= set(record.transcript["confirmed"])


def test_a_room_said_rather_than_keyed_also_confirms_the_directory_entry(run, flow_sessions):
    add_resident(flow_sessions, caller_phone := "13900139000")
    call, record, ticket = run(say("厨房水管漏水了"), say("五零一"), Silence(), press("1"), HangUp(),
                               caller=f'"王" <sip:+86{caller_phone}@127.0.0.2>')
    assert ticket.phone == caller_phone and ticket.room == "501"
    assert hotline.CALLER_ID_CONFIRMED in record.transcript["confirmed"]


def test_a_wrong_room_number_goes_on_to_the_ordinary_address_questions(run, flow_sessions):
    add_resident(flow_sessions)
    call, record, ticket = run(say("厨房水管漏水了"), press("502#"), say("三号楼二单元五零二"), say("是"),
                               Silence(), press("1"), HangUp())
    assert call.played.count("hotline.verify_room") == 1
    assert "hotline.ask_address" in call.played and ticket.room == "502" and ticket.reporter_name == ""
    assert hotline.CALLER_ID_CONFIRMED not in record.transcript["confirmed"]


def test_no_room_number_is_asked_once_more_then_the_ordinary_questions(run, flow_sessions):
    add_resident(flow_sessions)
    call, _, ticket = run(say("厨房水管漏水了"), Silence(), Silence(), say("三号楼二单元五零一"), say("是"),
                          Silence(), press("1"), HangUp())
    assert call.played[2:5] == ["hotline.verify_room", "hotline.ask_again", "hotline.verify_room"]
    assert "hotline.ask_address" in call.played and ticket.reporter_name == ""


# -- the problem ----------------------------------------------------------------------------

def test_a_caller_who_keys_1_is_asked_the_address_then_the_problem(run):
    call, record, ticket = run(press("1"), say("三号楼二单元五零一"), say("是"), say("厨房水管漏水了"),
                               Silence(), press("1"), HangUp())
    assert call.played.index("hotline.ask_address") < call.played.index("hotline.ask_problem")
    assert ticket.description == "厨房水管漏水了" and ticket.room == "501"
    assert steps(record)[:2] == ["address", "problem"]


def test_a_problem_not_heard_is_asked_again_then_the_keypad_or_desk_is_offered(run):
    call, record, ticket = run(press("1"), say("三号楼二单元五零一"), say("是"), Silence(), Silence(), Silence(),
                               Silence(), press("1"), HangUp())
    at = call.played.index("hotline.ask_problem")
    assert call.played[at + 1:at + 3] == ["hotline.ask_again", "hotline.offer_keypad_or_desk"]
    assert ticket.description == "（电话报修，内容请听录音）" and record.outcome == "completed"


def test_silence_at_the_menu_goes_on_to_the_address(run):
    call, _, ticket = run(Silence(), say("三号楼二单元五零一"), say("是"), say("厨房水管漏水了"), Silence(), press("1"),
                          HangUp())
    assert call.played[2] == "hotline.ask_address" and ticket.description == "厨房水管漏水了"


def test_an_unknown_key_at_the_menu_is_taken_like_1(run):
    call, _, _ = run(press("7"), say("三号楼二单元五零一"), say("是"), say("厨房水管漏水了"), Silence(), press("1"),
                     HangUp())
    assert call.played[2] == "hotline.ask_address" and "hotline.ticket_number_prefix" in call.played


def test_a_key_during_the_greeting_barges_in(run):
    call, _, _ = run(press("2", during="hotline.greeting"), press("#"), HangUp())
    assert call.played[:2] == ["hotline.greeting", "hotline.ask_ticket_number"]


# -- emergencies ------------------------------------------------------------------------------

def test_an_emergency_is_raised_on_a_partial_and_the_caller_told_engineers_are_called(run):
    call, record, ticket = run(say("厨房水管爆了水漫出来了", partials=("厨房水管爆了",)), say("三号楼二单元五零一"),
                               say("是"), press("1"), HangUp())
    assert run.emergencies == [ticket.id]
    assert "hotline.emergency_notice" in call.played and "hotline.ask_time" not in call.played
    assert ticket.urgency == "emergency" and ticket.description == "厨房水管爆了水漫出来了"
    assert run.described_at_emergency == ["厨房水管爆了"]  # acted on before the caller finished their sentence


def test_an_emergency_already_under_way_is_attached(run):
    call, _, ticket = run(say(LEAK.replace("漏水了", "爆了")), say("是"), press("1"), HangUp(),
                          reply=EmergencyReply.ATTACHED)
    assert "hotline.emergency_attached" in call.played and "hotline.emergency_notice" not in call.played
    assert run.emergencies == [ticket.id]


def test_an_emergency_caller_is_offered_to_hold_for_the_engineer_after_the_ticket_number(run):
    meetings = Meetings()
    call, record, ticket = run(say(LEAK.replace("漏水了", "爆了")), say("是"), press("1"), Silence(), meetings=meetings)
    at = call.played.index("hotline.ticket_number_prefix")
    assert call.played[at:].count("hotline.offer_engineer") == 1 and call.played[-1] == "hotline.goodbye"
    assert record.outcome == "completed" and meetings.find(ticket.id) is None  # the meeting is closed


def test_an_attached_emergency_offers_no_engineer_to_hold_for(run):
    call, _, ticket = run(say(LEAK.replace("漏水了", "爆了")), say("是"), press("1"), HangUp(),
                          reply=EmergencyReply.ATTACHED, meetings=(meetings := Meetings()))
    assert "hotline.offer_engineer" not in call.played and meetings.find(ticket.id) is None


def test_a_calm_sentence_after_an_emergency_does_not_lower_it(run):
    call, _, ticket = run(say("三号楼二单元五零一着火了"), say("是"), press("2"), say("现在好像灭了"), HangUp())
    assert ticket.urgency == "emergency" and len(run.emergencies) == 1


# -- hang-ups ------------------------------------------------------------------------------------

def test_a_caller_who_cancels_while_it_rings_leaves_a_call_record_and_no_ticket(run):
    call, record, ticket = run(cancelled=True)
    assert record.outcome == "cancelled" and ticket is None and call.played == []


def test_a_caller_who_hangs_up_during_the_greeting_leaves_no_ticket(run):
    call, record, ticket = run(HangUp(during="hotline.greeting"))
    assert record.outcome == "caller_hung_up" and ticket is None and call.played == ["hotline.greeting"]


def test_a_caller_who_hangs_up_mid_sentence_leaves_a_draft_with_the_words_so_far(run):
    call, record, ticket = run(say("", partials=("三号楼二单元五零一", "三号楼二单元五零一厨房水管"), hang_up=True))
    assert record.outcome == "caller_hung_up"
    assert ticket.description == "三号楼二单元五零一厨房水管" and ticket.room == "501"
    assert steps(record) == ["problem"]


def test_a_caller_who_hangs_up_at_the_read_back_leaves_the_draft_with_the_address(run):
    call, record, ticket = run(say(LEAK), HangUp(during="hotline.readback_prefix"))
    assert record.outcome == "caller_hung_up" and ticket.description == LEAK and ticket.room == "501"
    assert "address" not in record.transcript["confirmed"]


def test_a_caller_who_hangs_up_at_the_keypad_keeps_what_was_keyed(run):
    call, record, ticket = run(say("厨房水管漏水了"), Silence(), Silence(), press("3#"), HangUp())
    assert record.outcome == "caller_hung_up" and ticket.description == "厨房水管漏水了"


# -- ticket status and the front desk -----------------------------------------------------------

def test_2_tells_the_status_of_a_ticket_by_its_number(run, flow_sessions):
    _, _, first = run(say(LEAK), say("是"), Silence(), press("1"), HangUp())
    with flow_sessions() as session, session.begin():
        session.execute(CallRecord.__table__.delete())
    digits = "".join(c for c in first.number if c.isdigit())
    call, record, ticket = run(press("2"), press(digits + "#"))
    assert call.played[2:] == ["hotline.ask_ticket_number", "hotline.ticket_status_prefix", "pieces.status_draft",
                               "hotline.goodbye"]
    assert record.outcome == "completed" and ticket is None


def test_2_with_an_unknown_number_says_so(run):
    call, record, _ = run(press("2"), press("123#"))
    assert call.played[2:] == ["hotline.ask_ticket_number", "hotline.ticket_not_found", "hotline.goodbye"]


def test_0_out_of_desk_hours_says_the_desk_is_closed_and_goes_on(run, flow_settings):
    settings = replace(flow_settings, hotline=replace(flow_settings.hotline, desk_extension="8001"))
    call, _, ticket = run(press("0"), say("三号楼二单元五零一"), say("是"), say("厨房水管漏水了"), Silence(),
                          press("1"), HangUp(), now=NIGHT, settings=settings)
    assert call.played[2:4] == ["hotline.desk_closed", "hotline.ask_address"]
    assert call.line.dialled == [] and ticket.description == "厨房水管漏水了"


def test_0_with_no_desk_extension_says_the_desk_is_closed(run):
    call, _, _ = run(press("0"), HangUp())
    assert call.played[2] == "hotline.desk_closed" and call.line.dialled == []


def test_0_when_the_desk_does_not_answer_goes_on_with_the_call(run, flow_settings):
    settings = replace(flow_settings, hotline=replace(flow_settings.hotline, desk_extension="8001"))
    call, _, _ = run(press("0"), HangUp(), settings=settings)
    assert call.played[2:4] == ["hotline.transfer_desk", "hotline.desk_no_answer"]
    assert call.line.dialled == ["8001"]


def test_0_in_desk_hours_puts_the_caller_through_and_the_call_ends_transferred(run, flow_settings, monkeypatch,
                                                                               virtual_time):
    settings = replace(flow_settings, hotline=replace(flow_settings.hotline, desk_extension="8001"))
    bridged = []
    monkeypatch.setattr(hotline, "bridge", lambda caller, desk: bridged.append((caller, desk)))
    desk = FakeCall([], virtual_time, call_id="desk")
    call, record, ticket = run(press("0"), settings=settings, line=FakeLine(answer_dial=desk))
    assert call.played[2:] == ["hotline.transfer_desk"] and bridged == [(call, desk)]
    assert record.outcome == "transferred" and desk.hung_up_by_flow and ticket is None


def test_after_two_unheard_problems_0_reaches_the_desk(run, flow_settings):
    settings = replace(flow_settings, hotline=replace(flow_settings.hotline, desk_extension="8001"))
    call, _, _ = run(press("1"), say("三号楼二单元五零一"), say("是"), Silence(), Silence(), press("0"), HangUp(),
                     settings=settings)
    at = call.played.index("hotline.offer_keypad_or_desk")
    assert call.played[at + 1:at + 4] == ["hotline.transfer_desk", "hotline.desk_no_answer", "hotline.ask_time"]
    assert call.line.dialled == ["8001"]


# -- without a speech model ----------------------------------------------------------------------

def test_without_a_speech_model_the_address_is_keyed_and_the_description_recorded(run):
    call, record, ticket = run(say("", seconds=3), press("3#"), press("2#"), press("501#"), Silence(),
                               press("1"), HangUp(), speech=False)
    assert [p for p in call.played if p.startswith("hotline.keypad")] == ["hotline.keypad_building",
                                                                           "hotline.keypad_unit", "hotline.keypad_room"]
    assert "hotline.ask_address" not in call.played and "hotline.ask_time" not in call.played
    assert (ticket.building, ticket.unit, ticket.room) == ("3", "2", "501")
    assert ticket.description == "（电话报修，内容请听录音）" and steps(record) == ["problem"]


def test_without_a_speech_model_a_caller_who_keys_1_hears_the_keypad_fallback(run):
    call, record, _ = run(press("1"), press("3#"), press("#"), press("501#"), say("", seconds=2), Silence(),
                          press("1"), HangUp(), speech=False)
    assert "hotline.no_speech_fallback" in call.played and "hotline.ask_problem" not in call.played
    assert "problem" in steps(record) and record.outcome == "completed"
