#!/usr/bin/env bash
# An MPI program per task, as hnn-core's MPIBackend runs a simulation: acme-map --cores 2 gives
# each task 2 cores (pinned to cores of its own: ACME_WORKER_PIN=yes), the exec builtin's map
# form runs `mpiexec -np $ACME_TASK_CORES acme_mpi_sim SEED OUTDIR`, and each task returns the
# path of its multi-MB result file and a checksum, not the data. Then every file is checked:
# it exists, has the expected size, and equals a serial run of its seed.
#
#   run.sh [ACME_MAP] [ACME_MPI_SIM] [MPIEXEC] [SEEDS]   # defaults: on PATH, 4 seeds
set -euo pipefail
acme_map=${1:-acme-map}
sim=${2:-acme_mpi_sim}
mpiexec=${3:-mpiexec}
seeds=${4:-4}
sim=$(realpath "$(command -v "$sim")") # the tasks run in the output folder
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
expected_bytes=$((8 << 19)) # 2^19 doubles

# One task per seed, each a JSON map for exec: the command, extra environment, the directory.
# Open MPI as root needs --allow-run-as-root; in containers its shared-memory single copy
# often fails, hence the vader setting. OMP_NUM_THREADS, ACME_TASK_CORES (and ACME_TASK_CPUS
# when pinned) come from the worker.
for seed in $(seq 1 "$seeds"); do
  printf '{"cmd": "%s --allow-run-as-root --oversubscribe --bind-to none -np $ACME_TASK_CORES %s %d %s && echo cpus=${ACME_TASK_CPUS:-unpinned}", "env": {"OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_btl": "self,vader"}, "cwd": "%s"}\n' \
    "$mpiexec" "$sim" "$seed" "$out" "$out"
done >"$out/tasks.jsonl"

ACME_WORKER_PIN=yes "$acme_map" --local 1 --cores 2 --timeout 100 exec <"$out/tasks.jsonl" \
  >"$out/results.jsonl"

# Each result line is exec's {"exit_code","stdout","stderr"}; stdout starts with
# "result PATH CHECKSUM BYTES ranks=N".
count=0
while read -r line; do
  count=$((count + 1))
  stdout=$(sed -E 's/.*"stdout":"([^"]*)".*/\1/' <<<"$line")
  read -r tag path checksum bytes ranks _ <<<"${stdout//\\n/ }"
  if [[ $tag != result || $ranks != ranks=2 ]]; then
    echo "mpi: task $count did not report a 2-rank result: $line" >&2
    exit 1
  fi
  if [[ ! -f $path ]]; then
    echo "mpi: task $count returned $path, which does not exist" >&2
    exit 1
  fi
  size=$(stat -c %s "$path")
  if ((size != expected_bytes || bytes != expected_bytes)); then
    echo "mpi: $path has $size bytes (reported $bytes), expected $expected_bytes" >&2
    exit 1
  fi
  verified=$("$sim" --verify "$count" "$path")
  if [[ $verified != "verified $path $checksum $expected_bytes" ]]; then
    echo "mpi: $path: checksum $checksum reported, verify says: $verified" >&2
    exit 1
  fi
  echo "mpi: seed $count: $path $checksum $size bytes ($(grep -o 'cpus=[^\\]*' <<<"$line"))"
done <"$out/results.jsonl"
if ((count != seeds)); then
  echo "mpi: $count results for $seeds seeds" >&2
  exit 1
fi
echo "mpi: $seeds results of 2-core MPI tasks verified"
