# Data parallelism changes nothing but speed: with the same global batch, 1, 2 and 4 ranks
# (and 1 rank with 2 gradient-accumulation micro-steps) give the same loss at every step,
# within float rounding, over 60 steps.
source "$(dirname "$0")/common.sh"
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=60
        --set train.batch_size=64 --set train.lr=0.002 --set log.every=1 --set log.progress=false
        --set train.warmup_steps=5 --set train.clip_grad_norm=5)
run_ranks 1 train "${common[@]}" --set run.dir="$WORK/dp1"
run_ranks 2 train "${common[@]}" --set run.dir="$WORK/dp2"
run_ranks 4 train "${common[@]}" --set run.dir="$WORK/dp4"
run_ranks 1 train "${common[@]}" --set run.dir="$WORK/dp1acc" --set train.grad_accum=2
run_ranks 2 train "${common[@]}" --set run.dir="$WORK/dp2acc" --set train.grad_accum=2
"$PY" - "$WORK" <<'PY'
import json, sys
import nan_safe
w = sys.argv[1]
def losses(run):
    rows = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["event"] == "train"]
ref = losses("dp1")
assert len(ref) == 60, len(ref)
assert ref[-1] < ref[0] * 0.6, f"loss did not fall: {ref[0]} -> {ref[-1]}"
for run in ("dp2", "dp4", "dp1acc", "dp2acc"):
    got = losses(run)
    assert len(got) == 60, (run, len(got))
    worst = nan_safe.worst(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(ref, got))
    print(f"{run}: max relative loss difference vs 1 rank = {worst:.2e}")
    assert worst < 1e-4, f"{run} diverges from the 1-rank run: {worst}"
print("data-parallel equivalence: ok")
PY
