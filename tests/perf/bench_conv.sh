#!/usr/bin/env bash
# CPU convolutions on one thread: im2col + GEMM (kernels/cpu/cpu_conv.c) against oneDNN's own
# convolution primitives with blocked layouts, reorders included (kernels/cpu/cpu_conv_dnnl.c),
# forward / backward-data / backward-weights per shape, best of REPS (tests/perf/bench_conv.c).
# The "rule" column says which path the trainer takes for the shape (KERN_CONV_AUTO).
#   bash tests/perf/bench_conv.sh [REPS] [BUILD_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-10}
BUILD=${2:-build}
THREADS=${3:-1}
cmake --build "$BUILD" --target bench_conv -j2 > /dev/null
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $THREADS thread(s)"
OMP_NUM_THREADS=$THREADS "$BUILD/tests/perf/bench_conv" "$REPS" "$THREADS"
