"""Benchmark: reading a description into a draft ticket, by its length (the form allows 2000
characters), typical text and the slowest kind found (keywords between blanks).

Prints the median time per read and, of that, the category reader's keyword hits.

    .venv/bin/python bench/triage.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.triage import Triage  # noqa: E402

TYPICAL = "我家3栋2单元1101室厨房水管漏水了，下面的柜子都湿了，灯也不亮，明天上午来修一下，电话13800138000。"
KEYWORDS = " 水 管"  # the slowest text of its length found for the whole reading (bench/desk.py)


def median_ms(work, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    site = Triage.default()
    now = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    print(f"{'text':34} {'chars':>6} {'read ms':>9} {'hits ms':>9}")
    for name, unit in (("typical description, repeated", TYPICAL), ("keywords between blanks", KEYWORDS)):
        for length in (50, 500, 2000):
            text = (unit * (length // len(unit) + 1))[:length]
            read = median_ms(lambda text=text: site.read(text, now), args.repeat)
            hits = median_ms(lambda text=text: site.categories.hits(text), args.repeat)
            print(f"{name:34} {length:6} {read:9.2f} {hits:9.2f}")


if __name__ == "__main__":
    main()
