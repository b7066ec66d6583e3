# shellcheck shell=bash
# Preemption and resume under a real (local, one-node) Slurm cluster, through the repository's
# own launch/slurm/harness-single-node.sbatch, must give the same parameters, bit for bit, as
# one uninterrupted run.
#
#   bash preempt_resume.sh HARNESS MPIRUN PYTHON WORKDIR        (exit 77: skipped)
#
# One training run (2 ranks, 300 steps) is interrupted five times and finished by two jobs:
#   job 1, LAUNCHER=srun:   scontrol requeue (preemption: SIGTERM to every process) -> the job
#                           comes back and resumes; scancel --signal=USR1 --batch (what
#                           --signal=B:USR1@120 does before the time limit) -> checkpoint, exit
#                           75, the script requeues the job, which comes back and resumes;
#                           scancel (SIGTERM) -> the ranks checkpoint and the job stays
#                           CANCELLED (the script must not revive it)
#   job 2, LAUNCHER=mpirun: resumes from job 1's checkpoint; scontrol requeue, then the USR1
#                           warning, as above; comes back each time, resumes and finishes.
# Then every /params and /optim dataset of the final checkpoint must equal the uninterrupted
# run's, the logs and metrics.jsonl must show each resume, and nothing of the cluster or of
# the jobs may be left running.  Needs root (the daemons run as SlurmUser=root) and installs
# slurm-wlm and munge with apt-get when they are missing.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SBATCH_SCRIPT=$REPO/launch/slurm/harness-single-node.sbatch
source "$HERE/../mpi_env.sh"
source "$HERE/slurm_cluster.sh"

T0=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# The two recipes share their job part word for word (only the #SBATCH header differs).
job_part() { sed -n '/^# ---- the job/,$p' "$1"; }
diff <(job_part "$SBATCH_SCRIPT") <(job_part "$REPO/launch/slurm/harness-multi-node.sbatch") >&2 ||
  fail "the job parts of harness-single-node.sbatch and harness-multi-node.sbatch differ"
[ -n "$(job_part "$SBATCH_SCRIPT")" ] || fail "no '# ---- the job' line in $SBATCH_SCRIPT"

[ "$(id -u)" -eq 0 ] || slurm_skip "needs root to run slurmctld/slurmd (SlurmUser=root)"
mkdir -p "$WORK"
CLUSTER_LOGDIR=$WORK slurm_install
"$PY" -c 'import h5py, numpy' 2>/dev/null || slurm_skip "$PY lacks h5py/numpy (apt-get install python3-h5py)"

S=$WORK/preempt
rm -rf "$S"
mkdir -p "$S"
# The cluster's own directory lives in /tmp: munge's socket path must stay short.
CDIR=$(mktemp -d /tmp/harness-slurm.XXXXXX)
# shellcheck disable=SC2034  # read by slurm_cluster.sh
CLUSTER_TAGS=("$S/")
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)) && [ -n "$CLUSTER_DIR" ]; then
    cluster_logs
    for f in "$S"/job*.out; do [ -f "$f" ] && { echo "---- $f"; tail -30 "$f"; }; done >&2
  fi
  cluster_stop
  rm -rf "$CDIR"
  exit "$rc"
}
trap finish EXIT
trap 'exit 1' INT TERM
# Fail (and clean up) well before ctest's timeout would kill this script without a trap.
DEADLINE=$((SECONDS + ${SLURM_TEST_BUDGET:-540}))
budget_left() { ((SECONDS < DEADLINE)); }

# until_true WHAT COMMAND...: poll every 0.3 s within the test's budget.
until_true() {
  local what=$1; shift
  say "waiting for $what"
  until "$@"; do
    budget_left || fail "ran out of time waiting for $what"
    sleep 0.3
  done
}

"$HARNESS" convert fashion-mnist --src /usr/share/datasets/fashion-mnist --out "$S/fashion-mnist" >/dev/null
cat >"$S/job.yaml" <<EOF
# 784-1024-1024-10 MLP, 300 steps of 512 samples on 2 ranks: long enough to interrupt 5 times.
data:
  train: $S/fashion-mnist/train.h5
  test: ""
model:
  layers: [{type: flatten}, {type: linear, out: 1024}, {type: relu},
           {type: linear, out: 1024}, {type: relu}, {type: linear, out: 10}]
train:
  steps: 300
  batch_size: 512
log:
  every: 5
  progress: false
checkpoint:
  every: 25
EOF

say "reference: 300 steps without interruption (mpirun -np 2, outside Slurm)"
t=$SECONDS
"$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "$S/job.yaml" --set run.dir="$S/ref" \
  >"$S/ref.log" 2>&1 || { tail -20 "$S/ref.log" >&2; fail "reference run failed"; }
REF_SECONDS=$((SECONDS - t))
say "reference took ${REF_SECONDS}s"
REF_CKPT=$S/ref/checkpoints/step_00000300.h5
[ -f "$REF_CKPT" ] || fail "reference run wrote no $REF_CKPT"

say "starting munged, slurmctld, slurmd in $CDIR"
cluster_start "$CDIR" || fail "the local Slurm cluster did not come up"
say "cluster up: $(sinfo -h -o '%P %D %t %c CPUs')"
srun --mpi=list 2>&1 | grep -qw pmix ||
  fail "srun has no PMIx plugin (srun --mpi=list); on Debian it is in slurm-wlm-basic-plugins"

RUN=$S/slurm-run
METRICS=$RUN/metrics.jsonl
# Both jobs: 2 tasks on the CPU node (the recipe asks for GPUs: override on the command line).
export HARNESS
submit() {   # submit LAUNCHER OUTPUT
  export LAUNCHER=$1
  cluster_sbatch --job-name=harness-test --ntasks-per-node=2 \
    --gpus-per-task=0 --cpus-per-task=1 --time=10 --output="$2" \
    "$SBATCH_SCRIPT" "$S/job.yaml" --set run.dir="$RUN"
}
last_step() { [ -f "$METRICS" ] && sed -n 's/.*"event":"train","step":\([0-9]*\).*/\1/p' "$METRICS" | tail -1; }
past_step() { local s; s=$(last_step); [ -n "$s" ] && ((s >= $1)); }
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }      # count PATTERN FILE
starts() { count '"event":"start"' "$METRICS"; }
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
job_state() { job_field "$1" JobState; }
is_state() { [ "$(job_state "$1")" = "$2" ]; }
# running_segment N JOB: harness has started its Nth run of the training (N start events in
# metrics.jsonl, over both jobs) and JOB is running.
running_segment() { [ "$(starts)" -ge "$1" ] && is_state "$2" RUNNING && return 0; ended "$2"; return 1; }

# interrupt JOB AT_STEP HOW...: wait until training passes AT_STEP, then run HOW.
interrupt() {
  local job=$1 at=$2; shift 2
  running_past() { past_step "$2" && return 0; ended "$1"; return 1; }
  until_true "job $job to pass step $at" running_past "$job" "$at"
  say "step >= $(last_step): $*"
  "$@"
}
# comes_back JOB RESTARTS SEGMENT: the job is requeued (its RESTARTSth time), runs again and
# harness starts its SEGMENTth run of the training.
# A job that ended for good (it failed, or the script did not requeue it) cannot come back:
# fail at once with its output rather than wait out the budget.
ended() {
  case $(job_state "$1") in
    COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)
      fail "job $1 ended ($(job_state "$1"), exit code $(job_field "$1" ExitCode)) instead of coming back" ;;
  esac
}
restarted() {
  local n; n=$(job_field "$1" Restarts)
  [ -n "$n" ] && ((n >= $2)) && return 0
  ended "$1"
  return 1
}
comes_back() {
  until_true "job $1 to go back to the queue" restarted "$1" "$2"
  say "job $1 requeued: $(job_state "$1") (reason $(job_field "$1" Reason)), restarts $(job_field "$1" Restarts)"
  until_true "job $1 to run again and resume" running_segment "$3" "$1"
}

OUT1=$S/job1.out
J1=$(submit srun "$OUT1") || fail "sbatch failed"
say "job $J1 submitted (LAUNCHER=srun)"
# preemption: Slurm sends SIGTERM to every process of the job and requeues it
interrupt "$J1" 40 scontrol requeue "$J1"
comes_back "$J1" 1 2
# the time-limit warning (--signal=B:USR1@120 sends the same): the script requeues the job
interrupt "$J1" 90 scancel --signal=USR1 --batch "$J1"
comes_back "$J1" 2 3
# the user cancels: SIGTERM, the ranks checkpoint, and the job must stay cancelled
interrupt "$J1" 140 scancel "$J1"
until_true "job $J1 to end" is_state "$J1" CANCELLED
sleep 3   # the script would have requeued it within this time if it misread the cancel
is_state "$J1" CANCELLED || fail "job $J1 came back after scancel: $(job_state "$J1")"
[ "$(job_field "$J1" Restarts)" = 2 ] || fail "job $J1: $(job_field "$J1" Restarts) restarts, expected 2"

# A new job with mpirun inside the allocation continues the same run directory.
OUT2=$S/job2.out
J2=$(submit mpirun "$OUT2") || fail "sbatch failed"
say "job $J2 submitted (LAUNCHER=mpirun)"
until_true "job $J2 to resume" running_segment 4 "$J2"
interrupt "$J2" 190 scontrol requeue "$J2"
comes_back "$J2" 1 5
interrupt "$J2" 240 scancel --signal=USR1 --batch "$J2"
comes_back "$J2" 2 6
until_true "job $J2 to finish" is_state "$J2" COMPLETED
say "job $J2 COMPLETED, exit code $(job_field "$J2" ExitCode), restarts $(job_field "$J2" Restarts)"

# ---- what the logs say
[ "$(job_field "$J2" ExitCode)" = 0:0 ] || fail "job $J2 exit code $(job_field "$J2" ExitCode)"
[ "$(job_field "$J2" Restarts)" = 2 ] || fail "job $J2: $(job_field "$J2" Restarts) restarts, expected 2"
expect() {   # expect FILE N PATTERN: PATTERN occurs N times
  local n; n=$(count "$3" "$1")
  [ "$n" -eq "$2" ] || { cat "$1" >&2; fail "$(basename "$1"): '$3' $n times, expected $2"; }
}
expect "$OUT1" 3 'start (restart'
expect "$OUT1" 1 'harness: no checkpoint in'
expect "$OUT1" 2 'harness: resumed from'
expect "$OUT1" 3 'harness: SIG.*: checkpointed step'
expect "$OUT1" 2 'checkpointed; Slurm is ending this job'
expect "$OUT1" 1 'checkpointed; requeued'
expect "$OUT2" 3 'start (restart'
expect "$OUT2" 3 'harness: resumed from'
expect "$OUT2" 1 'checkpointed; requeued'
expect "$OUT2" 1 'training finished'
grep -q 'srun --mpi=pmix' "$OUT1" || fail "job $J1 did not use srun"
grep -q 'mpirun -np 2' "$OUT2" || fail "job $J2 did not use mpirun"

# ---- what the metrics and checkpoints say, and the final parameters
"$PY" - "$METRICS" "$REF_CKPT" "$RUN/checkpoints/step_00000300.h5" <<'PY'
import json, sys
import h5py, numpy as np
metrics, ref_path, got_path = sys.argv[1:]
rows = [json.loads(l) for l in open(metrics)]
# Segments: each "start" event begins one run of harness.
segs = []
for r in rows:
    if r["event"] == "start":
        segs.append({"start": r["start_step"], "steps": []})
    elif r["event"] == "train":
        segs[-1]["steps"].append(r["step"])
assert len(segs) == 6, f"{len(segs)} runs of harness, expected 6"
assert segs[0]["start"] == 0, segs[0]["start"]
for i in range(1, len(segs)):
    prev, cur = segs[i - 1], segs[i]
    # resumed from the checkpoint written on the signal: at or after the last logged step
    # (a periodic checkpoint, every 25 steps, would be older) and not from scratch
    assert cur["start"] > 0, f"run {i} started from scratch"
    assert prev["steps"] and cur["start"] >= prev["steps"][-1], \
        f"run {i} resumed at step {cur['start']}, before step {prev['steps'][-1]} of run {i-1}"
    assert cur["steps"] and cur["steps"][0] > cur["start"], (i, cur["steps"][:1], cur["start"])
    print(f"run {i}: stopped after step {cur['start']} (last logged {prev['steps'][-1]}), resumed there")
assert segs[-1]["steps"][-1] == 300
logged = sorted({s for seg in segs for s in seg["steps"]})
assert logged == list(range(5, 301, 5)), "logged steps have gaps"
summary = [r for r in rows if r["event"] == "summary"]
assert summary, "no summary event"

with h5py.File(ref_path, "r") as ref, h5py.File(got_path, "r") as got:
    assert int(got["meta"].attrs["step"]) == 300
    names = []
    ref.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    params = [n for n in names if n.startswith("params/")]
    assert params, "no /params datasets in the reference checkpoint"
    compared = [n for n in names if n.startswith(("params/", "optim/"))]
    for n in compared:
        a, b = ref[n][()], got[n][()]
        assert a.dtype == b.dtype and a.shape == b.shape, (n, a.dtype, a.shape, b.dtype, b.shape)
        assert np.array_equal(a, b), f"{n} differs: max |diff| {np.max(np.abs(a - b))}"
    print(f"final checkpoint: {len(params)} /params and {len(compared) - len(params)} /optim "
          f"datasets bit-identical to the uninterrupted run")
PY

# ---- nothing left behind
say "stopping the cluster"
daemons=("${CLUSTER_PIDS[@]}")
cluster_stop
left=$(cluster_strays)
[ -z "$left" ] || fail "processes left after stopping the cluster: $left"
for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null && fail "daemon $pid still alive"; done
say "ok: preempted (scontrol requeue), warned (USR1 to the batch shell) and cancelled (scancel);" \
  "resumed 5 times with srun and mpirun; bit-identical to the uninterrupted run (${REF_SECONDS}s)"
