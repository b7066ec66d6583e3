# Numerical faults: one sample whose values overflow the first linear layer (3e38).
# train.nonfinite=stop ends every rank at that step, naming the step, the layer and the rank
# where non-finite values first appeared; train.nonfinite=skip skips exactly the steps whose
# batch holds the sample and finishes.
source "$(dirname "$0")/common.sh"
N=$WORK/nonfinite
rm -rf "$N"; mkdir -p "$N"
"$PY" - "$N/poison.h5" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
x = rng.normal(size=(256, 784)).astype(np.float32)
x[70] = 3e38            # global batch 1 (samples 64..127), position 6: rank 0 of 2
y = rng.integers(0, 10, size=256)
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = x
    f["labels"] = y
    f.attrs["num_classes"] = 10
PY
common=(--set data.train="$N/poison.h5" --set data.test="" --set data.shuffle=false
        --set train.batch_size=64 --set train.steps=8 --set train.warmup_steps=0
        --set log.progress=false --set log.every=1)
rc=0
timeout 60 "$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "${common[@]}" --set run.dir="$N/stop" \
  2>"$N/stop.err" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "stop policy: exit $rc"
grep -q "non-finite loss or gradients at step 2: first in the output of layer 1 (linear) on rank 0" \
  "$N/stop.err" || { cat "$N/stop.err"; fail "stop policy message"; }
timeout 60 "$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "${common[@]}" --set run.dir="$N/skip" \
  --set train.nonfinite=skip 2>"$N/skip.err" || { cat "$N/skip.err"; fail "skip policy failed"; }
[ "$(grep -c 'step skipped' "$N/skip.err")" -eq 2 ] || { cat "$N/skip.err"; fail "want 2 skipped steps"; }
grep -q "warning: step 2: non-finite gradients" "$N/skip.err" || fail "step 2 not skipped"
grep -q "warning: step 6: non-finite gradients" "$N/skip.err" || fail "step 6 not skipped"
grep -q "2 steps skipped" "$N/skip.err" || fail "summary of skipped steps"
"$HARNESS" inspect "$N/skip/checkpoints/step_00000008.h5" | grep -q "norm nan" && fail "NaN in final parameters"
echo "nonfinite: ok"
