# The network check at start names a slow node.  Three nodes, one rank each (mpirun on n1);
# n3's link is throttled to 40 Mbit/s each way (tc tbf on both ends of its cable), n1-n2 is
# left alone.  Each run's "network" record in metrics.jsonl must hold the all-reduce's bus
# bandwidth and both other nodes' links to n1; the throttled run must name n3 (stderr and
# "slow_node"), the unthrottled one no node.
source "$(dirname "$0")/common.sh"
cluster_up "$WORK/cluster" 3 || fail "the emulated nodes did not come up"
say "nodes up: ${CLUSTER_NODES[*]}"
check() {   # check NAME: 3 steps, 1 rank per node, 256 KiB buckets
  rm -rf "${WORK:?}/$1"
  # shellcheck disable=SC2046
  node_run n1 "$MPIRUN" $(mpi_args) --host n1:1,n2:1,n3:1 -np 3 "$HARNESS" train \
    --set data.train="$WORK/fashion-mnist/train.h5" --set data.test="" --set train.steps=3 \
    --set train.batch_size=60 --set log.progress=false --set checkpoint.every=0 \
    --set comm.bucket_kb=256 --set run.dir="$WORK/$1" >"$WORK/$1.log" 2>&1 ||
    { tail -20 "$WORK/$1.log" >&2; fail "$1 run failed"; }
  grep "network" "$WORK/$1.log" >&2
}
check plain
node_run n3 tc qdisc add dev eth0 root tbf rate 40mbit burst 16kb latency 500ms
nsenter -t "$BRIDGE_PID" -n tc qdisc add dev v3 root tbf rate 40mbit burst 16kb latency 500ms
check slow
grep -q "harness: warning: network: node n3's link is slow" "$WORK/slow.log" || fail "n3's slow link was not named"
"$PY" - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def net(run):
    rows = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl") if '"network"' in l]
    assert len(rows) == 1, (run, len(rows))
    n = rows[0]
    assert n["ranks"] == 3 and n["rank0_node"] == "n1" and [x["host"] for x in n["nodes"]] == ["n2", "n3"], n
    assert n["bus_gb_per_s"] > 0 and all(x["gb_per_s"] > 0 for x in n["nodes"]), n
    return n
plain, slow = net("plain"), net("slow")
assert plain["slow_node"] == "", plain
assert slow["slow_node"] == "n3", slow
# 40 Mbit/s is 0.005 GB/s: the throttled link must measure about that, the free one far more
n3 = slow["nodes"][1]["gb_per_s"]
assert n3 < 0.01, f"n3's throttled link measured {n3} GB/s"
for run, n in (("plain", plain), ("slow", slow)):
    print(f"{run}: bus bandwidth {n['bus_gb_per_s']:.3g} GB/s; " +
          ", ".join(f"{x['host']} {x['gb_per_s']:.3g} GB/s" for x in n["nodes"]))
print("network check: ok")
PY
