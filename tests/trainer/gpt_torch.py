"""Replays harness GPT training steps in PyTorch (float64) and compares.

Usage: gpt_torch.py RUN_DIR CKPT_START CKPT_END TRAIN_H5 VAL_H5
Rebuilds the GPT of RUN_DIR/config.yaml (model.gpt, nanoGPT's architecture) from the weights
and AdamW state of CKPT_START, trains the following steps on the same (unshuffled) windows
with the same AdamW (weight decay on matrices and embeddings only), constant learning rate
and gradient clipping, and compares every step's loss with RUN_DIR/metrics.jsonl, the final
parameters with CKPT_END, and the validation loss of CKPT_END's weights with the one harness
logged."""
import json, math, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nan_safe  # noqa: E402 (tests/nan_safe.py)
import h5py, numpy as np, torch
import torch.nn.functional as F
import yaml

run, ck0, ck1, train_h5, val_h5 = sys.argv[1:6]
cfg = yaml.safe_load(open(f"{run}/config.yaml"))
g, tr = cfg["model"]["gpt"], cfg["train"]
NL, NH, C, T = g["layers"], g["heads"], g["dim"], g["context"]
B = tr["batch_size"]
lr, b1, b2, eps, wd, clip = tr["lr"], tr["beta1"], tr["beta2"], tr["eps"], tr["weight_decay"], tr["clip_grad_norm"]
assert tr["schedule"] == "constant" and tr["warmup_steps"] == 0 and tr["grad_accum"] == 1
assert not cfg["data"]["shuffle"]

def load(path):
    with h5py.File(path) as f:
        meta = dict(f["meta"].attrs)
        P = {k: torch.tensor(f["params"][k][:], dtype=torch.float64) for k in f["params"]}
        M = {k: torch.tensor(f["optim"][k]["exp_avg"][:], dtype=torch.float64) for k in f["params"]}
        V = {k: torch.tensor(f["optim"][k]["exp_avg_sq"][:], dtype=torch.float64) for k in f["params"]}
    return meta, P, M, V

meta, P, M, V = load(ck0)
for p in P.values():
    p.requires_grad_(True)
step0, cursor, t = int(meta["step"]), int(meta["cursor"]), int(meta["optimizer_steps"])
vocab = 256
assert P["transformer.wte.weight"].shape[0] == 256   # 256 is a multiple of 64: no padding

def forward(idx, targets):
    b, n = idx.shape
    x = P["transformer.wte.weight"][idx] + P["transformer.wpe.weight"][:n]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for i in range(NL):
        h = f"transformer.h.{i}."
        y = F.layer_norm(x, (C,), P[h + "ln_1.weight"], P[h + "ln_1.bias"], 1e-5)
        qkv = F.linear(y, P[h + "attn.c_attn.weight"], P[h + "attn.c_attn.bias"])
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (z.view(b, n, NH, C // NH).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, C)
        x = x + F.linear(y, P[h + "attn.c_proj.weight"], P[h + "attn.c_proj.bias"])
        y = F.layer_norm(x, (C,), P[h + "ln_2.weight"], P[h + "ln_2.bias"], 1e-5)
        y = F.gelu(F.linear(y, P[h + "mlp.c_fc.weight"], P[h + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(y, P[h + "mlp.c_proj.weight"], P[h + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], 1e-5)
    logits = F.linear(x, P["transformer.wte.weight"])[:, :, :vocab]
    return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), reduction="sum"), idx.numel()

def windows(path):
    with h5py.File(path) as f:
        tok = torch.tensor(f["tokens"][:].astype(np.int64))
    W = (len(tok) - 1) // T
    return torch.stack([tok[w * T: w * T + T + 1] for w in range(W)])

train = windows(train_h5)
losses = []
steps = int(load(ck1)[0]["step"]) - step0
for s in range(steps):
    if cursor + B > len(train):
        cursor = 0
    w = train[cursor:cursor + B]
    cursor += B
    loss, n = forward(w[:, :-1], w[:, 1:])
    loss = loss / n
    for p in P.values():
        p.grad = None
    loss.backward()
    with torch.no_grad():
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in P.values()))
        scale = clip / (norm + 1e-6) if clip > 0 and norm > clip else 1.0
        t += 1
        for k, p in P.items():
            gk = p.grad * scale
            if p.ndim >= 2:
                p.mul_(1 - lr * wd)
            M[k].mul_(b1).add_((1 - b1) * gk)
            V[k].mul_(b2).add_((1 - b2) * gk * gk)
            p -= lr * (M[k] / (1 - b1 ** t)) / ((V[k] / (1 - b2 ** t)).sqrt() + eps)
    losses.append(loss.item())

rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
got = {r["step"]: r["loss"] for r in rows if r["event"] == "train"}
worst = nan_safe.worst(abs(got[step0 + s + 1] - l) / abs(l) for s, l in enumerate(losses))
print(f"losses over {steps} AdamW steps: max relative difference {worst:.2e} "
      f"(harness {got[step0 + steps]:.6f}, torch {losses[-1]:.6f})")
assert worst < 1e-5, worst
_, P1, _, _ = load(ck1)
pw = 0.0
for k, p in P.items():
    pw = nan_safe.worst((pw, (P1[k] - p.detach()).abs().max().item()))
print(f"{len(P)} parameters after {steps} steps: max absolute difference {pw:.2e}")
assert pw < 1e-4, pw
# validation loss of the final weights: every validation window once
with torch.no_grad():
    P = P1
    val = windows(val_h5)
    total, count = 0.0, 0
    for i in range(0, len(val), 16):
        l, n = forward(val[i:i + 16, :-1], val[i:i + 16, 1:])
        total += l.item()
        count += n
ev = [r for r in rows if r["event"] == "eval"][-1]
rel = abs(ev["loss"] - total / count) / (total / count)
print(f"validation loss: harness {ev['loss']:.6f} over {ev['tokens']} tokens, torch "
      f"{total / count:.6f} over {count}: relative difference {rel:.2e}")
assert ev["tokens"] == count, (ev["tokens"], count)
assert rel < 1e-5, rel
print("tiny GPT matches PyTorch")
