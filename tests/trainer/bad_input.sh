# Bad input on 2 ranks: each case must end every rank with a non-zero exit within a few
# seconds (never a hang or a crash) and a message that names the file or key at fault.
source "$(dirname "$0")/common.sh"
B=$WORK/bad
rm -rf "$B"; mkdir -p "$B"
"$PY" - "$B" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.integers(0, 255, size=(200, 28, 28), dtype=np.uint8)
y = rng.integers(0, 10, size=200).astype(np.int64)
def write(name, images=x, labels=y, images_key="images", classes=10):
    with h5py.File(f"{d}/{name}.h5", "w") as f:
        f[images_key] = images
        f["labels"] = labels
        if classes is not None:
            f.attrs["num_classes"] = classes
write("good")
write("wrong_name", images_key="imgs")
write("wrong_shape", images=x.reshape(-1))
bad = y.copy(); bad[137] = 10
write("bad_label", labels=bad)
write("no_classes", classes=None)
xf = (x / 255.0).astype(np.float32); xf[5, 3, 3] = np.nan
write("nan_images", images=xf)
PY
head -c 5000 "$DATA/train.h5" > "$B/truncated.h5"
printf 'train:\n  lrr: 0.1\n' > "$B/unknown_key.yaml"
printf 'train:\n  lr: -1\n' > "$B/bad_value.yaml"

# expect NAME EXPECTED_TEXT ARGS...: runs 2 ranks, checks exit, time and message
expect() {
  local name=$1 want=$2; shift 2
  local t0 t1 rc=0
  t0=$(date +%s%N)
  timeout 60 "$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "$@" --set log.progress=false \
    --set run.dir="$B/run_$name" >"$B/$name.out" 2>"$B/$name.err" || rc=$?
  t1=$(date +%s%N)
  local ms=$(( (t1 - t0) / 1000000 ))
  [ "$rc" -ne 0 ] || fail "$name: exit status 0"
  [ "$rc" -ne 124 ] || fail "$name: hung (killed by timeout)"
  [ "$rc" -lt 128 ] || fail "$name: crashed (status $rc)"
  grep -qF -- "$want" "$B/$name.err" || { cat "$B/$name.err" >&2; fail "$name: message lacks '$want'"; }
  [ "$ms" -lt 15000 ] || fail "$name: took ${ms} ms"
  if pgrep -f "$HARNESS train .*$B/run_$name" >/dev/null; then fail "$name: processes left behind"; fi
  printf '%-14s exit %d in %5d ms: %s\n' "$name" "$rc" "$ms" "$(grep -m1 -F -- "$want" "$B/$name.err")"
}
D="--set data.test="
expect missing_file  "$B/nope.h5"           --set data.train="$B/nope.h5" $D
expect wrong_name    "/images"              --set data.train="$B/wrong_name.h5" $D
expect wrong_shape   "/images"              --set data.train="$B/wrong_shape.h5" $D
expect bad_label     "137"                  --set data.train="$B/bad_label.h5" $D
expect no_classes    "num_classes"          --set data.train="$B/no_classes.h5" $D
expect truncated     "$B/truncated.h5"      --set data.train="$B/truncated.h5" $D
expect bad_test_file "$B/wrong_name.h5"     --set data.train="$B/good.h5" --set data.test="$B/wrong_name.h5"
expect unknown_key   "train.lrr"            "$B/unknown_key.yaml"
expect bad_value     "train.lr"             "$B/bad_value.yaml"
expect missing_cfg   "$B/none.yaml"         "$B/none.yaml"
expect unknown_set   "train.epoch"          --set train.epoch=3
expect indivisible   "train.batch_size"     --set data.train="$B/good.h5" $D --set train.batch_size=33
expect classes       "num_classes"          --set data.train="$B/good.h5" $D \
                                            --set "model.layers=[{type: flatten}, {type: linear, out: 7}]"
expect nan_input     "NaN"                  --set data.train="$B/nan_images.h5" $D --set train.batch_size=200 \
                                            --set data.shuffle=false --set train.steps=3
expect too_big       "GiB is available"    --set data.train="$B/good.h5" $D \
                  --set "model.layers=[{type: flatten}, {type: linear, out: 4000000}, {type: relu}, {type: linear, out: 10}]"
# run.threads beyond the cores the rank may use (one core here, as mpirun's default binding
# gives 1-2 ranks): a warning naming both numbers and the mpirun option; none with two cores
thr=(train /dev/stdin --set data.train="$DATA/train.h5" --set data.test= --set train.steps=2
     --set train.warmup_steps=0 --set run.threads=2 --set log.progress=false)
cfg='model: {layers: [{type: flatten}, {type: linear, out: 10}]}'
taskset -c 0 "$HARNESS" "${thr[@]}" --set run.dir="$B/thr1" <<<"$cfg" 2>"$B/thr1.log" ||
  { cat "$B/thr1.log"; fail "run.threads=2 on one core failed"; }
grep -q "warning: run.threads=2, but this rank may run on 1 core .*--bind-to none" "$B/thr1.log" ||
  { cat "$B/thr1.log"; fail "no warning for run.threads=2 on one core"; }
if [ "$(nproc)" -ge 2 ]; then
  taskset -c 0,1 "$HARNESS" "${thr[@]}" --set run.dir="$B/thr2" <<<"$cfg" 2>"$B/thr2.log"
  grep -q "warning: run.threads" "$B/thr2.log" && { cat "$B/thr2.log"; fail "warned with two cores"; }
fi
echo "bad input: ok"
