#!/usr/bin/env bash
# Two harness builds side by side on the CPU (an A/B of a kernels change): the issue-27 MLP
# (784-256-128-10, SGD, batch 128) and small GPT (2 layers x 64, context 64, batch 16), each
# as 1 rank x 1 thread and 2 ranks x 1 thread, runs interleaved, best of REPEAT.
#   bash tests/perf/bench_cpu_ab.sh BASE_HARNESS NEW_HARNESS [WORKDIR]
# Environment: REPEAT (2), MLP_STEPS (400), GPT_STEPS (60), VARIANTS: extra rows as
# "label|binary(A or B)|env|--set ..." separated by ';' (e.g. "B bf16|B||run.precision=bf16").
# Prints samples/s (MLP) and tokens/s (GPT) per row and the ratio to the first row.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); WORK=${3:-/tmp/harness-ab}
REPEAT=${REPEAT:-2} MLP_STEPS=${MLP_STEPS:-400} GPT_STEPS=${GPT_STEPS:-60}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
[[ -s $WORK/fmnist/train.h5 ]] || "$B" convert fashion-mnist --src /usr/share/datasets/fashion-mnist \
  --out "$WORK/fmnist" >/dev/null
mkdir -p "$WORK/tokens"
[[ -s $WORK/tokens/train.h5 ]] || /usr/bin/python3 "$HERE/../trainer/make_tokens.py" "$WORK/tokens" 400000 >/dev/null
ROWS="A|A||;B|B||;${VARIANTS:-}"

# run MODEL RANKS BIN ENV SETS -> samples/s or tokens/s of one run
run() {
  local model=$1 ranks=$2 bin=$3 envs=$4 sets=$5 dir=$WORK/run args=()
  rm -rf "$dir"
  for s in $sets; do args+=(--set "$s"); done
  if [[ $model == mlp ]]; then
    args+=(--set data.train="$WORK/fmnist/train.h5" --set data.test= --set train.steps="$MLP_STEPS"
      --set train.batch_size=128 --set train.optimizer=sgd --set train.momentum=0.9
      --set train.lr=0.01 --set log.every=$((MLP_STEPS / 4)))
    printf 'model:\n  layers:\n    - {type: flatten}\n    - {type: linear, out: 256}\n    - {type: relu}\n    - {type: linear, out: 128}\n    - {type: relu}\n    - {type: linear, out: 10}\n' >"$WORK/mlp.yaml"
    args=("$WORK/mlp.yaml" "${args[@]}")
  else
    args+=(--set data.train="$WORK/tokens/train.h5" --set data.test= --set model.gpt.layers=2
      --set model.gpt.heads=2 --set model.gpt.dim=64 --set model.gpt.context=64
      --set train.steps="$GPT_STEPS" --set train.batch_size=16 --set log.every=$((GPT_STEPS / 4)))
  fi
  env $envs OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpirun --oversubscribe -np "$ranks" \
    -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS ${envs:+-x ${envs%%=*}} "$bin" train "${args[@]}" \
    --set run.dir="$dir" --set run.device=cpu --set run.threads=1 --set log.progress=false \
    >"$WORK/last.log" 2>&1 || { tail -5 "$WORK/last.log" >&2; echo 0; return; }
  /usr/bin/python3 - "$dir/metrics.jsonl" "$model" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = [r for r in rows if r["event"] == "train"][1:]   # the first interval includes start-up
key = "samples_per_s" if sys.argv[2] == "mlp" else "tokens_per_s"
print(f'{sum(r[key] for r in t) / len(t):.0f}')
EOF
}

echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); load $(cut -d' ' -f1-3 /proc/loadavg)"
for model in mlp gpt; do
  for ranks in 1 2; do
    declare -A best=()
    for ((r = 1; r <= REPEAT; r++)); do
      IFS=';' read -ra rows <<<"$ROWS"
      for row in "${rows[@]}"; do
        [[ -z $row ]] && continue
        IFS='|' read -r label which envs sets <<<"$row"
        bin=$A; [[ $which == B ]] && bin=$B
        v=$(run "$model" "$ranks" "$bin" "$envs" "$sets")
        [[ -z ${best[$label]:-} || $v -gt ${best[$label]} ]] && best[$label]=$v
      done
    done
    first=""
    IFS=';' read -ra rows <<<"$ROWS"
    for row in "${rows[@]}"; do
      [[ -z $row ]] && continue
      label=${row%%|*}
      [[ -z $first ]] && first=${best[$label]}
      printf '%s\t%d rank%s x 1 thread\t%-28s\t%8s\t%.2fx\n' "$model" "$ranks" \
        "$([[ $ranks -gt 1 ]] && echo s)" "$label" "${best[$label]}" \
        "$(echo "${best[$label]} / $first" | bc -l)"
    done
    unset best
  done
done
