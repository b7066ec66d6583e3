#!/usr/bin/env bash
# GPU benchmark: harness vs PyTorch eager on the same GPU, same model (launch/mlp.yaml without
# dropout, or MODEL=cnn for launch/cnn.yaml), batch, optimizer (AdamW) and precision, in one run;
# samples/s for both, the ratio, and harness's step-time breakdown (compute, all-reduce wait,
# data wait, from metrics.jsonl).  Skips (77) without a CUDA device.
#   bash tests/perf/bench_gpu.sh build/trainer/harness
#   MODEL=cnn PRECISIONS="fp32 bf16" BATCHES="128 512" bash tests/perf/bench_gpu.sh build/trainer/harness
# Arguments: HARNESS [PYTHON [WORKDIR]]; environment: STEPS (2000), BATCHES ("128 1024"),
# PRECISIONS ("fp32 tf32 bf16"), MODEL (mlp), WARMUP (50, PyTorch untimed steps).
set -euo pipefail
HARNESS=$(realpath "$1")
PY=${2:-/usr/bin/python3}
WORK=${3:-/tmp/harness-gpu-perf}
STEPS=${STEPS:-2000} BATCHES=${BATCHES:-"128 1024"} PRECISIONS=${PRECISIONS:-"fp32 tf32 bf16"}
MODEL=${MODEL:-mlp} WARMUP=${WARMUP:-50}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$("$HARNESS" devices --count)" -lt 1 ]; then echo "SKIP: no CUDA device"; exit 77; fi
mkdir -p "$WORK"
DATA=$WORK/fashion-mnist
[ -f "$DATA/train.h5" ] || "$HARNESS" convert fashion-mnist --out "$DATA" >/dev/null
CFG=$HERE/../../launch/$MODEL.yaml
# the MLP config has dropout; the PyTorch twin does not: switch it off for the comparison
LAYERS=()
[ "$MODEL" = mlp ] && LAYERS=(--set "model.layers=[{type: flatten}, {type: linear, out: 256}, {type: relu}, {type: linear, out: 128}, {type: relu}, {type: linear, out: 10}]")
[ "$MODEL" = cnn ] && LAYERS=(--set data.augment_hflip=false)
printf '%-6s %-5s %14s %14s %7s %12s %12s %12s\n' batch prec harness/s pytorch/s ratio compute_ms allreduce_ms data_ms
for b in $BATCHES; do
  for p in $PRECISIONS; do
    run=$WORK/run_${MODEL}_${b}_$p
    rm -rf "$run"
    "$HARNESS" train "$CFG" "${LAYERS[@]}" --set data.train="$DATA/train.h5" --set data.test= \
      --set run.device=cuda --set run.precision=$p --set train.batch_size=$b \
      --set train.steps=$STEPS --set train.warmup_steps=0 --set train.schedule=constant \
      --set train.lr=0.001 --set train.weight_decay=0.01 --set log.every=500 \
      --set log.progress=false --set run.dir="$run" >"$run.log" 2>&1 || { cat "$run.log"; exit 1; }
    h=$("$PY" - "$run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
s = [r for r in rows if r["event"] == "summary"][-1]
t = [r for r in rows if r["event"] == "train"][-1]
print(s["samples_per_s"], t["step_compute_s"] * 1e3, t["step_comm_wait_s"] * 1e3, t["step_data_wait_s"] * 1e3)
PY
)
    t=$("$PY" "$HERE/torch_mlp.py" --data "$DATA/train.h5" --model $MODEL --device cuda \
        --precision $p --batch $b --steps $STEPS --warmup $WARMUP --lr 0.001 | \
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    read -r hs cms ams dms <<<"$h"
    printf '%-6s %-5s %14.0f %14.0f %7.2f %12.4f %12.4f %12.4f\n' "$b" "$p" "$hs" "$t" \
      "$(echo "$hs $t" | awk '{print $1/$2}')" "$cms" "$ams" "$dms"
  done
done
