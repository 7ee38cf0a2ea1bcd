"""A caller's words -> a draft repair ticket: address, category, urgency, appointment, phone, summary.

``triage(text, now, settings)`` is called on every partial and final recognizer result,
so it must be fast and must never fail on half a sentence. Numbers are read by
``core.numerals``; the sections of the package each read one thing:

- ``vocabulary``: the word lists, ``words.toml`` plus the site's ``triage.words_file``;
- ``emergency``: emergency words (what makes a ticket 紧急) and where they were said, read
  with the rules of ``emergency_rules``;
- ``category``: which trade should go;
- ``address``: building, unit, room, public area, and the phone number;
- ``appointment``: when the caller wants the visit, in the site's time zone;
- ``summary``: the fault in a few words.

Emergency words are searched in the original text with only whitespace removed, so
their offsets map straight back to the string the recognizer gave us; everything
else reads the normalised text (spaces between Chinese tokens dropped, numbers as digits).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from core.numerals import normalize_numbers
from core.settings import Settings, TriageSettings
from core.tickets import CATEGORY_NAMES, Urgency
from core.triage.address import Address, AddressReader, find_phone
from core.triage.appointment import Appointment, find_appointment
from core.triage.category import CategoryReader
from core.triage.emergency import EmergencyReader, EmergencyWord
from core.triage.emergency_rules import KINDS as EMERGENCY_KINDS
from core.triage.emergency_rules import LIFT_FAULT
from core.triage.summary import Summarizer
from core.triage.text import blank
from core.triage.vocabulary import Vocabulary, VocabularyError, load_vocabulary

__all__ = ["Address", "Appointment", "CATEGORY_NAMES", "Draft", "EMERGENCY_KINDS", "EmergencyWord", "Triage",
           "Vocabulary", "VocabularyError", "load_vocabulary", "triage"]

DEFAULT_TIMEZONE = next(f.default for f in fields(Settings) if f.name == "timezone")


@dataclass(frozen=True)
class Draft:
    text: str  # the normalised text everything but emergency offsets was read from
    address: Address
    category: str
    urgency: Urgency
    emergency_words: tuple[EmergencyWord, ...]
    appointment: Appointment | None
    phone: str | None
    summary: str

    @property
    def is_emergency(self) -> bool:
        return self.urgency == Urgency.EMERGENCY

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES[self.category]

    def to_dict(self) -> dict:
        return {
            "address": self.address.to_dict(),
            "category": self.category,
            "urgency": str(self.urgency),
            "emergency_words": [word.to_dict() for word in self.emergency_words],
            "appointment": self.appointment.to_dict() if self.appointment else None,
            "phone": self.phone,
            "summary": self.summary,
            "text": self.text,
        }


class Triage:
    """One site's reading of callers' words: its vocabulary, its time zone and its emergency policy."""

    def __init__(self, vocabulary: Vocabulary, zone: ZoneInfo, lift_fault_is_emergency: bool = True):
        self.vocabulary = vocabulary
        self.zone = zone
        self.lift_fault_is_emergency = lift_fault_is_emergency
        self.emergencies = EmergencyReader(vocabulary, off=frozenset() if lift_fault_is_emergency else {LIFT_FAULT})
        self.categories = CategoryReader(vocabulary)
        self.addresses = AddressReader(vocabulary)
        self.summaries = Summarizer(vocabulary, self.categories)

    @classmethod
    def for_settings(cls, settings: Settings) -> Triage:
        """The site's triage, built once per configuration (a bad ``triage.words_file`` raises VocabularyError)."""
        return _site_triage(settings.timezone, settings.triage)

    @classmethod
    def default(cls) -> Triage:
        """The packaged words, Asia/Shanghai, and the default policy."""
        return _site_triage(DEFAULT_TIMEZONE, TriageSettings())

    def read(self, text: str, now: datetime) -> Draft:
        """Read a (partial or final) transcript into draft ticket fields; ``now`` must be timezone-aware."""
        if now.tzinfo is None:
            raise ValueError("triage needs a timezone-aware now")
        now = now.astimezone(self.zone)
        normalized = normalize_numbers(text)
        emergencies = self.emergencies.find(text)
        phone, phone_span = find_phone(normalized)
        without_phone = blank(normalized, [phone_span] if phone_span else [])
        address, address_spans = self.addresses.find(without_phone)
        appointment, time_spans = find_appointment(without_phone, now)
        return Draft(
            text=normalized,
            address=address,
            category=self.categories.classify(normalized, emergencies),
            urgency=Urgency.EMERGENCY if emergencies else Urgency.NORMAL,
            emergency_words=tuple(emergencies),
            appointment=appointment,
            phone=phone,
            summary=self.summaries.summarize(normalized, phone_span, address_spans + time_spans),
        )


@lru_cache(maxsize=8)
def _site_triage(timezone: str, config: TriageSettings) -> Triage:
    site_file = Path(config.words_file).expanduser() if config.words_file else None
    return Triage(load_vocabulary(site_file), ZoneInfo(timezone), config.lift_fault_is_emergency)


def triage(text: str, now: datetime, settings: Settings | None = None) -> Draft:
    """Read a (partial or final) transcript into draft ticket fields, as the site's ``settings`` say
    (its time zone, word file and emergency policy; without settings the packaged defaults)."""
    site = Triage.for_settings(settings) if settings is not None else Triage.default()
    return site.read(text, now)
