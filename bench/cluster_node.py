"""`callcenter serve` with the scripted stand-in recogniser, for bench/cluster.py --engine stand-in.

The stand-in (tests/support/hotline_caller.py) starts when the caller starts speaking and gives
the partials and the final of BENCH_STAND_IN_SCRIPT (JSON) timed from that onset: the calls run
as with a recogniser that costs nothing, so what is measured is everything else.

    python bench/cluster_node.py --config site.toml serve
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter import app, cli  # noqa: E402
from tests.support.hotline_caller import OnsetScripted  # noqa: E402

SCRIPT = [tuple(line) for line in json.loads(os.environ["BENCH_STAND_IN_SCRIPT"])]
app.recognizer_factory = lambda model, settings: (lambda grammar: OnsetScripted(lambda: SCRIPT))

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
