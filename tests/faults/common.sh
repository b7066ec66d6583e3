# Sourced by the fault tests: arguments, MPI environment, a slow training run to hurt, checks.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 DATA=$3 WORK=$4 CFG=$5
source "$(dirname "${BASH_SOURCE[0]}")/../mpi_env.sh"
export OMPI_MCA_mpi_yield_when_idle=1
fail() { echo "FAIL: $*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A trainer without the watchdog (comm.timeout_s) cannot pass these: skip, saying why.
probe=$("$HARNESS" train --set comm.timeout_s=1 --set data.train=/nonexistent.h5 2>&1 || true)
if [[ $probe == *"unknown key 'comm.timeout_s'"* ]]; then
  echo "SKIP: this harness has no comm.timeout_s (the trainer does not drive the comm watchdog yet)" >&2
  exit 77
fi

STEPS=200
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=$STEPS
        --set train.batch_size=96 --set train.warmup_steps=5 --set log.every=1
        --set log.progress=false --set checkpoint.every=10 --set checkpoint.keep=3)

# start_run DIR NP [ARGS...]: a run slowed to >= 20 ms a step, in the background
start_run() {
  local dir=$1 np=$2; shift 2
  rm -rf "$dir"
  HARNESS_FAULT_STEP_SLEEP_MS=20 "$MPIRUN" --oversubscribe -np "$np" "$HARNESS" train "$CFG" \
    "${common[@]}" --set run.dir="$dir" "$@" >"$dir.out" 2>"$dir.log" &
  LAUNCHER=$!
}
# wait_steps DIR N: until metrics.jsonl has N training lines (30 s at most)
wait_steps() {
  for _ in $(seq 600); do
    [ -f "$1/metrics.jsonl" ] && [ "$(grep -c '"train"' "$1/metrics.jsonl")" -ge "$2" ] && return 0
    kill -0 "$LAUNCHER" 2>/dev/null || { cat "$1.log" >&2; fail "the run ended before step $2"; }
    sleep 0.05
  done
  fail "no step $2 within 30 s"
}
rank_pids() { pgrep -f "^$HARNESS train .*run.dir=$1( |\$)" || true; }
# wait_end MAX_MS: the launcher's exit status in STATUS, the time since FAULT_MS in ENDED_MS
wait_end() {
  local limit=$(( $1 / 100 + 50 ))
  for _ in $(seq "$limit"); do kill -0 "$LAUNCHER" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$LAUNCHER" 2>/dev/null; then
    kill -9 "$LAUNCHER" 2>/dev/null || true
    fail "mpirun still running $(( $(now_ms) - FAULT_MS )) ms after the fault"
  fi
  STATUS=0; wait "$LAUNCHER" || STATUS=$?
  ENDED_MS=$(( $(now_ms) - FAULT_MS ))
  [ "$ENDED_MS" -le "$1" ] || fail "the job took ${ENDED_MS} ms to end after the fault (bound $1 ms)"
  [ "$STATUS" -ne 0 ] || fail "the job exited 0 after a fault"
}
# no_leftovers DIR: no rank of that run is alive (2 s for the kernel to reap them)
no_leftovers() {
  local left=""
  for _ in $(seq 20); do left=$(rank_pids "$1"); [ -z "$left" ] && return 0; sleep 0.1; done
  for p in $left; do kill -9 "$p" 2>/dev/null || true; done
  fail "processes left behind: $left"
}
# newest_intact DIR: the newest checkpoint reads back in full; prints its step
newest_intact() {
  local newest
  newest=$(ls "$1"/checkpoints/step_*.h5 | tail -1)
  "$HARNESS" inspect "$newest" >"$1.inspect" || fail "newest checkpoint $newest does not read"
  grep -q UNREADABLE "$1.inspect" && fail "newest checkpoint $newest is damaged"
  basename "$newest" .h5 | sed 's/^step_0*//'
}
# resume_to_end DIR NP STEP [ARGS...]: --resume auto continues from STEP and finishes
resume_to_end() {
  local dir=$1 np=$2 step=$3; shift 3
  "$MPIRUN" --oversubscribe -np "$np" "$HARNESS" train "$CFG" "${common[@]}" --set run.dir="$dir" \
    --resume auto "$@" >"$dir.resume.out" 2>"$dir.resume.log" || { cat "$dir.resume.log" >&2; fail "the resumed run failed"; }
  grep -q "resumed from .*step_0*$step.h5: step $step" "$dir.resume.log" || { cat "$dir.resume.log" >&2; fail "did not resume from step $step"; }
  [ -f "$dir/checkpoints/step_$(printf %08d $STEPS).h5" ] || fail "the resumed run did not reach step $STEPS"
}
