# A lost node under Slurm, on emulated nodes: Slurm 22.05 with a head node n1 and compute nodes
# n2, n3, n4 runs launch/slurm/harness-multi-node.sbatch (--nodes=2 --ntasks-per-node=2, so on
# n2 and n3; the batch script runs on n2; --no-kill from the recipe).  Past step 40, n3 loses
# power (link down, every process on it killed, slurmd included).  Then:
#   - the ranks on n2 must end within 10 s with exit status 76, naming n3 (harness's heartbeat;
#     Slurm itself would take SlurmdTimeout = 10 s here, 300 s on most real clusters);
#   - the recipe must go on without a human on the node that remains: the step relaunched on
#     n2 with 2 ranks, the same global batch, resuming from the newest checkpoint, and the job
#     must complete with the parameters of an uninterrupted 4-rank run within rounding (the
#     2-rank steps sum the gradient in another order);
#   - n3 comes back (cable in, slurmd restarted): the next job uses it again.
# CLUSTER_FAULT_REPS times (default 1, to keep the label quick; 3 for the medians printed).
# Then once with HARNESS_MIN_NODES=2 - on n2 and n3 again, so n3 is used once it is back: one
# node is too few, so the recipe requeues the job with n3 in its ExcNodeList (set on the pending
# job, right after the requeue), and the job completes on n2 and n4.
source "$(dirname "$0")/common.sh"
source "$HERE/slurm_common.sh"
# parameters after 80 steps of 2 ranks resumed from 4: within this fraction of the largest
# |parameter| of the uninterrupted run (float rounding: measured about 1e-6)
TOL=1e-4
slurm_up_with_ref 3

# n2_ranks_exited_76 OUT: ranks 0 and 1 (tasks 0-1 of the step, on n2) ended with exit status 76.
# srun says so in one line ("tasks 0-1") or one per task when they end apart.  Under load srun
# may not have heard from n2 yet when the recipe stops it (3 s after the report): then the
# ranks' own last words must say 76 - rank 0 ends its node, rank 1 follows it.
n2_ranks_exited_76() {
  local tasks
  tasks=$(sed -nE 's/^srun: error: n2: tasks? ([0-9,-]+): Exited with exit code 76$/\1/p' "$1" | tr ',\n' '  ')
  [[ " $tasks " == *" 0-1 "* ]] && return 0
  [[ " $tasks " == *" 0 "* && " $tasks " == *" 1 "* ]] && return 0
  grep -q "stopping srun" "$1" &&
    grep -q '^harness: rank 0: this rank is .*; ending the ranks on n2 with exit status 76' "$1" &&
    grep -q '^harness: rank 1: .*ending with exit status 76' "$1"
}

# lose_n3 RUN: submits, powers n3 off past step 40; prints "detect_s recover_s"
lose_n3() {
  local R=$WORK/$1 out=$WORK/$1.out j t_fault t_detect t_recover
  j=$(submit "$out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$R") || fail "sbatch failed"
  wait_until 90 "job $j to pass step 40" past_step "$R/metrics.jsonl" 40 || fail "job $j did not reach step 40: $(tail -5 "$out")"
  grep -q "start (restart 0) on n2,n3, 4 ranks" "$out" || fail "job $j is not on n2,n3: $(grep -m1 start "$out")"
  t_fault=$(now)
  node_power_off n3
  wait_until 15 "a report of the lost node" grep -q '^harness: rank [0-9]*: node n3 (ranks 2-3) was lost' "$out" ||
    fail "no rank named n3 within 15 s: $(grep -v '^step' "$out" | tail -8)"
  t_detect=$(now)
  wait_until 30 "the relaunch" starts_are "$R/metrics.jsonl" 2 || fail "job $j did not relaunch: $(grep -v '^step' "$out" | tail -8)"
  t_recover=$(now)
  wait_job "$j" "$out" 90
  n2_ranks_exited_76 "$out" || fail "n2's ranks did not exit 76: $(grep -E '^srun: |exit status 76|stopping srun' "$out")"
  grep -q "harness job $j: start (restart 0) on n2, 2 ranks: srun .*--nodelist=n2 --ntasks=2" "$out" ||
    fail "job $j was not relaunched on n2 with 2 ranks: $(grep -v '^step' "$out" | tail -8)"
  grep -q "harness: resumed from .*(written by 4 ranks, now 2)" "$out" || fail "the relaunch did not resume: $(grep resum "$out")"
  [ "$(job_field "$j" Restarts)" = 0 ] || fail "job $j was requeued, not relaunched in place"
  same_params "$REF" "$R/checkpoints/step_00000120.h5" "$TOL" >&2 || fail "job $j's final parameters are not those of ref"
  echo "$(echo "$t_detect - $t_fault" | bc) $(echo "$t_recover - $t_fault" | bc)"
}
n3_back() {
  node_link_up n3
  slurmd_start n3
  wait_until 60 "n3 back (idle)" slurm_node_is n3 idle || { slurm_logs; fail "n3 did not come back: $(slurm_node_state n3)"; }
}

REPS=${CLUSTER_FAULT_REPS:-1}
det=() rec=()
for ((i = 1; i <= REPS; i++)); do
  read -r d r < <(lose_n3 "lost$i")
  [ -n "$r" ] || fail "power loss #$i failed"
  (($(echo "$d <= 10" | bc))) || fail "power loss #$i: the survivors ended $d s after the fault (more than 10 s)"
  say "power loss of n3 #$i: survivors ended and named n3 after $d s, training relaunched on n2 after $r s"
  det+=("$d") rec+=("$r")
  n3_back
done
median() { tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
say "median of $REPS: lost node found (survivors end, exit 76) $(echo "${det[*]}" | median) s, training continues on the remaining node $(echo "${rec[*]}" | median) s after the fault"

# too few nodes remain: requeued away from n3
t=$SECONDS
R=$WORK/few out=$WORK/few.out
J=$(HARNESS_MIN_NODES=2 submit "$out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$R") || fail "sbatch failed"
wait_until 90 "job $J to pass step 40" past_step "$R/metrics.jsonl" 40 || fail "job $J did not reach step 40"
grep -q "start (restart 0) on n2,n3, 4 ranks" "$out" || fail "n3, back, was not used again: $(grep -m1 'start (' "$out")"
node_power_off n3
wait_job "$J" "$out" 120
grep -q "a node was lost, 1 nodes remain (HARNESS_MIN_NODES 2); requeued" "$out" ||
  fail "job $J was not requeued: $(grep -v '^step' "$out" | tail -8)"
grep -q "a node was lost, 1 nodes remain (HARNESS_MIN_NODES 2); requeued: .*, and excludes n3$" "$out" ||
  fail "job $J was requeued without excluding n3: $(grep 'requeued' "$out")"
exc=$(job_field "$J" ExcNodeList)
[ "$exc" = n3 ] || fail "job $J's ExcNodeList is '$exc', not n3"
grep -q "start (restart 1) on n2,n4, 4 ranks" "$out" || fail "the requeued job did not run on n2,n4: $(grep 'start (' "$out")"
same_params "$REF" "$R/checkpoints/step_00000120.h5" 0 || fail "job $J's final parameters (4 ranks throughout) differ from ref's"
say "HARNESS_MIN_NODES=2: on n2,n3 (n3 back in use), requeued excluding n3, completed on n2,n4, bit-identical to ref: $((SECONDS - t)) s"
