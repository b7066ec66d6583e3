# End to end: the default MLP config (launch/mlp.yaml) trained with 2 ranks reaches at least
# 0.89 test accuracy on Fashion-MNIST (the dataset's published MLP baseline is 0.883).
# PRECISION=bf16: the same with bf16 GEMM inputs on the CPU; skipped (77) where the CPU backend
# does not use bf16 (no AMX: `harness devices` does not say "bf16 on AMX").
source "$(dirname "$0")/common.sh"
CFG=$(dirname "$0")/../../launch/mlp.yaml
PRECISION=${PRECISION:-fp32}
EXTRA=()
if [[ $PRECISION == bf16 ]]; then
  if ! "$HARNESS" devices | grep -q "bf16 on AMX"; then
    echo "no AMX: the CPU backend computes bf16 runs in fp32, nothing new to test"; exit 77
  fi
  EXTRA=(--set run.precision=bf16 --set run.device=cpu)
fi
run_ranks 2 train "$CFG" --set data.train="$DATA/train.h5" --set data.test="$DATA/test.h5" \
  --set run.dir="$WORK/acc-$PRECISION" --set log.progress=false "${EXTRA[@]}"
"$PY" - "$WORK/acc-$PRECISION/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r for r in rows if r["event"] == "eval"]
assert ev and ev[-1]["samples"] == 10000, ev[-1:]
acc = ev[-1]["accuracy"]
print(f"final test accuracy {acc:.4f}")
assert acc >= 0.89, f"test accuracy {acc} < 0.89"
PY
