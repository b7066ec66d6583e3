# comm.grad_dtype=bf16: gradients travel as bf16 (half the bytes), summed in fp32 pairwise and
# rounded to bf16 at every hop (MPI user op).  Over a full launch/mlp.yaml run on 2 ranks
# (9375 steps, here with train.zero_stage=1 so the reduce-scatter path is the one in bf16):
#  - every logged interval loss (mean over 100 steps) within 0.01 absolute and 4% relative of
#    the fp32 run's, and the final one within 0.01;
#  - the accuracy bar still met: test accuracy >= 0.89, and within 0.005 of fp32's;
#  - the bf16 run is not secretly fp32: its losses differ from fp32's somewhere.
# Plus, short: bf16 at stage 0 (all-reduce) and stage 1 (reduce-scatter) agree on 3 ranks.
source "$(dirname "$0")/common.sh"
B=$WORK/bf16
rm -rf "$B"; mkdir -p "$B"
CFG=$(dirname "$0")/../../launch/mlp.yaml
full=(--set data.train="$DATA/train.h5" --set data.test="$DATA/test.h5" --set log.progress=false)
run_ranks 2 train "$CFG" "${full[@]}" --set run.dir="$B/fp32" --set train.zero_stage=1
run_ranks 2 train "$CFG" "${full[@]}" --set run.dir="$B/bf16" --set train.zero_stage=1 \
  --set comm.grad_dtype=bf16
short=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=60
       --set train.batch_size=96 --set train.warmup_steps=5 --set log.every=1
       --set log.progress=false --set comm.bucket_kb=64 --set comm.grad_dtype=bf16
       --set train.clip_grad_norm=0.5)
run_ranks 3 train "$CFG" "${short[@]}" --set run.dir="$B/short_z0" --set train.zero_stage=0
run_ranks 3 train "$CFG" "${short[@]}" --set run.dir="$B/short_z1" --set train.zero_stage=1
"$PY" - "$B" <<'PY'
import json, sys
import nan_safe
b = sys.argv[1]
def rows(run, ev):
    return [r for r in map(json.loads, open(f"{b}/{run}/metrics.jsonl")) if r["event"] == ev]
f, h = rows("fp32", "train"), rows("bf16", "train")
assert len(f) == len(h) and len(f) > 90, (len(f), len(h))
diffs = [(a["step"], a["loss"], c["loss"]) for a, c in zip(f, h)]
worst_abs = nan_safe.worst(abs(x - y) for _, x, y in diffs)
worst_rel = nan_safe.worst(abs(x - y) / x for _, x, y in diffs)
print(f"bf16 vs fp32 gradients, {len(diffs)} logged intervals of {f[1]['step'] - f[0]['step']} steps: "
      f"max |loss difference| {worst_abs:.4f}, max relative {worst_rel:.4f}; "
      f"final loss fp32 {diffs[-1][1]:.4f} bf16 {diffs[-1][2]:.4f}")
assert any(x != y for _, x, y in diffs), "bf16 run identical to fp32: not exchanged in bf16?"
assert worst_abs < 0.01 and worst_rel < 0.04, "bf16 loss curve strays from fp32"
assert abs(diffs[-1][1] - diffs[-1][2]) < 0.01
ef, eh = rows("fp32", "eval")[-1], rows("bf16", "eval")[-1]
assert ef["samples"] == eh["samples"] == 10000
print(f"test accuracy fp32 {ef['accuracy']:.4f}, bf16 {eh['accuracy']:.4f}")
assert eh["accuracy"] >= 0.89, eh
assert abs(eh["accuracy"] - ef["accuracy"]) < 0.005
s0 = [r["loss"] for r in rows("short_z0", "train")]
s1 = [r["loss"] for r in rows("short_z1", "train")]
w = nan_safe.worst(abs(x - y) / x for x, y in zip(s0, s1))
print(f"bf16, 3 ranks, stage 0 vs 1: max relative loss difference {w:.2e}")
assert len(s0) == len(s1) == 60 and w < 1e-4
print("bf16 gradient exchange: ok")
PY
