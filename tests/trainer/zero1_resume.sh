# Checkpoints of train.zero_stage=1 keep the format of stage 0 (full tensors, same names):
#  1. bit-exact resume at stage 1: 80 steps straight = 40, stop, resume, 40 (2 and 3 ranks,
#     AdamW, clipping on): every loss and every tensor of the last checkpoint identical;
#  2. stage 1 on 4 ranks -> stop at 30 -> stage 0 on 2 ranks -> stop at 55 -> stage 1 on 4 ranks
#     to 80: the same global batches, so losses equal a straight stage-0 run within float
#     rounding, and the final tensors close to it;
#  3. a stage-1 checkpoint read by h5py looks exactly like a stage-0 one (names, shapes, dtype);
#  4. a checkpoint rank 0 cannot write ends the run with its error, no rank left waiting.
source "$(dirname "$0")/common.sh"
R=$WORK/zero1_resume
rm -rf "$R"; mkdir -p "$R"
"$PY" - "$DATA/train.h5" "$R/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g["images"] = f["images"][:3000]
    g["labels"] = f["labels"][:3000]
    for k, v in f.attrs.items():
        g.attrs[k] = v
PY
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$R/small.h5" --set data.test="" --set train.steps=80
        --set train.batch_size=96 --set train.warmup_steps=5 --set log.every=1
        --set log.progress=false --set checkpoint.every=9 --set train.clip_grad_norm=0.5
        --set comm.bucket_kb=64)
compare() {  # compare RUN_A RUN_B MODE(exact|close)
  "$PY" - "$R/$1" "$R/$2" "$3" <<'PY'
import json, sys, h5py, numpy as np
import nan_safe
a, b, mode = sys.argv[1:]
def losses(run):
    d = {}
    for line in open(f"{run}/metrics.jsonl"):
        r = json.loads(line)
        if r["event"] == "train":
            d[r["step"]] = r["loss"]
    return d
la, lb = losses(a), losses(b)
assert sorted(la) == list(range(1, 81)) and sorted(lb) == list(range(1, 81)), (len(la), len(lb))
with h5py.File(f"{a}/checkpoints/step_00000080.h5") as fa, h5py.File(f"{b}/checkpoints/step_00000080.h5") as fb:
    names = []
    fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
    other = []
    fb.visit(lambda n: other.append(n) if isinstance(fb[n], h5py.Dataset) else None)
    assert names == other and len(names) == 18, (names, other)
    for n in names:
        assert fa[n].shape == fb[n].shape and fa[n].dtype == fb[n].dtype, n
    if mode == "exact":
        bad = [s for s in la if la[s] != lb[s]]
        assert not bad, f"losses differ at steps {bad[:5]}: {la[bad[0]]} vs {lb[bad[0]]}"
        for n in names:
            assert np.array_equal(fa[n][:], fb[n][:]), f"{n} differs"
        print(f"{b}: 80 losses and {len(names)} tensors bit-identical")
    else:
        worst = nan_safe.worst(abs(la[s] - lb[s]) / abs(la[s]) for s in la)
        assert worst < 1e-4, worst
        tw = 0.0
        for n in names:
            x, y = fa[n][:], fb[n][:]
            tw = nan_safe.worst((tw, float(np.abs(x - y).max() / (np.abs(x).max() + 1e-12))))
        assert tw < 1e-2, tw
        print(f"{b}: max relative loss difference {worst:.2e}, tensors within {tw:.2e} of their range")
PY
}
z1=(--set train.zero_stage=1)
for ranks in 2 3; do
  run_ranks $ranks train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$R/straight$ranks"
  rc=0; run_ranks $ranks train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$R/stopped$ranks" --stop-after 40 || rc=$?
  [ $rc -eq 75 ] || fail "--stop-after exited $rc, want 75"
  run_ranks $ranks train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$R/stopped$ranks" --resume auto 2>"$R/log"
  grep -q "resumed from .*step_00000040.h5: step 40" "$R/log" || { cat "$R/log"; fail "did not resume from step 40"; }
  compare "straight$ranks" "stopped$ranks" exact
done

# world size and stage change in both directions
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/ref0"
rc=0; run_ranks 4 train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$R/mixed" --stop-after 30 || rc=$?
[ $rc -eq 75 ] || fail "stage 1 x 4: --stop-after exited $rc, want 75"
rc=0; run_ranks 2 train "$CFG" "${common[@]}" --set train.zero_stage=0 --set run.dir="$R/mixed" \
  --resume auto --stop-after 55 2>"$R/log" || rc=$?
[ $rc -eq 75 ] || { cat "$R/log"; fail "stage 0 x 2: exited $rc, want 75"; }
grep -q "step_00000030.h5: step 30.*written by 4 ranks, now 2" "$R/log" || { cat "$R/log"; fail "did not resume 4 -> 2"; }
run_ranks 4 train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$R/mixed" --resume auto 2>"$R/log"
grep -q "step_00000055.h5: step 55.*written by 2 ranks, now 4" "$R/log" || { cat "$R/log"; fail "did not resume 2 -> 4"; }
compare ref0 mixed close

# A checkpoint that rank 0 cannot write: the other ranks, serving their shards, must not hang.
rc=0; timeout 120 "$MPIRUN" --oversubscribe -np 3 "$HARNESS" train "$CFG" "${common[@]}" "${z1[@]}" \
  --set train.steps=8 --set run.dir="$R/unwritable" --set checkpoint.dir=/proc/harness-nope \
  2>"$R/log" || rc=$?
[ $rc -eq 1 ] || { cat "$R/log"; fail "unwritable checkpoint at stage 1: exit $rc, want 1 (124 = hang)"; }
grep -q "checkpoint.dir: cannot create /proc/harness-nope" "$R/log" || { cat "$R/log"; fail "no error"; }
echo "zero_stage resume: ok"
