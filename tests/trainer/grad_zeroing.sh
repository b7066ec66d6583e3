# Gradient zeroing folded into the first writer (model_zero_grads + layers that overwrite):
# with every gradient set to NaN after each update (HARNESS_FAULT_POISON_GRADS), a gradient
# that the next step neither zeroes nor overwrites would make that step non-finite.  An MLP
# (linear layers only: nothing is zeroed), a CNN (conv and batch norm accumulate: zeroed) and
# a tiny GPT with a tied head (lm_head overwrites the embedding's gradient, the embedding adds
# to it) train to bit-identical losses with and without the poison, with 1 and 2 micro-steps
# and on 2 ranks.
source "$(dirname "$0")/common.sh"
Z=$WORK/zeroing
rm -rf "$Z"; mkdir -p "$Z"
"$PY" "$(dirname "$0")/make_tokens.py" "$Z" 20000
quiet=(--set log.every=1 --set log.progress=false --set data.test="" --set train.steps=12
       --set train.warmup_steps=2 --set train.clip_grad_norm=1.0)
mlp=(--set data.train="$DATA/train.h5" --set train.batch_size=32)
cnn=(--set data.train="$DATA/train.h5" --set train.batch_size=16
     --set 'model.layers=[{type: conv2d, out: 4, kernel: 3, padding: 1}, {type: batchnorm2d},
            {type: relu}, {type: maxpool2d, kernel: 2}, {type: flatten}, {type: linear, out: 32},
            {type: relu}, {type: dropout, p: 0.1}, {type: linear, out: 10}]')
gpt=(--set data.train="$Z/train.h5" --set model.gpt.layers=2 --set model.gpt.heads=2
     --set model.gpt.dim=32 --set model.gpt.context=16 --set train.batch_size=4
     --set train.optimizer=adamw --set train.lr=0.001)
for model in mlp cnn gpt; do
  declare -n args=$model
  for variant in "1 1" "1 2" "2 1"; do
    set -- $variant
    tag="$model-np$1-acc$2"
    run_ranks "$1" train "${quiet[@]}" "${args[@]}" --set train.grad_accum="$2" \
      --set run.dir="$Z/$tag"
    HARNESS_FAULT_POISON_GRADS=1 run_ranks "$1" train "${quiet[@]}" "${args[@]}" \
      --set train.grad_accum="$2" --set run.dir="$Z/$tag-poison"
  done
  unset -n args
done
"$PY" - "$Z" <<'PY'
import json, math, sys
z = sys.argv[1]
def losses(run):
    rows = [json.loads(l) for l in open(f"{z}/{run}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["event"] == "train"]
for model in ("mlp", "cnn", "gpt"):
    for np_, acc in ((1, 1), (1, 2), (2, 1)):
        tag = f"{model}-np{np_}-acc{acc}"
        a, b = losses(tag), losses(tag + "-poison")
        assert len(a) == 12 and len(b) == 12, (tag, len(a), len(b))
        assert all(math.isfinite(x) for x in a), (tag, a)
        assert a == b, f"{tag}: losses change when stale gradients are NaN: {a} vs {b}"
        print(f"{tag}: 12 losses bit-identical with poisoned gradients ({a[0]:.4f} -> {a[-1]:.4f})")
print("gradient zeroing: ok")
PY

# The CUDA-graph step (graph_step_body: one micro-step, the step's values counted on the
# host) run without recording on the CPU (HARNESS_TEST_GRAPH_BODY): the same losses, bit for
# bit, as the ordinary step, for the MLP with dropout, SGD with momentum, and the GPT with
# AdamW, warmup and a cosine schedule; also across a resume (the first step of a process is
# always an ordinary one).
G=$Z/graph
mkdir -p "$G"
mlpd=(--set data.train="$DATA/train.h5" --set train.batch_size=32 --set train.momentum=0.9
      --set 'model.layers=[{type: flatten}, {type: linear, out: 64}, {type: relu},
             {type: dropout, p: 0.2}, {type: linear, out: 10}]')
for model in mlpd gpt; do
  declare -n args=$model
  run_ranks 1 train "${quiet[@]}" "${args[@]}" --set run.dir="$G/$model-plain"
  HARNESS_TEST_GRAPH_BODY=1 run_ranks 1 train "${quiet[@]}" "${args[@]}" \
    --set run.dir="$G/$model-body" --set checkpoint.every=6 --stop-after 6 || [ $? -eq 75 ]
  HARNESS_TEST_GRAPH_BODY=1 run_ranks 1 train "${quiet[@]}" "${args[@]}" \
    --set run.dir="$G/$model-body" --set checkpoint.every=6 --resume auto
  unset -n args
done
"$PY" - "$G" <<'PY'
import json, sys
g = sys.argv[1]
def losses(run):
    rows = [json.loads(l) for l in open(f"{g}/{run}/metrics.jsonl")]
    return [(r["step"], r["loss"]) for r in rows if r["event"] == "train"]
for model in ("mlpd", "gpt"):
    a, b = losses(f"{model}-plain"), losses(f"{model}-body")
    assert len(a) == 12 and b == a, f"{model}: graph-path step differs: {a} vs {b}"
    print(f"{model}: 12 losses bit-identical on the graph path's step (with a resume at 6)")
print("graph step body: ok")
PY
