# Memory of train.zero_stage=1 for a model whose optimizer state dominates: an MLP of
# 20.0M parameters (AdamW: 160 MB of state at stage 0, against 1 MB of activations).
#  - optimizer-state bytes per rank (the start event; printed) at 1, 2 and 4 ranks:
#    exactly 2 x 4 x shard elements at stage 1, 2 x 4 x all parameters at stage 0;
#  - peak resident memory per rank (getrusage maxrss, the max over ranks, as the run reports
#    it) at 4 ranks: stage 1 saves at least 60% of what the sharding should save per rank
#    (the state of the other 3/4 of the parameters, less the shard's gradient buffer).
source "$(dirname "$0")/common.sh"
M=$WORK/zero1_memory
rm -rf "$M"; mkdir -p "$M"
"$PY" - "$DATA/train.h5" "$M/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g["images"] = f["images"][:1024]
    g["labels"] = f["labels"][:1024]
    for k, v in f.attrs.items():
        g.attrs[k] = v
PY
cat >"$M/model.yaml" <<'YAML'
model:
  layers:
    - {type: flatten}
    - {type: linear, out: 4096}
    - {type: relu}
    - {type: linear, out: 4096}
    - {type: relu}
    - {type: linear, out: 10}
YAML
common=(--set data.train="$M/small.h5" --set data.test="" --set train.steps=4
        --set train.batch_size=8 --set train.warmup_steps=0 --set log.every=1
        --set log.progress=false --set train.optimizer=adamw)
for ranks in 1 2 4; do
  for stage in 0 1; do
    run_ranks $ranks train "$M/model.yaml" "${common[@]}" --set train.zero_stage=$stage \
      --set run.dir="$M/r${ranks}_z$stage" 2>"$M/r${ranks}_z$stage.log"
    grep "optimizer state per rank\|peak resident" "$M/r${ranks}_z$stage.log"
  done
done
"$PY" - "$M" <<'PY'
import json, sys
m = sys.argv[1]
def events(run):
    ev = {}
    for r in map(json.loads, open(f"{m}/{run}/metrics.jsonl")):
        ev[r["event"]] = r
    return ev
n = events("r1_z0")["start"]["params"]
print(f"{n} parameters, AdamW (2 state tensors)")
print("ranks  stage  optimizer state per rank (MiB)  peak RSS per rank, max (MiB)")
peak = {}
for ranks in (1, 2, 4):
    for stage in (0, 1):
        ev = events(f"r{ranks}_z{stage}")
        got = ev["start"]["optim_state_bytes_per_rank"]
        want = 2 * 4 * (n // ranks if stage else n)   # rank 0's shard is floor(n / ranks)
        assert got == want, (ranks, stage, got, want)
        peak[ranks, stage] = ev["summary"]["peak_rss_kib_max"] * 1024
        print(f"{ranks:5d}  {stage:5d}  {got / 2**20:31.2f}  {peak[ranks, stage] / 2**20:28.1f}")
saving = 2 * 4 * n * 3 / 4 - 4 * n / 4      # state of 3/4 of the parameters, less shard grads
measured = peak[4, 0] - peak[4, 1]
print(f"4 ranks: stage 1 saves {measured / 2**20:.1f} MiB of peak RSS per rank "
      f"(expected about {saving / 2**20:.1f} MiB)")
assert measured >= 0.6 * saving, "sharding did not reduce the peak resident memory"
assert peak[1, 1] >= peak[1, 0] - 8 * 2**20, "1 rank: nothing to shard, same memory expected"
print("zero_stage memory: ok")
PY
