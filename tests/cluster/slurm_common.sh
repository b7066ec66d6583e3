# shellcheck shell=bash
# Sourced by the Slurm tests on emulated nodes, after common.sh: Slurm on the nodes, a small
# MLP job, and helpers to submit, watch and compare runs.
source "$HERE/slurm_nodes.sh"
slurm_can_run
"$PY" -c 'import h5py, numpy' 2>/dev/null || cluster_skip "$PY lacks h5py/numpy"
REPO=$(cd "$HERE/../.." && pwd)
RECIPE=$REPO/launch/slurm/harness-multi-node.sbatch
# What every job's ranks get (sbatch hands the submitting environment to the job): Open MPI's
# TCP on the nodes' eth0, ranks that yield while they wait (2 cores for everything here).
export HARNESS OMPI_MCA_btl=tcp,vader,self OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
export MPIRUN_ARGS="--bind-to none --mca plm_rsh_no_tree_spawn 1"
# 40 ms of sleep in every step (harness's test hook; the arithmetic is untouched): an idle
# machine would run the 120 steps in about a second, before the test can preempt or fault them
export HARNESS_FAULT_STEP_SLEEP_MS=40
# mpirun's stop after Slurm's SIGTERM (two waits of this many seconds; the recipe's default 15
# is for real checkpoints): this MLP checkpoints in milliseconds
export OMPI_MCA_odls_base_sigkill_timeout=4

# every run starts from scratch: what an earlier run of the test left (but the dataset) goes
find "$WORK" -mindepth 1 -maxdepth 1 ! -name fashion-mnist -exec rm -rf {} +
cat >"$WORK/job.yaml" <<YAML
# a 784-128-10 MLP, global batch 64, 120 steps: a few seconds of training on 4 ranks
data: {train: $WORK/fashion-mnist/train.h5, test: ""}
model:
  layers: [{type: flatten}, {type: linear, out: 128}, {type: relu}, {type: linear, out: 10}]
train: {steps: 120, batch_size: 64}
log: {every: 5, progress: false}
checkpoint: {every: 10}
YAML

# submit OUT ARGS...: sbatch the multi-node recipe (2 nodes x 2 CPU ranks); prints the job id
submit() {
  local out=$1 id; shift
  rm -f "$out"
  id=$(slurm_run sbatch --parsable --nodes=2 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 \
       --time=10 --output="$out" "$@") || return 1
  echo "${id%%;*}"
}
job_field() { slurm_run scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
job_done() { case $(job_field "$1" JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) return 0 ;; esac; return 1; }
# wait_job ID OUT SECONDS: until the job has ended; fails unless it COMPLETED
wait_job() {
  wait_until "$3" "job $1 to end" job_done "$1" || { tail -30 "$2" >&2; slurm_logs; fail "job $1 did not end"; }
  [ "$(job_field "$1" JobState)" = COMPLETED ] ||
    { tail -30 "$2" >&2; fail "job $1 ended $(job_field "$1" JobState) $(job_field "$1" ExitCode)"; }
}
last_step() { sed -n 's/.*"event":"train","step":\([0-9]*\).*/\1/p' "$1" 2>/dev/null | tail -1; }
past_step() { local s; s=$(last_step "$1"); [ -n "$s" ] && ((s >= $2)); }
starts() { grep -c '"event":"start"' "$1" 2>/dev/null || true; }
starts_are() { [ "$(starts "$1")" = "$2" ]; }
now() { date +%s.%N; }

# same_params REF GOT TOL: every /params and /optim dataset of checkpoint GOT equals REF's
# (TOL 0: bit for bit; else max |diff| <= TOL x max |REF| per dataset)
same_params() {
  "$PY" - "$@" <<'PY'
import sys
import h5py, numpy as np
ref_path, got_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(ref_path, "r") as ref, h5py.File(got_path, "r") as got:
    names = []
    ref.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    names = [n for n in names if n.startswith(("params/", "optim/"))]
    assert any(n.startswith("params/") for n in names), "no /params in " + ref_path
    worst = 0.0
    for n in names:
        a, b = ref[n][()], got[n][()]
        assert a.shape == b.shape and a.dtype == b.dtype, (n, a.shape, b.shape)
        if tol == 0:
            assert np.array_equal(a, b), f"{n} differs: max |diff| {np.max(np.abs(a - b))}"
            continue
        scale = float(np.max(np.abs(a))) or 1.0
        d = float(np.max(np.abs(a.astype(np.float64) - b))) / scale
        worst = d if not (d <= worst) else worst
        assert d <= tol, f"{n}: max |diff| / max |ref| = {d} (tolerance {tol})"
    print(f"{len(names)} /params and /optim datasets " +
          ("bit-identical" if tol == 0 else f"within {worst:.2e} of max |ref| (tolerance {tol})"))
PY
}

# slurm_up_with_ref COMPUTE_NODES: Slurm on n1 + COMPUTE_NODES compute nodes, then the
# uninterrupted reference run of the recipe (4 ranks on n2,n3, job.yaml); sets REF to its
# final checkpoint and works in $WORK.
slurm_up_with_ref() {
  local t J
  slurm_nodes_up "$1" "$WORK/c" || fail "Slurm on the emulated nodes did not come up"
  say "Slurm up: head n1, compute $(slurm_run sinfo -h -o '%D nodes %N %t')"
  cd "$WORK" || fail "no $WORK"
  t=$SECONDS
  J=$(submit "$WORK/ref.out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$WORK/ref") || fail "sbatch failed"
  wait_job "$J" "$WORK/ref.out" 120
  say "ref: job $J, 4 ranks on n2,n3, uninterrupted: $((SECONDS - t)) s"
  REF=$WORK/ref/checkpoints/step_00000120.h5
}
