#!/usr/bin/env bash
# Every gate CI runs, in one command (HyperQueue's scripts/check.sh): formatting, the layering
# rule of core/, a real single-node SLURM and SGE on localhost for the cluster tests
# (scripts/ci/*-up.sh; stopped again at the end), the -Werror build with all tests, the
# ASan+UBSan unit tests, clang-tidy and bounded fuzz runs of the decoders and of the broker.
# Installs what it needs first. Skip words for ACME_CHECK_SKIP: clusters asan tidy fuzz.
#   bash scripts/check.sh
#   ACME_CHECK_SKIP="asan fuzz tidy" bash scripts/check.sh   # a quicker local run
#   ACME_CHECK_SKIP=clusters bash scripts/check.sh           # no SLURM/SGE: cluster tests skip
#   ACME_KEEP_CLUSTERS=1 bash scripts/check.sh               # leave SLURM and SGE running after
#   ACME_FUZZ_SECONDS=300 bash scripts/check.sh              # a longer fuzz run (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
start=$SECONDS
stage() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - start)); }
skipped() { [[ " ${ACME_CHECK_SKIP:-} " == *" $1 "* ]] && echo "skipped ($1 in ACME_CHECK_SKIP)"; }

# On every exit, success or failure: drop the fuzz work directory and stop the batch systems
# this run started (unless ACME_KEEP_CLUSTERS=1).
work=""
clusters_started=0
stop_clusters() {
  if ((clusters_started)) && [[ ${ACME_KEEP_CLUSTERS:-0} != 1 ]]; then
    printf '\n== stopping SLURM and SGE (ACME_KEEP_CLUSTERS=1 leaves them up)\n'
    bash scripts/ci/sge-down.sh || true
    bash scripts/ci/slurm-down.sh || true
  fi
  clusters_started=0
}
cleanup() {
  [[ -z $work ]] || rm -rf "$work"
  stop_clusters
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stage "dependencies"
bash scripts/install-deps.sh

stage "format (clang-format-14)"
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp')
clang-format-14 --dry-run -Werror "${sources[@]}"
echo "${#sources[@]} files clean"

stage "architecture: core/ does no I/O"
# STYLE.md: core/ has no sockets, threads, files, clock reads or logging.
if grep -rnE '#include <(zmq\.hpp|zmq\.h|thread|fstream|iostream|spdlog/[a-z_/]+\.h)>|steady_clock::now|system_clock::now' core/; then
  echo "core/ must stay pure: the lines above break the rule" >&2
  exit 1
fi
echo "ok"

stage "batch systems (SLURM, SGE on localhost)"
# Real schedulers for the acme-launch tests; with ACME_REQUIRE_CLUSTERS=1 those tests fail
# instead of skipping when a scheduler is missing.
if ! skipped clusters; then
  clusters_started=1   # set first: a half-started cluster is stopped too
  bash scripts/ci/slurm-up.sh
  bash scripts/ci/sge-up.sh
  export ACME_REQUIRE_CLUSTERS=1
fi

stage "build with -Werror and run every test (cmake --workflow --preset ci)"
cmake --workflow --preset ci
stop_clusters  # only the tests above use them: the later stages get the whole machine

stage "unit tests under ASan+UBSan (cmake --workflow --preset ci-asan)"
skipped asan || cmake --workflow --preset ci-asan

stage "clang-tidy (core)"
if ! skipped tidy; then
  mapfile -t tidy_sources < <(git ls-files 'core/src/*.cpp' | grep -v '_test\.cpp$')
  clang-tidy-14 --quiet -p build/dev "${tidy_sources[@]}"
  echo "${#tidy_sources[@]} files clean"
fi

stage "fuzz the decoders and the broker, ${ACME_FUZZ_SECONDS:-60} s each (clang libFuzzer)"
if ! skipped fuzz; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz
  work=$(mktemp -d)
  for target in decode:corpus broker:corpus-broker; do
    name=${target%%:*}
    mkdir "$work/$name"
    cp "tests/fuzz/${target#*:}"/* "$work/$name/"
    echo "-- acme_${name}_fuzz"
    build/fuzz/tests/fuzz/acme_${name}_fuzz -max_total_time="${ACME_FUZZ_SECONDS:-60}" -timeout=20 \
      -rss_limit_mb=4096 -print_final_stats=1 "$work/$name" 2>&1 |
      grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|INFO: Seed|==[0-9]+==ERROR|broker_fuzz:|SUMMARY)' || true
    test "${PIPESTATUS[0]}" -eq 0
  done
fi

stage "all gates passed"
