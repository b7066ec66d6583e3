# The multi-node Slurm recipe for real, on emulated nodes: Slurm 22.05 (slurmctld and munged on
# a head node n1, a slurmd on each of n2 and n3) runs launch/slurm/harness-multi-node.sbatch
# with --nodes=2 --ntasks-per-node=2 (4 ranks, 2 per node, TCP between the nodes):
#   ref   LAUNCHER=srun (srun --mpi=pmix), uninterrupted, 120 steps
#   A     LAUNCHER=srun, preempted (scontrol requeue) at step 40 - and its launches meet stale
#         PMIx files on n3 (what a crashed node's killed step leaves: stepd.slurm.pmix.JOB.0
#         and pmix.JOB.0/ in slurmd's spool, spmix_appdir_0_JOB.0 in its /tmp), which make
#         srun fail before any rank starts ("Cannot bind() UNIX socket ... Address already in
#         use", exit 137) - the first run and the requeued one (a requeue reuses the job and
#         step numbers): the recipe must try again as a new step, never end the job
#   B     LAUNCHER=mpirun (Open MPI's daemons started by srun), preempted the same way
#   C     LAUNCHER=srun, HARNESS_LAUNCH_RETRIES=1, stale PMIx files on n3 for the first launch
#         and its retry: the recipe must go on without n3 (srun's errors name the tasks; the
#         recipe maps them to the node) - 2 ranks on n2, the same global batches
# A and B must each end with the parameters and optimizer state of ref, bit for bit; C within
# rounding (2 ranks sum the gradients in another order than 4).
source "$(dirname "$0")/common.sh"
source "$HERE/slurm_common.sh"
slurm_up_with_ref 2
grep -q "on n2,n3, 4 ranks: srun --mpi=pmix" "$WORK/ref.out" || fail "ref did not run 4 ranks on n2,n3 with srun: $(grep -m1 start "$WORK/ref.out")"

# preempt RUN JOB OUT: scontrol requeue JOB past step 40; it must come back and finish
preempt() {
  wait_until 90 "job $2 to pass step 40" past_step "$WORK/$1/metrics.jsonl" 40 || fail "job $2 did not reach step 40: $(tail -5 "$3")"
  slurm_run scontrol requeue "$2" || fail "scontrol requeue $2 failed"
  say "job $2 requeued at step $(last_step "$WORK/$1/metrics.jsonl")"
  wait_job "$2" "$3" 120
  [ "$(job_field "$2" Restarts)" = 1 ] || fail "job $2: $(job_field "$2" Restarts) restarts, expected 1"
  grep -q "harness: resumed from" "$3" || fail "job $2 did not resume: $(grep harness: "$3" | tail -5)"
  [ "$(starts "$WORK/$1/metrics.jsonl")" = 2 ] || fail "job $2: $(starts "$WORK/$1/metrics.jsonl") runs of harness, expected 2"
}

t=$SECONDS
J=$(submit "$WORK/A.out" --hold "$RECIPE" "$WORK/job.yaml" --set run.dir="$WORK/A") || fail "sbatch failed"
spool=$SLURM_DIR/spool/n3
mkdir -p "$spool/pmix.$J.0"
touch "$spool/stepd.slurm.pmix.$J.0"
node_run n3 mkdir -p "/tmp/spmix_appdir_0_$J.0"
slurm_run scontrol release "$J"
preempt A "$J" "$WORK/A.out"
say "A: job $J, srun, stale PMIx files on n3, requeued once: $((SECONDS - t)) s"
grep -q "Cannot bind() UNIX socket $spool/stepd.slurm.pmix.$J.0: Address already in use" "$spool/slurmd.log" ||
  fail "the stale PMIx file did not make n3's step fail as expected: $(grep -i pmix "$spool/slurmd.log" | tail -3)"
n=$(grep -c "srun failed (status 137, after [0-9]* s) before any rank started: trying again" "$WORK/A.out")
[ "$n" = 2 ] || fail "A: $n retried launches, expected 2 (first run and requeued run): $(grep -v '^step' "$WORK/A.out" | head -30)"
same_params "$REF" "$WORK/A/checkpoints/step_00000120.h5" 0 || fail "A's final parameters differ from ref's"

t=$SECONDS
J=$(LAUNCHER=mpirun submit "$WORK/B.out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$WORK/B") || fail "sbatch failed"
preempt B "$J" "$WORK/B.out"
say "B: job $J, mpirun, requeued once: $((SECONDS - t)) s"
grep -q "on n2,n3, 4 ranks: mpirun -np 4" "$WORK/B.out" || fail "B did not use mpirun -np 4: $(grep -m1 start "$WORK/B.out")"
same_params "$REF" "$WORK/B/checkpoints/step_00000120.h5" 0 || fail "B's final parameters differ from ref's"
t=$SECONDS
J=$(HARNESS_LAUNCH_RETRIES=1 submit "$WORK/C.out" --hold "$RECIPE" "$WORK/job.yaml" --set run.dir="$WORK/C") || fail "sbatch failed"
for step in 0 1; do   # the first launch and its retry, a new step
  mkdir -p "$spool/pmix.$J.$step"
  touch "$spool/stepd.slurm.pmix.$J.$step"
  node_run n3 mkdir -p "/tmp/spmix_appdir_0_$J.$step"
done
slurm_run scontrol release "$J"
wait_job "$J" "$WORK/C.out" 150
say "C: job $J, srun, launches failing on n3 beyond the retries: $((SECONDS - t)) s"
n=$(grep -c "srun failed (status [0-9]*, after [0-9]* s) before any rank started: trying again (1 of 1)" "$WORK/C.out")
[ "$n" = 1 ] || fail "C: $n retried launches, expected 1: $(grep -v '^step' "$WORK/C.out" | head -30)"
grep -q "srun failed 2 times before any rank started, with the task launches on n3 failing: going on without n3" "$WORK/C.out" ||
  fail "C did not go on without n3: $(grep -v '^step' "$WORK/C.out" | head -30)"
grep -q "start (restart 0) on n2, 2 ranks: srun .*--nodelist=n2 --ntasks=2" "$WORK/C.out" ||
  fail "C was not relaunched on n2 with 2 ranks: $(grep 'start (' "$WORK/C.out")"
[ "$(job_field "$J" Restarts)" = 0 ] || fail "job $J: $(job_field "$J" Restarts) restarts, expected 0 (relaunched in place)"
# within 1e-4 of the largest |parameter| of ref (measured on the lost-node test: about 1e-6)
same_params "$REF" "$WORK/C/checkpoints/step_00000120.h5" 1e-4 || fail "C's final parameters are not those of ref"
say "ok: the multi-node recipe trains across n2 and n3 with srun and mpirun, resumes after a requeue bit for bit, retries launches that stale PMIx files fail, and goes on without a node whose launches keep failing"
