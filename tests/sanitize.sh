#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer).
#
#   bash tests/sanitize.sh [extra ctest arguments]
#
# Builds the whole project with clang (CC=... to pick another compiler) and
# -fsanitize=address,undefined into build-asan/ (Debug, -O1, no CUDA), then runs ctest there
# without the tests that are slow or need other machines:
#   trainer_mlp_accuracy  (~15 s normally, minutes under ASan; same code as the other
#                          end-to-end tests, just more steps)
#   trainer_bf16_grads    (two full launch/mlp.yaml runs: the same; the bf16 exchange runs
#                          under the sanitizers in comm_zero_np* and trainer_zero1_*)
#   label perf            (benchmarks), label gpu (no GPU code in this build), label slurm
#                          (a real Slurm cluster, and launch_mpirun_resubmit: long trainings)
#   cluster_slurm_*       (the Slurm recipes on emulated nodes: Slurm and the scripts are what
#                          they test; harness's part - the heartbeat, exit 76, resume on fewer
#                          ranks - runs under the sanitizers in cluster_node_lost and
#                          cluster_train_across, which stay)
# Everything else runs: kernels, data, comm (mpirun, 1-4 ranks), config, the trainer's
# end-to-end scripts (CLI, convert, data-parallel equivalence, bad input, resume, checkpoint
# faults, non-finite, rank faults) and the fuzz regression replays (tests/fuzz).  The list:
#   bash tests/sanitize.sh -N
#
# Every sanitizer report of every process (also of processes whose exit status a test script
# ignores, and of every MPI rank) goes to build-asan/sanitizer-logs/; the run fails if ctest
# fails OR that directory holds any report.  Leaks of third-party libraries are suppressed by
# tests/sanitize/lsan.supp (see the comments there); nothing of this repository is.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/build-asan
CC=${CC:-clang}
LOGS=$B/sanitizer-logs
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

t0=$(date +%s)
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$CC" -DHARNESS_CUDA=OFF \
  -DCMAKE_C_FLAGS="$SAN -g -O1" -DCMAKE_EXE_LINKER_FLAGS="$SAN" >/dev/null
cmake --build "$B" -j "$(nproc)" >/dev/null
t1=$(date +%s)
echo "sanitize: built build-asan in $((t1 - t0)) s"

rm -rf "$LOGS"
mkdir -p "$LOGS"
# Open MPI unloads its plugins in MPI_Finalize; keep them mapped so their leaks can be named
# (and suppressed) at exit: see tests/sanitize/no_dlclose.c.
cc -shared -fPIC -O1 -o "$B/no_dlclose.so" tests/sanitize/no_dlclose.c
export LD_PRELOAD="$B/no_dlclose.so${LD_PRELOAD:+:$LD_PRELOAD}"
# exitcode 86: a sanitizer report never looks like the exit status 1 that the bad-input
# tests expect.  halt_on_error: stop at the first report.  The log files catch the rest.
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=20:halt_on_error=1:exitcode=86:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$LOGS/ubsan"
export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitize/lsan.supp:print_suppressions=0:exitcode=86"
# Fewer BLAS threads: the tests are about correctness, and 2 cores are shared by mpirun ranks.
export OPENBLAS_NUM_THREADS=1

rc=0
# One test at a time: several end-to-end tests check that no process of theirs is left
# behind (by name) and that an abort ends a job within seconds.
(cd "$B" && ctest --output-on-failure --timeout 600 \
   -LE 'perf|gpu|slurm' -E 'trainer_mlp_accuracy|trainer_bf16_grads|cluster_slurm_' "$@") || rc=$?
t2=$(date +%s)

# A file with only a warning (e.g. the symbolizer killed along with an aborted MPI job) is no
# report; every real one has an ERROR or "runtime error" line.
reports=$(grep -l -E 'ERROR: |runtime error' -r "$LOGS" | sort || true)
if [ -n "$reports" ]; then
  echo "sanitize: sanitizer reports:" >&2
  for f in $reports; do echo "==== $f" >&2; cat "$f" >&2; done
  rc=1
fi
echo "sanitize: ctest took $((t2 - t1)) s, total $((t2 - t0)) s; $( [ $rc -eq 0 ] && echo 'no sanitizer reports, all tests passed' || echo FAILED)"
exit $rc
