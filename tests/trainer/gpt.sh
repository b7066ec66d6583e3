# GPT end to end on byte-level token files written by h5py: a tiny GPT (2 layers, 4 heads,
# dim 64, context 32, vocabulary 256) replayed in PyTorch from harness's checkpoint (losses
# within 1e-5 relative every step, parameters within 1e-4, validation loss within 1e-5);
# data-parallel equivalence (1, 2, 4 ranks, gradient accumulation); bit-exact resume on 1
# and 2 ranks; resume on another number of ranks; generation from the checkpoint.
source "$(dirname "$0")/common.sh"
G=$WORK/gpt
rm -rf "$G"; mkdir -p "$G"
"$PY" "$(dirname "$0")/make_tokens.py" "$G" 60000
tiny=(--set data.train="$G/train.h5" --set model.gpt.layers=2 --set model.gpt.heads=4
      --set model.gpt.dim=64 --set model.gpt.context=32 --set train.batch_size=8
      --set log.every=1 --set log.progress=false --set train.lr=0.001)

# 1. PyTorch replay: 20 AdamW steps, weight decay, clipping, constant lr, windows in order
run_ranks 1 train "${tiny[@]}" --set data.test="$G/val.h5" --set data.shuffle=false \
  --set train.steps=20 --set train.schedule=constant --set train.weight_decay=0.1 \
  --set train.clip_grad_norm=1.0 --set checkpoint.every=10 --set run.dir="$G/torch"
"$PY" "$(dirname "$0")/gpt_torch.py" "$G/torch" "$G/torch/checkpoints/step_00000010.h5" \
  "$G/torch/checkpoints/step_00000020.h5" "$G/train.h5" "$G/val.h5"

# 2. data-parallel equivalence, shuffled windows, warmup + cosine, clipping
dp=("${tiny[@]}" --set data.test="" --set train.steps=30 --set train.warmup_steps=3
    --set train.clip_grad_norm=1.0)
run_ranks 1 train "${dp[@]}" --set run.dir="$G/dp1"
run_ranks 2 train "${dp[@]}" --set run.dir="$G/dp2"
run_ranks 4 train "${dp[@]}" --set run.dir="$G/dp4"
run_ranks 2 train "${dp[@]}" --set run.dir="$G/dp2acc" --set train.grad_accum=2
"$PY" - "$G" <<'PY'
import json, math, sys
import nan_safe
w = sys.argv[1]
def losses(run):
    return [r["loss"] for r in map(json.loads, open(f"{w}/{run}/metrics.jsonl")) if r["event"] == "train"]
ref = losses("dp1")
assert len(ref) == 30, len(ref)
assert abs(ref[0] - math.log(256)) < 0.3, f"first loss {ref[0]} is not near log(256)"
assert ref[-1] < ref[0] * 0.8, f"loss did not fall: {ref[0]} -> {ref[-1]}"
for run in ("dp2", "dp4", "dp2acc"):
    got = losses(run)
    worst = nan_safe.worst(abs(a - b) / abs(a) for a, b in zip(ref, got))
    print(f"GPT {run}: max relative loss difference vs 1 rank = {worst:.2e}")
    assert len(got) == 30 and worst < 1e-4, (run, worst)
PY

# 3. exact resume (1 and 2 ranks) and a world-size change (saved by 2 ranks, resumed by 1)
for ranks in 1 2; do
  run_ranks $ranks train "${dp[@]}" --set run.dir="$G/straight$ranks"
  rc=0; run_ranks $ranks train "${dp[@]}" --set run.dir="$G/stopped$ranks" --stop-after 13 || rc=$?
  [ $rc -eq 75 ] || fail "--stop-after exited $rc, want 75"
  run_ranks $ranks train "${dp[@]}" --set run.dir="$G/stopped$ranks" --resume auto
done
rc=0; run_ranks 2 train "${dp[@]}" --set run.dir="$G/resize" --stop-after 13 || rc=$?
[ $rc -eq 75 ] || fail "--stop-after exited $rc, want 75"
run_ranks 1 train "${dp[@]}" --set run.dir="$G/resize" --resume auto
"$PY" - "$G" <<'PY'
import json, sys, h5py, numpy as np
import nan_safe
w = sys.argv[1]
def losses(run):
    d = {}
    for r in map(json.loads, open(f"{w}/{run}/metrics.jsonl")):
        if r["event"] == "train":
            d[r["step"]] = r["loss"]
    return d
for ranks in (1, 2):
    a, b = losses(f"straight{ranks}"), losses(f"stopped{ranks}")
    assert sorted(a) == sorted(b) == list(range(1, 31))
    assert all(a[s] == b[s] for s in a), f"{ranks} ranks: losses differ after resume"
    with h5py.File(f"{w}/straight{ranks}/checkpoints/step_00000030.h5") as fa, \
         h5py.File(f"{w}/stopped{ranks}/checkpoints/step_00000030.h5") as fb:
        names = []
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        assert len(names) == 3 * 28, len(names)   # 28 parameters, each with exp_avg and exp_avg_sq
        for n in names:
            assert np.array_equal(fa[n][:], fb[n][:]), f"{n} differs"
    print(f"GPT resume on {ranks} rank(s): 30 losses and {len(names)} tensors bit-identical")
a, b = losses("straight2"), losses("resize")
worst = nan_safe.worst(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"GPT resume 2 ranks -> 1 rank: max relative loss difference {worst:.2e}")
assert worst < 1e-4, worst
PY

# 4. generation: deterministic for a seed, the prompt echoed, continuation from the corpus' bytes
CK=$G/straight1/checkpoints/step_00000030.h5
"$HARNESS" generate --checkpoint "$CK" --prompt "the cat " --tokens 40 --seed 7 > "$G/gen1.txt"
"$HARNESS" generate --checkpoint "$CK" --prompt "the cat " --tokens 40 --seed 7 > "$G/gen2.txt"
cmp "$G/gen1.txt" "$G/gen2.txt" || fail "generate is not deterministic for a seed"
head -c 8 "$G/gen1.txt" | grep -q "^the cat " || fail "the prompt is not echoed: $(cat "$G/gen1.txt")"
[ "$(wc -c < "$G/gen1.txt")" -ge 20 ] || fail "generated too little: $(cat "$G/gen1.txt")"
"$HARNESS" generate --checkpoint "$CK" --tokens 40 --temperature 0 > "$G/greedy.txt"
echo "sample: $(head -c 60 "$G/gen1.txt" | tr '\n' '|')"
# errors: a checkpoint whose data is gone, a bad value
rc=0; "$HARNESS" generate --checkpoint "$CK" --set data.train="$G/missing.h5" 2>"$G/err" || rc=$?
[ $rc -ne 0 ] && grep -q "missing.h5" "$G/err" || fail "missing data not reported: $(cat "$G/err")"
rc=0; "$HARNESS" generate --checkpoint "$CK" --temperature -1 2>"$G/err" || rc=$?
[ $rc -ne 0 ] && grep -q "temperature" "$G/err" || fail "bad --temperature not reported"
# a GPT on an image dataset, and an image model on tokens: clear errors on every rank
"$PY" - "$G/images.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = np.zeros((64, 4, 4), np.uint8)
    f["labels"] = np.zeros(64, np.int64)
    f.attrs["num_classes"] = 2
PY
rc=0; run_ranks 2 train "${tiny[@]}" --set data.train="$G/images.h5" --set data.test= --set run.dir="$G/bad1" 2>"$G/err" || rc=$?
[ $rc -ne 0 ] && grep -q "token dataset" "$G/err" || fail "GPT on images: $(cat "$G/err")"
rc=0; run_ranks 2 train --set data.train="$G/train.h5" --set data.test="" --set run.dir="$G/bad2" 2>"$G/err" || rc=$?
[ $rc -ne 0 ] && grep -Eq "embedding|context" "$G/err" || fail "MLP on tokens: $(cat "$G/err")"
echo "gpt: ok"
