#!/usr/bin/env bash
# The CPU GEMM libraries side by side on this machine (gemm_bench.c): OpenBLAS as installed,
# OpenBLAS forced to its Prescott (= an unknown CPU) and SkylakeX kernels, BLIS, oneDNN's
# dnnl_sgemm, its fp32 matmul primitive and its bf16 matmul primitive.  Every library runs
# ROUNDS times, interleaved, so a busy machine slows them alike; compare the best of each.
#   bash tests/perf/gemm_bench.sh [WORKDIR]      (ROUNDS=3 THREADS="1 2" by default)
# Needs gcc, libdnnl-dev, libopenblas0 and libblis4 (launch/deps.sh with HARNESS_DEPS=test).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${1:-/tmp/harness-gemm}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1 2}
mkdir -p "$WORK"
gcc -O2 -std=c11 -D_GNU_SOURCE "$HERE/gemm_bench.c" -o "$WORK/gemm_bench" -ldnnl -ldl
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "# flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
for t in $THREADS; do
  for r in $(seq "$ROUNDS"); do
    for lib in openblas openblas:Prescott openblas:SkylakeX blis dnnl_sgemm dnnl_matmul dnnl_bf16; do
      name=${lib%%:*}
      core=${lib#*:}
      [[ $core == "$lib" ]] && core=
      env ${core:+OPENBLAS_CORETYPE=$core} OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
        BLIS_NUM_THREADS=$t "$WORK/gemm_bench" "$name" 2 | grep -v '^#' \
        | sed "s/^$name/threads=$t\t$lib/"
    done
  done
done
