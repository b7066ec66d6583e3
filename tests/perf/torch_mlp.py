#!/usr/bin/python3
"""PyTorch twin of launch/mlp.yaml (or, with --model cnn, launch/cnn.yaml), timed the way the
harness benchmark times harness.

Same model (Flatten, Linear 784-256, ReLU, Linear 256-128, ReLU, Linear 128-10, nn.Linear's
default init), same data (train.h5 read into memory once as uint8), same per-step work: index
a shuffled batch, convert to float * 1/255 and normalise with the file's mean/std attributes
as harness does, forward, cross_entropy, backward, AdamW step, zero_grad(set_to_none=True).
Warm-up steps are run first and not timed; file reading and process start-up are not timed.

Modes:
  threads    one process, torch.set_num_threads(--threads)
  ddp        --world processes (DistributedDataParallel, gloo, --threads threads each); each
             rank takes its contiguous slice (global batch / world) of every global batch

Prints one JSON line on stdout:
  {"mode":..,"threads":..,"world":..,"batch":..,"steps":..,"seconds":..,"samples_per_s":..,
   "final_loss":..}

Run with Debian's interpreter (/usr/bin/python3), which has torch, h5py and numpy.
"""
import argparse
import json
import os
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="train.h5 written by `harness convert`")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: model, data and steps on the GPU (--mode threads only)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                   help="cuda: fp32 exact, tf32 matmuls, or bf16 autocast (fp32 master weights)")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp: launch/mlp.yaml without dropout; cnn: launch/cnn.yaml")
    p.add_argument("--mode", choices=("threads", "ddp"), default="threads")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--world", type=int, default=2, help="processes for --mode ddp")
    p.add_argument("--batch", type=int, default=128, help="GLOBAL batch size")
    p.add_argument("--steps", type=int, default=1500, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps before the timing")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-normalize", action="store_true",
                   help="skip the mean/std normalisation (harness data.normalize=false)")
    return p.parse_args(argv)


def load_train(path, normalize):
    """uint8 images [N,28,28], int64 labels [N], (mean, std) or None: all in memory."""
    import h5py
    import numpy as np
    import torch
    with h5py.File(path, "r") as f:
        images = np.ascontiguousarray(f["images"][...])
        labels = np.asarray(f["labels"][...]).astype(np.int64)
        mean_std = None
        for home in (f, f["images"]):  # harness looks on / and on /images
            if "mean" in home.attrs and "std" in home.attrs:
                mean_std = (float(np.asarray(home.attrs["mean"]).reshape(-1)[0]),
                            float(np.asarray(home.attrs["std"]).reshape(-1)[0]))
                break
    if images.dtype != np.uint8:
        sys.exit(f"{path}: /images is {images.dtype}, this benchmark expects uint8")
    return torch.from_numpy(images), torch.from_numpy(labels), (mean_std if normalize else None)


def build_model(seed, kind="mlp"):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    if kind == "cnn":  # launch/cnn.yaml: [1,28,28] -> 2 x (conv 3x3, batch norm, relu, pool) -> 256 -> 10
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3136, 256), nn.ReLU(), nn.Dropout(0.4),
            nn.Linear(256, 10),
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def train(args, rank, world, threads, allreduce_max=None):
    """Runs warm-up plus timed steps on this process; returns (seconds, final_loss)."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    images, labels, mean_std = load_train(args.data, not args.no_normalize)
    n = images.shape[0]
    if args.batch % world:
        sys.exit(f"global batch {args.batch} does not split over {world} ranks")
    per_rank = args.batch // world
    steps_per_epoch = n // args.batch  # drop the last incomplete global batch, as harness does
    if steps_per_epoch < 1:
        sys.exit(f"{args.data}: {n} samples is fewer than one batch of {args.batch}")

    dev = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
        images, labels = images.to(dev), labels.to(dev)
    model = build_model(args.seed, args.model).to(dev)
    if args.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scale = 1.0 / 255.0

    # Every rank draws the same permutation per epoch and takes its contiguous slice of each
    # global batch (docs/design.md, Sharding).
    gen = torch.Generator().manual_seed(args.seed)
    perm, cursor = torch.randperm(n, generator=gen).to(dev), 0

    def step():
        nonlocal perm, cursor
        if cursor + args.batch > n:
            perm, cursor = torch.randperm(n, generator=gen).to(dev), 0
        idx = perm[cursor + rank * per_rank: cursor + (rank + 1) * per_rank]
        cursor += args.batch
        x = images[idx].float().mul_(scale)
        if args.model == "cnn":
            x = x.unsqueeze(1)  # [B,1,28,28], NCHW like harness
        if mean_std is not None:
            x.sub_(mean_std[0]).div_(mean_std[1])
        with torch.autocast(args.device, dtype=torch.bfloat16,
                            enabled=args.device == "cuda" and args.precision == "bf16"):
            loss = F.cross_entropy(model(x), labels[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    if world > 1:
        torch.distributed.barrier()
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    final = float(loss.detach())  # waits for the last step (GPU) / only reads the value (CPU)
    seconds = time.perf_counter() - t0
    if allreduce_max is not None:
        seconds = allreduce_max(seconds)
    return seconds, final


def ddp_worker(rank, args, init_file, queue):
    import torch
    import torch.distributed as dist
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=args.world)

    def allreduce_max(v):  # the slowest rank sets the pace
        t = torch.tensor([v], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t[0])

    seconds, final = train(args, rank, args.world, args.threads, allreduce_max)
    if rank == 0:
        queue.put((seconds, final))
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "threads":
        world = 1
        seconds, final = train(args, 0, 1, args.threads)
    else:
        import torch.multiprocessing as mp
        world = args.world
        ctx = mp.get_context("spawn")
        queue = ctx.SimpleQueue()
        with tempfile.TemporaryDirectory(prefix="torch_mlp_ddp_") as tmp:
            init_file = os.path.join(tmp, "rendezvous")
            mp.start_processes(ddp_worker, args=(args, init_file, queue), nprocs=world,
                               join=True, start_method="spawn")
        seconds, final = queue.get()
    print(json.dumps({
        "model": args.model, "device": args.device, "precision": args.precision, "mode": args.mode, "threads": args.threads, "world": world, "batch": args.batch,
        "steps": args.steps, "seconds": round(seconds, 6),
        "samples_per_s": round(args.steps * args.batch / seconds, 1),
        "final_loss": round(final, 6),
    }))


if __name__ == "__main__":
    main()
