# The parts of tests/gpu/device_check.sh that run without a GPU: --dry-run lists every check in
# the order of issue 22 (unit checks, step modes, GPU vs CPU step for step, trainings, ZeRO and
# shared GPU, benchmarks last), their estimates fit the default budget (exit 0) and not a
# smaller one (exit 3: incomplete); a real run on a machine without a GPU says so and exits 77
# (on a GPU machine this half is not what is tested, and passes).
set -uo pipefail
S=$(dirname "$0")/device_check.sh
out=$(bash "$S" --dry-run) || { echo "FAIL: --dry-run exited $? (estimates over the default budget?)"; echo "$out"; exit 1; }
grep -q "fit the budget" <<<"$out" || { echo "FAIL: the dry run does not say the plan fits"; exit 1; }
order=(versions unit_kernels unit_cnn unit_step unit_gpt comm_nccl_1rank comm_stall step_modes
       train_gpu_vs_cpu train_mlp_fp32 train_cnn_bf16 train_gpt train_zero1 train_2ranks_share_gpu
       bench_mlp bench_cnn bench_gpt)
prev=0
for c in "${order[@]}"; do
  line=$(grep -n " $c " <<<"$out" | head -1 | cut -d: -f1)
  [ -n "$line" ] || { echo "FAIL: --dry-run does not list $c"; echo "$out"; exit 1; }
  [ "$line" -gt "$prev" ] || { echo "FAIL: $c is listed out of order"; echo "$out"; exit 1; }
  prev=$line
done
small=$(bash "$S" --dry-run --budget 123); rc=$?
[ $rc = 3 ] || { echo "FAIL: a plan over the budget exits $rc, not 3"; exit 1; }
grep -q "budget 123s" <<<"$small" || { echo "FAIL: --budget not taken"; exit 1; }
grep -q "over the budget" <<<"$small" || { echo "FAIL: no message that the plan does not fit"; exit 1; }
if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo "ok (a GPU is here: no-GPU path not tested)"; exit 0; fi
tmp=$(mktemp -d)
msg=$(OUT=$tmp bash "$S" 2>&1); rc=$?
rm -rf "$tmp"
[ $rc = 77 ] || { echo "FAIL: without a GPU the exit status is $rc, not 77: $msg"; exit 1; }
grep -q "no GPU" <<<"$msg" || { echo "FAIL: no message saying there is no GPU: $msg"; exit 1; }
echo "device_check dry run (order, budget) and no-GPU path: ok"
