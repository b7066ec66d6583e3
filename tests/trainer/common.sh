# Sourced by the trainer tests: arguments, MPI environment, helpers.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
DATA=$WORK/fashion-mnist
# tests/nan_safe.py for the inline Python checks (a worst difference that keeps NaN)
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "FAIL: $*" >&2; exit 1; }
# run_ranks N ARGS...: harness under mpirun with N ranks
run_ranks() { local n=$1; shift; "$MPIRUN" --oversubscribe -np "$n" "$HARNESS" "$@"; }
