"""Who can be rung (core/contacts.py): one rule, checked where engineers, the roster and the
settings are loaded, so that a typo is refused with its line number instead of failing an
emergency call-out at night."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core import directory, roster_store
from core.contacts import ContactError, check_contact, is_valid_contact
from core.roster import on_duty
from core.settings import SettingsError, load_settings
from core.store import Engineer


@pytest.mark.parametrize("contact, stored", [
    ("13800138000", "13800138000"), ("138-0013 8000", "13800138000"), ("+86 138 0013 8000", "+8613800138000"),
    ("8001", "8001"), ("sip:8001@pbx.example", "sip:8001@pbx.example"), ("sip:wang@192.0.2.10:5070", "sip:wang@192.0.2.10:5070"),
    ("sips:desk@[2001:db8::1]:5061;transport=tls", "sips:desk@[2001:db8::1]:5061;transport=tls"),
    ("sip:pbx.example", "sip:pbx.example"), ("SIP:uas-4@127.0.0.1:5060", "SIP:uas-4@127.0.0.1:5060"),
])
def test_numbers_and_sip_addresses_that_can_be_rung(contact, stored):
    assert check_contact(contact) == stored and is_valid_contact(contact)


@pytest.mark.parametrize("contact", ["", "12", "abc", "138001380001380013800", "sip:", "sip:@", "sip:8001@",
                                     "sip:8001@pbx example", "sip:8001@pbx.example:99999", "sip:8001@pbx.example:0",
                                     "sip:8001@[::1", "sip:8001@[zz::1]", "sip:<8001>@pbx", "sip:8001@-pbx.example",
                                     'sip:8001@pbx.example;x="y"', "uas-40000", "sip:a@b\r\nX-Injected: 1"])
def test_anything_else_is_refused_with_a_reason(contact):
    with pytest.raises(ContactError):
        check_contact(contact)
    assert not is_valid_contact(contact)


def test_settings_with_a_contact_that_cannot_be_rung_are_refused():
    for key, value in (("CALLCENTER_CALLOUT_LAST_RESORT", "sip:control@"),
                       ("CALLCENTER_CALLOUT_ALERT_CONTACTS", "13800138000,manager"),
                       ("CALLCENTER_HOTLINE_DESK_EXTENSION", "sip:desk@pbx.example:70000")):
        with pytest.raises(SettingsError, match=key.split("_", 1)[1].lower().replace("_", ".", 1)):
            load_settings(environ={key: value})
    ok = load_settings(environ={"CALLCENTER_CALLOUT_ALERT_CONTACTS": "13800138000,sip:boss@pbx.example",
                                "CALLCENTER_HOTLINE_DESK_EXTENSION": "8000"})
    assert ok.callout.alert_contacts == ("13800138000", "sip:boss@pbx.example")


def test_an_engineer_file_with_a_bad_contact_is_refused_whole(sessions, tmp_path):
    path = tmp_path / "engineers.csv"
    path.write_text("name,phone,skills\n张工,138-0000-0001,水电\n李工,sip:li@pbx example,电梯\n", encoding="utf-8")
    with pytest.raises(directory.DirectoryError, match="第 3 行: SIP 地址无效"):
        with sessions() as session, session.begin():
            directory.import_engineers(session, directory.read_csv(path, directory.ENGINEER_COLUMNS))
    path.write_text("name,phone,skills\n张工,138-0000-0001,水电\n李工,sip:li@pbx.example,电梯\n", encoding="utf-8")
    with sessions() as session, session.begin():
        directory.import_engineers(session, directory.read_csv(path, directory.ENGINEER_COLUMNS))
    with sessions() as session:
        assert {(e.name, e.phone, e.sip_uri) for e in session.scalars(select(Engineer))} == {
            ("张工", "13800000001", ""), ("李工", "", "sip:li@pbx.example")}


def test_the_roster_passes_over_a_stored_contact_that_cannot_be_rung(sessions, settings):
    """A row written before the rule (or by hand) does not stall a call-out: that link is skipped."""
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", sip_uri="sip:zhang@"), Engineer(name="李工", phone="13800000002")])
        session.flush()
        roster_store.replace_shifts(session, [{"name": "全天", "weekdays": "1-7", "start": "00:00", "end": "00:00",
                                               "skill": "", "chain": "张工>李工"}])
    with sessions() as session:
        duty = on_duty(roster_store.load_roster(session, settings), datetime.now(UTC))
    assert [(link.name, link.contact) for link in duty.chain] == [("李工", "13800000002")]
