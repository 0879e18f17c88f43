#!/usr/bin/env bash
# Start-up time of a launch, next to dask's: seconds from the command to 2 workers online.
#   bash bench/launch_startup.sh [BUILD_DIR] [REPS]      (BUILD_DIR default build/dev, REPS 5)
# acme: `acme-launch BACKEND --n 2 --interface lo` returns when both workers reached the broker
# (local always; slurm and sge when their commands are here, e.g. after scripts/ci/*-up.sh).
# dask: LocalCluster(n_workers=2, threads_per_worker=1, processes=True) + Client.wait_for_workers
# (Debian's /usr/bin/python3 with python3-distributed; skipped when it is missing).
# Prints one median (min-max) per row and the ratio dask / acme-local.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/dev}
reps=${2:-5}
launch=$(realpath "$build/launchers/acme-launch")
export ACME_HOME
ACME_HOME=$(mktemp -d)
trap '"$launch" stop --all >/dev/null 2>&1 || true; rm -rf "$ACME_HOME"' EXIT
export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine} SGE_CELL=${SGE_CELL:-default}

median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f (%.3f-%.3f)", m, a[1], a[NR]}'; }
now() { date +%s.%N; }

time_acme() {  # backend -> one line per rep: seconds to 2 workers online
  local backend=$1
  for ((i = 0; i < reps; i++)); do
    local t0 t1
    t0=$(now)
    "$launch" "$backend" --n 2 --interface lo --wait 60 --id "bench-$backend-$i" >/dev/null 2>"$ACME_HOME/err" ||
      { cat "$ACME_HOME/err" >&2; return 1; }
    t1=$(now)
    "$launch" stop --id "bench-$backend-$i" >/dev/null 2>&1
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
  done
}

time_dask() {
  # A file with a __main__ guard: dask's worker processes re-import the main module.
  cat >"$ACME_HOME/dask_startup.py" <<'PY'
import time

if __name__ == "__main__":
    t0 = time.perf_counter()
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    client.wait_for_workers(2)
    print(f"{time.perf_counter() - t0:.3f}")
    client.close()
    cluster.close()
PY
  for ((i = 0; i < reps; i++)); do
    (cd "$ACME_HOME" && timeout 120 /usr/bin/python3 dask_startup.py 2>"$ACME_HOME/dask_err" | tail -1) ||
      { tail -5 "$ACME_HOME/dask_err" >&2; return 1; }
  done
}

printf '| what (2 workers online) | seconds, median (min-max) of %d |\n|---|---|\n' "$reps"
local_median=$(time_acme local | tee "$ACME_HOME/local" | median)
printf '| acme-launch local | %s |\n' "$local_median"
command -v sbatch >/dev/null && printf '| acme-launch slurm | %s |\n' "$(time_acme slurm | median)"
[[ -x /usr/bin/qsub && -d $SGE_ROOT ]] && printf '| acme-launch sge | %s |\n' "$(time_acme sge | median)"
if /usr/bin/python3 -c 'import distributed' 2>/dev/null; then
  dask=$(time_dask | tee "$ACME_HOME/dask" | median)
  printf '| dask LocalCluster | %s |\n' "$dask"
  echo
  awk -v d="${dask%% *}" -v a="${local_median%% *}" 'BEGIN { printf "dask / acme-launch local (medians): %.1fx\n", d / a }'
fi
