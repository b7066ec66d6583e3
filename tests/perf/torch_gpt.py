#!/usr/bin/python3
"""PyTorch twin of harness's model.gpt preset (nanoGPT's GPT-2 architecture), for the
benchmarks and the quality comparison.

Same model (token + position embedding, pre-norm blocks with fused qkv attention and a 4x
GELU(tanh) MLP, final layer norm, head tied to the token embedding, N(0, 0.02) init with the
residual projections scaled by 1/sqrt(2 x layers)), same optimizer (AdamW, weight decay on
matrices and embeddings only), same windows of context + 1 tokens from the same token file.

Modes:
  threads   one process, torch.set_num_threads(--threads); --device cuda for a GPU
            (--precision fp32 | tf32 | bf16 autocast; --compile for torch.compile)
  ddp       --world processes (DistributedDataParallel, gloo, --threads each), each rank its
            contiguous slice of every global batch
With --train: the schedule of a real run (warmup + cosine to --min-lr, clipping), then the loss
over every validation window of --val; otherwise only throughput (constant lr).

Prints one JSON line: {"mode","threads","world","device","precision","batch","context",
"steps","seconds","tokens_per_s","final_loss"[, "val_loss"]}.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a token train.h5 (/tokens, vocab_size)")
    p.add_argument("--val", help="token val.h5 (with --train)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=32, help="GLOBAL sequences per step")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (benchmark)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0, help="lr warmup (--train)")
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--train", action="store_true")
    p.add_argument("--mode", choices=("threads", "ddp"), default="threads")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args(argv)


def build(a, vocab, torch):
    nn, F = torch.nn, torch.nn.functional
    C, NH, T = a.dim, a.heads, a.context

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(b, n, NH, C // NH).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True) \
                if hasattr(F, "scaled_dot_product_attention") else None
            if y is None:
                att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
                y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(b, n, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(a.layers))
            self.ln_f = nn.LayerNorm(C)
            for name, p in self.named_parameters():
                if p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe.weight[: idx.shape[1]]
            for blk in self.h:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1))

    return GPT()


def windows(path, context, np, torch):
    import h5py
    with h5py.File(path) as f:
        tok = f["tokens"][:].astype(np.int64)
        vocab = int(f.attrs["vocab_size"])
    w = (len(tok) - 1) // context
    idx = np.arange(w)[:, None] * context + np.arange(context + 1)[None, :]
    return torch.from_numpy(tok[idx]), vocab


def run(a, rank=0, world=1):
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    data, vocab = windows(a.data, a.context, np, torch)
    model = build(a, vocab, torch).to(dev)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=a.lr,
                            betas=(0.9, a.beta2), eps=1e-8)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    if a.compile:
        net = torch.compile(net)
    per = a.batch // world
    gen = torch.Generator().manual_seed(a.seed)
    order = torch.randperm(len(data), generator=gen)
    cursor = 0

    def lr_at(s):
        if not a.train:
            return a.lr
        if s < a.warmup_steps:
            return a.lr * (s + 1) / a.warmup_steps
        frac = min(1.0, (s - a.warmup_steps) / max(1, a.steps - a.warmup_steps))
        return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))

    def step(s):
        nonlocal cursor, order
        if cursor + a.batch > len(data):
            order, cursor = torch.randperm(len(data), generator=gen), 0
        w = data[order[cursor + rank * per: cursor + (rank + 1) * per]].to(dev)
        cursor += a.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = net(w[:, :-1], w[:, 1:])
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    warm = 0 if a.train else a.warmup
    for s in range(warm):
        step(s)
    if a.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(a.steps):
        loss = step(s)
    final = float(loss)
    if a.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {"mode": a.mode, "threads": a.threads, "world": world, "device": a.device,
           "precision": a.precision, "compile": a.compile, "batch": a.batch,
           "context": a.context, "steps": a.steps, "seconds": seconds,
           "tokens_per_s": a.steps * a.batch * a.context / seconds, "final_loss": final}
    if a.train and a.val and rank == 0:
        val, _ = windows(a.val, a.context, np, torch)
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val), 32):
                w = val[i:i + 32].to(dev)
                total += float(model(w[:, :-1], w[:, 1:])) * w[:, 1:].numel()
                n += w[:, 1:].numel()
        out["val_loss"] = total / n
    return out


def ddp_worker(rank, a, store):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=a.world)
    out = run(a, rank, a.world)
    if rank == 0:
        print(json.dumps(out), flush=True)
    dist.destroy_process_group()


def main():
    a = parse_args()
    if a.mode == "threads":
        print(json.dumps(run(a)), flush=True)
        return
    import torch.multiprocessing as mp
    store = tempfile.mktemp(prefix="torch_gpt_ddp_")
    try:
        mp.spawn(ddp_worker, args=(a, store), nprocs=a.world, join=True)
    finally:
        if os.path.exists(store):
            os.unlink(store)


if __name__ == "__main__":
    sys.exit(main())
