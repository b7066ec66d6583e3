#!/usr/bin/env bash
# tests/gpu/make_bundle.sh [BUILD_DIR] - builds harness and the GPU tests for Hopper (sm_90)
# and packs everything tests/gpu/device_check.sh needs on a GPU machine that has none of our
# libraries: the binaries with their shared libraries and the Open MPI runtime
# (../shared/tools/bundle-runtime; CUDA, cuBLAS, cuDNN and NCCL come from the GPU machine),
# the test and benchmark scripts, launch/*.yaml and the Fashion-MNIST IDX files.
# Writes .gpubundle/gpubundle.tar.xz (.gpubundle/ is git-ignored) and refuses one that with
# the working tree exceeds 64 MiB, the most a device call carries.  BUILD_DIR defaults to build-sm90; JOBS (2) sets -j.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-sm90}
JOBS=${JOBS:-2}
TOOL=${BUNDLE_RUNTIME:-$ROOT/../shared/tools/bundle-runtime}
FMNIST=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
LIMIT=$((64 * 1024 * 1024))
[ -x "$TOOL" ] || { echo "make_bundle: $TOOL not found (set BUNDLE_RUNTIME)" >&2; exit 1; }
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
  { echo "make_bundle: no nvcc: the bundle needs the CUDA backend" >&2; exit 1; }
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
grep -q 'HARNESS_HAVE_CUDA:INTERNAL=ON\|HARNESS_HAVE_CUDA' "$BUILD/CMakeCache.txt" || true
targets=(harness gpu_versions test_gpu_kernels test_gpu_cnn test_gpu_step test_gpu_comm)
[ -f "$ROOT/tests/gpu/test_gpu_gpt.c" ] && targets+=(test_gpu_gpt)
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"
bins=()
for t in "${targets[@]}"; do
  f=$(find "$BUILD" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] || { echo "make_bundle: $t was not built" >&2; exit 1; }
  bins+=("$f")
done
STAGE=$(mktemp -d /tmp/gpubundle.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/gpubundle
"$TOOL" "$B" "${bins[@]}"
mkdir -p "$B/tests/gpu" "$B/tests/perf" "$B/launch" "$B/data/fashion-mnist"
cp "$ROOT"/tests/gpu/*.sh "$B/tests/gpu/"
cp "$ROOT"/tests/nan_safe.py "$B/tests/"   # imported by the scripts' Python checks
cp "$ROOT"/tests/mpi_env.sh "$B/tests/"   # sourced by the scripts in tests/gpu and tests/perf
cp "$ROOT"/tests/perf/bench_gpu.sh "$ROOT"/tests/perf/torch_mlp.py "$ROOT"/tests/perf/bench_gpt.sh \
   "$ROOT"/tests/perf/torch_gpt.py "$B/tests/perf/"
mkdir -p "$B/tests/trainer" && cp "$ROOT"/tests/trainer/make_tokens.py "$B/tests/trainer/"
cp "$ROOT"/launch/*.yaml "$B/launch/"
cp "$FMNIST"/*-ubyte.gz "$B/data/fashion-mnist/"
# the GPT corpus when launch/corpus.sh has made it (the GPT checks skip without it)
if [ -f "$ROOT/datasets/fortunes/train.h5" ]; then
  mkdir -p "$B/data/fortunes" && cp "$ROOT"/datasets/fortunes/*.h5 "$B/data/fortunes/"
fi
{ echo "built: $(date -u +%FT%TZ) on $(hostname)"; echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)";
  echo "dirty files: $(git -C "$ROOT" status --short 2>/dev/null | wc -l)"; echo "cuda arch: 90";
  echo "binaries: ${targets[*]}"; } > "$B/BUILD_INFO"
mkdir -p "$ROOT/.gpubundle"
rm -f "$ROOT/.gpubundle/gpubundle.tgz"   # an older bundle's name: device_check.sh would take it
# xz, not gzip: libdnnl alone is 11 MiB gzipped and 7 MiB in xz, and the whole bundle 62 MiB
# against 51 MiB - with the working tree beside it, gzip no longer fit a call's 64 MiB
OUT=$ROOT/.gpubundle/gpubundle.tar.xz
tar cf - -C "$STAGE" gpubundle | xz -T0 -6 >"$OUT"
size=$(stat -c %s "$OUT")
# a device call carries the working tree too (tracked and untracked files that git does not
# ignore), and the 64 MiB is for all of it
tree=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
       awk '{s += $1} END {print s + 0}')
echo "make_bundle: $OUT $((size / 1024)) KiB + working tree $((tree / 1024)) KiB (limit $((LIMIT / 1024)) KiB for both)"
if [ $((size + tree)) -gt "$LIMIT" ]; then echo "make_bundle: bundle and working tree too large for a device call" >&2; exit 1; fi
