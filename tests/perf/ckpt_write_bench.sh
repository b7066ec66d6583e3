# Checkpoint write time of GPT-2 124M (parameters + AdamW state, about 1.5 GB) with 1, 2 and 4
# writing ranks (issue 25):
#   1. the trainer itself: launch/gpt2-124m.yaml on the CPU (context 64, 4 sequences, 2 steps),
#      one synchronous checkpoint at the end; checkpoint.writers 1 (rank 0 alone, today's) and 0
#      (every rank its part + the file of virtual datasets), at zero_stage 0 and 1; the time is
#      write_s of the "checkpoint" record in metrics.jsonl.
#   2. tests/perf/ckpt_write_bench.c, built here against Debian's libhdf5-openmpi-dev: the same
#      tensors written as per-rank part files, and into one shared file through parallel HDF5
#      (MPI-IO, collective), contiguous or chunked with Fletcher-32.
# Every write ends on disk (fsync).  Big files are deleted after each run.
#   bash tests/perf/ckpt_write_bench.sh build/trainer/harness [WORKDIR]
# RANKS="1 2 4", REPEAT=3 (rounds of the benchmark program), TRAINER=0 (skips part 1) and PY
# (a python with h5py and numpy) may be set.
set -euo pipefail
HARNESS=$(readlink -f "$1")
W=${2:-/tmp/harness-ckpt-bench}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-/usr/bin/python3}
RANKS=${RANKS:-1 2 4}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$W"
if [ ! -f "$W/tokens.h5" ]; then
  "$PY" - "$W/tokens.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:   # GPT-2's vocabulary: wte is [50304, 768]
    f["tokens"] = np.random.default_rng(0).integers(0, 50257, 200000, dtype=np.uint16)
    f.attrs["vocab_size"] = 50257
PY
fi
echo "== the trainer: launch/gpt2-124m.yaml, one synchronous checkpoint (write_s from metrics.jsonl)"
for ranks in $RANKS; do
  [ "${TRAINER:-1}" = 0 ] && break
  for zero in 0 1; do
    [ $ranks -eq 1 ] && [ $zero -eq 1 ] && continue
    for writers in 1 0; do
      [ $ranks -eq 1 ] && [ $writers -eq 0 ] && continue   # one rank: the same whole file
      run=$W/run
      rm -rf "$run"
      mpirun -np $ranks "$HARNESS" train "$ROOT/launch/gpt2-124m.yaml" --set run.device=cpu \
        --set model.gpt.context=64 --set train.batch_size=4 --set train.steps=2 \
        --set train.grad_accum=1 --set train.warmup_steps=1 --set data.train="$W/tokens.h5" \
        --set data.test="" --set log.progress=false --set train.zero_stage=$zero \
        --set checkpoint.writers=$writers --set run.dir="$run" >"$W/log" 2>&1 \
        || { cat "$W/log"; exit 1; }
      "$PY" - "$run" $ranks $zero $writers <<'PY'
import json, os, sys
run, ranks, zero, writers = sys.argv[1:]
rec = [r for r in map(json.loads, open(f"{run}/metrics.jsonl")) if r["event"] == "checkpoint"][-1]
ck = f"{run}/checkpoints"
size = sum(os.path.getsize(f"{ck}/{f}") for f in os.listdir(ck))
print(f"trainer  ranks {ranks}  zero_stage {zero}  writers {writers} "
      f"({'every rank' if writers == '0' else 'rank 0'}): {rec['write_s']:.2f} s  "
      f"{size / 1e9:.3f} GB on disk  {size / 1e9 / rec['write_s']:.2f} GB/s")
PY
      rm -rf "$run"
    done
  done
done
echo "== tests/perf/ckpt_write_bench.c (parallel HDF5 1.10.8 through MPI-IO, and part files)"
mpicc -O2 -I/usr/include/hdf5/openmpi "$ROOT/tests/perf/ckpt_write_bench.c" -o "$W/ckpt_write_bench" \
  -L/usr/lib/x86_64-linux-gnu/hdf5/openmpi -lhdf5 -Wl,-rpath,/usr/lib/x86_64-linux-gnu/hdf5/openmpi
# REPEAT rounds, the modes interleaved so that a busy machine slows them alike; phdf5-f32 (tens
# of seconds) once unless F32=all
for round in $(seq ${REPEAT:-3}); do
  for ranks in $RANKS; do
    for mode in parts parts-raw phdf5 phdf5-f32; do
      [ $mode = phdf5-f32 ] && [ $round -gt 1 ] && [ "${F32:-}" != all ] && continue
      rm -rf "$W/out"; mkdir -p "$W/out"
      mpirun -np $ranks "$W/ckpt_write_bench" $mode "$W/out"
    done
  done
done
rm -rf "$W/out"
