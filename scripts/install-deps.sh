#!/usr/bin/env bash
# Installs the Debian 12 packages that acme's build, tests and CI need. Does nothing when they
# are all there. Run as root (or with sudo available).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # libraries
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libhwloc-dev libfmt-dev libspdlog-dev libcli11-dev nlohmann-json3-dev
  # examples/mpi (built only when MPI is found)
  libopenmpi-dev openmpi-bin
  # tests and benchmarks (python3: the PBS stand-in of the launcher tests; the SLURM and SGE
  # packages are installed by scripts/ci/slurm-up.sh and sge-up.sh)
  libgtest-dev libgmock-dev libbenchmark-dev python3
  # the Python package (clients/python) and its pytest tests
  python3-zmq python3-msgpack python3-cloudpickle python3-numpy python3-h5py python3-pytest
  # CI gates: formatting, tidy, the clang build with libFuzzer and sanitizer runtimes
  clang-14 clang-format-14 clang-tidy-14 libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
