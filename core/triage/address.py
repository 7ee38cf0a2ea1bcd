"""Where the repair is (building, unit, room, public area) and the caller's phone number."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.triage.text import Span
from core.triage.vocabulary import Vocabulary


@dataclass(frozen=True)
class Address:
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    area: str | None = None

    def to_dict(self) -> dict:
        return {"building": self.building, "unit": self.unit, "room": self.room, "area": self.area}


BUILDING = re.compile(r"(?<![\dA-Za-z])第?(\d{1,3}|[A-Za-z])(?:号楼|栋|幢|座|号院)"
                      r"|(?<![\d月])(\d{1,3})号(?=\d|单元|楼)")
DASHED_ADDRESS = re.compile(r"(?<!\d)(\d{1,3})-(\d{1,2})-(\d{3,4})(?!\d)")
UNIT = re.compile(r"(?<!\d)(\d{1,2})单元")
_NOT_A_ROOM_AFTER = r"(?![\d点:：年元块米分月日岁度个平%\-])"
# Most specific first: 11楼01 and 12楼3号 are read as floor + door; then 602室; then a
# number right after 单元/栋; then any lone 3-4 digit number.
ROOM_PATTERNS = (
    (re.compile(r"(?<![\d号])(\d{1,2})[楼层]的?(\d{2})(?:室|号|房|户)?(?![\d点:：])"), "floor_door"),
    (re.compile(r"(?<![\d号])(\d{1,2})[楼层]的?(\d)(?:室|号|房|户)"), "floor_door"),
    (re.compile(r"(?<![\d\-])(\d{3,4})(?:室|房|号房|户|号(?!楼))"), "room"),
    (re.compile(r"(?:单元|栋|幢|座|号楼|号)的?(\d{3,4})" + _NOT_A_ROOM_AFTER), "room"),
    (re.compile(r"(?<![\d\-.:：])(\d{3,4})(?![号栋幢座单元楼])" + _NOT_A_ROOM_AFTER), "room"),
)
PHONE = re.compile(r"(?<!\d)1[3-9](?:[\s\-，,、]?\d){9}(?!\d)")  # 138 1234 5678, 幺八六，幺二三四，…


def find_phone(normalized: str) -> tuple[str | None, Span | None]:
    match = PHONE.search(normalized)
    if not match:
        return None, None
    return re.sub(r"\D", "", match.group()), match.span()


class AddressReader:
    """Reads addresses; the public areas come from the vocabulary's ``[places] public_areas``."""

    def __init__(self, vocabulary: Vocabulary):
        self.public_areas = vocabulary.words("places", "public_areas")

    def find(self, text: str) -> tuple[Address, list[Span]]:
        """The address in ``text`` and the spans it was read from (the summary leaves them out)."""
        spans: list[Span] = []
        dashed = DASHED_ADDRESS.search(text)
        if dashed:
            spans.append(dashed.span())
            building, unit, room = dashed.groups()
        else:
            building = _first_group(BUILDING, text, spans)
            unit = _first_group(UNIT, text, spans)
            room = _find_room(text, spans)
        if building and building.isalpha():
            building = building.upper()
        return Address(building, unit, room, self._find_area(text)), spans

    def _find_area(self, text: str) -> str | None:
        """The public area named first; the longer name when two start together."""
        found = [(text.find(area), -len(area), area) for area in self.public_areas if area in text]
        return min(found)[2] if found else None


def _first_group(pattern: re.Pattern, text: str, spans: list[Span]) -> str | None:
    match = pattern.search(text)
    if not match:
        return None
    spans.append(match.span())
    return next(group for group in match.groups() if group)


def _find_room(text: str, spans: list[Span]) -> str | None:
    for pattern, shape in ROOM_PATTERNS:
        match = pattern.search(text)
        if match:
            spans.append(match.span())
            if shape == "floor_door":
                return match.group(1) + match.group(2).zfill(2)
            return match.group(1)
    return None
