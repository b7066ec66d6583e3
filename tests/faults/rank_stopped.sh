# SIGSTOP one of 2 ranks mid-training with comm.timeout_s=3: the other ends within 3 s + 4 s
# with a report naming the stalled collective and the stopped rank, which is killed; nothing
# is left; the newest checkpoint is intact and the run resumes from it to the end.
source "$(dirname "$0")/common.sh"
R=$WORK/stopped
mkdir -p "$WORK"
start_run "$R" 2 --set comm.timeout_s=3
wait_steps "$R" 25
victim=$(rank_pids "$R" | tail -1)
[ -n "$victim" ] || fail "no rank to stop"
FAULT_MS=$(now_ms)
kill -STOP "$victim"
wait_end 7000
line=$(grep -E "rank [0-9]+ \(pid $victim, stopped \(SIGSTOP\)\) in step [0-9]+: " "$R.log" || true)
[ -n "$line" ] || { cat "$R.log" >&2; fail "the report does not show rank pid $victim stopped"; }
rank=$(echo "$line" | sed -E "s/.*rank ([0-9]+) \(pid $victim.*/\1/")
grep -Eq "harness: rank [0-9]+: collective #[0-9]+ .* in step [0-9]+ has not completed after [0-9.]+ s \(comm timeout 3.0 s\)" "$R.log" \
  || { cat "$R.log" >&2; fail "no stall report"; }
grep -q "holding it up: rank $rank (is stopped)\$" "$R.log" \
  || { cat "$R.log" >&2; fail "the report does not name rank $rank as holding up the collective"; }
grep -q "killing rank $rank (pid $victim)" "$R.log" || { cat "$R.log" >&2; fail "the stopped rank was not killed"; }
no_leftovers "$R"
step=$(newest_intact "$R")
resume_to_end "$R" 2 "$step"
echo "rank_stopped: ended $ENDED_MS ms after SIGSTOP of rank $rank (status $STATUS); resumed from step $step to $STEPS"
