# The parts of tests/gpu/device_check.sh that run without a GPU: --dry-run lists every check
# and exits 0; a real run on a machine without a GPU says so and exits 77 (on a GPU machine
# this half is not what is tested, and passes).
set -uo pipefail
S=$(dirname "$0")/device_check.sh
out=$(bash "$S" --dry-run --budget 123) || { echo "FAIL: --dry-run exited $?"; exit 1; }
for c in unit_kernels unit_step comm_nccl_1rank train_mlp_bf16 train_cnn_fp32 \
         train_2ranks_share_gpu bench_mlp train_gpt; do
  grep -q "$c" <<<"$out" || { echo "FAIL: --dry-run does not list $c"; echo "$out"; exit 1; }
done
grep -q "budget 123s" <<<"$out" || { echo "FAIL: --budget not taken"; exit 1; }
if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo "ok (a GPU is here: no-GPU path not tested)"; exit 0; fi
tmp=$(mktemp -d)
msg=$(OUT=$tmp bash "$S" 2>&1); rc=$?
rm -rf "$tmp"
[ $rc = 77 ] || { echo "FAIL: without a GPU the exit status is $rc, not 77: $msg"; exit 1; }
grep -q "no GPU" <<<"$msg" || { echo "FAIL: no message saying there is no GPU: $msg"; exit 1; }
echo "device_check dry run and no-GPU path: ok"
