#!/usr/bin/env bash
# Quality: launch/gpt.yaml trained by harness (2 CPU ranks, or the GPUs) against the same model
# trained by PyTorch (tests/perf/torch_gpt.py --train: same architecture, init, AdamW groups,
# warmup + cosine schedule, clipping, batch, context and steps, on the same token files),
# measured side by side: the final validation loss over every validation window, and the ratio.
#   bash tests/perf/gpt_quality.sh build/trainer/harness            # about 2 x 10 minutes on 2 cores
#   STEPS=300 bash tests/perf/gpt_quality.sh build/trainer/harness  # shorter
# Needs datasets/fortunes/{train,val}.h5 (bash launch/corpus.sh).  Passes when the two losses
# are within 2% of each other; prints both either way.
set -euo pipefail
HARNESS=$(realpath "$1")
MPIRUN=${2:-$(command -v mpirun || echo mpirun)}
PY=${3:-/usr/bin/python3}
WORK=${4:-/tmp/harness-gpt-quality}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$HERE/../..
CFG=$ROOT/launch/gpt.yaml
STEPS=${STEPS:-1200}
source "$HERE/../mpi_env.sh"
[[ -s $ROOT/datasets/fortunes/val.h5 ]] || (cd "$ROOT" && HARNESS=$HARNESS bash launch/corpus.sh)
mkdir -p "$WORK"
# the schedule of launch/gpt.yaml, read from its resolved config
rm -rf "$WORK/harness"
"$MPIRUN" -np 2 -x OMP_NUM_THREADS=1 "$HARNESS" train "$CFG" --set run.dir="$WORK/harness" \
  --set data.train="$ROOT/datasets/fortunes/train.h5" --set data.test="$ROOT/datasets/fortunes/val.h5" \
  --set train.steps="$STEPS" --set log.eval_every=0 --set checkpoint.every=0 --set log.progress=false \
  >"$WORK/harness.log" 2>&1 || { tail -20 "$WORK/harness.log"; exit 1; }
read -r L H D T B LR BETA2 WD CLIP WARM MINLR < <("$PY" - "$WORK/harness/config.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1])); g, t = c["model"]["gpt"], c["train"]
print(g["layers"], g["heads"], g["dim"], g["context"], t["batch_size"], t["lr"], t["beta2"],
      t["weight_decay"], t["clip_grad_norm"], t["warmup_steps"], t["min_lr"])
PY
)
OMP_NUM_THREADS=2 "$PY" "$HERE/torch_gpt.py" --train --data "$ROOT/datasets/fortunes/train.h5" \
  --val "$ROOT/datasets/fortunes/val.h5" --layers "$L" --heads "$H" --dim "$D" --context "$T" \
  --batch "$B" --steps "$STEPS" --lr "$LR" --beta2 "$BETA2" --weight-decay "$WD" --clip "$CLIP" \
  --warmup-steps "$WARM" --min-lr "$MINLR" --threads 2 >"$WORK/torch.json" 2>"$WORK/torch.log" \
  || { tail -20 "$WORK/torch.log"; exit 1; }
"$PY" - "$WORK/harness/metrics.jsonl" "$WORK/torch.json" "$STEPS" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
h = [r for r in rows if r["event"] == "eval"][-1]["loss"]
s = [r for r in rows if r["event"] == "summary"][-1]
t = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
rel = abs(h - t["val_loss"]) / t["val_loss"]
print(f"launch/gpt.yaml, {sys.argv[3]} steps: validation loss harness {h:.4f} (perplexity {math.exp(h):.2f}, "
      f"{s['train_seconds']:.0f} s of training, {s['tokens_per_s']:.0f} tokens/s on 2 ranks) vs PyTorch "
      f"{t['val_loss']:.4f} (perplexity {math.exp(t['val_loss']):.2f}, {t['seconds']:.0f} s, "
      f"{t['tokens_per_s']:.0f} tokens/s, 2 threads): relative difference {100 * rel:.2f}%")
sys.exit(0 if rel <= 0.02 else 1)
PY
