"""Prompt ids -> audio from ``audio/``; digits, numbers, addresses and times from recorded pieces.

All prompts are loaded (and checked) once at start: a missing or malformed file stops the
service with its name, rather than a caller hearing silence at 2 a.m.
"""

from __future__ import annotations

import tomllib
import wave
from datetime import datetime
from pathlib import Path

AUDIO_DIR = Path(__file__).resolve().parents[2] / "audio"
SAMPLE_RATE = 8000
AREA_PIECES = {"车库": "garage", "地下车库": "garage", "大门": "gate", "小区门口": "gate", "大堂": "lobby",
               "楼道": "corridor", "电梯": "elevator", "楼顶": "roof", "天台": "roof", "花园": "garden"}


class PromptError(RuntimeError):
    """Prompts that cannot be used; the message names every missing or malformed file."""


class Prompts:
    def __init__(self, directory: Path = AUDIO_DIR):
        self.directory = directory
        try:
            listing = tomllib.loads((directory / "prompts.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise PromptError(f"cannot read the prompt list {directory / 'prompts.toml'}: {error}") from None
        self.texts = {f"{section}.{key}": text for section, items in listing.items() for key, text in items.items()}
        self._audio: dict[str, bytes] = {}
        problems = []
        for prompt_id in self.texts:
            try:
                self._audio[prompt_id] = _read_prompt(directory / f"{prompt_id}.wav")
            except (OSError, wave.Error, ValueError) as error:
                problems.append(f"{prompt_id}.wav ({error})")
        if problems:
            raise PromptError("missing or unusable prompts in " + str(directory) + ": " + ", ".join(problems))

    def __getitem__(self, prompt_id: str) -> bytes:
        return self._audio[prompt_id]

    def say(self, *prompt_ids: str) -> bytes:
        return b"".join(self._audio[p] for p in prompt_ids)

    def text(self, prompt_id: str) -> str:
        return self.texts[prompt_id]

    # -- composed from pieces --------------------------------------------------------

    def digits(self, text: str) -> bytes:
        """Digit by digit, 1 as 幺, as numbers are read over the phone: 二零二六幺幺二二零零七."""
        return self.say(*(f"pieces.digit_{c}" for c in text if c.isdigit()))

    def number(self, value: int, *, two_as_liang: bool = False) -> bytes:
        """0..9999 the way it is counted: 十一, 一百零二, 两点 (with two_as_liang)."""
        return self.say(*number_pieces(value, two_as_liang))

    def address(self, building: str = "", unit: str = "", room: str = "", area: str = "") -> bytes:
        """三号楼二单元幺幺零幺 / A座 / 五号楼电梯."""
        parts: list[bytes] = []
        if building.isdigit():
            parts += [self.number(int(building)), self["pieces.building"]]
        elif building:
            parts += [self.say(*(f"pieces.letter_{c}" for c in building.upper() if f"pieces.letter_{c}" in self._audio)),
                      self["pieces.block"]]
        if unit.isdigit():
            parts += [self.number(int(unit)), self["pieces.unit"]]
        if room:
            parts.append(self.digits(room))
        if area:
            parts.append(self[f"pieces.area_{AREA_PIECES.get(area, 'other')}"])
        return b"".join(parts)

    def day(self, moment: datetime, now: datetime) -> bytes:
        """昨天 / 今天 / 明天 / 十一月二十四日 (moment and now in local time)."""
        days = (moment.date() - now.date()).days
        relative = {-1: "pieces.yesterday", 0: "pieces.today", 1: "pieces.tomorrow"}.get(days)
        if relative:
            return self[relative]
        return self.number(moment.month) + self["pieces.month"] + self.number(moment.day) + self["pieces.day"]

    def when(self, moment: datetime, now: datetime, say_today: bool = True) -> bytes:
        """今天下午三点半 / 明天上午十点 / 十一月二十四日上午九点 (moment and now in local time);
        without ``say_today`` today's times are just 下午三点半."""
        parts = [self.day(moment, now) if say_today or moment.date() != now.date() else b""]
        hour = moment.hour
        period = "morning" if hour < 12 else ("afternoon" if hour < 18 else "evening")
        spoken_hour = hour if hour <= 12 else hour - 12
        parts += [self[f"pieces.{period}"], self.number(spoken_hour, two_as_liang=True), self["pieces.hour"]]
        if moment.minute == 30:
            parts.append(self["pieces.half"])
        elif moment.minute:
            parts += [self.number(moment.minute), self["pieces.minute"]]
        return b"".join(parts)


def number_pieces(value: int, two_as_liang: bool = False) -> list[str]:
    """The piece ids that count ``value`` in Chinese (0..9999)."""
    if not 0 <= value <= 9999:
        raise ValueError(f"cannot count {value} from pieces")
    if value == 0:
        return ["pieces.digit_0"]

    def digit(d: int) -> str:
        if d == 1:
            return "pieces.num_1"
        if d == 2 and two_as_liang:
            return "pieces.num_2"
        return f"pieces.digit_{d}"

    if 10 <= value < 20:  # 十, 十一: the leading 一 is not said
        return ["pieces.num_10"] + ([digit(value % 10)] if value % 10 else [])
    pieces: list[str] = []
    zero_pending = False
    for unit, piece in ((1000, "pieces.num_1000"), (100, "pieces.num_100"), (10, "pieces.num_10"), (1, None)):
        d = value // unit % 10
        if d == 0:
            zero_pending = bool(pieces)
            continue
        if zero_pending:
            pieces.append("pieces.digit_0")
            zero_pending = False
        pieces.append(digit(d) if not (d == 2 and unit >= 100 and two_as_liang) else "pieces.num_2")
        if piece:
            pieces.append(piece)
    return pieces


def _read_prompt(path: Path) -> bytes:
    with wave.open(str(path), "rb") as audio:
        if (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError("not 8 kHz mono 16-bit")
        frames = audio.readframes(audio.getnframes())
    if not frames:
        raise ValueError("empty")
    return frames
