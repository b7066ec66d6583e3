#!/usr/bin/env python3
"""Write PyTorch's numbers for the kernels tests: test_kernels_torch compares kern_* with them.

Usage: torch_reference.py OUT.bin

Everything is float32, deterministic (fixed torch.Generator seeds, one thread).  The file is
a flat list of named arrays (format: torch_ref_file.py), read by test_kernels_torch.c.
Exits 77 (ctest: skipped) when torch cannot be imported.
"""
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"torch not importable ({e}); skipping", file=sys.stderr)
    sys.exit(77)

# torch_ref_file.py lies next to this script (ctest runs it from the build directory)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref_file  # noqa: E402
from torch_ref_file import randn  # noqa: E402

STEPS = 5


def linear_case(w, name, gen, B, I, O):
    x = randn(gen, B, I).requires_grad_()
    lin = torch.nn.Linear(I, O)
    with torch.no_grad():
        lin.weight.copy_(randn(gen, O, I, scale=I ** -0.5))
        lin.bias.copy_(randn(gen, O, scale=0.5))
    dy = randn(gen, B, O)
    y = lin(x)
    y.backward(dy)
    w.put(f"{name}.dims", torch.tensor([B, I, O]))
    for key, t in [("x", x), ("w", lin.weight), ("b", lin.bias), ("dy", dy), ("y", y),
                   ("dx", x.grad), ("dw", lin.weight.grad), ("db", lin.bias.grad)]:
        w.put(f"{name}.{key}", t)


def activation_case(w, name, gen, fn, x):
    x = x.clone().requires_grad_()
    dy = randn(gen, x.numel())
    y = fn(x)
    y.backward(dy)
    for key, t in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad)]:
        w.put(f"{name}.{key}", t)


def xent_case(w, gen, B, C):
    logits = randn(gen, B, C, scale=3.0)
    logits[1] += 50.0  # large logits: the kernel must be stable
    labels = torch.randint(0, C, (B,), generator=gen)
    labels[:3] = logits[:3].argmax(dim=1)  # some rows right, so "correct" is not trivially 0
    w.put("xent.dims", torch.tensor([B, C]))
    w.put("xent.logits", logits)
    w.put("xent.labels", labels)
    w.put("xent.losses", F.cross_entropy(logits, labels, reduction="none"))
    w.put("xent.correct", (logits.argmax(dim=1) == labels).sum().reshape(1))
    for red in ("mean", "sum"):
        z = logits.clone().requires_grad_()
        loss = F.cross_entropy(z, labels, reduction=red)
        loss.backward()
        w.put(f"xent.loss_{red}", loss.reshape(1))
        w.put(f"xent.dlogits_{red}", z.grad)


def mlp_case(w, gen, B, I, H, C):
    """linear -> gelu(tanh) -> linear -> cross-entropy (mean): the kernels chained."""
    x = randn(gen, B, I)
    labels = torch.randint(0, C, (B,), generator=gen)
    w1 = randn(gen, H, I, scale=I ** -0.5).requires_grad_()
    b1 = randn(gen, H, scale=0.1).requires_grad_()
    w2 = randn(gen, C, H, scale=H ** -0.5).requires_grad_()
    b2 = randn(gen, C, scale=0.1).requires_grad_()
    h = F.linear(x, w1, b1)
    a = F.gelu(h, approximate="tanh")
    logits = F.linear(a, w2, b2)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    w.put("mlp.dims", torch.tensor([B, I, H, C]))
    for key, t in [("x", x), ("labels", labels), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2),
                   ("logits", logits), ("loss", loss.reshape(1)), ("dw1", w1.grad),
                   ("db1", b1.grad), ("dw2", w2.grad), ("db2", b2.grad)]:
        w.put(f"mlp.{key}", t)


def optimizer_case(w, name, gen, n, make_opt, cfg):
    p0 = randn(gen, n)
    grads = randn(gen, STEPS, n)
    p = torch.nn.Parameter(p0.clone())
    opt = make_opt([p])
    params, states = [], {}
    for t in range(STEPS):
        p.grad = grads[t].clone()
        opt.step()
        params.append(p.detach().clone())
        for k, v in opt.state[p].items():
            if torch.is_tensor(v) and v.numel() == n:
                states.setdefault(k, []).append(v.detach().clone())
    w.put(f"{name}.cfg", torch.tensor(cfg, dtype=torch.float32))
    w.put(f"{name}.p0", p0)
    w.put(f"{name}.grads", grads)
    w.put(f"{name}.params", torch.stack(params))
    for k, v in states.items():
        w.put(f"{name}.{k}", torch.stack(v))


# name, lr, momentum, weight_decay, nesterov
SGD_CASES = [
    ("sgd0", 0.1, 0.0, 0.0, False),
    ("sgd1", 0.1, 0.0, 0.05, False),
    ("sgd2", 0.1, 0.9, 0.0, False),
    ("sgd3", 0.05, 0.9, 0.01, True),
    ("sgd4", 0.2, 0.5, 0.001, False),
]
# name, lr, beta1, beta2, eps, weight_decay
ADAMW_CASES = [
    ("adamw0", 1e-2, 0.9, 0.999, 1e-8, 0.01),
    ("adamw1", 3e-2, 0.8, 0.99, 1e-3, 0.1),
    ("adamw2", 1e-3, 0.9, 0.999, 1e-8, 0.0),
]


def write_cases(w, gen):
    linear_case(w, "linear0", gen, 3, 7, 5)
    linear_case(w, "linear1", gen, 32, 65, 17)
    x = randn(gen, 1001, scale=3.0)
    x[:6] = torch.tensor([0.5, -0.5, 1e-3, -1e-3, 9.0, -9.0])
    activation_case(w, "relu", gen, F.relu, x)
    activation_case(w, "gelu", gen, lambda t: F.gelu(t, approximate="tanh"), x)
    xent_case(w, gen, 7, 10)
    mlp_case(w, gen, 8, 13, 21, 6)
    for name, lr, mom, wd, nest in SGD_CASES:
        optimizer_case(w, name, gen, 257,
                       lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mom, weight_decay=wd,
                                                  nesterov=nest),
                       [lr, mom, wd, float(nest)])
    for name, lr, b1, b2, eps, wd in ADAMW_CASES:
        optimizer_case(w, name, gen, 257,
                       lambda ps: torch.optim.AdamW(ps, lr=lr, betas=(b1, b2), eps=eps,
                                                    weight_decay=wd),
                       [lr, b1, b2, eps, wd])


if __name__ == "__main__":
    sys.exit(torch_ref_file.main(__doc__, 20240601, write_cases))
