"""Replays harness training steps in PyTorch and compares.

Usage: torch_model.py RUN_DIR CKPT_START CKPT_END DATA STEPS LR
Builds the model of RUN_DIR/config.yaml (harness's layer list) as plain torch functions with the
weights and batch-norm buffers of CKPT_START, trains STEPS steps of plain SGD (lr LR, constant)
on the same unshuffled batches harness saw, and compares the losses with RUN_DIR/metrics.jsonl
and the final parameters and running statistics with CKPT_END."""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nan_safe  # noqa: E402 (tests/nan_safe.py)
import h5py, numpy as np, torch
import torch.nn.functional as F
import yaml

run, ck0, ck1, data, steps, lr = sys.argv[1:7]
steps, lr = int(steps), float(lr)
torch.manual_seed(0)
cfg = yaml.safe_load(open(f"{run}/config.yaml"))
layers = cfg["model"]["layers"]
batch = cfg["train"]["batch_size"]

with h5py.File(ck0) as f:
    start_step = int(f["meta"].attrs["step"])
    cursor = int(f["meta"].attrs["cursor"])
    P = {k: torch.tensor(f["params"][k][:], dtype=torch.float64, requires_grad=True) for k in f["params"]}
    Bf = {k: torch.tensor(f["buffers"][k][:], dtype=torch.float64) for k in f.get("buffers", {})}
with h5py.File(data) as f:
    x_all = f["images"][:].astype(np.float64) / 255.0
    y_all = f["labels"][:].astype(np.int64)
    mean, std = float(f.attrs["mean"]), float(f.attrs["std"])
x_all = (x_all - mean) / std

def forward(x):
    skip = None
    for i, L in enumerate(layers):
        t = L["type"]
        w, b = P.get(f"layers.{i}.weight"), P.get(f"layers.{i}.bias")
        if t == "conv2d":
            x = F.conv2d(x, w, b, stride=L["stride"], padding=L["padding"],
                         dilation=L["dilation"], groups=L["groups"])
        elif t == "batchnorm2d":
            x = F.batch_norm(x, Bf[f"layers.{i}.running_mean"], Bf[f"layers.{i}.running_var"], w, b,
                             training=True, momentum=L["momentum"], eps=L["eps"])
        elif t == "relu":
            x = F.relu(x)
        elif t == "gelu":
            x = F.gelu(x, approximate="tanh")
        elif t == "maxpool2d":
            x = F.max_pool2d(x, L["kernel"], L["stride"], L["padding"])
        elif t == "avgpool2d":
            x = F.avg_pool2d(x, L["kernel"], L["stride"], L["padding"])
        elif t == "global_avgpool":
            x = F.adaptive_avg_pool2d(x, 1)
        elif t == "flatten":
            x = x.flatten(1)
        elif t == "linear":
            x = F.linear(x.flatten(1), w, b)
        elif t == "residual_start":
            skip = x
        elif t == "residual_end":
            if L["project"]:
                ws, bs = P[f"layers.{i}.shortcut.weight"], P[f"layers.{i}.shortcut.bias"]
                skip = F.conv2d(skip, ws, bs, stride=skip.shape[2] // x.shape[2])
            x = x + skip
        elif t == "dropout":
            assert L["p"] == 0.0, "dropout must be off for this comparison"
        else:
            raise SystemExit(f"unknown layer {t}")
    return x

n = len(x_all)
losses = []
for s in range(steps):
    if cursor + batch > n:
        cursor = 0
    idx = np.arange(cursor, cursor + batch)
    cursor += batch
    x = torch.tensor(x_all[idx]).reshape(batch, 1, 28, 28)
    y = torch.tensor(y_all[idx])
    loss = F.cross_entropy(forward(x), y)
    for p in P.values():
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in P.values():
            p -= lr * p.grad
    losses.append(loss.item())

got = {r["step"]: r["loss"] for r in map(json.loads, open(f"{run}/metrics.jsonl")) if r["event"] == "train"}
worst = 0.0
for s, l in enumerate(losses):
    h = got[start_step + s + 1]
    worst = nan_safe.worst((worst, abs(h - l) / abs(l)))
print(f"losses over {steps} steps: max relative difference {worst:.2e} (harness {got[start_step + steps]:.6f}, torch {losses[-1]:.6f})")
assert worst < 2e-4, worst
with h5py.File(ck1) as f:
    for k, p in P.items():
        h = torch.tensor(f["params"][k][:], dtype=torch.float64)
        rel = ((h - p.detach()).norm() / p.detach().norm()).item()
        assert rel < 2e-4, (k, rel)
    for k, b in Bf.items():
        h = torch.tensor(f["buffers"][k][:], dtype=torch.float64)
        rel = ((h - b).norm() / b.norm()).item()
        assert rel < 2e-4, (k, rel)
print(f"{len(P)} parameters and {len(Bf)} running statistics match PyTorch (float64) within 2e-4")
