# train.zero_stage=1 (optimizer state sharded over the ranks) changes nothing but memory:
#  1. stage 1 against stage 0 on 1, 2, 3 and 4 ranks, SGD with momentum and AdamW, clipping on
#     (and active), 60 steps, a model of 234499 parameters (odd, not divisible by 3 or 4, so
#     the shards are uneven) and 64 KiB buckets (15 buckets, several straddle shard
#     boundaries): identical losses on 1 rank, equal within float rounding on more;
#  2. the optimizer state per rank (start event) is states x shard x 4 bytes at stage 1 and
#     states x all parameters x 4 at stage 0;
#  3. the checkpoints have the same datasets, shapes and (within float rounding) values as
#     stage 0's.  (Every rank's loss enters the logged mean, so a rank whose all-gathered
#     parameters were wrong would show in the losses.)
source "$(dirname "$0")/common.sh"
Z=$WORK/zero1
rm -rf "$Z"; mkdir -p "$Z"
cat >"$Z/model.yaml" <<'YAML'
model:
  layers:
    - {type: flatten}
    - {type: linear, out: 255}
    - {type: relu}
    - {type: linear, out: 129}
    - {type: relu}
    - {type: linear, out: 10}
YAML
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=60
        --set train.batch_size=96 --set train.lr=0.003 --set log.every=1 --set log.progress=false
        --set train.warmup_steps=5 --set train.clip_grad_norm=0.5 --set comm.bucket_kb=64
        --set train.weight_decay=0.01)
for opt in sgd adamw; do
  extra=(--set train.optimizer=$opt)
  [ $opt = sgd ] && extra+=(--set train.momentum=0.9 --set train.lr=0.05)
  for ranks in 1 2 3 4; do
    for stage in 0 1; do
      run_ranks $ranks train "$Z/model.yaml" "${common[@]}" "${extra[@]}" \
        --set train.zero_stage=$stage --set run.dir="$Z/${opt}_r${ranks}_z${stage}" \
        2>"$Z/${opt}_r${ranks}_z${stage}.log"
    done
    grep -q "optimizer state per rank: .* train.zero_stage=1, sharded" "$Z/${opt}_r${ranks}_z1.log" \
      || { cat "$Z/${opt}_r${ranks}_z1.log"; fail "no sharded optimizer state line"; }
  done
done
"$PY" - "$Z" <<'PY'
import json, sys, h5py, numpy as np
import nan_safe
z = sys.argv[1]
n = 234499
assert n % 2 and n % 3 and n % 4
def losses(run):
    rows = [json.loads(l) for l in open(f"{z}/{run}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["event"] == "train"], \
           [r["grad_norm"] for r in rows if r["event"] == "train"]
for opt in ("sgd", "adamw"):
    states = {"sgd": 1, "adamw": 2}[opt]
    for ranks in (1, 2, 3, 4):
        l0, g0 = losses(f"{opt}_r{ranks}_z0")
        l1, g1 = losses(f"{opt}_r{ranks}_z1")
        assert len(l0) == len(l1) == 60, (len(l0), len(l1))
        assert l0[-1] < l0[0] * 0.7, f"{opt}: loss did not fall: {l0[0]} -> {l0[-1]}"
        assert sum(g > 0.5 for g in g0) >= 10, f"{opt}: clipping never active: {g0[:10]}"
        worst = nan_safe.worst(abs(a - b) / abs(a) for a, b in zip(l0, l1))
        gworst = nan_safe.worst(abs(a - b) / abs(a) for a, b in zip(g0, g1))
        print(f"{opt} {ranks} rank(s): stage 1 vs 0: max relative loss difference {worst:.2e}, "
              f"gradient norm {gworst:.2e}{' (bit-identical)' if l0 == l1 else ''}")
        if ranks == 1:
            assert l0 == l1 and g0 == g1, "1 rank: stage 1 must be the same computation"
        else:
            assert worst < 2e-5 and gworst < 2e-5, f"{opt} {ranks} ranks: stage 1 diverges"
        # optimizer state per rank, from the start event: states x shard x 4 bytes
        ev = [json.loads(l) for l in open(f"{z}/{opt}_r{ranks}_z1/metrics.jsonl")]
        start = [e for e in ev if e["event"] == "start"][0]
        shard0 = n * 1 // ranks   # rank 0's shard: floor(n * 1 / ranks) - 0
        assert start["optim_state_bytes_per_rank"] == states * shard0 * 4, start
        ev0 = [json.loads(l) for l in open(f"{z}/{opt}_r{ranks}_z0/metrics.jsonl")]
        assert [e for e in ev0 if e["event"] == "start"][0]["optim_state_bytes_per_rank"] == states * n * 4
        # the checkpoints: same names and shapes; values equal within rounding (exact at 1 rank)
        with h5py.File(f"{z}/{opt}_r{ranks}_z0/checkpoints/step_00000060.h5") as a, \
             h5py.File(f"{z}/{opt}_r{ranks}_z1/checkpoints/step_00000060.h5") as b:
            na, nb = [], []
            a.visit(lambda k: na.append(k) if isinstance(a[k], h5py.Dataset) else None)
            b.visit(lambda k: nb.append(k) if isinstance(b[k], h5py.Dataset) else None)
            assert na == nb and len(na) == 6 * (1 + states), (na, nb)
            for k in na:
                x, y = a[k][:], b[k][:]
                assert x.shape == y.shape, k
                if ranks == 1:
                    assert np.array_equal(x, y), k
                else:
                    scale = np.abs(x).max() + 1e-12
                    d = np.abs(x - y).max() / scale
                    assert d < 1e-3, f"{opt} {ranks} ranks: {k} differs by {d:.2e} of its range"
print("zero_stage 1 vs 0: ok")
PY

# The node's shared-memory window in rounds: with comm.window_mb=1 the sums of a 275629-
# parameter model (1.1 MB beyond the gradients, which move into the window) do not fit it, so
# 3 ranks' gradients go through a 1 MiB window in 7 rounds of 14563 floats per slice
# (comm_grads_shm.c) - stage 0's average and all-gather, stage 1's reduce-scatter and parameter
# gather.  The same bits as the whole-buffer window, the gradient norm's included (the
# exchange takes its sum of squares on the way).  And the MPI all-reduce instead of the window
# (comm.shared_memory=false), on the model above: the same norms and losses within float
# rounding; the first step's norm also that of 1 rank's (the same global batch).
sed 's/out: 255}/out: 300}/' "$Z/model.yaml" >"$Z/model_r.yaml"
for stage in 0 1; do
  for window in 1024 1; do
    run_ranks 3 train "$Z/model_r.yaml" "${common[@]}" --set train.optimizer=sgd --set train.momentum=0.9 \
      --set train.lr=0.05 --set train.zero_stage=$stage --set comm.window_mb=$window \
      --set run.dir="$Z/sgd_r3_z${stage}_w$window" 2>"$Z/sgd_r3_z${stage}_w$window.log"
  done
  grep -q "shared-memory window of 1.0 MiB per node, in rounds" "$Z/sgd_r3_z${stage}_w1.log" \
    || { cat "$Z/sgd_r3_z${stage}_w1.log"; fail "stage $stage, comm.window_mb=1: not in rounds"; }
  run_ranks 3 train "$Z/model.yaml" "${common[@]}" --set train.optimizer=sgd --set train.momentum=0.9 \
    --set train.lr=0.05 --set train.zero_stage=$stage --set comm.shared_memory=false \
    --set run.dir="$Z/sgd_r3_z${stage}_mpi" 2>"$Z/sgd_r3_z${stage}_mpi.log"
done
grep -q "shared-memory window of .* per node that holds the ranks' gradients" "$Z/sgd_r3_z0_w1024.log" \
  || { cat "$Z/sgd_r3_z0_w1024.log"; fail "3 ranks, whole window: backward did not write into the window"; }
"$PY" - "$Z" <<'PY'
import json, sys, h5py, numpy as np
z = sys.argv[1]
for stage in (0, 1):
    whole, rounds = f"{z}/sgd_r3_z{stage}_w1024", f"{z}/sgd_r3_z{stage}_w1"
    rows = lambda run, k: [json.loads(l)[k] for l in open(f"{run}/metrics.jsonl") if '"event":"train"' in l]
    loss = lambda run: rows(run, "loss")
    assert len(loss(whole)) == 60 and loss(whole) == loss(rounds), f"stage {stage}: losses differ in rounds"
    assert rows(whole, "grad_norm") == rows(rounds, "grad_norm"), f"stage {stage}: norms differ in rounds"
    shm, mpi, one = f"{z}/sgd_r3_z{stage}", f"{z}/sgd_r3_z{stage}_mpi", f"{z}/sgd_r1_z{stage}"
    gw, gm, l1 = rows(shm, "grad_norm"), rows(mpi, "grad_norm"), rows(one, "grad_norm")
    gd = max(abs(a - b) / b for a, b in zip(gw, gm))
    ld = max(abs(a - b) / abs(b) for a, b in zip(loss(shm), loss(mpi)))
    d1 = abs(gw[0] - l1[0]) / l1[0]
    print(f"stage {stage}: window vs MPI: norms within {gd:.1e}, losses within {ld:.1e}; "
          f"step 1's norm vs 1 rank's within {d1:.1e}")
    assert len(gm) == 60 and gd < 2e-5 and ld < 2e-5, f"stage {stage}: the window's norms or losses stray from MPI's"
    assert d1 < 1e-5, f"stage {stage}: step 1's norm {gw[0]} is not 1 rank's {l1[0]}"
    with h5py.File(f"{whole}/checkpoints/step_00000060.h5") as a, \
         h5py.File(f"{rounds}/checkpoints/step_00000060.h5") as b:
        names = []
        a.visit(lambda k: names.append(k) if isinstance(a[k], h5py.Dataset) else None)
        for k in names:
            assert np.array_equal(a[k][:], b[k][:]), f"stage {stage}: {k} differs in rounds"
    print(f"stage {stage}: the window in rounds gives the whole window's bits ({len(names)} tensors, 60 losses)")
PY

# A /dev/shm too small for the window (a container's): Open MPI backs the window with a file
# there, and a tmpfs that runs out kills the job with SIGBUS at the first touch of a page past
# it.  The limit is half the free space: with the backing directory on a 2 MiB tmpfs, 3 ranks
# x 234499 gradients (3.8 MB whole: theirs and the sums) go through a 1 MiB window in rounds,
# with the same bits.
mkdir -p "$Z/shm2m"
if mount -t tmpfs -o size=2m tmpfs "$Z/shm2m" 2>/dev/null; then
  set +e
  OMPI_MCA_osc_sm_backing_directory=$Z/shm2m run_ranks 3 train "$Z/model.yaml" "${common[@]}" \
    --set train.optimizer=sgd --set train.momentum=0.9 --set train.lr=0.05 \
    --set run.dir="$Z/sgd_r3_z0_shm2m" >"$Z/shm2m.log" 2>&1
  rc=$?
  set -e
  umount "$Z/shm2m"
  [[ $rc -eq 0 ]] || { cat "$Z/shm2m.log"; fail "training with a 2 MiB /dev/shm: exit status $rc"; }
  grep -q "shared-memory window of 1.0 MiB per node, in rounds" "$Z/shm2m.log" \
    || { cat "$Z/shm2m.log"; fail "a 2 MiB /dev/shm: the window was not limited to 1 MiB"; }
  cmp <(grep '"event":"train"' "$Z/sgd_r3_z0/metrics.jsonl" | grep -o '"loss":[^,]*') \
      <(grep '"event":"train"' "$Z/sgd_r3_z0_shm2m/metrics.jsonl" | grep -o '"loss":[^,]*') \
    || fail "a 2 MiB /dev/shm: the losses differ from the whole window's"
  echo "a 2 MiB /dev/shm: window limited to 1 MiB, in rounds, the same 60 losses"
else
  echo "note: could not mount a tmpfs (not root?): the small /dev/shm case was not run"
fi

# The all-gather overlaps the next forward (comm_shards_allgather_need before each layer):
# with every parameter outside a rank's shard set to NaN just before the all-gather starts
# (HARNESS_FAULT_POISON_GATHER), a layer that ran before its parameters arrived would make the
# loss non-finite.  The MLP above, a CNN with batch norm and a GPT whose tied head reads the
# embedding's weight, 2 and 3 ranks, 4 KiB buckets (many per layer, and layers inside one):
# the poisoned runs' losses equal the clean runs' bit for bit, and stage 0's within rounding.
O=$Z/overlap
mkdir -p "$O"
"$PY" "$(dirname "$0")/make_tokens.py" "$O" 20000
quiet=(--set log.every=1 --set log.progress=false --set data.test="" --set train.steps=10
       --set train.warmup_steps=2 --set train.clip_grad_norm=1.0 --set comm.bucket_kb=4)
mlp=(--set data.train="$DATA/train.h5" --set train.batch_size=48 --set train.optimizer=adamw)
cnn=(--set data.train="$DATA/train.h5" --set train.batch_size=24 --set train.momentum=0.9
     --set 'model.layers=[{type: conv2d, out: 4, kernel: 3, padding: 1}, {type: batchnorm2d},
            {type: relu}, {type: maxpool2d, kernel: 2}, {type: flatten}, {type: linear, out: 32},
            {type: relu}, {type: linear, out: 10}]')
gpt=(--set data.train="$O/train.h5" --set model.gpt.layers=2 --set model.gpt.heads=2
     --set model.gpt.dim=32 --set model.gpt.context=16 --set train.batch_size=6
     --set train.optimizer=adamw --set train.lr=0.001)
for model in mlp cnn gpt; do
  declare -n args=$model
  for ranks in 2 3; do
    tag="$model-np$ranks"
    run_ranks $ranks train "${quiet[@]}" "${args[@]}" --set train.zero_stage=0 --set run.dir="$O/$tag-z0"
    run_ranks $ranks train "${quiet[@]}" "${args[@]}" --set train.zero_stage=1 --set run.dir="$O/$tag-z1"
    HARNESS_FAULT_POISON_GATHER=1 run_ranks $ranks train "${quiet[@]}" "${args[@]}" \
      --set train.zero_stage=1 --set run.dir="$O/$tag-z1-poison" 2>"$O/$tag-poison.log" \
      || { cat "$O/$tag-poison.log"; fail "$tag: a layer read parameters before they arrived"; }
  done
  unset -n args
done
"$PY" - "$O" <<'PY'
import json, math, sys
import nan_safe
o = sys.argv[1]
def losses(run):
    rows = [json.loads(l) for l in open(f"{o}/{run}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["event"] == "train"]
for model in ("mlp", "cnn", "gpt"):
    for ranks in (2, 3):
        tag = f"{model}-np{ranks}"
        z0, z1, p = losses(f"{tag}-z0"), losses(f"{tag}-z1"), losses(f"{tag}-z1-poison")
        assert len(z0) == len(z1) == len(p) == 10, (tag, len(z0), len(z1), len(p))
        assert all(math.isfinite(x) for x in p), f"{tag}: poisoned run not finite: {p}"
        assert p == z1, f"{tag}: poisoned parameters reached a forward: {p} vs {z1}"
        worst = nan_safe.worst(abs(a - b) / abs(a) for a, b in zip(z0, z1))
        assert worst < 2e-5, f"{tag}: stage 1 vs 0 differ by {worst:.2e}"
        print(f"{tag}: overlapped all-gather: poisoned == clean (10 losses), vs stage 0 {worst:.1e}")
print("all-gather overlapped with the forward: ok")
PY
