# The watchdog and NCCL: a gradient bucket that stays queued on the GPU (the compute stream
# sleeps 60 s before it) must end the job within the timeout (2 s) plus the bounded
# ncclCommAbort, with status 1 and a report naming the collective, the bucket and the step.
# Usage: comm_stall.sh TEST_GPU_COMM MPIRUN
set -uo pipefail
TEST=$1 MPIRUN=$2
gpus=$("$TEST" --count) || { echo "FAIL: a GPU is listed but CUDA cannot use it"; exit 1; }
if [ "$gpus" -lt 1 ]; then echo "SKIP: no CUDA device"; exit 77; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
"$MPIRUN" --oversubscribe -np 1 "$TEST" stall >"$log" 2>&1
status=$?
took=$(( $(date +%s) - start ))
cat "$log"
if grep -q "^SKIP" "$log"; then exit 77; fi
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$status" -ne 0 ] || fail "the job ended with status 0"
[ "$took" -le 40 ] || fail "the job took $took s to end (timeout 2 s + abort 10 s)"
grep -q "collective #[0-9]* gradient bucket all-reduce(100 x f32) in step 7 has not completed" "$log" \
  || fail "no stall report naming the bucket collective and the step"
grep -q "on the GPU: NCCL gradient bucket all-reduce (f32) of bucket 0 of 10 (elements \[900, 1000))" "$log" \
  || fail "no line naming the GPU bucket"
echo "stalled GPU bucket: reported and ended in $took s"
