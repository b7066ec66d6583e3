#!/usr/bin/env bash
# GPT benchmark: tokens/s of harness against PyTorch on the same GPT (model.gpt preset vs
# tests/perf/torch_gpt.py: the same architecture, init, AdamW with the same weight-decay
# groups, clipping, batch, context and token file), measured in one run.
#
#   bash tests/perf/bench_gpt.sh build/trainer/harness                    # CPU: launch/gpt.yaml's model
#   MODEL=gpt2 bash tests/perf/bench_gpt.sh build/trainer/harness         # CPU: GPT-2 124M, batch 4,
#               context 64 (llm.c's CPU setting), fp32 and bf16 (bf16 only where the CPU has AMX)
#   DEVICE=cuda bash tests/perf/bench_gpt.sh build/trainer/harness        # one GPU: GPT-2 124M
# Arguments: HARNESS [MPIRUN [PYTHON [WORKDIR]]]
#   PYTHON   default: the current PyTorch from PyPI in build/venv-torch (torch_venv.sh makes it
#            on first use); /usr/bin/python3 for Debian's 1.13
# Environment:
#   DEVICE      cpu (default) or cuda
#   STEPS       timed steps per run (default cpu 30, cuda 20); WARMUP untimed PyTorch steps (5)
#   LAYERS HEADS DIM CONTEXT BATCH   the model and global batch (default cpu: 4 4 128 128 32,
#               cuda: GPT-2 124M, 12 12 768 1024, batch 8)
#   PRECISIONS  cuda: the precisions to compare (default "fp32 bf16")
#   COMPILE     cuda: also PyTorch with torch.compile (default 1)
#   REPEAT      runs per configuration, best kept (default 1)
# CPU configurations: harness 2 ranks x 1 thread (compared), PyTorch 1 thread, CORES threads,
# DDP (gloo) 2 x 1.  CUDA: harness 1 rank vs PyTorch eager and torch.compile, same precision
# (fp32: exact fp32 GEMMs on both; bf16: bf16 GEMM inputs in harness, autocast in PyTorch).
# The token file: the default corpus when datasets/fortunes/train.h5 exists, else a synthetic
# one (tests/trainer/make_tokens.py); the GPU run uses a vocabulary of 50257 (random tokens).
# A benchmark, not a pass/fail test: prints a table and exits 0 unless a run fails.
set -euo pipefail
if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi
HARNESS=$(realpath "$1")
MPIRUN=${2:-$(command -v mpirun || echo mpirun)}
PY=${3:-$(bash "$(dirname "${BASH_SOURCE[0]}")/torch_venv.sh")}
WORK=${4:-/tmp/harness-perf-gpt}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEVICE=${DEVICE:-cpu}
CORES=${CORES:-$(nproc)}
REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-5}
MODEL=${MODEL:-small}
if [[ $DEVICE == cuda ]]; then
  STEPS=${STEPS:-20} LAYERS=${LAYERS:-12} HEADS=${HEADS:-12} DIM=${DIM:-768}
  CONTEXT=${CONTEXT:-1024} BATCH=${BATCH:-8}
elif [[ $MODEL == gpt2 ]]; then
  STEPS=${STEPS:-8} LAYERS=${LAYERS:-12} HEADS=${HEADS:-12} DIM=${DIM:-768}
  CONTEXT=${CONTEXT:-64} BATCH=${BATCH:-4} WARMUP=${WARMUP:-2}
else
  STEPS=${STEPS:-30} LAYERS=${LAYERS:-4} HEADS=${HEADS:-4} DIM=${DIM:-128}
  CONTEXT=${CONTEXT:-128} BATCH=${BATCH:-32}
fi
PRECISIONS=${PRECISIONS:-fp32 bf16}
COMPILE=${COMPILE:-1}
source "$HERE/../mpi_env.sh"
fail() { echo "bench_gpt: FAIL: $*" >&2; exit 1; }
[[ -x $HARNESS ]] || fail "harness binary not found: $1"
mkdir -p "$WORK/logs"
WORK=$(realpath "$WORK")
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# --- data ---------------------------------------------------------------------------------
# one folder per kind of token file: GPT-2's vocabulary (random tokens) or the corpus's, so a
# run never picks up the other kind's file from an earlier run in the same WORKDIR
if [[ $DEVICE == cuda || $MODEL == gpt2 ]]; then DATA=$WORK/data-gpt2; else DATA=$WORK/data; fi
mkdir -p "$DATA"
if [[ $DEVICE == cuda || $MODEL == gpt2 ]]; then
  [[ -s $DATA/train.h5 ]] || "$PY" - "$DATA/train.h5" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["tokens"] = np.random.default_rng(0).integers(0, 50257, 4_000_000).astype(np.uint16)
    f.attrs["vocab_size"] = 50257
    f.attrs["tokenizer"] = "gpt2"
EOF
elif [[ -s datasets/fortunes/train.h5 ]]; then
  cp -f datasets/fortunes/train.h5 "$DATA/train.h5"
else
  "$PY" "$HERE/../trainer/make_tokens.py" "$DATA" 2000000
fi

best_of() {  # best_of VALUE... -> the largest
  printf '%s\n' "$@" | sort -g | tail -1
}

harness_run() {  # harness_run LABEL RANKS THREADS PRECISION
  local label=$1 ranks=$2 threads=$3 prec=$4 vals=() rep dir
  for ((rep = 1; rep <= REPEAT; rep++)); do
    dir=$WORK/runs/h-$ranks-$threads-$prec-$rep
    rm -rf "$dir"
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
      "$MPIRUN" --oversubscribe -np "$ranks" $( ((threads > 1)) && echo --bind-to none ) -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
      "$HARNESS" train --set run.dir="$dir" --set run.threads="$threads" \
        --set run.device="$DEVICE" --set run.precision="$prec" \
        --set data.train="$DATA/train.h5" --set data.test= --set data.cache_mb=4096 \
        --set model.gpt.layers="$LAYERS" --set model.gpt.heads="$HEADS" \
        --set model.gpt.dim="$DIM" --set model.gpt.context="$CONTEXT" \
        --set train.steps=$((STEPS + WARMUP)) --set train.batch_size="$BATCH" \
        --set train.lr=0.001 --set train.weight_decay=0.1 --set train.clip_grad_norm=1.0 \
        --set train.schedule=constant --set log.every="$WARMUP" --set log.progress=false \
        >"$WORK/logs/$(basename "$dir").log" 2>&1 || { tail -20 "$WORK/logs/$(basename "$dir").log"; fail "$label"; }
    # the intervals after the first (its steps include start-up): tokens/s and breakdown
    vals+=("$("$PY" - "$dir/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = [r for r in rows if r["event"] == "train"][1:]
tps = sum(r["tokens_per_s"] for r in t) / len(t)
m = lambda k: 1000 * sum(r[k] for r in t) / len(t)
mfu = sum(r.get("mfu", -1) for r in t) / len(t)
print(f"{tps:.1f}\t{m('step_compute_s'):.2f}\t{m('step_comm_wait_s'):.2f}\t{m('step_data_wait_s'):.2f}\t{mfu:.4f}")
EOF
)")
  done
  printf '%s\t%s\n' "$label" "$(printf '%s\n' "${vals[@]}" | sort -t$'\t' -k1,1g | tail -1)" >>"$RESULTS"
}

torch_run() {  # torch_run LABEL ARGS...
  local label=$1 vals=() rep threads=1 a prev=""; shift
  for a in "$@"; do [[ $prev == --threads ]] && threads=$a; prev=$a; done
  for ((rep = 1; rep <= REPEAT; rep++)); do
    local log=$WORK/logs/torch-$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_')-$rep.log
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$PY" "$HERE/torch_gpt.py" \
      --data "$DATA/train.h5" --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" \
      --context "$CONTEXT" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" "$@" \
      >"$log" 2>&1 || { tail -20 "$log"; fail "$label"; }
    # the result line (JSON); with DDP another process's warnings may come after it
    vals+=("$("$PY" -c 'import json,sys; print(json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])["tokens_per_s"])' "$log")")
  done
  printf '%s\t%s\t-\t-\t-\t-\n' "$label" "$(best_of "${vals[@]}")" >>"$RESULTS"
}

if [[ $DEVICE == cuda ]]; then
  for p in $PRECISIONS; do
    harness_run "harness 1 GPU $p" 1 1 "$p"
    torch_run "PyTorch eager $p" --device cuda --precision "$p"
    [[ $COMPILE == 1 ]] && torch_run "PyTorch compile $p" --device cuda --precision "$p" --compile
  done
else
  harness_run "harness 2 ranks x 1 thread" 2 1 fp32
  harness_run "harness 1 rank x 1 thread" 1 1 fp32
  [[ $CORES -gt 1 ]] && harness_run "harness 1 rank x $CORES threads" 1 "$CORES" fp32
  # bf16 GEMM inputs where the CPU has AMX (elsewhere harness says so and computes fp32)
  [[ $MODEL == gpt2 ]] && harness_run "harness 2 ranks x 1 thread bf16" 2 1 bf16
  # PyTorch: eager (scaled_dot_product_attention where it has it) and torch.compile
  torch_run "PyTorch 1 thread" --threads 1
  [[ $CORES -gt 1 ]] && torch_run "PyTorch $CORES threads" --threads "$CORES"
  torch_run "PyTorch DDP gloo 2 x 1 thread" --mode ddp --world 2 --threads 1
  if [[ $COMPILE == 1 ]] && "$PY" -c 'import torch, sys; sys.exit(not hasattr(torch, "compile"))'; then
    torch_run "PyTorch compile 1 thread" --threads 1 --compile
    [[ $CORES -gt 1 ]] && torch_run "PyTorch compile $CORES threads" --threads "$CORES" --compile
  fi
fi

echo
echo "GPT $LAYERS layers, $HEADS heads, dim $DIM, context $CONTEXT, global batch $BATCH" \
  "sequences ($((BATCH * CONTEXT)) tokens), AdamW, $STEPS timed steps, best of $REPEAT; device $DEVICE"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
  { name[NR] = $1; tps[NR] = $2; comp[NR] = $3; comm[NR] = $4; dw[NR] = $5; mfu[NR] = $6
    if ($1 ~ /^harness/ && !first_h) first_h = NR; href[NR] = first_h
    if ($1 ~ /^PyTorch/ && (best == "" || $2 + 0 > tps[best] + 0)) best = NR }
  END {
    printf "%-32s %12s %10s %10s %10s %8s %16s\n", "configuration", "tokens/s", "compute", "allreduce", "data", "MFU", "harness/this"
    for (i = 1; i <= NR; i++) {
      h = href[i] ? tps[href[i]] : tps[1]
      m = (mfu[i] == "-" || mfu[i] < 0) ? "-" : sprintf("%.1f%%", 100 * mfu[i])
      printf "%-32s %12.0f %10s %10s %10s %8s %16.2f\n", name[i], tps[i], comp[i], comm[i], dw[i], m, h / tps[i]
    }
    print "(compute / allreduce / data: harness ms per step)"
  }' "$RESULTS"
