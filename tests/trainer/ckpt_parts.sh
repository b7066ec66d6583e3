# checkpoint.writers 0: every rank writes its part, rank 0 a file of HDF5 virtual datasets.
# 1. On 1, 2 and 4 ranks (4: also zero_stage 1, whose optimizer shards are written where they
#    live), h5py reads the checkpoint as one file - from another working directory, after the
#    checkpoint directory was moved - and every dataset and /meta value equals bit for bit the
#    checkpoint that rank 0 writes alone (checkpoint.writers 1) in the same run; keep-K leaves
#    no stray part; `harness inspect` reads it.
# 2. Resume across rank counts and ZeRO stages: a 4-rank zero_stage 1 run stopped at step 10,
#    resumed on 2 ranks at zero_stage 0 and on 1 rank, ends bit-identical to the same resumes
#    of the rank-0-written checkpoint; the synchronous path (checkpoint.async false) too.
# 3. A damaged newest checkpoint: a truncated part, a deleted part, a stale part (another
#    save of the same step): --resume auto takes the previous checkpoint, saying why and naming
#    the part; --resume of that checkpoint itself fails naming the part; inspect too.
source "$(dirname "$0")/common.sh"
P=$WORK/ckpt_parts
rm -rf "$P"; mkdir -p "$P"
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=20
        --set train.warmup_steps=2 --set train.batch_size=64 --set log.every=5
        --set log.progress=false --set checkpoint.every=5 --set checkpoint.keep=3)
z1=(--set train.zero_stage=1)

# compare DIR_A DIR_B STEP [DATASETS]: every dataset (18 for the MLP with AdamW) and /meta value
# (but the parts' own) bit-identical
compare() {
  (cd / && "$PY" - "$1" "$2" "$3" "${4:-18}") <<'PY'
import sys, h5py, numpy as np
a, b, step, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pa, pb = f"{a}/step_{step:08d}.h5", f"{b}/step_{step:08d}.h5"
with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
    na, nb = [], []
    fa.visit(lambda n: na.append(n) if isinstance(fa[n], h5py.Dataset) else None)
    fb.visit(lambda n: nb.append(n) if isinstance(fb[n], h5py.Dataset) else None)
    assert na == nb and len(na) == want, (na, nb)
    virtual = 0
    for n in na:
        x, y = fa[n][...], fb[n][...]
        assert x.dtype == y.dtype and x.shape == y.shape, n
        # bit for bit (NaN bits too: a missing part would read as the NaN fill value)
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), f"{n} differs"
        virtual += fb[n].is_virtual
    ma, mb = dict(fa["meta"].attrs), dict(fb["meta"].attrs)
    for k in ("parts", "parts_id", "meta_crc32"):
        ma.pop(k, None); mb.pop(k, None)
    assert ma.keys() == mb.keys(), (ma.keys(), mb.keys())
    def same_run(config):   # the run directory, checkpoint.writers and .async aside
        return [l for l in config.decode().split("\n") if "dir: " not in l and "writers:" not in l and "async:" not in l]
    assert same_run(ma.pop("config")) == same_run(mb.pop("config")), "/meta config differs"
    for k in ma:
        assert np.array_equal(ma[k], mb[k]), f"/meta {k}: {ma[k]} vs {mb[k]}"
    parts = int(fb["meta"].attrs.get("parts", 0))
print(f"{pb}: {want} datasets bit-identical to the rank-0 file ({virtual} virtual, {parts} parts)")
PY
}

# 1. one file to h5py, bit-identical to rank 0's
for ranks in 1 2 4; do
  for w in 0 1; do
    run_ranks $ranks train "$CFG" "${common[@]}" --set checkpoint.writers=$w \
      --set run.dir="$P/r${ranks}w$w" 2>"$P/log" || { cat "$P/log"; fail "$ranks ranks, writers $w"; }
  done
  ck=$P/r${ranks}w0/checkpoints
  nparts=$(ls "$ck" | grep -c '\.part_' || true)
  if [ $ranks -eq 1 ]; then want=0; else want=$((3 * ranks)); fi
  [ "$nparts" -eq $want ] || { ls "$ck"; fail "$ranks ranks: $nparts part files, want $want"; }
  [ "$(ls "$ck" | grep -c '^step_[0-9]*\.h5$')" -eq 3 ] || { ls "$ck"; fail "keep 3"; }
  ls "$ck" | grep -v '^step_000000\(10\|15\|20\)\.' && fail "$ranks ranks: stray files (keep-K)"
  # moved: the virtual datasets find their parts next to the file, from any directory
  mv "$ck" "$P/moved$ranks"
  compare "$P/r${ranks}w1/checkpoints" "$P/moved$ranks" 20
  compare "$P/r${ranks}w1/checkpoints" "$P/moved$ranks" 15
  "$HARNESS" inspect "$P/moved$ranks/step_00000020.h5" > "$P/inspect"
  grep -q "UNREADABLE" "$P/inspect" && { cat "$P/inspect"; fail "inspect of $ranks-rank parts"; }
  [ $ranks -eq 1 ] || grep -q "written in $ranks parts" "$P/inspect" || fail "inspect: parts"
done
for w in 0 1; do
  run_ranks 4 train "$CFG" "${common[@]}" "${z1[@]}" --set checkpoint.writers=$w \
    --set run.dir="$P/z4w$w" 2>"$P/log" || { cat "$P/log"; fail "zero_stage 1, writers $w"; }
done
compare "$P/z4w1/checkpoints" "$P/z4w0/checkpoints" 20
compare "$P/z4w1/checkpoints" "$P/z4w0/checkpoints" 10
# 4-D convolution weights cut at odd places (3 ranks), batch-norm buffers, SGD's one state
# (the second convolution's [64, 16, 3, 3] weight holds both cuts: the parameters are about 10k)
cnn=(--set "model.layers=[{type: conv2d, out: 16, kernel: 3, padding: 1}, {type: batchnorm2d},
     {type: relu}, {type: maxpool2d, kernel: 2}, {type: conv2d, out: 64, kernel: 3},
     {type: global_avgpool}, {type: linear, out: 10}]"
     --set train.optimizer=sgd --set train.momentum=0.9 --set train.steps=4 --set checkpoint.every=0
     --set train.batch_size=48)
for w in 0 1; do
  run_ranks 3 train "$CFG" "${common[@]}" "${cnn[@]}" --set checkpoint.writers=$w \
    --set run.dir="$P/cnn$w" 2>"$P/log" || { cat "$P/log"; fail "cnn, writers $w"; }
done
compare "$P/cnn1/checkpoints" "$P/cnn0/checkpoints" 4 18
"$PY" - "$P/cnn0/checkpoints/step_00000004.h5" <<'PY' || fail "the 4-D weight is not cut"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    ds = f["params/layers.4.weight"]
    files = {s.file_name for s in ds.virtual_sources()}
    assert ds.shape == (64, 16, 3, 3) and len(files) == 3, (ds.shape, files)
PY

# 2. resume across rank counts and ZeRO stages, bit-exact
for w in 0 1; do
  rc=0
  run_ranks 4 train "$CFG" "${common[@]}" "${z1[@]}" --set checkpoint.writers=$w \
    --set run.dir="$P/stop$w" --stop-after 10 2>"$P/log" || rc=$?
  [ $rc -eq 75 ] || { cat "$P/log"; fail "--stop-after exited $rc, want 75"; }
  for to in "2 0" "1 0" "2 1"; do
    set -- $to
    cp -r "$P/stop$w" "$P/res$w-$1-$2"
    run_ranks $1 train "$CFG" "${common[@]}" --set train.zero_stage=$2 --set checkpoint.writers=1 \
      --set checkpoint.async=false --set run.dir="$P/res$w-$1-$2" --resume auto 2>"$P/log" \
      || { cat "$P/log"; fail "resume of writers $w on $1 ranks, zero_stage $2"; }
    grep -q "resumed from .*step_00000010.h5: step 10.*written by 4 ranks" "$P/log" \
      || { cat "$P/log"; fail "did not resume from step 10"; }
  done
done
for to in 2-0 1-0 2-1; do
  compare "$P/res1-$to/checkpoints" "$P/res0-$to/checkpoints" 20
done
# the synchronous path writes the same parts
run_ranks 2 train "$CFG" "${common[@]}" --set checkpoint.async=false --set run.dir="$P/sync" \
  2>"$P/log" || { cat "$P/log"; fail "checkpoint.async false"; }
compare "$P/r2w1/checkpoints" "$P/sync/checkpoints" 15

# 3. damaged parts: --resume auto falls back, an explicit --resume names the part
resume_from() {  # resume_from RUN WANT_STEP: --resume auto on 2 ranks picks step WANT_STEP
  run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=25 --set checkpoint.every=0 \
    --set checkpoint.keep=1 --set run.dir="$P/$1" --resume auto 2>"$P/log" || { cat "$P/log"; fail "$1: resume failed"; }
  grep -q "resumed from .*step_$(printf %08d $2).h5" "$P/log" \
    || { cat "$P/log"; fail "$1: did not fall back to step $2"; }
}
mkdir "$P/trunc"; cp -r "$P/moved2" "$P/trunc/checkpoints"   # 2 ranks, steps 10, 15, 20
part=$P/trunc/checkpoints/step_00000020.h5.part_0001_of_0002
truncate -s $(( $(stat -c %s "$part") / 2 )) "$part"
rc=0; run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=25 --set run.dir="$P/trunc" \
  --resume "$P/trunc/checkpoints/step_00000020.h5" 2>"$P/log" || rc=$?
[ $rc -eq 1 ] || { cat "$P/log"; fail "--resume of a checkpoint with a truncated part: exit $rc"; }
grep -q "step_00000020.h5.part_0001_of_0002" "$P/log" || { cat "$P/log"; fail "part not named"; }
rc=0; "$HARNESS" inspect "$P/trunc/checkpoints/step_00000020.h5" >/dev/null 2>"$P/log" || rc=$?
[ $rc -ne 0 ] && grep -q "h5.part_0001_of_0002" "$P/log" || fail "inspect of a truncated part"
resume_from trunc 15
grep -q "skipping checkpoint that does not verify: .*step_00000020.h5.part_0001_of_0002" "$P/log" \
  || { cat "$P/log"; fail "the fallback does not say why"; }

mkdir "$P/deleted"; cp -r "$P/moved2" "$P/deleted/checkpoints"   # 2 ranks, steps 10, 15, 20
rm "$P/deleted/checkpoints/step_00000020.h5.part_0000_of_0002"
resume_from deleted 15
grep -q "h5.part_0000_of_0002 is missing" "$P/log" || { cat "$P/log"; fail "missing part not named"; }
# the resumed run's keep-K removed the part-less checkpoint's remaining part with it
ls "$P/deleted/checkpoints" | grep -q "step_00000020.part" && fail "orphan part kept"

# a stale part: the same step of another save (another run) in place of one part
mkdir "$P/stale"; cp -r "$P/moved2" "$P/stale/checkpoints"   # 2 ranks, steps 10, 15, 20
cp "$P/sync/checkpoints/step_00000020.h5.part_0001_of_0002" "$P/stale/checkpoints/"
resume_from stale 15
grep -q "belongs to another save" "$P/log" || { cat "$P/log"; fail "stale part not detected"; }
# 4. a part that fails in the background (rank 1's final name taken by a directory): every rank
#    stops at the next step with exit 1, rank 1 names the part, step 5 stays the newest valid
mkdir -p "$P/failed/checkpoints/step_00000010.h5.part_0001_of_0002/taken"
rc=0
run_ranks 2 train "$CFG" "${common[@]}" --set train.steps=200 --set run.dir="$P/failed" \
  2>"$P/failed.log" || rc=$?
[ $rc -eq 1 ] || { cat "$P/failed.log"; fail "failed part: exit $rc, want 1"; }
grep -q "error on rank 1: background checkpoint write of step 10 failed: .*step_00000010.h5.part_0001_of_0002: rename" \
  "$P/failed.log" || grep -q "harness: error: background checkpoint write of step 10 failed: .*part_0001_of_0002: rename" \
  "$P/failed.log" || { cat "$P/failed.log"; fail "the failed part is not named"; }
last=$(grep -o '"event":"train","step":[0-9]*' "$P/failed/metrics.jsonl" | tail -1 | grep -o '[0-9]*$')
[ "$last" -lt 20 ] || fail "training went on to step $last after a part failed"
[ -e "$P/failed/checkpoints/step_00000010.h5" ] && fail "a checkpoint with a failed part was published"
ls "$P"/failed/checkpoints/*.tmp.* >/dev/null 2>&1 && fail "temporary file left behind"
"$HARNESS" inspect "$P/failed/checkpoints/step_00000005.h5" >/dev/null || fail "step 5 damaged"
echo "ckpt_parts: all checks passed"
