# checkpoint.async: periodic saves written by a background thread while training goes on.
# 1. A background write slowed by the fault hook: the next checkpoint, 4 steps later, finds it
#    still in flight and waits for it (its record's wait_s), so those 4 steps ran during the
#    write; the step loop's own wait per save (copy_s) is a small part of the write time.
# 2. The async files equal the synchronous ones (checkpoint.async: false) bit for bit (also at
#    zero_stage 1, where the shards are gathered into the snapshot), and a
#    run resumed from an async checkpoint ends bit-identical to the straight run.  Also when
#    the snapshot's copy completes 300 ms late (HARNESS_FAULT_DOWNLOAD_DELAY_MS: as a GPU's
#    device-to-host copy on its own stream, while the next steps run): the next update waits
#    for it (kern_download_fence) and the writer reads it only once done - every rank writing
#    its slice, and rank 0 writing the whole (checkpoint.writers 1, zero_stage 1).
# 3. kill -9 while the background write is paused before its rename, with steps logged after
#    the checkpoint step: no file takes the final name, --resume auto picks the previous one.
#    SIGUSR1 during a background write: step 4's save completes and the stop writes its own.
#    With HARNESS_SIGNAL_LEAD_S (the Slurm recipes' --signal lead time) too short for a step
#    and the saves a stop waits for, one warning; none when it is long enough.
# 4. A background write that fails (its final name is taken by a directory): every rank stops
#    at the next step with exit 1, one message, and the previous checkpoint stays the newest.
source "$(dirname "$0")/common.sh"
A=$WORK/ckpt_async
rm -rf "$A"; mkdir -p "$A"
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=12
        --set train.batch_size=64 --set train.warmup_steps=2 --set log.every=1
        --set log.progress=false --set checkpoint.every=4 --set checkpoint.keep=10)
records() {  # records RUN: the checkpoint records of RUN's metrics.jsonl, one JSON per line
  grep '"event":"checkpoint"' "$A/$1/metrics.jsonl" || true
}

# 1. slowed background write
HARNESS_SIGNAL_LEAD_S=2 HARNESS_FAULT_CKPT_SLEEP_MS=1500 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/slow" \
  2>"$A/slow.log" || { cat "$A/slow.log"; fail "slowed async run failed"; }
"$PY" - "$A/slow/metrics.jsonl" <<'PY' || { cat "$A/slow.log"; fail "slowed write: records"; }
import json, sys
recs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["event"] == "checkpoint":
        recs[r["step"]] = r
assert sorted(recs) == [4, 8, 12], sorted(recs)
r4, r8, r12 = recs[4], recs[8], recs[12]
assert r4["async"] is True and r8["async"] is True and r12["async"] is False, recs
assert r4["write_s"] >= 1.5 and r4["bytes"] > 0, r4
# step 8's save waited for step 4's: steps 5..8 ran while step 4 was being written
assert r8["wait_s"] >= 0.5, r8
assert r4["finished_at_step"] >= 8, r4
assert r4["copy_s"] <= r4["write_s"] / 3, r4
print(f"step 4: copy {r4['copy_s']:.4f} s, background write {r4['write_s']:.2f} s; "
      f"step 8 waited {r8['wait_s']:.2f} s for it")
PY
grep -q "checkpoint of step 4: .* written in .* in the background" "$A/slow.log" \
  || { cat "$A/slow.log"; fail "no notice of the background write"; }
# the progress line after a save says what it cost the step loop (log.every=1: the next line)
grep -qE "^step +5/12 .* \| ckpt 4 \+[0-9.]+ (ms|s) \|" "$A/slow.log" \
  || { cat "$A/slow.log"; fail "step 5's line does not show step 4's checkpoint"; }
grep -E "^step +(3|6)/12 .*\| ckpt" "$A/slow.log" && fail "a line without a checkpoint before it shows one"
# the Slurm lead time (2 s here) cannot hold a step, the save in flight and a stop's own save
n=$(grep -c "warning: a stop needs about .* more than the 2 s between Slurm's SIGUSR1" "$A/slow.log" || true)
[ "$n" -eq 1 ] || { cat "$A/slow.log"; fail "want one lead-time warning, got $n"; }

# 2. async files == synchronous files; resume from an async checkpoint is bit-exact
HARNESS_SIGNAL_LEAD_S=600 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/async" 2>"$A/async.log"
grep -q "warning: a stop needs" "$A/async.log" && fail "lead-time warning with 600 s to spare"
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/sync" --set checkpoint.async=false
records sync | grep -q '"async":true' && fail "checkpoint.async=false wrote in the background"
# zero_stage 1: the shards gathered into rank 0's snapshot
z1=(--set train.zero_stage=1)
run_ranks 2 train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$A/async_z1"
run_ranks 2 train "$CFG" "${common[@]}" "${z1[@]}" --set run.dir="$A/sync_z1" --set checkpoint.async=false
HARNESS_FAULT_DOWNLOAD_DELAY_MS=300 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/async_late"
HARNESS_FAULT_DOWNLOAD_DELAY_MS=300 run_ranks 2 train "$CFG" "${common[@]}" "${z1[@]}" \
  --set checkpoint.writers=1 --set run.dir="$A/async_late_w1"
mkdir -p "$A/resumed/checkpoints"
cp "$A"/async/checkpoints/step_00000004.h5* "$A/resumed/checkpoints/"   # with its parts
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/resumed" --resume auto 2>"$A/log"
grep -q "resumed from .*step_00000004.h5" "$A/log" || { cat "$A/log"; fail "did not resume from step 4"; }
"$PY" - "$A" <<'PY'
import sys, h5py, numpy as np
a = sys.argv[1]
def same(p, q):
    with h5py.File(p) as f, h5py.File(q) as g:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
        assert len(names) == 18, names
        for n in names:
            assert np.array_equal(f[n][:], g[n][:]), f"{p} vs {q}: {n} differs"
        for k in ("step", "epoch", "cursor", "optimizer_steps"):
            assert f["meta"].attrs[k] == g["meta"].attrs[k], k
for s in (4, 8, 12):
    same(f"{a}/async/checkpoints/step_{s:08d}.h5", f"{a}/sync/checkpoints/step_{s:08d}.h5")
    same(f"{a}/async_z1/checkpoints/step_{s:08d}.h5", f"{a}/sync_z1/checkpoints/step_{s:08d}.h5")
    same(f"{a}/async_late/checkpoints/step_{s:08d}.h5", f"{a}/sync/checkpoints/step_{s:08d}.h5")
    same(f"{a}/async_late_w1/checkpoints/step_{s:08d}.h5", f"{a}/sync_z1/checkpoints/step_{s:08d}.h5")
same(f"{a}/resumed/checkpoints/step_00000012.h5", f"{a}/sync/checkpoints/step_00000012.h5")
print("async checkpoints bit-identical to synchronous ones; resumed run bit-identical")
PY

# 3. kill -9 during the background write
run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=4 --set run.dir="$A/killed"
HARNESS_FAULT_CKPT_SLEEP_MS=60000 run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=100000 \
  --set run.dir="$A/killed" --resume auto >"$A/killed.log" 2>&1 &
launcher=$!
steps_after=0
for _ in $(seq 600); do
  if ls "$A"/killed/checkpoints/step_00000008.h5.tmp.* >/dev/null 2>&1; then
    steps_after=$(grep -c '"event":"train","step":\(1[0-9]\|[2-9][0-9]\)' "$A/killed/metrics.jsonl" || true)
    [ "$steps_after" -ge 2 ] && break
  fi
  sleep 0.05
done
pkill -9 -f "^$HARNESS train .*$A/killed" || true
wait $launcher || true
[ "$steps_after" -ge 2 ] || { cat "$A/killed.log"; fail "no steps logged while step 8 was written"; }
[ ! -e "$A/killed/checkpoints/step_00000008.h5" ] || fail "a half-written checkpoint took the final name"
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$A/killed" --resume auto 2>"$A/log"
grep -q "resumed from .*step_00000004.h5" "$A/log" || { cat "$A/log"; fail "did not resume from step 4"; }

# 3b. SIGUSR1 while a background write is in flight: the stop waits for it, then saves its own
HARNESS_FAULT_CKPT_SLEEP_MS=1500 run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=100000 \
  --set run.dir="$A/usr1" >"$A/usr1.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do
  ls "$A"/usr1/checkpoints/step_00000004.h5.tmp.* >/dev/null 2>&1 && break
  sleep 0.05
done
kill -USR1 $(pgrep -f "^$HARNESS train .*$A/usr1" | tr '\n' ' ')
rc=0; wait $launcher || rc=$?
[ $rc -eq 75 ] || { cat "$A/usr1.log"; fail "SIGUSR1 during a background write: exit $rc, want 75"; }
stopped=$(ls "$A"/usr1/checkpoints/step_*.h5 | tail -1)
[ -e "$A/usr1/checkpoints/step_00000004.h5" ] && [ "$stopped" != "$A/usr1/checkpoints/step_00000004.h5" ] \
  || { ls "$A/usr1/checkpoints"; cat "$A/usr1.log"; fail "want step 4's background save and the stop's own"; }
"$HARNESS" inspect "$stopped" >/dev/null || fail "the stop's checkpoint does not read"

# 4. a failed background write
mkdir -p "$A/failed/checkpoints/step_00000008.h5/taken"
rc=0
run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=40 --set run.dir="$A/failed" \
  2>"$A/failed.log" || rc=$?
[ $rc -eq 1 ] || { cat "$A/failed.log"; fail "failed background write: exit $rc, want 1"; }
n=$(grep -c "background checkpoint write of step 8 failed: .*rename" "$A/failed.log" || true)
[ "$n" -eq 1 ] || { cat "$A/failed.log"; fail "want one message naming the failed write, got $n"; }
last=$(grep -o '"event":"train","step":[0-9]*' "$A/failed/metrics.jsonl" | tail -1 | grep -o '[0-9]*$')
[ "$last" -lt 40 ] || fail "training went on to step $last after the write failed"
ls "$A"/failed/checkpoints/*.tmp.* >/dev/null 2>&1 && fail "temporary file left behind"
"$HARNESS" inspect "$A/failed/checkpoints/step_00000004.h5" >/dev/null || fail "step 4 damaged"
echo "ckpt_async: ok"
