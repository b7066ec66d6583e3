# Seeing a run: harness plot, log.trace and the straggler report, end to end with real ranks.
#  - plot of a finished run with evaluation, of a run still going (its metrics.jsonl being
#    written), of a resumed run, and two runs overlaid: the PNG decodes (PIL), has the asked
#    size, and each curve's points are drawn in its run's colour where the data puts them
#    (the panel geometry comes from --geometry; a mirrored point must not be drawn there);
#    bad input (no directory, no or empty metrics.jsonl, a damaged line) is a clear error.
#  - trace of a 2-rank run: valid JSON, complete events with ts/dur, per-track timestamps
#    monotonic, both ranks with host, compute and all-reduce tracks, per-layer forward and
#    backward, and the spans of each step adding up to the step's time within 10%.
#  - the achieved bus bandwidth of the gradient exchange per log interval: in every train
#    record and log line of a 2-rank run (positive, finite), absent from a 1-rank run.
#  - a rank slowed on purpose (HARNESS_FAULT_SLOW_RANK) is named by the straggler report within
#    three log intervals, on stderr and in metrics.jsonl.
source "$(dirname "$0")/common.sh"
R=$WORK/observe
rm -rf "$R"; mkdir -p "$R"
"$PY" - "$DATA/train.h5" "$R/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g["images"] = f["images"][:4000]
    g["labels"] = f["labels"][:4000]
    for k, v in f.attrs.items():
        g.attrs[k] = v
PY
CFG=$(dirname "$0")/../../launch/mlp.yaml
common=(--set data.train="$R/small.h5" --set data.test="$R/small.h5" --set train.batch_size=64
        --set train.warmup_steps=5 --set log.progress=false --set run.device=cpu)

# --- plot: a finished run (with log.plot), a resumed one, one still going ----------------------
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/done" --set train.steps=120 \
  --set log.every=10 --set log.eval_every=40 --set log.plot=true >"$R/done.log" 2>&1 \
  || { cat "$R/done.log"; fail "training with log.plot failed"; }
grep -q "plot written to $R/done/metrics.png" "$R/done.log" || fail "log.plot did not say where the plot is"
[[ -s $R/done/metrics.png ]] || fail "log.plot wrote no $R/done/metrics.png"

# --- the gradient exchange's achieved bus bandwidth per log interval: in every train record
# and log line of the 2-rank run, positive and finite; not in a 1-rank run's
run_ranks 1 train "$CFG" "${common[@]}" --set run.dir="$R/single" --set train.steps=20 \
  --set log.every=10 --set data.test= >"$R/single.log" 2>&1 || { cat "$R/single.log"; fail "1-rank run failed"; }
"$PY" - "$R" <<'PY'
import json, math, re, sys
R = sys.argv[1]
def train(run):
    return [json.loads(l) for l in open(f"{R}/{run}/metrics.jsonl") if '"event":"train"' in l]
two, one = train("done"), train("single")
assert len(two) == 12 and len(one) == 2, (len(two), len(one))
for t in two:
    b = t.get("bus_gb_per_s")
    assert isinstance(b, float) and math.isfinite(b) and b > 0, f"step {t['step']}: bus_gb_per_s {b!r}"
assert all("bus_gb_per_s" not in t for t in one), "a 1-rank run reports a bus bandwidth"
lines = [l for l in open(f"{R}/done.log") if l.startswith("step ")]
assert len(lines) == 12 and all(re.search(r" \| bus [0-9.e+-]+ GB/s$", l.rstrip()) for l in lines), lines[:2]
assert not any(" bus " in l for l in open(f"{R}/single.log") if l.startswith("step ")), "bus in 1-rank log"
print(f"bus bandwidth per interval, 2 ranks: {min(t['bus_gb_per_s'] for t in two):.3g} to "
      f"{max(t['bus_gb_per_s'] for t in two):.3g} GB/s; 1 rank: none")
PY

set +e
# (another learning rate than "done", so that the two runs' curves differ when overlaid)
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/resumed" --set train.steps=120 \
  --set train.lr=0.003 --set log.every=10 --set log.eval_every=40 --set checkpoint.every=30 --stop-after 70 \
  >"$R/resumed1.log" 2>&1
rc=$?
set -e
[[ $rc -eq 75 ]] || { cat "$R/resumed1.log"; fail "--stop-after exit status $rc, not 75"; }
# resume from the step-60 checkpoint (not the newest, step 70), so that steps 61-70 are logged
# twice and the plot must keep the resumed run's records
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/resumed" --set train.steps=120 \
  --set train.lr=0.003 --set log.every=10 --set log.eval_every=40 --set checkpoint.every=30 \
  --resume "$R/resumed/checkpoints/step_00000060.h5" >"$R/resumed2.log" 2>&1 \
  || { cat "$R/resumed2.log"; fail "resume failed"; }

# still going: slow steps, plotted while it trains
HARNESS_FAULT_STEP_SLEEP_MS=20 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/running" \
  --set train.steps=400 --set log.every=5 --set data.test= >"$R/running.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  [[ -s $R/running/metrics.jsonl ]] && [[ $(grep -c '"event":"train"' "$R/running/metrics.jsonl") -ge 3 ]] && break
  sleep 0.1
done
# the records checked are those in the file before the plot read it (more may come meanwhile)
cp "$R/running/metrics.jsonl" "$R/running.snapshot.jsonl"
"$HARNESS" plot "$R/running" --out "$R/running.png" --geometry "$R/running.geo" >"$R/plot_running.log" 2>&1 \
  || { cat "$R/plot_running.log"; kill "$pid"; fail "plot of a run still going failed"; }
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true

"$HARNESS" plot "$R/done" "$R/resumed/" --out "$R/two.png" --size 1200x800 --geometry "$R/two.geo" \
  >"$R/plot_two.log" 2>&1 || { cat "$R/plot_two.log"; fail "plot of two runs failed"; }
"$HARNESS" plot "$R/done" --out "$R/done_cli.png" --geometry "$R/done.geo" >/dev/null

"$PY" - "$R" <<'PY'
import json, sys
from PIL import Image
R = sys.argv[1]

def records(path, with_ckpt=False):
    """train/eval points as plot should see them: a start event cuts what it replays."""
    train, ev, ck = {}, {}, {}
    for line in open(path):
        if not line.endswith("\n"):
            break
        r = json.loads(line)
        if r["event"] == "start" and (train or ev):
            s = r["start_step"]
            train = {k: v for k, v in train.items() if k <= s}
            ev = {k: v for k, v in ev.items() if k <= s}
            ck = {k: v for k, v in ck.items() if k <= s}
        elif r["event"] == "train":
            train[r["step"]] = r
        elif r["event"] == "eval":
            ev[r["step"]] = r
        elif r["event"] == "checkpoint":
            ck[r["step"]] = r
    return (train, ev, ck) if with_ckpt else (train, ev)

def check(png, geo, runs, size):
    img = Image.open(png)
    img.load()
    assert img.format == "PNG" and img.size == size, (png, img.format, img.size)
    img = img.convert("RGB")
    panels = {}
    for line in open(geo):
        g = json.loads(line)
        panels[g["panel"]] = g
    assert set(panels) == {"loss", "accuracy", "lr", "throughput"}, panels.keys()

    def to_px(g, x, y):
        px = g["px0"] + (x - g["xmin"]) / (g["xmax"] - g["xmin"]) * (g["px1"] - g["px0"])
        py = g["py0"] - (y - g["ymin"]) / (g["ymax"] - g["ymin"]) * (g["py0"] - g["py1"])
        return px, py

    def seg_dist(px, py, a, b):
        (ax, ay), (bx, by) = a, b
        dx, dy = bx - ax, by - ay
        t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
        return ((ax + t * dx - px) ** 2 + (ay + t * dy - py) ** 2) ** 0.5

    def near(px, py, color, r=2):
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                x, y = int(round(px)) + dx, int(round(py)) + dy
                if 0 <= x < img.size[0] and 0 <= y < img.size[1]:
                    if all(abs(a - b) <= 40 for a, b in zip(img.getpixel((x, y)), color)):
                        return True
        return False

    data = [records(p) for p in runs]
    for i, path in enumerate(runs):
        train, ev = data[i]
        assert train, path
        for key, field in (("loss", "loss"), ("accuracy", "accuracy"), ("lr", "lr"),
                           ("throughput", "samples_per_s")):
            g = panels[key]
            color = g["colors"][i]
            # runs are drawn in order: a later run's curve (its points and the 2.5 px line
            # between them) passing over this point hides it
            later = []
            for d in data[i + 1:]:
                pts = [to_px(g, s, r[field]) for s, r in sorted(d[0].items())]
                later += list(zip(pts, pts[1:])) or [(q, q) for q in pts]
            checked = 0
            for step, r in sorted(train.items()):
                px, py = to_px(g, step, r[field])
                if any(seg_dist(px, py, a, b) < 4 for a, b in later):
                    continue
                checked += 1
                assert near(px, py, color), f"{png}: {key} of {path} at step {step} ({r[field]}) not drawn at ({px:.0f},{py:.0f})"
            assert checked > 0 or key == "lr", f"{png}: {key} of {path}: every point hidden"
            print(f"{png.rsplit('/', 1)[-1]} {key} run {i}: {checked} of {len(train)} points checked")
            # a point mirrored about the panel's middle is (for these curves) not on the curve
            step, r = sorted(train.items())[0]
            px, py = to_px(g, step, r[field])
            mid = (g["py0"] + g["py1"]) / 2
            if key != "throughput" and abs(py - mid) > 40:
                assert not near(px, 2 * mid - py, color, 1), f"{png}: {key}: colour found where no data is"
        for step, r in sorted(ev.items()):
            px, py = to_px(panels["loss"], step, r["loss"])
            assert near(px, py, panels["loss"]["colors"][i], 4), f"{png}: eval loss of {path} at step {step} missing"
    # checkpoint marks: a triangle on the throughput panel's bottom edge at each checkpoint's
    # step, in the run's colour (a later run's mark on the same step covers it)
    g = panels["throughput"]
    want = [[i, s] for i, p in enumerate(runs) for s in sorted(records(p, True)[2])]
    assert g.get("checkpoints") == want, (png, g.get("checkpoints"), want)
    for i, step in want:
        if any(j > i and s == step for j, s in want):
            continue
        px, _ = to_px(g, step, 0)
        assert near(px, g["py0"] - 5, g["colors"][i], 1), f"{png}: no checkpoint mark of run {i} at step {step}"
    return len(runs)

check(f"{R}/done_cli.png", f"{R}/done.geo", [f"{R}/done/metrics.jsonl"], (1600, 1000))
check(f"{R}/two.png", f"{R}/two.geo", [f"{R}/done/metrics.jsonl", f"{R}/resumed/metrics.jsonl"], (1200, 800))
check(f"{R}/running.png", f"{R}/running.geo", [f"{R}/running.snapshot.jsonl"], (1600, 1000))
# the resumed run logged steps 61-70 twice; the plot keeps the resumed run's
train, _ = records(f"{R}/resumed/metrics.jsonl")
assert sorted(train) == list(range(10, 121, 10)), sorted(train)
# its checkpoints: 30 and 60 (70, from --stop-after, was replayed), 90 and the final 120
assert sorted(records(f"{R}/resumed/metrics.jsonl", True)[2]) == [30, 60, 90, 120]
print("plot: ok")
PY

# --- plot: bad input -------------------------------------------------------------------------
expect_error() {  # expect_error PATTERN ARGS...
  local pat=$1; shift
  set +e
  "$HARNESS" plot "$@" >"$R/bad.log" 2>&1
  local rc=$?
  set -e
  [[ $rc -eq 1 ]] || { cat "$R/bad.log"; fail "plot $*: exit status $rc, not 1"; }
  grep -q -- "$pat" "$R/bad.log" || { cat "$R/bad.log"; fail "plot $*: message does not say '$pat'"; }
}
expect_error "$R/nowhere: not a run directory" "$R/nowhere"
mkdir -p "$R/nometrics" "$R/empty" "$R/damaged"
expect_error "$R/nometrics/metrics.jsonl: No such file" "$R/nometrics"
: >"$R/empty/metrics.jsonl"
expect_error "$R/empty/metrics.jsonl: no training or evaluation records yet (the file is empty)" "$R/empty"
{ head -n 3 "$R/done/metrics.jsonl"; echo '{"event":"train","step":40,"loss":0.5,'; tail -n 2 "$R/done/metrics.jsonl"; } >"$R/damaged/metrics.jsonl"
expect_error "$R/damaged/metrics.jsonl:4: not a JSON object" "$R/damaged"
expect_error "--size needs WxH" "$R/done" --size big
echo "plot bad input: ok"

# --- trace ----------------------------------------------------------------------------------
run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/traced" --set train.steps=40 \
  --set log.every=10 --set log.eval_every=20 --set checkpoint.every=20 --trace 18-22 >"$R/traced.log" 2>&1 \
  || { cat "$R/traced.log"; fail "traced training failed"; }
grep -q "trace of steps 18-22 written to $R/traced/trace.json" "$R/traced.log" || fail "no trace notice"
"$PY" - "$R/traced/trace.json" <<'PY'
import json, sys, collections
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"]
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
assert sorted({p for p, _ in names}) == [0, 1], names
assert all(set(n for (p, _), n in names.items() if p == r) == {"host", "compute", "all-reduce"} for r in (0, 1)), names
spans = [e for e in ev if e["ph"] == "X"]
assert all(e["ph"] in ("X", "M") for e in ev)
for e in spans:
    assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
    assert e["args"]["step"] in range(18, 23), e
# timestamps monotonic per track, in file order
last = {}
for e in spans:
    k = (e["pid"], e["tid"])
    assert e["ts"] >= last.get(k, -1), f"track {k}: {e['ts']} after {last[k]}"
    last[k] = e["ts"]
for rank in (0, 1):
    mine = [e for e in spans if e["pid"] == rank]
    steps = sorted(e["args"]["step"] for e in mine if e["name"] == "step")
    assert steps == [18, 19, 20, 21, 22], (rank, steps)
    for s in steps:
        of = [e for e in mine if e["args"]["step"] == s]
        step = [e for e in of if e["name"] == "step"][0]
        fwd = [e for e in of if e["name"].startswith("forward ")]
        bwd = [e for e in of if e["name"].startswith("backward ")]
        # layers 2 and 5 (relu) run inside the linear before them (one fused op, one span)
        assert {e["args"]["layer"] for e in fwd} == {1, 3, 4, 6} and len(bwd) >= 5, (fwd, bwd)
        assert [e["name"] for e in fwd if e["args"]["layer"] in (1, 4)] == ["forward linear+relu"] * 2, fwd
        assert any(e["name"] == "all-reduce bucket" and e["tid"] == 2 for e in of)
        assert any(e["name"] == "optimizer" for e in of) and any(e["name"] == "data wait" for e in of)
        # everything in the step but the step itself and the buckets (overlapped by the wait)
        parts = sum(e["dur"] for e in of if e["name"] not in ("step", "all-reduce bucket", "evaluation", "checkpoint write",
                    "checkpoint copy", "checkpoint write (background)", "checkpoint wait (save in flight)")
                    and e["ts"] >= step["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 1)
        assert abs(parts - step["dur"]) <= 0.10 * step["dur"], f"rank {rank} step {s}: spans {parts:.0f} us vs step {step['dur']:.0f} us"
    # the checkpoint at step 20 (checkpoint.async: its snapshot copy) and the evaluation there
    # are traced too
    assert any(e["name"] == "checkpoint copy" and e["args"]["step"] == 20 for e in mine), rank
    assert any(e["name"] == "evaluation" for e in mine)
print("trace: ok, %d spans" % len(spans))
PY
set +e
"$HARNESS" train "$CFG" --trace 5-2 >"$R/bad.log" 2>&1; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q -- "--trace needs a step count" "$R/bad.log" || { cat "$R/bad.log"; fail "bad --trace accepted"; }
set +e
"$HARNESS" train "$CFG" --set log.trace_steps=0 >"$R/bad.log" 2>&1; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "log.trace_steps" "$R/bad.log" || { cat "$R/bad.log"; fail "log.trace_steps=0 accepted"; }

# --- straggler ------------------------------------------------------------------------------
HARNESS_FAULT_SLOW_RANK=1:15 run_ranks 2 train "$CFG" "${common[@]}" --set run.dir="$R/slow" \
  --set train.steps=40 --set log.every=5 --set data.test= >"$R/slow.log" 2>&1 \
  || { cat "$R/slow.log"; fail "training with a slow rank failed"; }
grep -q "warning: straggler: rank 1's steps took" "$R/slow.log" || { cat "$R/slow.log"; fail "no straggler warning for rank 1"; }
"$PY" - "$R/slow/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if r["event"] == "train"]
warn = [r for r in recs if r["event"] == "straggler"]
assert warn, "no straggler record"
# within three intervals of 5 steps, not counting the first (its steps include start-up: under
# the sanitizers rank 0's first interval can be the slower one, and the warning came at step 20)
assert warn[0]["rank"] == 1 and warn[0]["step"] <= 20, warn[0]
assert warn[0]["excess"] > 0.2, warn[0]
for i, r in enumerate(train):
    assert r["rank_step_min_s"] <= r["rank_step_median_s"] <= r["rank_step_max_s"], r
    assert r["rank_step_max_s"] >= 0.015, r
    # the slow rank is the slowest in every interval but the first, for the reason above
    # (under the sanitizers rank 0's start-up outweighed rank 1's 15 ms a step once more)
    assert i == 0 or r["slowest_rank"] == 1, r
print("straggler: ok, first warning at step", warn[0]["step"])
PY
echo "observe: all ok"
