#!/usr/bin/env bash
# CPU benchmark: harness vs PyTorch on the launch/mlp.yaml MLP (784-256-128-10) and Fashion-MNIST.
#
# Run the full benchmark by hand (from the repository root, after building harness):
#   bash tests/perf/bench_mlp.sh build/trainer/harness
#   STEPS=1500 BATCHES="64 128 512" REPEAT=3 bash tests/perf/bench_mlp.sh build/trainer/harness
# Arguments (all but the first optional): HARNESS [MPIRUN [PYTHON [WORKDIR]]]
#   MPIRUN   default: mpirun on PATH
#   PYTHON   the interpreter with torch, h5py, numpy (default: the current PyTorch from PyPI
#            in build/venv-torch, made on first use by torch_venv.sh; /usr/bin/python3 for
#            Debian's 1.13)
#   WORKDIR  scratch: converted data and run directories (default /tmp/harness-perf)
# Environment:
#   MODEL    mlp (default) or cnn (launch/cnn.yaml's network; use fewer STEPS, e.g. 150)
#   STEPS    timed optimizer steps per run (default 1500)
#   BATCH    global batch size (default 128); BATCHES="64 128 512" runs several
#   REPEAT   runs per configuration, the best is reported (default 1; use 3 on a busy machine)
#   WARMUP   untimed PyTorch warm-up steps (default 20)
#   CORES    cores to share out (default: nproc)
#   SCALING  1: only harness, 1 rank vs 2 ranks (1 thread each) for the MLP and the CNN in one
#            run (CNN_STEPS, default STEPS/5), with tracing on vs off, the shared-memory
#            all-reduce vs MPI's and ZeRO-1; REPEAT interleaved rounds, medians and best:
#            SCALING=1 REPEAT=5 STEPS=3000 CNN_STEPS=100 bash tests/perf/bench_mlp.sh build/trainer/harness
# ctest runs a short smoke version (perf_mlp_cpu_smoke, label "perf").
#
# What is compared, and how it is kept fair:
#   - the same model and init scheme (PyTorch nn.Linear default init; harness does the same),
#     AdamW lr 1e-3 weight_decay 0.01, constant schedule, the same global batch and steps;
#   - the same train.h5 (written once by `harness convert`), held in memory by both: PyTorch
#     indexes a uint8 tensor per step and converts x/255 then (x-mean)/std like harness;
#   - ranks x threads never exceed the cores: OMP/OpenBLAS thread counts are pinned per run;
#   - timed: harness's step loop (summary train_seconds; no start-up, no eval, no data
#     conversion); PyTorch's step loop after WARMUP untimed steps (no start-up, no file read).
#     Harness's first steps are inside its timing, so any warm-up cost counts against it.
# Configurations: harness 2 ranks x 1 thread (the one compared), harness 1 rank x CORES
# threads and 1 rank x 1 thread (reference); PyTorch 1 thread, CORES threads, and DDP (gloo)
# with 2 processes x 1 thread.  "PyTorch best" is the fastest of the PyTorch rows.
# A benchmark, not a pass/fail test: exits 0 after printing, non-zero if any run fails.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi
HARNESS=$(realpath "$1")
MPIRUN=${2:-$(command -v mpirun || echo mpirun)}
PY=${3:-$(bash "$(dirname "${BASH_SOURCE[0]}")/torch_venv.sh")}
WORK=${4:-/tmp/harness-perf}
STEPS=${STEPS:-1500}
BATCHES=${BATCHES:-${BATCH:-128}}
REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-20}
CORES=${CORES:-$(nproc)}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL=${MODEL:-mlp}
TORCH_MLP=$HERE/torch_mlp.py

source "$HERE/../mpi_env.sh"

fail() { echo "bench_mlp: FAIL: $*" >&2; exit 1; }
[[ -x $HARNESS ]] || fail "harness binary not found or not executable: $1"
[[ $MODEL == mlp || $MODEL == cnn ]] || fail "MODEL must be mlp or cnn (got '$MODEL')"
"$PY" -c 'import torch, h5py, numpy' 2>/dev/null \
  || fail "$PY cannot import torch, h5py and numpy (Debian's /usr/bin/python3 can)"
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || fail "STEPS must be a positive integer (got '$STEPS')"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || fail "REPEAT must be a positive integer (got '$REPEAT')"
for b in $BATCHES; do
  [[ $b =~ ^[1-9][0-9]*$ && $((b % 2)) -eq 0 ]] || fail "batch sizes must be even positive integers (got '$b')"
done
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
DATA=$WORK/fashion-mnist
RUNS=$WORK/runs
RESULTS=$WORK/results.tsv   # batch, configuration, samples/s, compute, comm wait, data wait (s/step)
LOGS=$WORK/logs

# The benchmark's own model config, the network torch_mlp.py --model builds, so that a change
# to launch/*.yaml (dropout, augmentation) cannot make the two sides train different models.
# write_config MODEL FILE
write_config() {
  {
    printf '# Written by tests/perf/bench_mlp.sh: the %s that torch_mlp.py --model %s builds.\n' "$1" "$1"
    printf 'run:\n  seed: 42\n  device: cpu\nmodel:\n  init: kaiming_uniform\n  layers:\n'
    if [[ $1 == cnn ]]; then
      printf '    - {type: %s}\n' "conv2d, out: 32, kernel: 3, padding: 1" batchnorm2d relu \
        "maxpool2d, kernel: 2" "conv2d, out: 64, kernel: 3, padding: 1" batchnorm2d relu \
        "maxpool2d, kernel: 2" flatten "linear, out: 256" relu "dropout, p: 0.4" "linear, out: 10"
    else
      printf '    - {type: %s}\n' flatten "linear, out: 256" relu "linear, out: 128" relu "linear, out: 10"
    fi
  } >"$2"
}
CONFIG=$WORK/${MODEL}_bench.yaml
write_config "$MODEL" "$CONFIG"
mkdir -p "$RUNS" "$LOGS"
: >"$RESULTS"

# --- data: converted once, reused ---------------------------------------------------------
if [[ ! -s $DATA/train.h5 ]]; then
  echo "bench_mlp: converting Fashion-MNIST into $DATA" >&2
  "$HARNESS" convert fashion-mnist --src /usr/share/datasets/fashion-mnist --out "$DATA" \
    >"$LOGS/convert.log" 2>&1 || { cat "$LOGS/convert.log" >&2; fail "harness convert failed"; }
  [[ -s $DATA/train.h5 ]] || fail "harness convert wrote no $DATA/train.h5"
fi

plural() { if [[ $1 -gt 1 ]]; then echo s; fi; }

# --- runners: each appends one line to $RESULTS (best of REPEAT) -----------------------------
# harness_run RANKS THREADS BATCH
harness_run() {
  local ranks=$1 threads=$2 batch=$3 name best="" line rep dir log
  name="harness $ranks rank$(plural "$ranks") x $threads thread$(plural "$threads")${RUN_LABEL:-}"
  for ((rep = 1; rep <= REPEAT; rep++)); do
    dir=$RUNS/harness-r${ranks}t${threads}-b${batch}${RUN_TAG:-}-${rep}
    log=$LOGS/harness-r${ranks}t${threads}-b${batch}${RUN_TAG:-}-${rep}.log
    rm -rf "$dir"
    local every=$((STEPS < 100 ? STEPS : 100))
    if ! OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
        "$MPIRUN" --oversubscribe -np "$ranks" $( ((threads > 1)) && echo --bind-to none ) -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
        "$HARNESS" train "$CONFIG" \
          --set run.dir="$dir" --set run.threads="$threads" \
          --set data.train="$DATA/train.h5" --set data.test= \
          --set train.steps="$STEPS" --set train.batch_size="$batch" \
          --set train.optimizer=adamw --set train.lr=0.001 --set train.weight_decay=0.01 \
          --set train.schedule=constant --set train.warmup_steps=0 \
          --set log.every="$every" --set log.progress=false "${EXTRA[@]}" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      fail "$name, batch $batch: harness train failed (log: $log)"
    fi
    line=$("$PY" - "$dir/metrics.jsonl" "$STEPS" <<'EOF'
import json, sys
path, steps = sys.argv[1], int(sys.argv[2])
summary, train = None, []
for raw in open(path):
    rec = json.loads(raw)
    if rec.get("event") == "summary": summary = rec
    elif rec.get("event") == "train": train.append(rec)
if summary is None or not train or summary.get("steps") != steps:
    sys.exit(f"{path}: no summary for {steps} steps, or no train record")
# the step-time breakdown averaged over every log interval (single intervals are noisy)
mean = lambda k: sum(r[k] for r in train) / len(train)
print(f'{summary["samples_per_s"]}\t{mean("step_compute_s")}\t{mean("step_comm_wait_s")}\t{mean("step_data_wait_s")}')
EOF
    ) || fail "$name, batch $batch: cannot read $dir/metrics.jsonl"
    best=$(pick_best "$best" "$line")
  done
  printf '%s\t%s\t%s\n' "$batch" "$name" "$best" >>"$RESULTS"
}

# torch_run LABEL BATCH ARGS...: torch_mlp.py with OMP threads pinned to --threads
torch_run() {
  local name=$1 batch=$2 best="" line rep log threads=1; shift 2
  local a prev=""
  for a in "$@"; do [[ $prev == --threads ]] && threads=$a; prev=$a; done
  for ((rep = 1; rep <= REPEAT; rep++)); do
    log=$LOGS/torch-$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')-b${batch}-${rep}.log
    if ! OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
        "$PY" "$TORCH_MLP" --data "$DATA/train.h5" --model "$MODEL" --steps "$STEPS" \
          --warmup "$WARMUP" --batch "$batch" "$@" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      fail "$name, batch $batch: torch_mlp.py failed (log: $log)"
    fi
    line=$("$PY" -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(r["samples_per_s"], "-", "-", "-", sep="\t")' "$log") \
      || fail "$name, batch $batch: no result line in $log"
    best=$(pick_best "$best" "$line")
  done
  printf '%s\t%s\t%s\n' "$batch" "$name" "$best" >>"$RESULTS"
}

# pick_best OLD NEW: the line (tab-separated, samples/s first) with more samples/s
pick_best() {
  if [[ -z $1 ]]; then echo "$2"; return; fi
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, "\t"); split(b, y, "\t"); print (y[1] + 0 > x[1] + 0 ? b : a) }'
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
EXTRA=()

# --- SCALING=1: 1 rank vs 2 ranks (one thread each) for the MLP and the CNN, in one run ------
# Strong scaling at the global BATCH, SGD with momentum as in the scaling issue, plus the cost
# of tracing (log.trace over 100 steps), the shared-memory all-reduce against MPI's, and
# ZeRO-1 (reduce-scatter, half the optimizer per rank, all-gather).  The REPEAT runs of the
# configurations are interleaved (round r runs every configuration once), so that a slow
# spell of a shared machine hits them alike; the table gives the median and the best run.
if [[ ${SCALING:-0} == 1 ]]; then
  batch=${BATCHES%% *}
  SRESULTS=$WORK/scaling.tsv
  SRUNS=$WORK/scaling-runs.tsv   # model, configuration, round, samples/s, compute, comm wait
  : >"$SRESULTS"
  : >"$SRUNS"
  cfgs=("1 rank" "2 ranks" "2 ranks, trace on" "2 ranks, MPI all-reduce" "2 ranks, zero_stage 1")
  for model in mlp cnn; do
    CONFIG=$WORK/${model}_bench.yaml
    write_config "$model" "$CONFIG"
    steps=$STEPS
    [[ $model == cnn ]] && steps=${CNN_STEPS:-$((STEPS / 5))}
    for ((round = 1; round <= REPEAT; round++)); do
      for cfgname in "${cfgs[@]}"; do
        ranks=${cfgname%% *}
        EXTRA=(--set train.optimizer=sgd --set train.momentum=0.9 --set train.lr=0.01)
        case $cfgname in
          *trace*) EXTRA+=(--set log.trace=true --set log.trace_start=11 --set log.trace_steps=100) ;;
          *MPI*) EXTRA+=(--set comm.shared_memory=false) ;;
          *zero*) EXTRA+=(--set train.zero_stage=1) ;;
        esac
        RUN_TAG=-$model-$(echo "$cfgname" | tr -c 'a-zA-Z0-9\n' '_')-round$round RUN_LABEL=" ($model, $cfgname)" \
          REPEAT=1 STEPS=$steps harness_run "$ranks" 1 "$batch"
        tail -n 1 "$RESULTS" | awk -F'\t' -v m="$model" -v c="$cfgname" -v r="$round" 'BEGIN{OFS="\t"} {print m, c, r, $3, $4, $5}' >>"$SRUNS"
      done
    done
  done
  # per model and configuration: median and best samples/s, median compute and comm wait
  "$PY" - "$SRUNS" "$SRESULTS" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
out, order = {}, []
for m, c, _, sps, comp, comm in rows:
    if (m, c) not in out:
        out[(m, c)] = []
        order.append((m, c))
    out[(m, c)].append((float(sps), float(comp), float(comm)))
with open(sys.argv[2], "w") as f:
    for m, c in order:
        v = out[(m, c)]
        f.write("\t".join([m, c, str(statistics.median(x[0] for x in v)), str(max(x[0] for x in v)),
                           str(statistics.median(x[1] for x in v)), str(statistics.median(x[2] for x in v))]) + "\n")
PY
  echo
  echo "Scaling: 1 vs 2 ranks x 1 thread, batch $batch (global), SGD momentum, $STEPS MLP / ${CNN_STEPS:-$((STEPS / 5))} CNN steps, $REPEAT interleaved rounds"
  echo "host: $CORES cores; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")"
  awk -F'\t' '
    { m = $1; c = $2; sps[m, c] = $3; top[m, c] = $4; comp[m, c] = $5; comm[m, c] = $6; models[m] = 1; order[++n] = m SUBSEP c }
    END {
      printf "%-5s  %-26s  %11s  %10s  %11s  %10s  %12s  %12s\n", "model", "configuration", "samples/s", "vs 1 rank", "best run", "vs 1 rank", "compute ms", "allreduce ms"
      for (i = 1; i <= n; i++) { split(order[i], k, SUBSEP)
        printf "%-5s  %-26s  %11.0f  %10.2f  %11.0f  %10.2f  %12.3f  %12.3f\n", k[1], k[2], sps[order[i]], sps[order[i]] / sps[k[1], "1 rank"], top[order[i]], top[order[i]] / top[k[1], "1 rank"], 1000 * comp[order[i]], 1000 * comm[order[i]] }
      print "(samples/s, compute and allreduce: medians of the rounds; best run: the fastest round, against the fastest 1-rank round)"
      print ""
      for (m in models) {
        printf "%s: 2 ranks / 1 rank = %.2f (medians); tracing on / off = %.3f; MPI all-reduce / shared memory = %.2f\n", m,
          sps[m, "2 ranks"] / sps[m, "1 rank"], sps[m, "2 ranks, trace on"] / sps[m, "2 ranks"],
          sps[m, "2 ranks, MPI all-reduce"] / sps[m, "2 ranks"] }
    }' "$SRESULTS"
  echo "raw: $SRUNS (every run), $SRESULTS; logs: $LOGS"
  exit 0
fi

# --- runs -------------------------------------------------------------------------------------
for batch in $BATCHES; do
  echo "bench_mlp: batch $batch, $STEPS steps, best of $REPEAT" >&2
  harness_run 2 1 "$batch"
  harness_run 1 "$CORES" "$batch"
  if [[ $CORES -gt 1 ]]; then harness_run 1 1 "$batch"; fi
  torch_run "PyTorch 1 thread" "$batch" --mode threads --threads 1
  if [[ $CORES -gt 1 ]]; then
    torch_run "PyTorch ${CORES} threads" "$batch" --mode threads --threads "$CORES"
  fi
  torch_run "PyTorch DDP gloo 2 procs x 1 thread" "$batch" --mode ddp --world 2 --threads 1
  # torch.compile where this PyTorch has it (2.x), with 1 and CORES threads
  if [[ ${COMPILE:-1} == 1 ]] && "$PY" -c 'import torch, sys; sys.exit(not hasattr(torch, "compile"))'; then
    torch_run "PyTorch compile 1 thread" "$batch" --mode threads --threads 1 --compile
    [[ $CORES -gt 1 ]] && torch_run "PyTorch compile ${CORES} threads" "$batch" --mode threads --threads "$CORES" --compile
  fi
done

# --- table ------------------------------------------------------------------------------------
echo
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
if [[ $MODEL == cnn ]]; then
  echo "CNN of launch/cnn.yaml (2 conv + batch norm + 2 FC), Fashion-MNIST, AdamW, $STEPS steps per run, best of $REPEAT"
else
  echo "MLP 784-256-128-10, Fashion-MNIST, AdamW, $STEPS steps per run, best of $REPEAT"
fi
echo "host: $CORES cores (${CPU:-unknown CPU}); load average at start $LOAD_START," \
  "at end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?") (other work on the cores skews the numbers)"
awk -F'\t' -v cores="$CORES" '
  function ms(s) { return s == "-" ? "-" : sprintf("%.3f", s * 1000) }
  { b = $1; order[++n] = NR; batch[NR] = b; name[NR] = $2; sps[NR] = $3
    comp[NR] = $4; comm[NR] = $5; dw[NR] = $6
    if ($2 ~ /^harness 2 ranks/) h2[b] = NR
    if ($2 ~ /^PyTorch/ && (!(b in pbest) || $3 + 0 > sps[pbest[b]] + 0)) pbest[b] = NR
    if (!(b in seen)) { seen[b] = 1; batches[++nb] = b } }
  END {
    printf "%-6s  %-36s  %11s  %9s  %14s\n", "batch", "configuration", "samples/s", "ms/step", "harness-2r/this"
    for (i = 1; i <= n; i++) {
      r = order[i]; b = batch[r]; h = sps[h2[b]]
      mark = (r == pbest[b]) ? "  <- PyTorch best" : ""
      printf "%-6s  %-36s  %11.0f  %9.3f  %14.2f%s\n", b, name[r], sps[r], 1000 * b / sps[r], h / sps[r], mark
    }
    print ""
    print "harness 2 ranks: step time breakdown per step, ms (last log interval; compute includes the optimizer)"
    printf "%-6s  %10s  %16s  %10s\n", "batch", "compute", "all-reduce wait", "data wait"
    for (j = 1; j <= nb; j++) { b = batches[j]; r = h2[b]
      printf "%-6s  %10s  %16s  %10s\n", b, ms(comp[r]), ms(comm[r]), ms(dw[r]) }
    print ""
    for (j = 1; j <= nb; j++) { b = batches[j]
      printf "batch %-5s harness 2 ranks / PyTorch best (%s) = %.2f\n", b, name[pbest[b]], sps[h2[b]] / sps[pbest[b]] }
  }' "$RESULTS"
echo
echo "raw results: $RESULTS; logs: $LOGS"
