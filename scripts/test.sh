#!/usr/bin/env bash
# Install everything the tests need (Debian packages, the virtual environment, the project with
# its test extra) and run the whole suite: SQLite and PostgreSQL, a real browser, real SIP peers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
install_debian_packages postgresql chromium chromium-driver fonts-wqy-microhei espeak-ng sox kamailio sip-tester baresip systemd
ensure_venv
install_project ".[test]"
export CALLCENTER_REQUIRE_POSTGRES=1 CALLCENTER_REQUIRE_BROWSER=1 CALLCENTER_REQUIRE_SIP=1
# Most tests wait on real-time audio and peers (the cores are two-thirds idle with three workers),
# so four workers share the two cores, one file per worker so that a file's fixtures stay together,
# in collection order (tests/conftest.py puts the longest files first; xdist would otherwise start
# the files with the most tests first, and the six-minute call last). The tests marked `serial`
# measure time or failover and run afterwards with the machine to themselves. Exit code 5 is
# "nothing selected" (a file given as an argument may have no test of one kind).
run_pytest() {
  local status=0
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
  [[ $status -eq 0 || $status -eq 5 ]] || exit $status
}
# Lint, import order and types first (configured in pyproject.toml): CI enforces them.
.venv/bin/ruff check .
.venv/bin/mypy
run_pytest -n 4 --dist loadfile --no-loadscope-reorder -m "not serial" "$@"
run_pytest -m serial "$@"
