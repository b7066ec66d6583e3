#!/usr/bin/env bash
# Runs test_comm_abort on 3 ranks and checks that comm_abort on rank 1 ends the whole job:
# non-zero exit that is not a timeout, rank 1's message on stderr, done within 10 s, and no
# process of the test program left behind.
# Usage: test_comm_abort.sh PROGRAM MPIRUN [MPIRUN ARGS...]
set -u
program=$1
shift
mpirun=("$@")

log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=$(date +%s%N)
timeout 30 "${mpirun[@]}" -np 3 "$program" 2>"$log" >/dev/null
status=$?
end=$(date +%s%N)
elapsed_ms=$(( (end - start) / 1000000 ))

fail=0
complain() { echo "test_comm_abort: $*" >&2; fail=1; }

[ "$status" -ne 0 ] || complain "mpirun exited 0, expected a failure"
[ "$status" -ne 124 ] || complain "mpirun timed out (the job hung instead of aborting)"
grep -q "rank 1" "$log" || complain "stderr does not name rank 1"
grep -q "simulated failure" "$log" || complain "stderr lacks the message"
grep -q "harness: rank 1: simulated failure" "$log" || complain "stderr lacks 'harness: rank 1: simulated failure'"
grep -q "got past a collective" "$log" && complain "a rank got past a collective rank 1 never joined"
[ "$elapsed_ms" -lt 10000 ] || complain "took ${elapsed_ms} ms, expected under 10 s"

# Ranks are killed by mpirun as it exits; give the kernel a moment to reap them.
left=""
for _ in $(seq 1 20); do
    left=$(pgrep -f -x "$program" || true)
    [ -z "$left" ] && break
    sleep 0.1
done
if [ -n "$left" ]; then
    complain "processes of $program still running: $left"
    # These are this test's own ranks (matched by the full path of its binary).
    for pid in $left; do kill -9 "$pid" 2>/dev/null; done
fi

echo "test_comm_abort: exit status $status after ${elapsed_ms} ms"
if [ "$fail" -ne 0 ]; then
    echo "---- stderr of the job ----" >&2
    cat "$log" >&2
fi
exit "$fail"
