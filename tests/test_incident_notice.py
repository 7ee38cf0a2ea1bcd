"""The hotline's incident announcement and what counts as 「知道了」 (callcenter/ivr/flows/incident_notice.py)."""

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callcenter.ivr.flows.incident_notice import acknowledges, announcement
from callcenter.ivr.prompts import Prompts
from core.incident_service import IncidentFacts
from core.incidents import ACTIONS, KINDS, Place

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def prompts():
    return Prompts()


@pytest.mark.parametrize("text, acknowledged", [
    ("知道了", True), ("好的，知道了，谢谢", True), ("嗯", True), ("好的 谢谢", True),
    ("是不是漏水了", False), ("我家马桶堵了", False), ("知道了，不过我家厨房水管也漏了", False), ("", False),
])
def test_only_acknowledgements_acknowledge(text, acknowledged):
    assert acknowledges(text) is acknowledged


def test_every_kind_and_action_can_be_spoken(prompts):
    for kind in KINDS:
        assert prompts[f"incident.kind_{kind}"] and prompts[f"incident.restored_{kind}"]
    for action in ACTIONS:
        assert prompts[f"incident.action_{action}"]


def test_the_expected_end_is_said_without_today_but_with_another_day(prompts):
    incident = IncidentFacts(1, kind="water", action="repairing", expected_end=NOW.replace(hour=15))
    today = announcement(prompts, incident, Place("3"), NOW, SHANGHAI)
    assert prompts.when(NOW.replace(hour=15), NOW, say_today=False) in today
    assert prompts["pieces.today"] not in today
    assert today.startswith(prompts.address("3") + prompts["incident.now"] + prompts["incident.kind_water"])
    incident = replace(incident, expected_end=NOW.replace(hour=15) + timedelta(days=1))
    assert prompts["pieces.tomorrow"] in announcement(prompts, incident, Place("3"), NOW, SHANGHAI)
    incident = replace(incident, expected_end=None)
    assert prompts["incident.expected_prefix"] not in announcement(prompts, incident, Place("3"), NOW, SHANGHAI)
