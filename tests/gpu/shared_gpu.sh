# Two ranks sharing one GPU through the MPI backend (gradients staged through pinned host
# memory) match one rank at twice the per-rank batch.
source "$(dirname "$0")/common.sh"
common=(--set data.train="$DATA/train.h5" --set data.test="" --set train.steps=60
        --set train.batch_size=128 --set train.warmup_steps=5 --set log.every=1
        --set log.progress=false --set run.device=cuda)
run_ranks 1 train "${common[@]}" --set run.dir="$WORK/one"
run_ranks 2 train "${common[@]}" --set run.dir="$WORK/two"
losses_close one two 1e-4
echo "two ranks sharing a GPU: ok"
