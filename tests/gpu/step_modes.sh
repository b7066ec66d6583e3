# The GPU step's three ways of running, one against the other, and what each queues per step:
#   graph     the default: the step recorded once as a CUDA graph and replayed, cuBLASLt
#             epilogues (bias, relu/gelu, bias gradient) fused into the GEMMs
#   eager     run.cuda_graph=false: the same kernels launched one by one
#   separate  run.cuda_graph=false, run.gemm_epilogues=separate: no fused epilogues
# graph and eager run the same kernels on the same data: losses within 1e-6 relative (and the
# check says whether they are bit-identical); separate computes the same math with other
# kernels: within 1e-4 (fp32).  For the MLP (launch/mlp.yaml's network with dropout), the
# CNN (launch/cnn.yaml) and, when its corpus is given (GPT_DATA=DIR with train.h5), the GPT
# (launch/gpt.yaml): samples/s and the backend's per-step counts of launches and host waits.
#   bash step_modes.sh HARNESS MPIRUN PY WORK DATA   (skips with 77 without a GPU)
source "$(dirname "$0")/common.sh"
LAUNCH=${LAUNCH:-$(dirname "$0")/../../launch}
mkdir -p "$WORK"
modes=(graph eager separate)
mode_args() {
  case $1 in
    graph) ;;
    eager) echo "--set run.cuda_graph=false" ;;
    separate) echo "--set run.cuda_graph=false --set run.gemm_epilogues=separate" ;;
  esac
}
run_model() {  # run_model NAME CONFIG STEPS DATA.TRAIN [--set ...]
  local name=$1 cfg=$2 steps=$3 train=$4; shift 4
  for m in "${modes[@]}"; do
    # shellcheck disable=SC2046
    "$HARNESS" train "$cfg" --set data.train="$train" --set data.test="" --set run.device=cuda \
      --set train.steps="$steps" --set log.every=1 --set log.progress=false \
      --set run.dir="$WORK/$name-$m" $(mode_args "$m") "$@" > "$WORK/$name-$m.log" 2>&1 ||
      { cat "$WORK/$name-$m.log"; fail "$name ($m) failed"; }
    grep -E "CUDA graph|device work|done:" "$WORK/$name-$m.log" || true
  done
  "$PY" - "$WORK" "$name" <<'PY'
import json, re, sys
import nan_safe
w, name = sys.argv[1], sys.argv[2]
def run(m):
    rows = [json.loads(l) for l in open(f"{w}/{name}-{m}/metrics.jsonl")]
    loss = [r["loss"] for r in rows if r["event"] == "train"]
    sps = [r["samples_per_s"] for r in rows if r["event"] == "summary"][-1]
    log = open(f"{w}/{name}-{m}.log").read()
    work = re.search(r"device work per step[^:]*: (.*)", log)
    return loss, sps, work.group(1) if work else "?"
g, e, s = run("graph"), run("eager"), run("separate")
def rel(a, b):
    return nan_safe.worst(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
assert len(g[0]) == len(e[0]) == len(s[0]) > 0
ge, es = rel(e[0], g[0]), rel(e[0], s[0])
print(f"{name}: graph vs eager max rel loss diff {ge:.2e}{' (bit-identical)' if g[0] == e[0] else ''}; "
      f"fused vs separate epilogues {es:.2e}")
for m, r in (("graph", g), ("eager", e), ("separate", s)):
    print(f"{name} {m}: {r[1]:.0f} samples/s; {r[2]}")
assert ge <= 1e-6, f"{name}: the CUDA graph changes the losses: {ge}"
assert es <= 1e-4, f"{name}: fused epilogues change the losses beyond rounding: {es}"
PY
}
run_model mlp "$LAUNCH/mlp.yaml" 300 "$DATA/train.h5"
run_model cnn "$LAUNCH/cnn.yaml" 100 "$DATA/train.h5"
if [ -n "${GPT_DATA:-}" ] && [ -f "$GPT_DATA/train.h5" ]; then
  run_model gpt "$LAUNCH/gpt.yaml" 60 "$GPT_DATA/train.h5" --set train.warmup_steps=5
fi
# The trace's compute spans on the GPU come from CUDA events (kern_marks): a traced run writes
# a trace.json whose per-layer spans are well-formed and start after the host began their step
# (device time may run past the host's step span: the host queues ahead).
"$HARNESS" train "$LAUNCH/mlp.yaml" --set data.train="$DATA/train.h5" --set data.test="" \
  --set run.device=cuda --set train.steps=12 --set log.progress=false --set log.trace=true \
  --set log.trace_start=5 --set log.trace_steps=3 --set run.dir="$WORK/traced" > "$WORK/traced.log" 2>&1 ||
  { cat "$WORK/traced.log"; fail "traced GPU run failed"; }
"$PY" - "$WORK/traced/trace.json" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
ev = ev["traceEvents"] if isinstance(ev, dict) else ev
spans = [e for e in ev if e.get("ph") == "X"]
steps = {e["args"]["step"]: e for e in spans if e["name"] == "step"}
assert sorted(steps) == [5, 6, 7], sorted(steps)
layers = [e for e in spans if e["name"].startswith(("forward ", "backward "))]
assert layers and all(e["dur"] >= 0 for e in layers), layers[:3]
for e in layers:
    s = steps[e["args"]["step"]]
    assert s["ts"] - 1 <= e["ts"], (e, s)
print(f"gpu trace: {len(layers)} per-layer spans from CUDA events, each after its step began")
PY
echo "gpu step modes: ok"
