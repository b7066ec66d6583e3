# End to end: the default MLP config (launch/mlp.yaml) trained with 2 ranks reaches at least
# 0.89 test accuracy on Fashion-MNIST (the dataset's published MLP baseline is 0.883).
source "$(dirname "$0")/common.sh"
CFG=$(dirname "$0")/../../launch/mlp.yaml
run_ranks 2 train "$CFG" --set data.train="$DATA/train.h5" --set data.test="$DATA/test.h5" \
  --set run.dir="$WORK/acc" --set log.progress=false
"$PY" - "$WORK/acc/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r for r in rows if r["event"] == "eval"]
assert ev and ev[-1]["samples"] == 10000, ev[-1:]
acc = ev[-1]["accuracy"]
print(f"final test accuracy {acc:.4f}")
assert acc >= 0.89, f"test accuracy {acc} < 0.89"
PY
