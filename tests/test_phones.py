"""Phone numbers: one way to write a number down, and the national number behind a caller ID."""

import pytest

from core.phones import PHONE_PATTERN, caller_number, national_number, normalise_phone


def test_a_number_is_stored_without_separators():
    assert normalise_phone(" 138-0013 (8000)（）") == "13800138000"
    assert normalise_phone("+86 138 0013 8000") == "+8613800138000"
    assert PHONE_PATTERN.match(normalise_phone("0755-1234 5678"))
    assert not PHONE_PATTERN.match(normalise_phone("12ab"))


@pytest.mark.parametrize(("raw", "national"), [
    ("+8613800138000", "13800138000"),
    ("008613800138000", "13800138000"),
    ("8613800138000", "13800138000"),
    ("+86 10 1234 5678", "01012345678"),  # Beijing landline: the trunk 0 comes back
    ("+86 (0)755 1234 5678", "075512345678"),
    ("13800138000", "13800138000"),
    ("1001", "1001"),  # an extension
    ("86123", "86123"),  # too short to carry a country code
    ("+12125551234", "+12125551234"),  # a foreign number stays as it is
])
def test_the_national_number(raw, national):
    assert national_number(raw) == national


@pytest.mark.parametrize(("caller", "number"), [
    ("sip:13800138000@pbx", "13800138000"),
    ('"王" <sip:+8613800138000@pbx.example>;tag=1', "13800138000"),
    ("<sip:008613912345678@10.0.0.1:5060>", "13912345678"),
    ("tel:0086-10-12345678", "01012345678"),
    ("sip:1001@pbx", "1001"),
    ("sip:anonymous@anonymous.invalid", ""),
    ("sip:sipp@127.0.0.1:5060", ""),  # not the digits of the host
    ("+86 138 0013 8000", "13800138000"),
    ("", ""),
])
def test_the_number_behind_a_caller_id(caller, number):
    assert caller_number(caller) == number
