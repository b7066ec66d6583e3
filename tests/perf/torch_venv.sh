#!/usr/bin/env bash
# Prints the path of a Python with the current PyTorch from PyPI (plus numpy and h5py), making
# the virtual environment on first use (build/venv-torch by default; never committed, never in
# harness's run path).  Only plain PyPI is assumed reachable, so this is the wheel PyPI serves
# for Linux x86-64: the CUDA build (about 5 GB installed); on a machine without a GPU it runs
# on the CPU (MKL and oneDNN inside) like the CPU-only wheel.
#   PY=$(bash tests/perf/torch_venv.sh [VENV_DIR])
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${1:-$HERE/../../build/venv-torch}
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import torch, numpy, h5py' 2>/dev/null; then
  echo "torch_venv: installing torch numpy h5py from PyPI into $VENV (first use, minutes)" >&2
  /usr/bin/python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy h5py >&2
fi
echo "$(cd "$VENV" && pwd)/bin/python"
