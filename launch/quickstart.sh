#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a trained model:
# installs what is missing, builds, converts Fashion-MNIST to HDF5, and trains the default
# MLP with several MPI ranks (one per GPU when GPUs are present, else 2 on the CPU), printing
# the test accuracy at the end.
#   bash launch/quickstart.sh gpt              # a small GPT on the default text corpus, then a sample
#   RANKS=4 bash launch/quickstart.sh          # choose the number of ranks
#   bash launch/quickstart.sh --set train.epochs=2   # extra arguments go to harness train
set -euo pipefail
cd "$(dirname "$0")/.."
model=mlp
if [ "${1:-}" = gpt ]; then model=gpt; shift; fi
bash launch/deps.sh
bash launch/build.sh
if [ $model = mlp ]; then
  [ -f datasets/fashion-mnist/test.h5 ] || build/trainer/harness convert fashion-mnist \
      --src /usr/share/datasets/fashion-mnist --out datasets/fashion-mnist
else
  bash launch/corpus.sh   # datasets/fortunes/{train,val}.h5, byte tokens
fi
if [ -z "${RANKS:-}" ]; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  RANKS=$(( gpus > 1 ? gpus : 2 ))
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ $model = mlp ]; then
  exec mpirun -np "$RANKS" build/trainer/harness train launch/mlp.yaml "$@"
fi
# the GPT: train (validation loss and perplexity at the end), then a sample from the checkpoint
mpirun -np "$RANKS" build/trainer/harness train launch/gpt.yaml "$@"
ckpt=$(ls runs/gpt/checkpoints/step_*.h5 | tail -1)
echo "--- a sample from $ckpt:"
build/trainer/harness generate --checkpoint "$ckpt" --prompt "The " --tokens 300 --seed 1
