#!/usr/bin/env bash
# The README's main command: installs what is missing, builds acme (release) and runs a real
# ParallelMap on local workers: acme-trials, the band power of every channel of 400 synthetic
# trials, one task per trial, on an embedded broker and one worker process per core, checked
# against a serial run. Extra arguments go to acme-trials (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
unset ACME_BROKER  # local workers, whatever the shell says
if (($# == 0)); then set -- --trials 400 --check; fi
echo "+ acme-trials $*"
exec build/release/examples/trials/acme-trials "$@"
