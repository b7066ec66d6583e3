# Sourced by the GPU end-to-end tests: skips (77) without a CUDA device, else like
# tests/trainer/common.sh.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4 DATA=$5
source "$(dirname "${BASH_SOURCE[0]}")/../mpi_env.sh"
# tests/nan_safe.py for the inline Python checks (a worst difference that keeps NaN)
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "FAIL: $*" >&2; exit 1; }
# a GPU the driver lists but CUDA cannot use: harness says why and exits 1 - a failure
gpus=$("$HARNESS" devices --count) || fail "the NVIDIA driver lists a GPU that CUDA cannot use (see above)"
if [ "$gpus" -lt 1 ]; then
  echo "SKIP: no CUDA device (or a build without the CUDA backend)"
  exit 77
fi
run_ranks() { local n=$1; shift; "$MPIRUN" --oversubscribe -np "$n" "$HARNESS" "$@"; }
# losses RUN: the train losses of a run, one per line
losses_close() {  # losses_close RUN_A RUN_B REL_TOL
  "$PY" - "$WORK/$1" "$WORK/$2" "$3" <<'PY'
import json, sys
import nan_safe
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
def losses(run):
    return [r["loss"] for r in map(json.loads, open(f"{run}/metrics.jsonl")) if r["event"] == "train"]
la, lb = losses(a), losses(b)
assert len(la) == len(lb) > 0, (len(la), len(lb))
worst = nan_safe.worst(abs(x - y) / abs(x) for x, y in zip(la, lb))
print(f"{b} vs {a}: {len(la)} steps, max relative loss difference {worst:.2e} (tolerance {tol})")
assert worst <= tol, worst
PY
}
