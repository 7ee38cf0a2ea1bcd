"""「维修人员张师傅已接单，预计二十分钟内到达」: telling a caller who is coming and when.

Engineers' names cannot be recorded in a studio ahead of time, so each name is spoken by espeak-ng
(Mandarin) when the engineer is imported or added, and kept in the data directory as a WAV in the
line's format (8 kHz mono 16-bit, like ``audio/``): ``<data_dir>/prompts/engineers/<hash>.wav``. The
data directory is shared by the nodes, so one node's import serves them all. Without espeak-ng or
sox, or when synthesis fails, no file is made and the caller hears the same sentence without the
name (「维修人员已接单，预计…」); the log says why, once per name.

The sentence is put together at call time from the name and the recorded pieces
(``who_is_coming.prefix`` 维修人员, the name, ``who_is_coming.accepted`` 已接单，预计, the minutes,
``who_is_coming.minutes`` 分钟内到达).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from callcenter.ivr.lines import CallEnded, Line
from callcenter.ivr.media import PlayOutcome
from callcenter.ivr.outbound import dial
from callcenter.ivr.prompts import SAMPLE_RATE, Prompts
from core import log_context
from core.calls import CallLog
from core.settings import Settings
from core.ticket_call_service import Coming, TicketCallService

log = logging.getLogger("callcenter.ivr")

VOICE, SPEED = "cmn", "190"  # scripts/make_prompts.py speaks a little faster; a name is worth the time
SYNTH_SECONDS = 20  # espeak-ng says a name in well under a second
MAX_NAME_SECONDS = 4.0  # a name prompt longer than this is not a name: not used


def name_prompt_path(data_dir: Path, name: str) -> Path:
    """Where an engineer's name is kept: by a hash of the name (names are unique; no path tricks)."""
    digest = hashlib.sha256(name.strip().encode("utf-8")).hexdigest()[:20]
    return data_dir / "prompts" / "engineers" / f"{digest}.wav"


def make_name_prompt(data_dir: Path, name: str) -> Path | None:
    """Speak ``name`` into its WAV; the path, or None (and a log line saying why) when it cannot."""
    name = name.strip()
    if not name:
        return None
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        log.warning("name prompt for %s not made: %s not installed; callers hear the sentence without the name",
                    name, " and ".join(missing))
        return None
    target = name_prompt_path(data_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        raw, converted = Path(scratch) / "raw.wav", Path(scratch) / "name.wav"
        try:
            # "--" : a name is text to say, never an option, whatever it starts with
            subprocess.run(["espeak-ng", "-v", VOICE, "-s", SPEED, "-w", str(raw), "--", name], check=True,
                           capture_output=True, timeout=SYNTH_SECONDS)
            subprocess.run(["sox", "-D", "-v", "0.8", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                            "-e", "signed-integer", str(converted), "silence", "1", "0.02", "0.3%", "reverse",
                            "silence", "1", "0.02", "0.3%", "reverse", "pad", "0.03", "0.03"],
                           check=True, capture_output=True, timeout=SYNTH_SECONDS)
            read_name_prompt(converted)  # what is kept must be playable
        except (OSError, subprocess.SubprocessError, ValueError, wave.Error) as error:
            detail = getattr(error, "stderr", b"") or b""
            log.warning("name prompt for %s not made: %s %s; callers hear the sentence without the name",
                        name, error, detail.decode("utf-8", "replace").strip())
            return None
        os.replace(converted, target)  # atomic: another node reading it sees the old file or the new one
    log.info("name prompt for %s made: %s", name, target)
    return target


def make_name_prompts(data_dir: Path, names: list[str]) -> dict[str, bool]:
    """Each name's prompt made (True) or not; after an import or an engineer added."""
    return {name: make_name_prompt(data_dir, name) is not None for name in names}


def read_name_prompt(path: Path) -> bytes:
    with wave.open(str(path), "rb") as audio:
        if (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError("not 8 kHz mono 16-bit")
        frames = audio.readframes(audio.getnframes())
    if not frames or len(frames) > MAX_NAME_SECONDS * SAMPLE_RATE * 2:
        raise ValueError(f"{len(frames)} bytes is no name")
    return frames


def name_audio(data_dir: Path, name: str | None) -> bytes:
    """The engineer's spoken name, or b"" (the generic sentence) when there is none to play."""
    if not name:
        return b""
    path = name_prompt_path(data_dir, name)
    try:
        return read_name_prompt(path)
    except FileNotFoundError:
        return b""
    except (OSError, ValueError, wave.Error) as error:
        log.warning("name prompt %s for %s unusable (%s): the sentence without the name", path, name, error)
        return b""


def who_is_coming(prompts: Prompts, name_pcm: bytes, minutes: int) -> bytes:
    """「维修人员[张师傅]已接单，预计二十分钟内到达。」"""
    return (prompts["who_is_coming.prefix"] + name_pcm + prompts["who_is_coming.accepted"]
            + prompts.number(minutes, two_as_liang=False) + prompts["who_is_coming.minutes"])


# --- telling the caller ----------------------------------------------------------------------------


def sentence_for(coming: Coming, prompts: Prompts, settings: Settings) -> tuple[bytes, dict]:
    """The sentence for a ticket as it stands (its engineer, its arrival limit), and what it says."""
    spoken = name_audio(settings.data_dir, coming.engineer)
    said = {"engineer": coming.engineer, "name_spoken": bool(spoken), "minutes": coming.minutes}
    return who_is_coming(prompts, spoken, coming.minutes), said


@dataclass
class CallBack:
    """The caller is no longer on the line when the engineer accepts: phone them on ``followup.line``
    with 「维修人员张师傅已接单，预计二十分钟内到达」 (after the hotline's greeting), once; a call record
    keeps what was said. Runs on a thread of its own (``start``)."""

    settings: Settings
    tickets: TicketCallService
    prompts: Prompts
    calls: CallLog
    find_line: Callable[[str], Line | None]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ring_seconds: float = 30.0

    def start(self, ticket_id: int) -> None:
        threading.Thread(target=self.tell, args=(ticket_id,), name=f"who is coming {ticket_id}", daemon=True).start()

    @log_context.scoped
    def tell(self, ticket_id: int) -> str:
        """Dial, say it, hang up; the call's outcome (no line or no phone: "failed")."""
        try:
            phone = self.tickets.contact(ticket_id).phone
            line = self.find_line(self.settings.followup.line) if self.settings.followup.line else None
            if line is None or not phone:
                log.info("ticket %s: nobody called back with who is coming (no followup.line here, or no phone)",
                         ticket_id)
                return "failed"
            return self._call(line, phone, ticket_id)
        except Exception:
            log.exception("ticket %s: the who-is-coming call back failed", ticket_id)
            return "failed"

    def _call(self, line: Line, phone: str, ticket_id: int) -> str:
        dialled = dial(line, phone, self.calls, self.clock, self.ring_seconds, ticket_id, "who-is-coming call")
        call, record_id = dialled.call, dialled.record_id
        if call is None:
            return dialled.outcome or "failed"
        said: dict = {}
        outcome = "error"
        try:
            coming = self.tickets.coming(ticket_id, self.clock().astimezone(self.settings.tz))
            sentence, said = sentence_for(coming, self.prompts, self.settings)
            if call.play(self.prompts["hotline.greeting"] + sentence) == PlayOutcome.HUNG_UP:
                raise CallEnded("hung up")
            outcome = "completed"
        except CallEnded:
            outcome = "caller_hung_up"
        finally:
            call.hangup()
            self.calls.update(record_id, transcript={"utterances": [], "told": "who_is_coming", **said})
            self.calls.close(record_id, outcome, self.clock())
            log.info("call %s: told who is coming (%s): %s", call.call_id, outcome, said)
        return outcome
