#!/usr/bin/env bash
# The README's main command: installs what is missing, builds acme (release) and runs a real
# ParallelMap on local workers: acme-trials, the band power of every channel of 400 synthetic
# trials, one task per trial, on an embedded broker and one worker process per core, checked
# against a serial run; then the same kind of map as an ACME user's Python script
# (examples/python/band_power.py: `from acme import ParallelMap`, Python workers, result files).
# Extra arguments go to acme-trials (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
unset ACME_BROKER  # local workers, whatever the shell says
if (($# == 0)); then set -- --trials 400 --check; fi
echo "+ acme-trials $*"
build/release/examples/trials/acme-trials "$@"
echo "+ python3 examples/python/band_power.py --trials 200 --check"
PYTHONPATH=$PWD/clients/python ACME_BROKER_EXE=$PWD/build/release/broker/acme-broker \
  /usr/bin/python3 examples/python/band_power.py --trials 200 --check
