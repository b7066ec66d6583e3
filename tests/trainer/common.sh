# Sourced by the trainer tests: arguments, MPI environment, helpers.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4
source "$(dirname "${BASH_SOURCE[0]}")/../mpi_env.sh"
DATA=$WORK/fashion-mnist
# tests/nan_safe.py for the inline Python checks (a worst difference that keeps NaN)
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "FAIL: $*" >&2; exit 1; }
# run_ranks N ARGS...: harness under mpirun with N ranks
run_ranks() { local n=$1; shift; "$MPIRUN" --oversubscribe -np "$n" "$HARNESS" "$@"; }
