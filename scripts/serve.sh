#!/usr/bin/env bash
# Set up (once) and run the service on its embedded defaults: web console on http://127.0.0.1:8080/,
# data in ~/.local/share/callcenter. Extra arguments go to `callcenter serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
install_project .
exec .venv/bin/callcenter serve "$@"
