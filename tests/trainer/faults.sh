# Checkpoint faults: kill -9 in the middle of a checkpoint write leaves the previous checkpoint
# intact and resumable (and the resumed run still ends bit-identical); a flipped byte in the
# newest checkpoint is detected and the older one is used; a second SIGTERM while saving does
# not break the newest file; a checkpoint of another model is refused naming the tensor.
source "$(dirname "$0")/common.sh"
F=$WORK/faults
rm -rf "$F"; mkdir -p "$F"
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=40
        --set train.batch_size=64 --set train.warmup_steps=5 --set log.every=1
        --set log.progress=false --set checkpoint.every=10 --set checkpoint.keep=5)
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$F/straight"

# 1. kill -9 while step 20's checkpoint is written (the hook pauses before the rename)
HARNESS_FAULT_CKPT_SLEEP_MS=1500 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$F/killed" \
  >"$F/killed.log" 2>&1 &
launcher=$!
for _ in $(seq 300); do
  ls "$F"/killed/checkpoints/step_00000020.h5.tmp.* >/dev/null 2>&1 && break
  sleep 0.05
done
ls "$F"/killed/checkpoints/step_00000020.h5.tmp.* >/dev/null 2>&1 || fail "no checkpoint write to interrupt"
pkill -9 -f "^$HARNESS train .*$F/killed" || true
wait $launcher || true
[ ! -e "$F/killed/checkpoints/step_00000020.h5" ] || fail "a half-written checkpoint took the final name"
"$HARNESS" inspect "$F/killed/checkpoints/step_00000010.h5" >/dev/null || fail "previous checkpoint damaged"
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$F/killed" --resume auto 2>"$F/log"
grep -q "resumed from .*step_00000010.h5" "$F/log" || { cat "$F/log"; fail "did not resume from step 10"; }
ls "$F"/killed/checkpoints/*.tmp.* >/dev/null 2>&1 && fail "temporary file left behind"
"$PY" - "$F/straight" "$F/killed" <<'PY'
import sys, h5py, numpy as np
with h5py.File(f"{sys.argv[1]}/checkpoints/step_00000040.h5") as a, h5py.File(f"{sys.argv[2]}/checkpoints/step_00000040.h5") as b:
    for n in a["params"]:
        assert np.array_equal(a["params"][n][:], b["params"][n][:]), n
print("kill -9 during a write: previous checkpoint used, final parameters bit-identical")
PY

# 2. a flipped byte inside the newest checkpoint's largest tensor
cp -r "$F/straight" "$F/flipped"
"$PY" - "$F/flipped/checkpoints/step_00000040.h5" <<'PY'
import sys, h5py
path = sys.argv[1]
with h5py.File(path, "r") as f:
    ds = f["params/layers.1.weight"]
    if ds.is_virtual:   # checkpoint.writers 0: the first part that holds it
        src = ds.virtual_sources()[0]
        path = f"{path.rsplit('/', 1)[0]}/{src.file_name}"
        ds = h5py.File(path, "r")[src.dset_name]
    offset = ds.id.get_offset()
    if offset is None:   # chunked: the first chunk's address
        offset = ds.id.get_chunk_info(0).byte_offset
with open(path, "r+b") as f:
    f.seek(offset + 1000)
    b = f.read(1)
    f.seek(offset + 1000)
    f.write(bytes([b[0] ^ 0x10]))
print(f"flipped one bit at byte {offset + 1000} of {path}")
PY
if "$HARNESS" inspect "$F/flipped/checkpoints/step_00000040.h5" | grep -q UNREADABLE; then :; else fail "inspect did not flag the damaged tensor"; fi
run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=50 --set run.dir="$F/flipped" --resume auto 2>"$F/log"
grep -q "skipping checkpoint that does not verify: .*step_00000040.h5: /params/layers.1.weight fails its checksum" "$F/log" \
  || { cat "$F/log"; fail "damaged checkpoint not reported"; }
grep -q "resumed from .*step_00000030.h5" "$F/log" || { cat "$F/log"; fail "did not fall back to step 30"; }

# 3. a second SIGTERM while the checkpoint is being saved
HARNESS_FAULT_CKPT_SLEEP_MS=1500 run_ranks 2 train "$CFG" "${common[@]}" --set checkpoint.every=0 \
  --set train.steps=100000 --set run.dir="$F/term" >"$F/term.log" 2>&1 &
launcher=$!
for _ in $(seq 200); do
  [ -f "$F/term/metrics.jsonl" ] && [ "$(grep -c '"train"' "$F/term/metrics.jsonl")" -ge 5 ] && break
  sleep 0.05
done
ranks=$(pgrep -f "^$HARNESS train .*$F/term" | tr '\n' ' ')
kill -TERM $ranks
for _ in $(seq 200); do ls "$F"/term/checkpoints/*.tmp.* >/dev/null 2>&1 && break; sleep 0.02; done
kill -TERM $ranks 2>/dev/null || true
rc=0; wait $launcher || rc=$?
[ $rc -eq 75 ] || { cat "$F/term.log"; fail "SIGTERM run exited $rc, want 75"; }
newest=$(ls "$F"/term/checkpoints/step_*.h5 | tail -1)
"$HARNESS" inspect "$newest" >"$F/inspect.txt" || fail "newest checkpoint after two SIGTERMs does not read"
grep -q UNREADABLE "$F/inspect.txt" && fail "newest checkpoint damaged"

# 4. a checkpoint of another model is refused, naming the first mismatching tensor
rc=0
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$F/straight" --resume auto \
  --set "model.layers=[{type: flatten}, {type: linear, out: 300}, {type: relu}, {type: linear, out: 10}]" \
  2>"$F/log" || rc=$?
[ $rc -eq 1 ] || fail "mismatching model: exit $rc"
grep -q "tensor /params/layers.1.weight has shape \[256, 784\] in the checkpoint but \[300, 784\]" "$F/log" || { cat "$F/log"; fail "mismatch message does not name the tensor"; }
echo "faults: ok"
