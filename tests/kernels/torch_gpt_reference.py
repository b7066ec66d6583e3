#!/usr/bin/env python3
"""Write PyTorch's numbers for the language-model ops: test_kernels_gpt_torch compares kern_*
with them.

Usage: torch_gpt_reference.py OUT.bin

The modules are the ones a PyTorch GPT-2 (nanoGPT) uses: nn.Embedding for tokens and
positions, nn.LayerNorm, causal self-attention written as nanoGPT writes it (q @ k^T / sqrt(hs),
masked_fill with -inf, softmax, @ v) on a fused qkv, and F.cross_entropy over the first V
columns of padded logits.  float32, one thread, fixed seeds (format: torch_ref_file.py).
Exits 77 (ctest: skipped) when torch cannot be imported.
"""
import math
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"torch not importable ({e}); skipping", file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref_file  # noqa: E402
from torch_ref_file import randn  # noqa: E402

# (name, B, T, C, NH): one position, odd T and head size, several row blocks
ATTENTION_CASES = [("att0", 2, 1, 16, 2), ("att1", 2, 13, 24, 3), ("att2", 2, 70, 32, 4)]


def embedding_case(w, gen, B, T, C, V):
    tokens = torch.randint(0, V, (B, T), generator=gen)
    tokens[0, :3] = 4  # repeated tokens: their gradient rows add up
    wte, wpe = torch.nn.Embedding(V, C), torch.nn.Embedding(T, C)
    with torch.no_grad():
        wte.weight.copy_(randn(gen, V, C))
        wpe.weight.copy_(randn(gen, T, C))
    y = wte(tokens) + wpe(torch.arange(T))
    dy = randn(gen, B, T, C)
    y.backward(dy)
    w.put("emb.dims", torch.tensor([B, T, C, V]))
    for key, t in [("tokens", tokens.to(torch.int32)), ("wte", wte.weight), ("wpe", wpe.weight),
                   ("dy", dy), ("y", y), ("dwte", wte.weight.grad), ("dwpe", wpe.weight.grad)]:
        w.put(f"emb.{key}", t)


def layernorm_case(w, gen, N, C):
    ln = torch.nn.LayerNorm(C)  # eps 1e-5, as the trainer uses
    with torch.no_grad():
        ln.weight.copy_(1.0 + randn(gen, C, scale=0.2))
        ln.bias.copy_(randn(gen, C, scale=0.5))
    x = (randn(gen, N, C, scale=2.0) + 3.0).requires_grad_()
    y = ln(x)
    dy = randn(gen, N, C)
    y.backward(dy)
    w.put("ln.dims", torch.tensor([N, C]))
    for key, t in [("x", x), ("w", ln.weight), ("b", ln.bias), ("dy", dy), ("y", y),
                   ("dx", x.grad), ("dw", ln.weight.grad), ("db", ln.bias.grad)]:
        w.put(f"ln.{key}", t)


def attention_case(w, gen, name, B, T, C, NH):
    qkv = randn(gen, B, T, 3 * C).requires_grad_()
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, NH, C // NH).transpose(1, 2)
    k = k.view(B, T, NH, C // NH).transpose(1, 2)
    v = v.view(B, T, NH, C // NH).transpose(1, 2)
    mask = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    att = att.masked_fill(mask == 0, float("-inf"))
    lse = torch.logsumexp(att, dim=-1)   # [B, NH, T]: what the kernels keep for backward
    att = F.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
    dy = randn(gen, B, T, C)
    y.backward(dy)
    w.put(f"{name}.dims", torch.tensor([B, T, C, NH]))
    for key, t in [("qkv", qkv), ("dy", dy), ("y", y), ("lse", lse), ("dqkv", qkv.grad)]:
        w.put(f"{name}.{key}", t)


def xent_case(w, gen, B, V, ld):
    logits = randn(gen, B, ld, scale=3.0)
    logits[:, V:] = 100.0  # padding: larger than every class, must never count
    logits = logits.requires_grad_()
    labels = torch.randint(0, V, (B,), generator=gen)
    labels[:2] = logits[:2, :V].argmax(dim=1)
    losses = F.cross_entropy(logits[:, :V], labels, reduction="none")
    losses.mean().backward()  # grad_scale 1/B
    correct = (logits[:, :V].argmax(dim=1) == labels).sum()
    w.put("xent.dims", torch.tensor([B, V, ld]))
    for key, t in [("logits", logits), ("labels", labels.to(torch.int32)), ("losses", losses),
                   ("dlogits", logits.grad), ("sums", torch.stack([losses.sum(),
                                                                   correct.float()]))]:
        w.put(f"xent.{key}", t)


def write_cases(w, gen):
    embedding_case(w, gen, 2, 9, 24, 11)
    layernorm_case(w, gen, 10, 48)
    for case in ATTENTION_CASES:
        attention_case(w, gen, *case)
    xent_case(w, gen, 6, 50, 64)


if __name__ == "__main__":
    sys.exit(torch_ref_file.main(__doc__, 20261203, write_cases))
