#!/usr/bin/env bash
# The README's main command: installs what is missing, builds acme (release) and runs the main
# demo. Until the broker and workers land (issue #4) that is acme-simulate: a 12,500-task map on
# a simulated cluster, scheduled by acme's real scheduler, with a worker killed, one frozen and
# a poison task; it checks that every result arrives exactly once. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec build/release/examples/simulate/acme-simulate "$@"
