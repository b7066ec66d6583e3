# kill -9 one of 3 ranks mid-training: the others end within 5 s with a report naming the lost
# rank, its step and last collective; nothing is left; the newest checkpoint is intact and the
# run resumes from it to the end (with fingerprint checks on, which must not get in the way).
source "$(dirname "$0")/common.sh"
R=$WORK/killed
mkdir -p "$WORK"
start_run "$R" 3 --set comm.timeout_s=10
wait_steps "$R" 25
victim=$(rank_pids "$R" | tail -1)
[ -n "$victim" ] || fail "no rank to kill"
FAULT_MS=$(now_ms)
kill -9 "$victim"
wait_end 5000
grep -Eq "harness: rank [0-9]+: rank [0-9]+ \(pid $victim on [^)]*\) is gone - killed, crashed, out of memory or exited without comm_finalize - while it was in step [0-9]+; (waiting in collective|its last collective was|it had started collective) #[0-9]+ " "$R.log" \
  || { cat "$R.log" >&2; fail "no report naming the killed rank (pid $victim), its step and collective"; }
[ "$(grep -c 'is gone' "$R.log")" -eq 1 ] || { cat "$R.log" >&2; fail "expected one report"; }
no_leftovers "$R"
step=$(newest_intact "$R")
resume_to_end "$R" 3 "$step" --set comm.check_fingerprints=true
echo "rank_killed: ended $ENDED_MS ms after kill -9 (status $STATUS): $(grep -o 'rank [0-9]* (pid [0-9]* on [^)]*) is gone' "$R.log"); resumed from step $step to $STEPS"
