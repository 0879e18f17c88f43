#!/usr/bin/env bash
# Every gate CI runs, in one command (HyperQueue's scripts/check.sh): formatting, the layering
# rule of core/, the -Werror build with all tests, the ASan+UBSan unit tests, clang-tidy and
# bounded fuzz runs of the decoders and of the broker. Installs what it needs first.
#   bash scripts/check.sh
#   ACME_CHECK_SKIP="asan fuzz tidy" bash scripts/check.sh   # a quicker local run
#   ACME_FUZZ_SECONDS=300 bash scripts/check.sh              # a longer fuzz run (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
start=$SECONDS
stage() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - start)); }
skipped() { [[ " ${ACME_CHECK_SKIP:-} " == *" $1 "* ]] && echo "skipped ($1 in ACME_CHECK_SKIP)"; }

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

stage "build with -Werror and run every test (cmake --workflow --preset ci)"
cmake --workflow --preset ci

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
  trap 'rm -rf "$work"' EXIT
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
