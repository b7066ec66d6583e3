# log.tensorboard: a 2-rank GPT run stopped at step 6 and resumed to 10 writes one events file
# that TensorBoard's own readers (from PyPI, no TensorFlow) accept: every record's CRC-32C, the
# file_version record, and the scalars equal to metrics.jsonl's (as float32) at every step.
# Arguments: harness, mpirun, the build directory, a scratch directory.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 BUILD=$3 W=$4/tensorboard
HERE=$(dirname "$0")
source "$HERE/venv.sh"
make_hf_venv "$BUILD"
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$HFPY" "$(dirname "$HERE")/trainer/make_tokens.py" "$W" 6000
run=(train --set data.train="$W/train.h5" --set data.test="$W/val.h5" --set model.gpt.layers=1
     --set model.gpt.heads=2 --set model.gpt.dim=32 --set model.gpt.context=16
     --set train.batch_size=8 --set train.steps=10 --set log.every=1 --set log.eval_every=4
     --set log.progress=false --set log.tensorboard=true --set train.clip_grad_norm=1.0
     --set run.dir="$W/run")
rc=0; "$MPIRUN" --oversubscribe -np 2 "$HARNESS" "${run[@]}" --stop-after 6 || rc=$?
[ $rc -eq 75 ] || fail "--stop-after exited $rc, want 75"
"$MPIRUN" --oversubscribe -np 2 "$HARNESS" "${run[@]}" --resume auto
"$HFPY" - "$W/run" <<'PY'
import glob, json, sys
import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow, errors
from tensorboard.backend.event_processing import event_accumulator
run = sys.argv[1]
files = glob.glob(f"{run}/events.out.tfevents.*")
assert len(files) == 1, files
# 1. the raw records: every CRC checked by TensorBoard's reader
reader = pywrap_tensorflow.PyRecordReader_New(files[0])
events = []
while True:
    try:
        reader.GetNext()
    except errors.OutOfRangeError:
        break
    events.append(event_pb2.Event.FromString(reader.record()))
assert events[0].file_version == "brain.Event:2", events[0]
assert sum(1 for e in events if e.file_version) == 1, "file_version repeated: the resume did not append"
# 2. TensorBoard's accumulator: the scalars of metrics.jsonl, steps 1..10 across the resume
acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
tags = set(acc.Tags()["scalars"])
want_tags = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "eval/loss",
             "eval/perplexity", "eval/next_token_accuracy"}
assert want_tags <= tags, (want_tags - tags)
recs = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
for event, tag, key in (("train", "train/loss", "loss"), ("train", "train/lr", "lr"),
                        ("train", "train/grad_norm", "grad_norm"), ("eval", "eval/loss", "loss"),
                        ("train", "train/tokens_per_s", "tokens_per_s")):
    want = [(r["step"], r[key]) for r in recs if r["event"] == event]
    got = [(s.step, s.value) for s in acc.Scalars(tag)]
    assert [s for s, _ in got] == [s for s, _ in want], (tag, got, want)
    for (s, g), (_, w) in zip(got, want):
        # metrics.jsonl rounds to 9 (loss, lr) or fewer digits; the event holds float32
        assert abs(g - np.float32(w)) <= 1e-6 * max(1.0, abs(w)) + (0.06 if "per_s" in tag else 0), (tag, s, g, w)
steps = [s.step for s in acc.Scalars("train/loss")]
assert steps == list(range(1, 11)), steps
print(f"tensorboard: {len(events)} records, tags {sorted(tags)}, train/loss steps {steps[0]}..{steps[-1]}, "
      f"eval/loss at {[s.step for s in acc.Scalars('eval/loss')]}")
PY
# 3. a damaged record is caught by the reader's CRC check (the CRCs are not decoration)
f=$(ls "$W"/run/events.out.tfevents.*)
cp "$f" "$W/damaged"
printf '\x01' | dd of="$W/damaged" bs=1 seek=100 conv=notrunc status=none
"$HFPY" - "$W/damaged" <<'PY'
import sys
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow, errors
r = pywrap_tensorflow.PyRecordReader_New(sys.argv[1])
try:
    while True:
        r.GetNext()
except errors.DataLossError as e:
    print("damaged record detected:", e.message)
else:
    sys.exit("FAIL: a flipped byte passed the CRC checks")
PY
echo "tensorboard: all checks passed"
