# shellcheck shell=bash
# launch/mpirun-resubmit.sh, the restart loop for machines without Slurm:
#   1. SIGTERM to the script: the ranks checkpoint, the script exits 75 and does not restart;
#   2. run again, SIGUSR1 to one rank (as a preemption agent would): harness exits 75 and the
#      script restarts it, it resumes and finishes (exit 0);
#   3. the final parameters equal an uninterrupted run's, bit for bit.
#
#   bash mpirun_resubmit.sh HARNESS MPIRUN PYTHON WORKDIR
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4
HERE=$(cd "$(dirname "$0")" && pwd)
RESUBMIT=$HERE/../../launch/mpirun-resubmit.sh
source "$HERE/../mpi_env.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }

S=$WORK/resubmit
rm -rf "$S"
mkdir -p "$S"
WRAPPER_PID=""
# Only what this test started: the wrapper (its mpirun and ranks stop with it on SIGTERM).
trap '[ -n "$WRAPPER_PID" ] && kill -TERM "$WRAPPER_PID" 2>/dev/null; wait 2>/dev/null' EXIT

"$HARNESS" convert fashion-mnist --src /usr/share/datasets/fashion-mnist --out "$S/data" >/dev/null
cat >"$S/job.yaml" <<EOF
data: {train: $S/data/train.h5, test: ""}
model:
  layers: [{type: flatten}, {type: linear, out: 512}, {type: relu}, {type: linear, out: 10}]
train: {steps: 400, batch_size: 256}
log: {every: 5, progress: false}
checkpoint: {every: 50}
EOF
export HARNESS MPIRUN RANKS=2 RETRY_DELAY=1

"$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "$S/job.yaml" --set run.dir="$S/ref" >"$S/ref.log" 2>&1 ||
  fail "reference run failed: $(tail -5 "$S/ref.log")"

# The runs below are slowed to 20 ms a step (the bits do not change): unslowed, the 400 steps
# took under a second, and the resumed run could finish before the test's SIGUSR1 reached it.
export HARNESS_FAULT_STEP_SLEEP_MS=20
RUN=$S/run
last_step() { [ -f "$RUN/metrics.jsonl" ] && sed -n 's/.*"event":"train","step":\([0-9]*\).*/\1/p' "$RUN/metrics.jsonl" | tail -1; }
wait_step() {   # wait_step N: training has logged step N or later (60 s at most)
  local t0=$SECONDS s
  while s=$(last_step); [ -z "$s" ] || ((s < $1)); do
    ((SECONDS - t0 < 60)) || fail "training did not reach step $1"
    kill -0 "$WRAPPER_PID" 2>/dev/null || fail "mpirun-resubmit.sh exited before step $1"
    sleep 0.1
  done
}
harness_pids() {   # the ranks of this run
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = harness ] && tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "run.dir=$RUN" &&
      echo "${p#/proc/}"
  done
  return 0
}

# 1. SIGTERM to the script: checkpoint, exit 75, no restart.
bash "$RESUBMIT" "$S/job.yaml" --set run.dir="$RUN" >"$S/first.log" 2>&1 &
WRAPPER_PID=$!
wait_step 40
kill -TERM "$WRAPPER_PID"
status=0
wait "$WRAPPER_PID" || status=$?
WRAPPER_PID=""
[ "$status" -eq 75 ] || { cat "$S/first.log" >&2; fail "after SIGTERM mpirun-resubmit.sh exited $status, expected 75"; }
grep -q 'checkpointed and stopped on SIGTERM' "$S/first.log" || fail "no stop message: $(tail -5 "$S/first.log")"
[ "$(grep -c 'attempt ' "$S/first.log")" -eq 1 ] || fail "restarted after SIGTERM"
[ -z "$(harness_pids)" ] || fail "ranks left running after the script exited"
ls "$RUN"/checkpoints/step_*.h5 >/dev/null || fail "no checkpoint written"
echo "SIGTERM: stopped after step $(last_step) with exit 75"

# 2. SIGUSR1 to one rank: harness exits 75, the script restarts it, it finishes.
first_last=$(last_step)   # metrics.jsonl holds the first run's steps: wait for new ones
bash "$RESUBMIT" "$S/job.yaml" --set run.dir="$RUN" >"$S/second.log" 2>&1 &
WRAPPER_PID=$!
wait_step $((first_last + 10))
mapfile -t ranks < <(harness_pids)
[ ${#ranks[@]} -eq 2 ] || fail "expected 2 harness ranks, found: ${ranks[*]}"
kill -USR1 "${ranks[0]}"
status=0
wait "$WRAPPER_PID" || status=$?
WRAPPER_PID=""
[ "$status" -eq 0 ] || { cat "$S/second.log" >&2; fail "mpirun-resubmit.sh exited $status, expected 0"; }
[ "$(grep -c 'attempt ' "$S/second.log")" -eq 2 ] || { cat "$S/second.log" >&2; fail "expected 2 attempts"; }
[ "$(grep -c 'harness: resumed from' "$S/second.log")" -eq 2 ] || fail "each attempt should resume"
echo "SIGUSR1 to a rank: restarted once, finished"

# 3. Same parameters as the uninterrupted run.
"$PY" - "$S/ref/checkpoints/step_00000400.h5" "$RUN/checkpoints/step_00000400.h5" <<'PY'
import sys
import h5py, numpy as np
with h5py.File(sys.argv[1], "r") as ref, h5py.File(sys.argv[2], "r") as got:
    names = list(ref["params"])
    assert names
    for n in names:
        a, b = ref["params"][n][()], got["params"][n][()]
        assert np.array_equal(a, b), f"/params/{n} differs from the uninterrupted run"
print(f"{len(names)} /params datasets bit-identical to the uninterrupted run")
PY
