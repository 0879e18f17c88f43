#!/usr/bin/env bash
# acme-map from the shell: checksum every file of a folder with the `exec` builtin, one task per
# file, results in input order, and compare with a serial run. What a user types:
#
#   ls data/*.csv | sed 's/^/sha256sum /' | acme-map exec
#
#   exec_files.sh [ACME_MAP] [FILES]   # defaults: acme-map on PATH, 50 files
set -euo pipefail
acme_map=${1:-acme-map}
count=${2:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in $(seq 1 "$count"); do
  head -c $((1000 + i * 37)) /dev/urandom >"$work/trial_$i.dat"
done

# One command line per stdin line; each result is exec's {"exit_code","stdout","stderr"} map.
find "$work" -name '*.dat' | sort | sed 's/^/sha256sum /' |
  "$acme_map" --local 2 exec >"$work/results.jsonl"

sed -E 's/.*"stdout":"([^"]*)\\n".*/\1/' "$work/results.jsonl" >"$work/parallel.txt"
find "$work" -name '*.dat' | sort | xargs sha256sum >"$work/serial.txt"

if ! diff -u "$work/serial.txt" "$work/parallel.txt"; then
  echo "exec_files: acme-map's results differ from the serial run" >&2
  exit 1
fi
echo "exec_files: $count files checksummed by acme-map exec, in order, equal to the serial run"
