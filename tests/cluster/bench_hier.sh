# Hierarchical vs plain MPI gradient averaging across emulated nodes (tests/cluster): 2 nodes x 2
# ranks under mpirun, the MLP (fashion-mnist) and a small GPT (4 layers, dim 128, context 64,
# byte tokens of the project's own text), comm.hierarchical=true and false alternating, REPS
# times each.  Per run: ms per step, ms per step blocked in the gradient exchange
# (step_comm_wait_s), its achieved bus bandwidth (bus_gb_per_s), and the bytes n2's eth0
# carried per step (received + sent).  Then the exchange alone at each model's gradient size
# (tests/perf/bench_exchange.c, built next to harness: median step of ROUNDS x 20, plain and
# hierarchical alternating).  Needs root and namespaces, like the cluster tests.
#   bash tests/cluster/bench_hier.sh build/trainer/harness [mpirun] [python3] [WORKDIR]
#   REPS=3 STEPS=200 ROUNDS=5 ...   (REPS=0: the exchange alone)
set -euo pipefail
set -- "${1:?usage: bench_hier.sh HARNESS [MPIRUN] [PYTHON] [WORKDIR]}" "${2:-mpirun}" \
  "${3:-python3}" "${4:-/tmp/harness-bench-hier}"
source "$(dirname "$0")/common.sh"
REPS=${REPS:-3} STEPS=${STEPS:-200} ROUNDS=${ROUNDS:-5}
EXCHANGE=$(dirname "$HARNESS")/../tests/perf/bench_exchange
cluster_up "$WORK/cluster" 2 || fail "the emulated nodes did not come up"
REPO=$(cd "$HERE/../.." && pwd)
[ -f "$WORK/text/train.h5" ] || cat "$REPO"/README.md "$REPO"/comm/*.c "$REPO"/trainer/run/*.c >"$WORK/text.txt"
[ -f "$WORK/text/train.h5" ] || "$HARNESS" convert text "$WORK/text.txt" --out "$WORK/text" >/dev/null
mlp=(--set data.train="$WORK/fashion-mnist/train.h5" --set train.batch_size=64)
gpt=(--set data.train="$WORK/text/train.h5" --set model.gpt.layers=4 --set model.gpt.heads=4
     --set model.gpt.dim=128 --set model.gpt.context=64 --set train.batch_size=16)
common=(--set data.test="" --set train.steps="$STEPS" --set log.every=$((STEPS / 4))
        --set log.progress=false --set checkpoint.every=0 --set train.lr=0.001)
one() {   # one MODEL HIER -> "ms_per_step wait_ms bus_gbps bytes_per_step"
  local dir=$WORK/$1-$2 before after
  local -n model=$1
  rm -rf "$dir"
  before=$(node_bytes n2)
  # shellcheck disable=SC2046
  node_run n1 "$MPIRUN" $(mpi_args) --host n1:2,n2:2 -np 4 "$HARNESS" train "${model[@]}" \
    "${common[@]}" --set comm.hierarchical="$2" --set run.dir="$dir" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log" >&2; fail "$1 hierarchical=$2 failed"; }
  after=$(node_bytes n2)
  "$PY" - "$dir/metrics.jsonl" $((after - before)) "$STEPS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["event"] == "train"][1:]   # the first interval warms up
s = [r for r in rows if r["event"] == "summary"][0]
wait = sum(r["step_comm_wait_s"] for r in train) / len(train)
bus = sum(r["bus_gb_per_s"] for r in train) / len(train)
print(f"{1e3 * s['train_seconds'] / s['steps']:.3f} {1e3 * wait:.3f} {bus:.3g} {int(sys.argv[2]) // int(sys.argv[3])}")
PY
}
: >"$WORK/results.txt"
for m in mlp gpt; do
  for rep in $(seq "$REPS"); do
    for h in true false; do
      read -r ms wait bus bytes < <(one "$m" "$h")
      [ "$h" = true ] && grep -h "gradient averaging" "$WORK/$m-$h.log" | head -1 >&2
      printf '%s hierarchical=%-5s rep %d: %8s ms/step, %8s ms/step exchange wait, bus %8s GB/s, n2 eth0 %10s bytes/step\n' \
        "$m" "$h" "$rep" "$ms" "$wait" "$bus" "$bytes"
      echo "$m $h $ms $wait $bus $bytes" >>"$WORK/results.txt"
    done
  done
done
"$PY" - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for m in ("mlp", "gpt"):
    for h in ("true", "false"):
        r = [list(map(float, x[2:])) for x in rows if x[0] == m and x[1] == h]
        if not r:
            continue
        med = [statistics.median(c) for c in zip(*r)]
        print(f"median of {len(r)}: {m} hierarchical={h:5s} {med[0]:8.3f} ms/step, {med[1]:8.3f} ms "
              f"exchange wait/step, bus {med[2]:.3g} GB/s, n2 eth0 {med[3] / 1e6:.3f} MB/step")
PY
for m in mlp gpt; do
  unset -n model 2>/dev/null || true
  declare -n model=$m
  rm -rf "$WORK/$m-size"
  "$HARNESS" train "${model[@]}" "${common[@]}" --set train.steps=1 --set run.dir="$WORK/$m-size" >/dev/null 2>&1
  n=$("$PY" -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1])][0]["params"])' "$WORK/$m-size/metrics.jsonl")
  # shellcheck disable=SC2046
  node_run n1 "$MPIRUN" $(mpi_args) --host n1:2,n2:2 -np 4 "$EXCHANGE" "$n" "$ROUNDS" 20 |
    sed "s/^/$m: /"
done
