#!/usr/bin/env bash
# Installs what harness needs to build, train and test on Debian 12 (run as root, or with sudo
# available).  Packages already present are left alone, so this is quick the second time.
set -euo pipefail
pkgs=(cmake make gcc pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libopenblas-dev libyaml-dev libcmocka-dev zlib1g-dev dataset-fashion-mnist)
# The test suite also compares with PyTorch and writes files with h5py.
if [ "${HARNESS_DEPS:-}" = test ]; then
  pkgs+=(python3-torch python3-h5py python3-numpy python3-yaml)
  # the sanitizer build and the fuzzers (tests/sanitize.sh, tests/fuzz/run.sh) use clang
  pkgs+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "harness: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
