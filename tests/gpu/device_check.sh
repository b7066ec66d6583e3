#!/usr/bin/env bash
# tests/gpu/device_check.sh - the whole GPU session in one command (tests/gpu/README.md),
# for a machine with one GPU and none of our libraries.  Given the bundle that
# tests/gpu/make_bundle.sh built on the CPU machine, it runs, in this order and within a time
# budget: what was loaded (driver, CUDA runtime, cuBLAS, cuDNN, NCCL: versions and files); the
# unit checks (every GPU test binary, comm's GPU backends, the watchdog ending a stalled NCCL
# job); the step modes (CUDA graph vs eager vs separate epilogues); the GPU against the CPU
# step for step; the end-to-end trainings against their accuracy bars; ZeRO-1 and two ranks
# sharing the GPU; the benchmarks against PyTorch last.  Writes $OUT/summary.md (one line per
# check: pass / fail / not run, seconds, key numbers) and one log per check under $OUT/logs
# (tarred into $OUT/logs.tgz, since only files two folders down come back).
#   bash tests/gpu/device_check.sh [--bundle TAR|DIR] [--budget SECONDS] [--out DIR]
#                                  [--only REGEX] [--dry-run]
# Defaults: --bundle .gpubundle/gpubundle.tar.xz (or an older .tgz), --budget $DEVICE_CHECK_BUDGET_S or 435 (the
# estimates add up to it; with a machine's start that leaves about 6 of the 15 minutes for a
# rerun of what failed), --out $OUT or ./device-check-out.  A check is started only when its
# estimate fits in what is left, and is killed at three times its estimate or at the end of
# the budget.  Without a GPU: says so and exits 77.  --dry-run lists the checks, their sum
# against the budget, and exits 0 when it fits, 3 when not (no GPU or bundle needed).
# Exit status: 0 every selected check ran and passed; 1 some check failed; 3 incomplete: no
# check failed but some did not run (budget, or a skip inside it: not in the bundle, ...) -
# the check has not passed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUNDLE=$ROOT/.gpubundle/gpubundle.tar.xz
[ -f "$BUNDLE" ] || [ ! -f "$ROOT/.gpubundle/gpubundle.tgz" ] || BUNDLE=$ROOT/.gpubundle/gpubundle.tgz
BUDGET=${DEVICE_CHECK_BUDGET_S:-435}
OUTDIR=${OUT:-$PWD/device-check-out}
ONLY=. DRY=0
while [ $# -gt 0 ]; do
  case $1 in
    --bundle) BUNDLE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "device_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# name | estimate (s) | what it runs.  In the order of issue 22: unit checks, step modes, the
# GPU against the CPU step for step, end-to-end trainings, ZeRO and shared-GPU checks, the
# benchmarks last.  The estimates are for one H100/H200 and add up to the default budget.
CHECKS=(
  "versions|5|gpu_versions: driver, CUDA runtime, cuBLAS, cuDNN, NCCL versions and files"
  "unit_kernels|25|test_gpu_kernels: every kernel vs the CPU reference, the epilogue probes"
  "unit_cnn|25|test_gpu_cnn: conv2d (cuDNN), pooling, batch norm vs the CPU"
  "unit_step|10|test_gpu_step: uploads and snapshot downloads with a delayed copy, dropout rows, optimizer verdict, graph"
  "unit_gpt|20|test_gpu_gpt: GPT kernels vs the CPU"
  "comm_nccl_1rank|8|mpirun -np 1 test_gpu_comm nccl"
  "comm_staged_2ranks|10|mpirun -np 2 test_gpu_comm staged --share"
  "comm_auto_2ranks|10|mpirun -np 2 test_gpu_comm auto (same GPU: must pick MPI staged)"
  "comm_zero|12|test_gpu_comm --zero: sharded reduce-scatter + all-gather, NCCL 1 rank, staged 2 ranks"
  "comm_bf16|15|test_gpu_comm --bf16: bf16 gradients, staged 2 ranks (stage 0 and --zero), NCCL 1 rank"
  "comm_stall|15|comm_stall.sh: the watchdog ends a job whose NCCL bucket stays queued, names it"
  "data_fmnist|5|harness convert fashion-mnist from the bundled IDX files"
  "step_modes|35|step_modes.sh: CUDA graph vs eager vs separate epilogues (MLP, CNN, GPT): losses, launches"
  "train_gpu_vs_cpu|35|train_vs_cpu.sh: 60 steps fp32 / tf32 / bf16 vs the CPU"
  "train_mlp_fp32|20|launch/mlp.yaml on the GPU, fp32: test accuracy >= 0.89"
  "train_mlp_bf16|20|launch/mlp.yaml on the GPU, bf16: test accuracy >= 0.89"
  "train_cnn_fp32|20|launch/cnn.yaml, 5 epochs, fp32: test accuracy >= 0.90"
  "train_cnn_bf16|20|launch/cnn.yaml, 5 epochs, bf16: test accuracy >= 0.90"
  "train_gpt|20|launch/gpt.yaml 300 steps, bf16 (the bundle's corpus)"
  "ckpt_async|15|ckpt_async.sh: background checkpoints, the D2H copy 300 ms late: bit-identical to sync"
  "train_zero1|25|zero1.sh: zero_stage 1 vs 0 on the GPU (1 rank; 2 ranks MPI staged), resume"
  "train_2ranks_share_gpu|15|shared_gpu.sh: 2 ranks on one GPU (MPI staged) == 1 rank, 1e-4"
  "bench_mlp|15|bench_gpu.sh MODEL=mlp, fp32 + bf16, batch 1024, vs PyTorch"
  "bench_cnn|15|bench_gpu.sh MODEL=cnn, fp32 + bf16, batch 1024, vs PyTorch"
  "bench_gpt|20|bench_gpt.sh DEVICE=cuda: GPT-2 124M, bf16, 10 steps, vs PyTorch eager"
)

if [ $DRY = 1 ]; then
  echo "device_check: budget ${BUDGET}s, bundle $BUNDLE, out $OUTDIR; would run, in order:"
  total=0
  for c in "${CHECKS[@]}"; do
    IFS='|' read -r name est what <<<"$c"
    [[ $name =~ $ONLY ]] || continue
    total=$((total + est))
    printf '  %-24s ~%3ss  (by %4ss)  %s\n' "$name" "$est" "$total" "$what"
  done
  if [ "$total" -le "$BUDGET" ]; then
    echo "estimates: ${total}s, fit the budget of ${BUDGET}s"
    exit 0
  fi
  echo "estimates: ${total}s, over the budget of ${BUDGET}s: the last checks would not run"
  exit 3
fi

if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "device_check: no GPU on this machine (nvidia-smi lists none): nothing to check here"
  exit 77
fi
# From here on a GPU is listed: a test binary that finds no CUDA device fails (it says why:
# kern_cuda_device_status), it does not skip.

mkdir -p "$OUTDIR/logs"
LOGS=$OUTDIR/logs
SUMMARY=$OUTDIR/summary.md
T0=$(date +%s)
WORK=$(mktemp -d /tmp/devcheck.XXXXXX)
if [ -d "$BUNDLE" ]; then B=$(cd "$BUNDLE" && pwd)
elif [ -f "$BUNDLE" ]; then
  # tar picks the compression (gzip or xz); without an xz program, Python's lzma does it
  { tar xf "$BUNDLE" -C "$WORK" 2>/dev/null ||
    python3 -c 'import sys, tarfile as t; t.open(sys.argv[1]).extractall(sys.argv[2], **({"filter": "fully_trusted"} if hasattr(t, "fully_trusted_filter") else {}))' "$BUNDLE" "$WORK"; } &&
    [ -d "$WORK/gpubundle" ] && B=$WORK/gpubundle ||
    { echo "device_check: could not unpack $BUNDLE" >&2; exit 1; }
else echo "device_check: no bundle at $BUNDLE (build it with tests/gpu/make_bundle.sh)" >&2; exit 1; fi
# our libraries and Open MPI from the bundle; CUDA's, cuDNN's and NCCL's from the machine (the
# toolkit, and the nvidia-* wheels that PyTorch brings)
source "$B/env.sh"
PY=$(command -v python3)
extra=$("$PY" - <<'PY' 2>/dev/null
import glob, os
dirs = []
try:
    import nvidia
    for base in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(base, "*", "lib")))
except Exception:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d $d ] && extra=$extra:$d; done
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$extra"
source "$HERE/../mpi_env.sh"
H=$B/bin/harness
MPIRUN=$(command -v mpirun)
DATA=$WORK/fashion-mnist
{
  echo "# device check $(date -u +%FT%TZ)"
  echo
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo "Bundle: $(tr '\n' ';' < "$B/BUILD_INFO" 2>/dev/null)"
  echo "Budget: ${BUDGET}s"
  echo
  echo "| check | result | seconds | numbers |"
  echo "| --- | --- | --- | --- |"
} > "$SUMMARY"
FAILED=0

# accuracy / samples per second of a run dir, and a bar to pass
acc_of() {  # acc_of RUN_DIR BAR -> prints numbers, exit 1 below the bar
  "$PY" - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r for r in rows if r["event"] == "eval"]
s = [r for r in rows if r["event"] == "summary"]
acc = ev[-1]["accuracy"] if ev else float("nan")
sps = s[-1]["samples_per_s"] if s else float("nan")
print(f"test accuracy {acc:.4f} (bar {sys.argv[2]}), {sps:.0f} samples/s")
sys.exit(0 if acc >= float(sys.argv[2]) else 1)
PY
}

train_acc() {  # train_acc NAME CONFIG PRECISION BAR [--set ...]
  local name=$1 cfg=$2 p=$3 bar=$4; shift 4
  "$H" train "$B/launch/$cfg" --set data.train="$DATA/train.h5" --set data.test="$DATA/test.h5" \
    --set run.device=cuda --set run.precision="$p" --set log.progress=false \
    --set run.dir="$WORK/$name" "$@" && acc_of "$WORK/$name" "$bar"
}

run_check() {  # run_check NAME -> the body of each check; stdout/stderr go to its log
  case $1 in
    versions) "$B/bin/gpu_versions" ;;
    unit_kernels) "$B/bin/test_gpu_kernels" ;;
    unit_cnn) "$B/bin/test_gpu_cnn" ;;
    unit_step) "$B/bin/test_gpu_step" ;;
    unit_gpt) [ -x "$B/bin/test_gpu_gpt" ] || { echo "SKIP: test_gpu_gpt not in the bundle"; return 77; }
              "$B/bin/test_gpu_gpt" ;;
    comm_nccl_1rank) "$MPIRUN" --oversubscribe -np 1 "$B/bin/test_gpu_comm" nccl ;;
    comm_staged_2ranks) "$MPIRUN" --oversubscribe -np 2 "$B/bin/test_gpu_comm" staged --share ;;
    comm_auto_2ranks) "$MPIRUN" --oversubscribe -np 2 "$B/bin/test_gpu_comm" auto ;;
    comm_zero) "$MPIRUN" --oversubscribe -np 1 "$B/bin/test_gpu_comm" nccl --zero &&
               "$MPIRUN" --oversubscribe -np 2 "$B/bin/test_gpu_comm" staged --share --zero ;;
    comm_bf16) "$MPIRUN" --oversubscribe -np 2 "$B/bin/test_gpu_comm" staged --share --bf16 &&
               "$MPIRUN" --oversubscribe -np 2 "$B/bin/test_gpu_comm" staged --share --zero --bf16 &&
               "$MPIRUN" --oversubscribe -np 1 "$B/bin/test_gpu_comm" nccl --zero --bf16 ;;
    comm_stall) bash "$B/tests/gpu/comm_stall.sh" "$B/bin/test_gpu_comm" "$MPIRUN" ;;
    data_fmnist) "$H" convert fashion-mnist --src "$B/data/fashion-mnist" --out "$DATA" ;;
    train_mlp_fp32) train_acc mlp_fp32 mlp.yaml fp32 0.89 ;;
    train_mlp_bf16) train_acc mlp_bf16 mlp.yaml bf16 0.89 ;;
    train_cnn_fp32) train_acc cnn_fp32 cnn.yaml fp32 0.90 --set train.epochs=5 ;;
    train_cnn_bf16) train_acc cnn_bf16 cnn.yaml bf16 0.90 --set train.epochs=5 ;;
    step_modes)
      GPT_DATA=$B/data/fortunes LAUNCH=$B/launch \
        bash "$B/tests/gpu/step_modes.sh" "$H" "$MPIRUN" "$PY" "$WORK/modes" "$DATA" ;;
    train_2ranks_share_gpu)
      bash "$B/tests/gpu/shared_gpu.sh" "$H" "$MPIRUN" "$PY" "$WORK/share" "$DATA" ;;
    train_zero1)
      bash "$B/tests/gpu/zero1.sh" "$H" "$MPIRUN" "$PY" "$WORK/zero1" "$DATA" ;;
    ckpt_async)
      bash "$B/tests/gpu/ckpt_async.sh" "$H" "$MPIRUN" "$PY" "$WORK/ckpt" "$DATA" ;;
    train_gpu_vs_cpu)
      SKIP_ACCURACY=1 bash "$B/tests/gpu/train_vs_cpu.sh" "$H" "$MPIRUN" "$PY" "$WORK/vs" "$DATA" ;;
    train_gpt)
      [ -f "$B/launch/gpt.yaml" ] && [ -f "$B/data/fortunes/train.h5" ] ||
        { echo "SKIP: no launch/gpt.yaml or no corpus (launch/corpus.sh) in the bundle"; return 77; }
      "$H" train "$B/launch/gpt.yaml" --set data.train="$B/data/fortunes/train.h5" \
        --set data.test="$B/data/fortunes/val.h5" --set run.device=cuda --set run.precision=bf16 \
        --set train.steps=300 --set log.progress=false --set run.dir="$WORK/gpt" ;;
    bench_gpt)
      [ -f "$B/tests/perf/bench_gpt.sh" ] || { echo "SKIP: bench_gpt.sh not in the bundle"; return 77; }
      DEVICE=cuda STEPS=10 WARMUP=3 PRECISIONS=bf16 COMPILE=0 MPIRUN="$MPIRUN" \
        bash "$B/tests/perf/bench_gpt.sh" "$H" "$MPIRUN" "$PY" "$WORK/perf-gpt" ;;
    bench_mlp|bench_cnn)
      mkdir -p "$WORK/perf/fashion-mnist" && cp "$DATA"/*.h5 "$WORK/perf/fashion-mnist/"
      MODEL=${1#bench_} STEPS=200 BATCHES="1024" PRECISIONS="fp32 bf16" \
        bash "$B/tests/perf/bench_gpu.sh" "$H" "$PY" "$WORK/perf" ;;
  esac
}

# the numbers a check's log holds, for its summary line
numbers() {  # numbers NAME LOG
  case $1 in
    versions) grep -E '^(driver|CUDA runtime|cuBLAS|cuDNN|NCCL)' "$2" | tr '\n' ';' ;;
    unit_kernels) { grep -m1 -o "ReLU epilogue [a-z]* NaN[^;]*" "$2"
                    grep -m1 -E "linear\+gelu [0-9x]+ \+b .*(max rel err [0-9.e+-]+|bit-identical)" "$2" |
                      sed -E 's/ +/ /g'
                    grep -E '\[  PASSED  \]|\[  FAILED  \]' "$2" | tail -1; } | tr '\n' ' ' ;;
    unit_*|comm_*) grep -E '\[  PASSED  \]|\[  FAILED  \]|PASS|FAIL|SKIP' "$2" | tail -2 | tr '\n' ' ' ;;
    train_mlp_*|train_cnn_*) grep 'test accuracy' "$2" | tail -1 ;;
    train_2ranks*|train_gpu_vs*|train_zero1) grep -E 'max relative|ok$' "$2" | tr '\n' ' ' ;;
    ckpt_async) grep -E '^(graph1|eager1|async2):' "$2" | sed -E 's/ at steps 4, 8, 12//' | tr '\n' ' ' ;;
    step_modes) grep -E 'graph vs eager|graph:|eager:' "$2" | tr '\n' ' ' | cut -c1-390 ;;
    train_gpt) grep -E 'harness: done|val loss' "$2" | tail -1 ;;
    bench_gpt) grep -E '^(harness|PyTorch)' "$2" | awk '{printf "%s; ", $0}' | tr -s ' ' ;;
    bench_*) grep -E '^[0-9]' "$2" | awk '{printf "b%s %s %s/s vs torch %s/s (x%s); ", $1, $2, $3, $4, $5}' ;;
    *) tail -1 "$2" ;;
  esac | tr '|' '/' | cut -c1-400
}

NOT_RUN=0 SELECTED=0
for c in "${CHECKS[@]}"; do
  IFS='|' read -r name est what <<<"$c"
  [[ $name =~ $ONLY ]] || continue
  SELECTED=$((SELECTED + 1))
  left=$((BUDGET - ($(date +%s) - T0)))
  if [ "$left" -lt "$est" ]; then
    echo "| $name | not run | 0 | budget: ${left}s left, needs ~${est}s |" >> "$SUMMARY"
    NOT_RUN=$((NOT_RUN + 1))
    continue
  fi
  limit=$((est * 3 < left ? est * 3 : left))
  log=$LOGS/$name.log
  t=$(date +%s)
  echo "== $name ($what), limit ${limit}s"
  ( export -f run_check train_acc acc_of; export B H PY MPIRUN DATA WORK
    timeout -k 5 "$limit" bash -c "run_check $name" ) > "$log" 2>&1
  rc=$?
  dt=$(($(date +%s) - t))
  case $rc in
    0) res=pass ;;
    77) res="not run (skipped: $(grep -m1 -o 'SKIP.*' "$log" | cut -c1-120 | tr '|' '/'))"
        NOT_RUN=$((NOT_RUN + 1)) ;;
    124|137) res="fail (timeout ${limit}s)"; FAILED=1 ;;
    *) res="fail (exit $rc)"; FAILED=1 ;;
  esac
  echo "| $name | $res | $dt | $(numbers "$name" "$log") |" >> "$SUMMARY"
  echo "   $res in ${dt}s"
done
echo >> "$SUMMARY"
echo "Total: $(($(date +%s) - T0))s of ${BUDGET}s; $SELECTED checks selected, $NOT_RUN not run" >> "$SUMMARY"
if [ $FAILED = 1 ]; then verdict="FAILED"
elif [ $NOT_RUN -gt 0 ]; then verdict="INCOMPLETE: $NOT_RUN check(s) did not run - not a pass"
else verdict="PASSED"; fi
echo "Result: $verdict" >> "$SUMMARY"
tar czf "$OUTDIR/logs.tgz" -C "$OUTDIR" logs 2>/dev/null
cat "$SUMMARY"
rm -rf "$WORK"
[ $FAILED = 1 ] && exit 1
[ $NOT_RUN -gt 0 ] && exit 3
exit 0
