#!/usr/bin/env bash
# Runs test_comm_watchdog in one fault mode and checks how the job ends: exit status, the
# report on stderr (the culprit rank, the collective, the step), the time it took, and that no
# process of the test program is left.
# Usage: test_comm_watchdog.sh MODE NP PROGRAM MPIRUN [MPIRUN ARGS...]
#   MODE: stall | stop | kill | exit | mismatch | skip | allow | selfend (stop, under an mpirun
#   that does not end the job when a rank fails, as srun without --kill-on-bad-exit: the
#   watchdogs must)
set -u
mode=$1 np=$2 program=$3
shift 3
mpirun=("$@")
T=2                      # watchdog timeout, seconds
victim=1
[ "$mode" = kill ] && victim=$((np - 1))
run_mode=$mode
extra=()
if [ "$mode" = selfend ]; then
    run_mode=stop
    extra=(--mca orte_abort_on_non_zero_status 0)
fi

out=$(mktemp) log=$(mktemp)
trap 'rm -f "$out" "$log"' EXIT
# The last argument tags this run's ranks, so that runs of other tests (ctest -j) are not
# taken for leftovers of this one.
tag=wdtest$$
ranks_left() { pgrep -f "^$program $run_mode $T $victim $tag\$" || true; }
start=$(date +%s%N)
if [ "$mode" = selfend ]; then
    # This mpirun does not end the job, and (Open MPI 4.1) does not return either once a rank
    # was killed: time how long until no rank is left, then end mpirun ourselves.
    timeout 40 "${mpirun[@]}" "${extra[@]}" -np "$np" "$program" "$run_mode" "$T" "$victim" "$tag" >"$out" 2>"$log" &
    launcher=$!
    sleep 1
    for _ in $(seq 1 400); do [ -z "$(ranks_left)" ] && break; sleep 0.1; done
    elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    kill "$launcher" 2>/dev/null
    wait "$launcher" 2>/dev/null
    status=1
    [ -z "$(ranks_left)" ] || status=124
else
    timeout 40 "${mpirun[@]}" "${extra[@]}" -np "$np" "$program" "$run_mode" "$T" "$victim" "$tag" >"$out" 2>"$log"
    status=$?
    elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
fi

fail=0
complain() { echo "test_comm_watchdog $mode: $*" >&2; fail=1; }
expect() { grep -Eq -- "$1" "$log" || complain "stderr lacks /$1/"; }

[ "$status" -ne 124 ] || complain "the job hung (ranks still there after 40 s)"
case $mode in
stall|stop|selfend)
    [ "$status" -ne 0 ] || complain "exit status 0, expected a failure"
    expect "harness: rank [0-9]+: collective #[0-9]+ gradient bucket all-reduce\(256 x f32\) in step 5 has not completed after [0-9.]+ s \(comm timeout 2.0 s\)"
    if [ "$mode" = stall ]; then expect "holding it up: rank $victim \(has not joined it\)\$"
    else expect "holding it up: rank $victim \(is stopped\)\$"; fi
    expect "rank $victim \(pid [0-9]+, .*\) in step 5: not in a collective; last joined #([0-9]+) comm_allreduce_sum_f64\(4 x f64\), completed #[0-9]+"
    expect "ending the job; killing rank $victim \(pid [0-9]+\)"
    [ "$mode" = stall ] || expect "rank $victim \(pid [0-9]+, stopped \(SIGSTOP\)\)"
    [ "$elapsed_ms" -lt $(( (T + 5) * 1000 )) ] || complain "took ${elapsed_ms} ms, expected under $((T + 5)) s"
    [ "$(grep -c 'has not completed' "$log")" -eq 1 ] || complain "expected exactly one report" ;;
kill|exit)
    [ "$status" -ne 0 ] || complain "exit status 0, expected a failure"
    expect "harness: rank [0-9]+: rank $victim \(pid [0-9]+ on [^)]*\) is gone - killed, crashed, out of memory or exited without comm_finalize - while it was in step 5; its last collective was #[0-9]+ comm_allreduce_sum_f64\(4 x f64\), which it had completed\.$"
    # the survivor may be seen before it starts to wait (joined, not yet waiting): both name
    # the same collective; which one is a race of the watchdog thread with the step
    expect "this rank was in step 5, (waiting in collective #[0-9]+ gradient bucket all-reduce\(256 x f32\) \(it had completed #[0-9]+\)|it had started collective #[0-9]+ gradient bucket all-reduce\(256 x f32\) and completed #[0-9]+); ending the job"
    [ "$elapsed_ms" -lt 6000 ] || complain "took ${elapsed_ms} ms, expected under 6 s" ;;
mismatch)
    [ "$status" -ne 0 ] || complain "exit status 0, expected a failure"
    expect "harness: rank [0-9]+: collective mismatch: rank 0 calls #([0-9]+) comm_allreduce_sum_f64\(4 x f64\) but rank $victim calls #[0-9]+ comm_allreduce_sum_f64\(3 x f64\)"
    [ "$elapsed_ms" -lt 6000 ] || complain "took ${elapsed_ms} ms, expected under 6 s" ;;
skip)
    [ "$status" -ne 0 ] || complain "exit status 0, expected a failure"
    # whichever rank's watchdog fires first reports: the skipping one or one of the others
    expect "harness: rank [0-9]+: collective #[0-9]+ (comm_allreduce_sum_f64\(4 x f64\) in step 5|gradient bucket all-reduce\(256 x f32\) in step 6) has not completed after"
    expect "every rank has joined it: the ranks disagree on what it is"
    expect "ranks disagree on collective #([0-9]+): rank [0-9]+ calls #[0-9]+ (comm_allreduce_sum_f64\(4 x f64\)|gradient bucket all-reduce\(256 x f32\)), rank [0-9]+ calls #[0-9]+ (comm_allreduce_sum_f64\(4 x f64\)|gradient bucket all-reduce\(256 x f32\))"
    expect "rank $victim \(pid [0-9]+, .*\) in step 6: waiting"
    [ "$elapsed_ms" -lt $(( (T + 5) * 1000 )) ] || complain "took ${elapsed_ms} ms, expected under $((T + 5)) s" ;;
allow)
    [ "$status" -eq 0 ] || complain "exit status $status, expected 0 (the allowed wait was taken for a stall)"
    grep -q "watchdog test: 8 steps done" "$out" || complain "stdout lacks 'watchdog test: 8 steps done'"
    [ "$elapsed_ms" -ge $(( 2 * T * 1000 )) ] || complain "took only ${elapsed_ms} ms: did rank $victim really wait?" ;;
*)
    complain "unknown mode $mode" ;;
esac

# mpirun's last kills may still be in flight; give the kernel a moment to reap them.
left=""
for _ in $(seq 1 30); do
    left=$(ranks_left)
    [ -z "$left" ] && break
    sleep 0.1
done
if [ -n "$left" ]; then
    complain "processes of $program still running: $left"
    # These are this test's own ranks (matched by the full path of its binary).
    for pid in $left; do kill -9 "$pid" 2>/dev/null; done
fi

echo "test_comm_watchdog $mode: np $np, exit status $status after ${elapsed_ms} ms"
if [ "$fail" -ne 0 ]; then
    echo "---- stdout of the job ----" >&2
    cat "$out" >&2
    echo "---- stderr of the job ----" >&2
    cat "$log" >&2
fi
exit "$fail"
