# Convolutional networks end to end: (1) synchronised batch norm with 2 and 4 ranks gives the
# losses of 1 rank with the whole batch (and unsynchronised does not); (2) a small ResNet-style
# model (conv, batch norm, pools, projected residual, global average pooling) steps exactly
# like PyTorch in float64; (3) exact resume with batch-norm running statistics; (4) the CNN
# config learns (a short run; the full run's accuracy is in the issue notes).
source "$(dirname "$0")/common.sh"
C=$WORK/cnn
rm -rf "$C"; mkdir -p "$C"
"$PY" - "$DATA/train.h5" "$C/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g["images"] = f["images"][:2048]
    g["labels"] = f["labels"][:2048]
    for k, v in f.attrs.items():
        g.attrs[k] = v
PY
small_cnn() {  # small_cnn SYNC [WIDTH]: WIDTH (default 8) and 2 WIDTH channels
  local w=${2:-8}
  echo "[{type: conv2d, out: $w, kernel: 3, padding: 1}, {type: batchnorm2d, sync: $1}, {type: relu},
        {type: maxpool2d, kernel: 2}, {type: residual_start},
        {type: conv2d, out: $((2 * w)), kernel: 3, stride: 2, padding: 1, bias: false},
        {type: batchnorm2d, sync: $1}, {type: relu}, {type: residual_end, project: true},
        {type: avgpool2d, kernel: 2}, {type: global_avgpool}, {type: linear, out: 10}]"
}
common=(--set data.train="$C/small.h5" --set data.test="" --set train.batch_size=64
        --set train.warmup_steps=0 --set log.every=1 --set log.progress=false)

# (1) synchronised batch norm
for ranks in 1 2 4; do
  run_ranks $ranks train "${common[@]}" --set train.steps=20 --set "model.layers=$(small_cnn true)" \
    --set run.dir="$C/sync$ranks"
done
run_ranks 2 train "${common[@]}" --set train.steps=20 --set "model.layers=$(small_cnn false)" \
  --set run.dir="$C/local2"
"$PY" - "$C" <<'PY'
import json, sys
import nan_safe
c = sys.argv[1]
def losses(r):
    return [x["loss"] for x in map(json.loads, open(f"{c}/{r}/metrics.jsonl")) if x["event"] == "train"]
ref = losses("sync1")
for r in ("sync2", "sync4"):
    worst = nan_safe.worst(abs(a - b) / a for a, b in zip(ref, losses(r)))
    print(f"{r}: max relative loss difference vs 1 rank {worst:.2e}")
    assert worst < 1e-4, (r, worst)
local = nan_safe.worst(abs(a - b) / a for a, b in zip(ref, losses("local2")))
print(f"unsynchronised batch norm on 2 ranks differs by {local:.2e}")
assert local > 1e-3, "per-rank statistics should differ from the whole batch's"
PY

# (2) the same model, continued 5 steps from a checkpoint, against PyTorch in float64
tm=(--set train.optimizer=sgd --set train.momentum=0 --set train.weight_decay=0
    --set train.schedule=constant --set train.lr=0.05 --set data.shuffle=false
    --set "model.layers=$(small_cnn false)" --set train.steps=8)
run_ranks 1 train "${common[@]}" "${tm[@]}" --set run.dir="$C/torch" --stop-after 3 || [ $? -eq 75 ]
run_ranks 1 train "${common[@]}" "${tm[@]}" --set run.dir="$C/torch" --resume auto
"$PY" "$(dirname "$0")/torch_model.py" "$C/torch" "$C/torch/checkpoints/step_00000003.h5" \
  "$C/torch/checkpoints/step_00000008.h5" "$C/small.h5" 5 0.05

# (3) exact resume with running statistics, 2 ranks; 16 and 32 channels, so that the 3x3
# 16->32 convolution runs on oneDNN's blocked kernels (cpu_conv_dnnl.c's rule: channels per
# group multiples of 16) and the others on im2col + GEMM
rs=(--set train.steps=24 --set "model.layers=$(small_cnn false 16)" --set checkpoint.every=5)
run_ranks 2 train "${common[@]}" "${rs[@]}" --set run.dir="$C/straight"
run_ranks 2 train "${common[@]}" "${rs[@]}" --set run.dir="$C/resumed" --stop-after 11 || [ $? -eq 75 ]
run_ranks 2 train "${common[@]}" "${rs[@]}" --set run.dir="$C/resumed" --resume auto
"$PY" - "$C/straight/checkpoints/step_00000024.h5" "$C/resumed/checkpoints/step_00000024.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as a, h5py.File(sys.argv[2]) as b:
    names = []
    a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
    assert any(n.startswith("buffers/") for n in names), names
    for n in names:
        assert np.array_equal(a[n][:], b[n][:]), n
print(f"resume with batch norm: {len(names)} tensors bit-identical")
PY

# (4) the CNN config learns: 150 steps on 2 ranks
CFG=$(dirname "$0")/../../launch/cnn.yaml
run_ranks 2 train "$CFG" --set data.train="$DATA/train.h5" --set data.test="$DATA/test.h5" \
  --set train.steps=150 --set train.warmup_steps=20 --set log.eval_every=0 \
  --set log.progress=false --set run.dir="$C/learn"
"$PY" - "$C/learn/metrics.jsonl" <<'PY'
import json, sys
ev = [r for r in map(json.loads, open(sys.argv[1])) if r["event"] == "eval"]
print(f"CNN after 150 steps: test accuracy {ev[-1]['accuracy']:.4f}")
assert ev[-1]["accuracy"] >= 0.84, ev[-1]
PY
echo "cnn: ok"
