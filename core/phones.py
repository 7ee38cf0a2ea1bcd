"""Phone numbers: how one is written down, and which number a caller ID stands for.

One rule for every place that stores or compares a number (tickets, residents, engineers, the
roster, the follow-up calls), so that 138-0013-8000 typed at the desk and +86 138 0013 8000 from
the carrier find the same resident.
"""

from __future__ import annotations

import re

PHONE_PATTERN = re.compile(r"^\+?\d{3,20}$")  # after normalise_phone
_SEPARATORS = re.compile(r"[\s\-()（）]")
# China's country code (+86, or 0086 with the international prefix) before a national number: a
# mobile (1[3-9] and 9 digits) or a landline's area code without its trunk 0 (10, 21, 755 ...) and
# the subscriber number, 9 to 11 digits in all.
_COUNTRY_CODE = re.compile(r"(?:\+|00)?86(?=0?[1-9]\d{8,10}$)")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_USER_DIGITS = re.compile(r"(\+?[\d\-]{3,30})@")  # sip:+8613800138000@pbx
_ANY_DIGITS = re.compile(r"\+?\d[\d\- ]{2,29}")  # tel:0086-10-12345678, a bare number


def normalise_phone(raw: str) -> str:
    """The number as it is stored: without spaces, dashes and brackets (a leading + stays)."""
    return _SEPARATORS.sub("", raw or "")


def national_number(raw: str) -> str:
    """The number as dialled inside China: with +86/0086/86 dropped, and a landline given its
    trunk 0 back, so a caller ID matches the number the resident gave the desk. Anything that is
    not a Chinese number in international form is returned normalised, unchanged."""
    number = normalise_phone(raw)
    match = _COUNTRY_CODE.match(number)
    if not match:
        return number
    national = number[match.end():]
    return national if _MOBILE.fullmatch(national) or national.startswith("0") else "0" + national


def caller_number(caller: str) -> str:
    """The national number of a caller ID (``sip:13800138000@pbx``, ``"王" <sip:+8613800138000@x>``,
    ``tel:0086-10-12345678``); '' if it carries no number (anonymous, a name, ``sip:sipp@127.0.0.1``)."""
    caller = caller or ""
    if "@" in caller:  # a SIP address: the number is its user part (not the digits of its host)
        match = _USER_DIGITS.search(caller)
        found = match.group(1) if match else ""
    else:
        anywhere = _ANY_DIGITS.search(caller)
        found = anywhere.group(0) if anywhere else ""
    number = national_number(found).lstrip("+")
    return number if re.fullmatch(r"\d{3,20}", number) else ""
