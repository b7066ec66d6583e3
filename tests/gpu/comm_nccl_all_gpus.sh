# NCCL with one rank per visible GPU (skipped below two GPUs): the device gradients of every
# rank averaged by ncclAllReduce, checked against the double-precision average; then the
# sharded exchange (grouped ncclReduce into the shards, grouped ncclBroadcast all-gather,
# overlapped and in one call); then both with bf16 on the wire (ncclBfloat16 sums).
# Usage: comm_nccl_all_gpus.sh TEST_GPU_COMM MPIRUN
set -euo pipefail
TEST=$1 MPIRUN=$2
gpus=$("$TEST" --count)
if [ "$gpus" -lt 2 ]; then
  echo "SKIP: $gpus GPU(s) visible; this test needs at least 2"
  exit 77
fi
"$MPIRUN" --oversubscribe -np "$gpus" "$TEST" nccl
"$MPIRUN" --oversubscribe -np "$gpus" "$TEST" nccl --zero
"$MPIRUN" --oversubscribe -np "$gpus" "$TEST" nccl --bf16
"$MPIRUN" --oversubscribe -np "$gpus" "$TEST" nccl --zero --bf16
