"""「维修人员张工已接单，预计三十分钟内到达」 end to end: an emergency ticket whose caller is no longer on the
line is called out; 张工 (SIPp behind Kamailio) presses 1; our follow-up line phones the resident (SIPp),
who hears the sentence with 张工's name spoken from the prompt made when he was added. The audio the
resident's phone receives is checked, and the call record says what was told.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from callcenter.ivr.who_is_coming import make_name_prompt, name_audio, who_is_coming
from tests.support.e2e import db_url, one, prompts, time_limit  # noqa: F401 (fixtures)
from tests.support.hotline_caller import CallerScript
from tests.support.sip import kamailio, sipp  # noqa: F401 (fixtures)
from tests.test_callout_e2e import Site, site  # noqa: F401 (fixtures)

TEST_TIME_LIMIT = 90

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")


@needs_espeak
def test_the_engineer_accepts_and_the_resident_is_called_back_with_his_name(site: Site, prompts):  # noqa: F811
    accept = CallerScript()
    accept.keys(6.0, "1")  # into the alert: 接单
    zhang = site.phone("张工", script=accept, length=40)
    resident = site.phone("王阿姨", script=CallerScript(), length=30)  # answers and listens
    people = site.on_duty(zhang)
    assert make_name_prompt(site.settings.data_dir, "张工") is not None  # as importing him does
    # The resident reported by phone and hung up; their number is their phone's address at the PBX.
    ticket = site.emergency_ticket(phone=resident.contact)
    site.settings = replace(site.settings, followup=replace(site.settings.followup, line="out"))
    voice = site.start()
    site.start_callout(ticket, voice)

    site.wait_for("acceptance", lambda: site.callout_state(ticket) == "accepted")
    site.wait_for("the call back", lambda: any(r.called == resident.contact and r.outcome != "in_progress"
                                               for r in site.call_records()), timeout=40)
    record = one(r for r in site.call_records() if r.called == resident.contact)
    assert (record.direction, record.line, record.ticket_id, record.outcome) == ("outbound", "out", ticket, "completed")
    told = record.transcript
    assert (told["told"], told["engineer"], told["name_spoken"]) == ("who_is_coming", "张工", True)
    assert told["minutes"] in (25, 30)  # the emergency arrival limit (30 min) counted from the report

    name = name_audio(site.settings.data_dir, "张工")
    assert resident.heard(prompts["hotline.greeting"])
    assert resident.heard(name), "the resident did not hear the engineer's name"
    assert resident.heard(who_is_coming(prompts, name, told["minutes"])), "the sentence did not arrive whole"
    assert resident.run.wait(20) == 0, resident.run.report()
    assert people["张工"] == site.ticket(ticket).engineer_id
