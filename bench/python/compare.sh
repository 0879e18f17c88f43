#!/usr/bin/env bash
# acme's Python package side by side with dask distributed and ipyparallel on the same
# workloads, in one run on this machine, then one markdown table with acme's ratio to each.
#
#   bash bench/python/compare.sh [REPS] [PEERS_DIR]
#
# PEERS_DIR holds the peer scripts dask_bench.py and ipp_bench.py (with their common.py; default
# ../shared/bench/peers next to this repository). BUILD (default build/dev) gives acme-broker.
# Needs Debian's python3-distributed, python3-ipyparallel, python3-psutil for the peers.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-3}
PEERS=${2:-$(cd .. && pwd)/shared/bench/peers}
BUILD=${BUILD:-build/dev}
PY=/usr/bin/python3
OUT=${OUT:-/tmp/acme-py-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
JSON=$OUT/results.jsonl
: >"$JSON"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/clients/python ACME_BROKER_EXE=$PWD/$BUILD/broker/acme-broker
unset ACME_BROKER
echo "# $(date -Is) $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), acme $(git rev-parse --short HEAD 2>/dev/null)"
echo "## acme (Python client + Python workers)"
timeout 1500 $PY bench/python/acme_py_bench.py --reps "$REPS" --json-out "$JSON" 2>&1 | tee "$OUT/acme-py.log"
for peer in dask ipp; do
  if [[ -f $PEERS/${peer}_bench.py ]]; then
    echo "## $peer"
    timeout 2000 $PY "$PEERS/${peer}_bench.py" --reps "$REPS" --timeout 400 --only abcd --json-out "$JSON" 2>&1 \
      | tee "$OUT/$peer.log" | grep -E '^(RESULT|# rep [0-9]+: (rc|TIMEOUT))'
  else
    echo "# $peer skipped: no $PEERS/${peer}_bench.py"
  fi
done
echo "## (f) arrays as inputs: acme and dask"
timeout 1500 $PY bench/python/inputs_bench.py --reps "$REPS" --json-out "$JSON" 2>&1 | tee "$OUT/inputs.log"
$PY - "$JSON" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["system"], {})[r["key"]] = r
systems = [s for s in ("acme-py", "dask", "ipyparallel") if s in by]
keys = [("throughput_tps", "(a) 20,000 no-op tasks, 2 workers", "tasks/s", True),
        ("lat_p50_us", "(b) 300 sequential 1-task maps, p50", "us", False),
        ("lat_p99_us", "(b) same, p99", "us", False),
        ("efficiency", "(c) 200 x 10 ms sleep, efficiency", "", True),
        ("data_MBps", "(d) 200 x 1 MiB results into the client", "MB/s", True),
        ("data_h5_MBps", "(d) same, written to HDF5 by the workers", "MB/s", True),
        ("cold_first_s", "(e) cold start -> first result", "s", False),
        ("inputs_MBps", "(f) 200 x 1 MiB arrays as inputs, sums back", "MB/s", True)]
print("\n| workload | unit | " + " | ".join(systems) + " | acme vs " + ", ".join(systems[1:]) + " |")
print("|---|---|" + "---|" * len(systems) + "---|")
for key, label, unit, higher in keys:
    cells, ratios = [], []
    for s in systems:
        r = by[s].get(key)
        cells.append(f"**{r['median']:,.4g}** ({r['min']:,.4g}-{r['max']:,.4g})" if r else "-")
    a = by.get("acme-py", {}).get(key)
    for s in systems[1:]:
        r = by[s].get(key)
        if a and r and r["median"] and a["median"]:
            ratios.append(f"{(a['median'] / r['median']) if higher else (r['median'] / a['median']):.1f}x")
        else:
            ratios.append("-")
    print(f"| {label} | {unit} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")
print("\nmedian (min-max) over the reps; ratios: how many times better acme is (higher throughput,"
      " or lower time).")
PY
