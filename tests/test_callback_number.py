"""The hotline's callback-number step, branch by branch, on a scripted dialogue (keys and yes/no answers
in, the prompts heard and the ticket's phone out). The SIPp calls in tests/test_callback_e2e.py run
the same step over a real line."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from callcenter.ivr.flows.callback_number import establish_callback_number
from core.intake import DraftFacts
from core.settings import load_settings

RESIDENT = SimpleNamespace(building="3", unit="2", room="1101", name="王阿姨")


class Prompts:
    """Prompt ids and digits as text, so a test reads what the caller heard."""

    def __getitem__(self, prompt_id):
        return f"[{prompt_id}]".encode()

    def digits(self, text):
        return "".join("幺" if c == "1" else c for c in text).encode()


class ScriptedDialogue:
    def __init__(self, answers):
        self.answers = list(answers)  # keys for ask_keys, True/False/None for ask_yes_no
        self.heard = []

    def ask_keys(self, prompt, **_):
        self.heard.append(prompt.decode())
        return self.answers.pop(0)

    def ask_yes_no(self, prompt, tries=2):
        self.heard.append(prompt.decode())
        return self.answers.pop(0)

    def say(self, prompt, barge_in=False):
        self.heard.append(prompt.decode())


class FakeHotline:
    def __init__(self, caller, answers, description="", room="1101", resident=None, confirmed=()):
        self.call = SimpleNamespace(caller=caller, call_id="test-call")
        self.dialogue, self.prompts = ScriptedDialogue(answers), Prompts()
        self.services = SimpleNamespace(settings=load_settings(environ={}))
        from callcenter.ivr.flows.hotline import caller_number
        self.facts = DraftFacts(phone=caller_number(caller), description=description, building="3", unit="2",
                                room=room, confirmed=set(confirmed))
        self.resident, self.saves = resident, []

    def lookup_resident(self):
        return self.resident

    def save(self, step):
        self.saves.append((step, self.facts.phone))

    def local_now(self):
        return datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def run(hotline):
    establish_callback_number(hotline)
    return hotline.facts.phone, hotline.saves, hotline.dialogue.heard, hotline.dialogue.answers


def test_a_known_resident_with_nothing_said_is_not_asked():
    hotline = FakeHotline("13800138000", [], resident=RESIDENT, confirmed={"caller_id_room", "address"})
    assert run(hotline) == ("13800138000", [], [], [])


def test_a_stranger_with_a_callable_caller_id_is_not_asked():
    assert run(FakeHotline("13900139000", [])) == ("13900139000", [], [], [])


def test_a_withheld_caller_keys_a_number_it_is_read_back_and_re_entered():
    hotline = FakeHotline("anonymous", ["12", "13700137000", False, "13600136000", True])
    phone, saves, heard, left = run(hotline)
    assert (phone, saves, left) == ("13600136000", [("回拨号码：按键输入", "13600136000")], [])
    assert heard == ["[callback.ask_number]",
                     "[callback.invalid][callback.ask_number]",  # 12 is no phone number
                     "[callback.readback_prefix]幺3700幺37000[callback.readback_confirm]",
                     "[callback.ask_number]",  # 2: keyed again, no 「号码有误」
                     "[callback.readback_prefix]幺3600幺36000[callback.readback_confirm]"]
    assert "callback_number" in hotline.facts.confirmed


def test_a_withheld_caller_who_keys_nothing_is_told_and_the_ticket_keeps_no_number():
    hotline = FakeHotline("anonymous", ["", "", ""])
    phone, saves, heard, _ = run(hotline)
    assert (phone, saves) == ("", [])
    assert heard[-1] == "[callback.not_given]"


def test_a_number_said_in_the_description_is_offered_first():
    hotline = FakeHotline("13800138000", [True], description="水管漏水，电话幺三九零零幺三九零零零",
                          resident=RESIDENT, confirmed={"caller_id_room"})
    phone, saves, heard, _ = run(hotline)
    assert (phone, saves) == ("13900139000", [("回拨号码：来电人描述中的号码", "13900139000")])
    assert heard == ["[callback.said_prefix]幺3900幺39000[callback.said_confirm]"]


def test_a_said_number_refused_leaves_the_caller_id_with_hash():
    hotline = FakeHotline("13800138000", [False, ""], description="水管漏水，电话13900139000")
    phone, saves, heard, left = run(hotline)
    assert (phone, saves, left) == ("13800138000", [], [])
    assert heard[1] == "[callback.ask_other_number]"  # # keeps this phone's number


@pytest.mark.parametrize("room, asked", [("1101", False), ("1201", True)])
def test_a_resident_reporting_another_flat_may_leave_another_number(room, asked):
    """The caller ID is 3-2-1101's; the leak is at 3-2-1201 (upstairs): the caller is not that resident."""
    hotline = FakeHotline("13800138000", [""] if asked else [], room=room, resident=RESIDENT)
    phone, _, heard, left = run(hotline)
    assert (phone, left) == ("13800138000", [])
    assert heard == (["[callback.ask_other_number]"] if asked else [])
