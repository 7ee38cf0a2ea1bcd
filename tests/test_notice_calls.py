"""The watch's two calls on the telephone side, without a telephone: what they say (from the
recorded prompts) and that a complaint's managers are rung once, through the call-out runner's
alert ring. Over real SIP: tests/test_eta_e2e.py (the apology) and tests/test_callout_e2e.py (the ring)."""

from dataclasses import replace
from datetime import timedelta

from callcenter.ivr.notice_calls import NoticeServices, complaint_message, ring_complaint, slip_message
from callcenter.ivr.prompts import Prompts
from core import complaints
from core.calls import CallLog
from core.notice_service import NoticeCallService
from core.store_watch import Complaint
from tests.test_complaints import MANAGER_PHONE, at, unhappy

PROMPTS = Prompts()


def test_the_apology_counts_the_minutes_in_chinese():
    assert PROMPTS.text("eta.late_prefix").endswith("维修人员预计晚到约")
    assert PROMPTS.text("eta.late_suffix") == "分钟，给您带来不便，敬请谅解。"
    twenty = PROMPTS.say("pieces.digit_2", "pieces.num_10")  # 二十
    assert slip_message(PROMPTS, 20) == PROMPTS["eta.late_prefix"] + twenty + PROMPTS["eta.late_suffix"]
    assert slip_message(PROMPTS, 15) == (PROMPTS["eta.late_prefix"] + PROMPTS.say("pieces.num_10", "pieces.digit_5")
                                         + PROMPTS["eta.late_suffix"])


class StandInRunner:
    """The call-out runner's alert ring, as a phone that answers."""

    def __init__(self):
        self.rings = []

    def ring_contacts(self, ticket_id, contacts, message):
        self.rings.append((ticket_id, contacts, message))
        return [(contact, True) for contact in contacts]


def test_a_complaint_nobody_acted_on_rings_the_managers_once(sessions, settings, engineer):
    settings = replace(settings, callout=replace(settings.callout, alert_contacts=(MANAGER_PHONE,)))
    ticket_id, _ = unhappy(sessions, settings, engineer)
    runner = StandInRunner()
    now = [at(24, 11, 3)]
    services = NoticeServices(settings, NoticeCallService(sessions, settings), PROMPTS, CallLog(sessions), lambda name: None, runner,
                              lambda: now[0])
    with sessions() as session:
        [complaint_id] = complaints.due_escalations(session, now[0], settings)
        expected = complaint_message(PROMPTS, session.get(Complaint, complaint_id).ticket)
    ring_complaint(complaint_id, services)
    now[0] += timedelta(minutes=1)
    ring_complaint(complaint_id, services)  # handed out again (a second node): nobody is rung twice
    assert runner.rings == [(ticket_id, (MANAGER_PHONE,), expected)]
    assert expected.startswith(PROMPTS["complaint.escalation"] + PROMPTS["callout.address_prefix"])
    assert expected.endswith(PROMPTS.address("3", "2", "1101"))
    with sessions() as session:
        complaint = session.get(Complaint, complaint_id)
        assert (complaint.escalation, complaint.escalation_result) == ("called", f"{MANAGER_PHONE}（已接听）")
