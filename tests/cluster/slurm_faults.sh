# Two more ways to lose a node under Slurm, on emulated nodes (Slurm 22.05, head n1, compute
# n2 and n3), each while launch/slurm/harness-multi-node.sbatch trains 4 ranks on n2,n3 (the
# batch script on n2), past step 40:
#   partition     n3's link goes down, every process on it stays alive (a switch port, a
#                 cable): the ranks on both sides must end within 10 s with exit status 76 -
#                 n2's naming n3, n3's naming rank 0's node - and training must go on without a
#                 human on n2 (2 ranks, the same global batches), within rounding of an
#                 uninterrupted run.
#   slurmd killed  n3's slurmd dies (past step 20), the node and the ranks stay up.  harness
#                 does not notice (slurmd is not in the data path), but Slurm declares n3
#                 failed once slurmd has been silent for SlurmdTimeout (10 s here) and srun
#                 then kills the whole step ("srun: error: Node failure on n3", status 137).
#                 The job must complete either way: untouched, bit for bit, when it finishes
#                 first; else the recipe must go on without n3 (2 ranks on n2, within rounding).
source "$(dirname "$0")/common.sh"
source "$HERE/slurm_common.sh"
TOL=1e-4
slurm_up_with_ref 2

# --- partition
R=$WORK/cut out=$WORK/cut.out
J=$(submit "$out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$R") || fail "sbatch failed"
wait_until 90 "job $J to pass step 40" past_step "$R/metrics.jsonl" 40 || fail "job $J did not reach step 40: $(tail -5 "$out")"
t_fault=$(now)
node_link_down n3
wait_until 15 "n2's report of n3" grep -q '^harness: rank [0-9]*: node n3 (ranks 2-3) was lost' "$out" ||
  fail "no rank on n2 named n3 within 15 s: $(grep -v '^step' "$out" | tail -8)"
t_detect=$(now)
d=$(echo "$t_detect - $t_fault" | bc)
(($(echo "$d <= 10" | bc))) || fail "the ranks on n2 named n3 $d s after the cut (more than 10 s)"
# n3's ranks are cut off with it: they must end too, by themselves (their output cannot reach
# the batch script, so look for the processes)
# (by network namespace: the nodes share one process table, and the relaunch's ranks on n2
# run the same command line)
n3_ranks() {
  local pid ns
  ns=$(readlink "/proc/${NODE_PID[n3]}/ns/net")
  for pid in $(netns_pids "$ns" "${NODE_PID[n3]}"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = harness ] && return 0
  done
  return 1
}
wait_until 15 "n3's ranks to end" eval '! n3_ranks' || fail "n3's ranks are still running 15 s after the cut"
t_n3=$(now)
wait_until 30 "the relaunch" starts_are "$R/metrics.jsonl" 2 || fail "job $J did not relaunch: $(grep -v '^step' "$out" | tail -8)"
t_recover=$(now)
node_link_up n3
wait_job "$J" "$out" 120
grep -q "harness job $J: start (restart 0) on n2, 2 ranks" "$out" || fail "job $J was not relaunched on n2: $(grep 'start (' "$out")"
same_params "$REF" "$R/checkpoints/step_00000120.h5" "$TOL" >&2 || fail "job $J's final parameters are not those of ref"
say "partition of n3: n2's ranks named n3 after $(echo "$t_detect - $t_fault" | bc) s, n3's ranks gone after $(echo "$t_n3 - $t_fault" | bc) s, training relaunched on n2 after $(echo "$t_recover - $t_fault" | bc) s; completed within $TOL"
wait_until 60 "n3 back (idle)" slurm_node_is n3 idle || { slurm_logs; fail "n3 did not come back after the cut: $(slurm_node_state n3)"; }

# --- slurmd killed
R=$WORK/slurmd out=$WORK/slurmd.out
# slower steps (the sleep hook leaves the arithmetic alone): the 100 steps after the fault
# take about 30 s, so Slurm declares n3 down (SlurmdTimeout 10 s) while the job trains
J=$(HARNESS_FAULT_STEP_SLEEP_MS=300 submit "$out" "$RECIPE" "$WORK/job.yaml" --set run.dir="$R") || fail "sbatch failed"
wait_until 90 "job $J to pass step 20" past_step "$R/metrics.jsonl" 20 || fail "job $J did not reach step 20: $(tail -5 "$out")"
ns=$(readlink "/proc/${NODE_PID[n3]}/ns/net")
killed=""
for pid in $(netns_pids "$ns" "${NODE_PID[n3]}"); do
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmd ] && kill -KILL "$pid" && killed="$killed $pid"
done
[ -n "$killed" ] || fail "no slurmd found on n3"
t_fault=$SECONDS
wait_job "$J" "$out" 120
say "slurmd on n3 killed at step >= 20: job $J $(job_field "$J" JobState) $((SECONDS - t_fault)) s later, n3 now $(slurm_node_state n3)"
if grep -q "Slurm declared n3 failed and srun ended the step" "$out"; then
  grep -q "harness job $J: start (restart 0) on n2, 2 ranks" "$out" || fail "job $J was not relaunched on n2: $(grep -v '^step' "$out" | tail -8)"
  [ "$(starts "$R/metrics.jsonl")" = 2 ] || fail "job $J: $(starts "$R/metrics.jsonl") runs of harness, expected 2"
  same_params "$REF" "$R/checkpoints/step_00000120.h5" "$TOL" >&2 || fail "job $J's final parameters are not those of ref"
  say "Slurm declared n3 failed and killed the step; the recipe went on without n3 on n2, within $TOL"
else
  [ "$(starts "$R/metrics.jsonl")" = 1 ] || fail "job $J's training was interrupted ($(starts "$R/metrics.jsonl") runs): $(grep -v '^step' "$out" | tail -8)"
  same_params "$REF" "$R/checkpoints/step_00000120.h5" 0 || fail "job $J's final parameters differ from ref's"
  say "the job finished before Slurm declared n3 failed: untouched, bit-identical"
fi
slurmd_start n3
wait_until 60 "n3 back (idle)" slurm_node_is n3 idle || { slurm_logs; fail "n3 did not come back: $(slurm_node_state n3)"; }
say "ok: a partition ends both sides in seconds and training goes on on n2; a killed slurmd does not end the job"
