#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole test suite with ctest
# (GPU tests report "skipped" on machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS_DEPS=test bash launch/deps.sh
bash launch/build.sh
cd build
ctest --output-on-failure --timeout 600 "$@"
