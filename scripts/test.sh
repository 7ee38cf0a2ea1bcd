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
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
