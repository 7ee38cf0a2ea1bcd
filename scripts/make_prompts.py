#!/usr/bin/env python3
"""Regenerate audio/<id>.wav from audio/prompts.toml with espeak-ng (cmn) and sox.

Reproducible: the same espeak-ng and sox versions give the same files. Output is what a phone
line carries: 8 kHz mono 16-bit WAV, leading and trailing silence trimmed so pieces join tightly.

    python3 scripts/make_prompts.py [--only ID ...]
"""

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

AUDIO = Path(__file__).resolve().parents[1] / "audio"
VOICE, SPEED = "cmn", "210"


def synthesise(text: str, target: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", SPEED, "-w", raw.name, text], check=True)
        subprocess.run(["sox", "-D", "-v", "0.8", raw.name, "-r", "8000", "-c", "1", "-b", "16", str(target),
                        "silence", "1", "0.02", "0.3%", "reverse", "silence", "1", "0.02", "0.3%", "reverse",
                        "pad", "0.03", "0.03"], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="prompt ids to regenerate (default: all)")
    args = parser.parse_args()
    prompts = tomllib.loads((AUDIO / "prompts.toml").read_text(encoding="utf-8"))
    for section, texts in prompts.items():
        for prompt_id, text in texts.items():
            name = f"{section}.{prompt_id}"
            if args.only and name not in args.only:
                continue
            synthesise(text, AUDIO / f"{name}.wav")
            print(name, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
