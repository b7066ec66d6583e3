# Exact resume.  2K steps straight must equal K steps, stop, resume, K steps: identical loss at
# every step and identical final parameters and optimizer state, bit for bit, on 1 and 2 ranks,
# with the stop in the middle of an epoch, and with a signal that reaches one rank while it is
# in the middle of gradient accumulation.  Then a world-size change: saved with 4 ranks,
# resumed with 2 - same global batches, losses equal within float rounding.
source "$(dirname "$0")/common.sh"
R=$WORK/resume
rm -rf "$R"; mkdir -p "$R"
# 2000 training samples -> 31 global batches of 64 per epoch: 80 steps cross 2 epoch ends
"$PY" - "$DATA/train.h5" "$R/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g["images"] = f["images"][:2000]
    g["labels"] = f["labels"][:2000]
    for k, v in f.attrs.items():
        g.attrs[k] = v
PY
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$R/small.h5" --set data.test="" --set train.steps=80
        --set train.batch_size=64 --set train.warmup_steps=5 --set log.every=1
        --set log.progress=false --set checkpoint.every=9)
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
if mode == "exact":
    bad = [s for s in la if la[s] != lb[s]]
    assert not bad, f"losses differ at steps {bad[:5]}: {la[bad[0]]} vs {lb[bad[0]]}"
    with h5py.File(f"{a}/checkpoints/step_00000080.h5") as fa, h5py.File(f"{b}/checkpoints/step_00000080.h5") as fb:
        names = []
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        assert len(names) == 18, names
        for n in names:
            assert np.array_equal(fa[n][:], fb[n][:]), f"{n} differs"
    print(f"{b}: 80 losses and {len(names)} tensors bit-identical")
else:
    worst = nan_safe.worst(abs(la[s] - lb[s]) / abs(la[s]) for s in la)
    assert worst < 1e-4, worst
    print(f"{b}: max relative loss difference {worst:.2e}")
PY
}
for ranks in 1 2; do
  run_ranks $ranks train "$CFG" "${common[@]}" --set run.dir="$R/straight$ranks"
  rc=0; run_ranks $ranks train "$CFG" "${common[@]}" --set run.dir="$R/stopped$ranks" --stop-after 40 || rc=$?
  [ $rc -eq 75 ] || fail "--stop-after exited $rc, want 75"
  ls "$R/stopped$ranks/checkpoints/step_00000040.h5" >/dev/null
  run_ranks $ranks train "$CFG" "${common[@]}" --set run.dir="$R/stopped$ranks" --resume auto 2>"$R/log"
  grep -q "resumed from .*step_00000040.h5: step 40, epoch 1" "$R/log" || { cat "$R/log"; fail "did not resume from step 40"; }
  compare "straight$ranks" "stopped$ranks" exact
done

# A signal to ONE rank while it is inside a step with 4 gradient-accumulation micro-steps:
# the ranks agree, checkpoint the same step, exit 75; the resumed run is still bit-exact.
acc=(--set train.grad_accum=4 --set train.steps=80)
run_ranks 2 train "$CFG" "${common[@]}" "${acc[@]}" --set run.dir="$R/acc_straight"
HARNESS_FAULT_STEP_SLEEP_MS=30 run_ranks 2 train "$CFG" "${common[@]}" "${acc[@]}" \
  --set run.dir="$R/acc_signal" >"$R/sig.log" 2>&1 &
launcher=$!
for _ in $(seq 200); do
  [ -f "$R/acc_signal/metrics.jsonl" ] && [ "$(grep -c '"train"' "$R/acc_signal/metrics.jsonl")" -ge 10 ] && break
  sleep 0.05
done
victim=$(pgrep -f "^$HARNESS train .*$R/acc_signal" | tail -1)
[ -n "$victim" ] || fail "no rank to signal"
kill -USR1 "$victim"
rc=0; wait $launcher || rc=$?
[ $rc -eq 75 ] || { cat "$R/sig.log"; fail "SIGUSR1 run exited $rc, want 75"; }
grep -q "SIGUSR1: checkpointed step" "$R/sig.log" || { cat "$R/sig.log"; fail "no checkpoint message"; }
run_ranks 2 train "$CFG" "${common[@]}" "${acc[@]}" --set run.dir="$R/acc_signal" --resume auto
compare acc_straight acc_signal exact

# World-size change: 4 ranks save at step 40, 2 ranks finish.
run_ranks 4 train "$CFG" "${common[@]}" --set run.dir="$R/w4" --stop-after 40 || [ $? -eq 75 ]
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/w4" --resume auto 2>"$R/log"
grep -q "written by 4 ranks, now 2" "$R/log" || { cat "$R/log"; fail "resume message"; }
compare straight2 w4 close
echo "resume: ok"
