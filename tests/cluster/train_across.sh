# Training across emulated nodes gives the losses of a one-node run, and its traffic really
# crosses the nodes.  The same 4-rank job (global batch 64, 60 steps) runs three times under
# mpirun on node n1: all 4 ranks on n1 (--host n1:4), then 2 ranks on each of n1 and n2
# (--host n1:2,n2:2, TCP between the nodes) with hierarchical averaging (comm.hierarchical,
# the default: each node sums through shared memory, one slice per local rank crosses) and
# with plain MPI, and with ZeRO-1 (which keeps plain MPI and says so).  Every step's loss must
# agree within float rounding; every rank must end
# with the same parameters, bit for bit (HARNESS_TEST_PARAMS_OUT); eth0 of n2 must carry at
# least a full exchange (the gradient out and in) per step in the 2-node runs, less with the
# hierarchy than without (and next to nothing in the 1-node run); each node's ranks run with
# one thread each.
source "$(dirname "$0")/common.sh"
cluster_up "$WORK/cluster" 2 || fail "the emulated nodes did not come up"
say "nodes up: ${CLUSTER_NODES[*]}"
common=(--set data.train="$WORK/fashion-mnist/train.h5" --set data.test="" --set train.steps=60
        --set train.batch_size=64 --set train.lr=0.002 --set log.every=1 --set log.progress=false
        --set train.warmup_steps=5 --set checkpoint.every=0)
run_on() {   # run_on HOSTS NAME [--set ...]
  local before after hosts=$1 name=$2
  shift 2
  rm -rf "$WORK/$name"
  before=$(node_bytes n2)
  # shellcheck disable=SC2046
  node_run n1 "$MPIRUN" $(mpi_args) --host "$hosts" -np 4 \
    -x HARNESS_TEST_PARAMS_OUT="$WORK/$name/params" "$HARNESS" train "${common[@]}" "$@" \
    --set run.dir="$WORK/$name" >"$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log" >&2; fail "$name run failed"; }
  after=$(node_bytes n2)
  echo $((after - before))
}
t=$SECONDS
one=$(run_on n1:4 one-node)
say "one node (n1:4): $((SECONDS - t)) s, n2's eth0 moved $one bytes"
t=$SECONDS
two=$(run_on n1:2,n2:2 two-nodes)
say "two nodes (n1:2,n2:2), hierarchical: $((SECONDS - t)) s, n2's eth0 moved $two bytes"
t=$SECONDS
plain=$(run_on n1:2,n2:2 two-plain --set comm.hierarchical=false)
say "two nodes (n1:2,n2:2), plain MPI: $((SECONDS - t)) s, n2's eth0 moved $plain bytes"
# ZeRO-1 keeps plain MPI's reduce-scatter across the nodes, and says so once
t=$SECONDS
run_on n1:2,n2:2 two-zero1 --set train.zero_stage=1 >/dev/null
say "two nodes (n1:2,n2:2), zero_stage 1: $((SECONDS - t)) s"
[ "$(grep -c "gradient averaging across nodes: plain MPI (not with a sharded exchange" "$WORK/two-zero1.log")" = 1 ] ||
  fail "zero_stage 1 across nodes: $(grep 'gradient averaging' "$WORK/two-zero1.log")"
grep -q "gradient averaging across 2 nodes: hierarchical" "$WORK/two-nodes.log" ||
  fail "the 2-node run did not average hierarchically: $(grep -m1 'gradient averaging' "$WORK/two-nodes.log")"
grep -q "gradient averaging across nodes: plain MPI (comm.hierarchical is false)" "$WORK/two-plain.log" ||
  fail "comm.hierarchical=false: $(grep -m1 'gradient averaging' "$WORK/two-plain.log")"
for run in one-node two-nodes two-plain two-zero1; do
  for r in 1 2 3; do
    cmp -s "$WORK/$run/params.rank0" "$WORK/$run/params.rank$r" ||
      fail "$run: rank $r's parameters differ from rank 0's"
  done
done
say "every rank ends with the same parameters, bit for bit, in each run"
grep -q "4 ranks x 1 thread" "$WORK/two-nodes.log" || fail "threads per rank not chosen per node: $(grep -m1 'training on' "$WORK/two-nodes.log")"
"$PY" - "$WORK" "$one" "$two" "$plain" <<'PY'
import json, sys
w, one_bytes, two_bytes, plain_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def losses(run):
    rows = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl")]
    start = [r for r in rows if r["event"] == "start"][0]
    return [r["loss"] for r in rows if r["event"] == "train"], start["params"]
ref, params = losses("one-node")
assert len(ref) == 60, len(ref)
assert ref[-1] < ref[0] * 0.6, f"loss did not fall: {ref[0]} -> {ref[-1]}"
for run, how in (("two-nodes", "hierarchical"), ("two-plain", "plain MPI"), ("two-zero1", "ZeRO-1")):
    got, _ = losses(run)
    assert len(got) == 60, (run, len(got))
    worst = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(ref, got))
    print(f"max relative loss difference, 2 nodes x 2 ranks ({how}) vs 1 node x 4 ranks, 60 steps: {worst:.3e}")
    assert not (worst > 1e-5) and worst == worst, f"2-node run ({how}) diverges from the 1-node run: {worst}"
# per step, n2 must send its share of the gradient (4 bytes x params) out and receive the rest
# in: at least 2 x 4 x params bytes through its eth0, whatever the algorithm
need = 60 * 2 * params * 4
print(f"n2 eth0: {two_bytes} bytes in the hierarchical 2-node run, {plain_bytes} with plain MPI "
      f"(at least {need} needed), {one_bytes} in the 1-node run")
assert two_bytes >= need and plain_bytes >= need, f"too little traffic crossed the nodes: {two_bytes}, {plain_bytes} < {need}"
assert two_bytes < plain_bytes, f"the hierarchy did not reduce the traffic between the nodes: {two_bytes} >= {plain_bytes}"
assert one_bytes < need / 100, f"the 1-node run sent {one_bytes} bytes over n2's eth0"
# the gradient exchange's achieved bus bandwidth in every log interval of the 2-node runs
for run in ("two-nodes", "two-plain"):
    bus = [json.loads(l)["bus_gb_per_s"] for l in open(f"{w}/{run}/metrics.jsonl") if '"event":"train"' in l]
    assert len(bus) == 60 and all(b > 0 and b < float("inf") for b in bus), (run, bus[:3])
# the network check at start: the all-reduce's bus bandwidth and n2's link to rank 0's n1
net = [json.loads(l) for l in open(f"{w}/two-nodes/metrics.jsonl") if '"network"' in l]
assert len(net) == 1, f"{len(net)} network records in the 2-node run"
n = net[0]
assert n["ranks"] == 4 and n["rank0_node"] == "n1" and [x["host"] for x in n["nodes"]] == ["n2"], n
assert n["bus_gb_per_s"] > 0 and n["nodes"][0]["gb_per_s"] > 0 and n["slow_node"] == "", n
print(f"network check across 2 nodes: all-reduce of {n['bytes'] // 1024} KiB, bus bandwidth "
      f"{n['bus_gb_per_s']:.3g} GB/s; n2 <-> n1 {n['nodes'][0]['gb_per_s']:.3g} GB/s")
print("training across nodes: ok")
PY

# What the heartbeat costs a step: the 2-node run (200 steps) with it on (comm.heartbeat_s=5,
# the default) and off (0), alternating, twice each.  Printed, not asserted: this machine's
# load varies more than the difference.
per_step() { "$PY" -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1]) if "summary" in l][0]; print("%.3f" % (1e3 * s["train_seconds"] / s["steps"]))' "$1"; }
on=() off=()
for rep in 1 2; do
  for hb in 5 0; do
    rm -rf "$WORK/hb$hb"
    # shellcheck disable=SC2046
    node_run n1 "$MPIRUN" $(mpi_args) --host n1:2,n2:2 -np 4 "$HARNESS" train "${common[@]}" \
      --set train.steps=200 --set log.every=50 --set comm.heartbeat_s=$hb --set run.dir="$WORK/hb$hb" \
      >"$WORK/hb$hb.log" 2>&1 || { tail -20 "$WORK/hb$hb.log" >&2; fail "heartbeat_s=$hb run failed"; }
    if [ "$hb" = 5 ]; then on+=("$(per_step "$WORK/hb5/metrics.jsonl")"); else off+=("$(per_step "$WORK/hb0/metrics.jsonl")"); fi
  done
done
say "ms per step across 2 nodes, heartbeat on (comm.heartbeat_s=5): ${on[*]}; off (0): ${off[*]}"
