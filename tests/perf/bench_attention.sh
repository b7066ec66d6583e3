#!/usr/bin/env bash
# CPU attention, forward + backward on one thread: the current kernels/cpu/cpu_attention.c
# against the one at BASE (default 4370c04, the version that stored the probabilities
# att[B,heads,T,T]), both compiled here with the kernels' flags, timed side by side in one
# process (tests/perf/bench_attention.c: thread CPU time, best of REPS).
#   bash tests/perf/bench_attention.sh [BASE]
#   OPENBLAS_CORETYPE=SkylakeX bash tests/perf/bench_attention.sh   (OpenBLAS's AVX-512 GEMMs)
# Shapes: launch/gpt.yaml's block per rank (16 x 128 tokens, 4 heads x 32), a small GPT (8 x 64,
# 4 x 16), GPT-2 124M's 12 heads x 64 at llm.c's CPU setting (4 x 64) and at T = 1024 (1 x 1024).
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${1:-4370c04}
W=$(mktemp -d /tmp/bench-attention.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/base"
git show "$BASE:kernels/cpu/cpu_attention.c" > "$W/base/cpu_attention.c"
git show "$BASE:kernels/cpu/cpu_backend.h" > "$W/base/cpu_backend.h"
F="-O3 -std=c11 -D_GNU_SOURCE -fno-math-errno -fno-trapping-math -ffp-contract=off -Ikernels -Ikernels/cpu"
# the base file finds its own cpu_backend.h first (same directory)
gcc $F -Dkcpu_attention_forward=base_attention_forward \
    -Dkcpu_attention_backward=base_attention_backward \
    -Dkcpu_attention_decode=base_attention_decode -Dkcpu_gpt_workspace=base_gpt_workspace \
    -c "$W/base/cpu_attention.c" -o "$W/base.o"
gcc $F -c kernels/cpu/cpu_attention.c -o "$W/current.o"
gcc $F -c tests/perf/bench_attention.c -o "$W/bench.o"
gcc "$W/bench.o" "$W/base.o" "$W/current.o" -o "$W/bench" -lopenblas -lm
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), OpenBLAS core ${OPENBLAS_CORETYPE:-auto}"
for shape in "16 128 128 4 30" "8 64 64 4 200" "4 64 768 12 60" "1 1024 768 12 5"; do
  OPENBLAS_NUM_THREADS=1 "$W/bench" $shape
done
