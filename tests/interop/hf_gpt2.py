"""transformers' side of the GPT-2 interop test (run with build/venv-hf's python).
Several commands run in one process when separated by "::" (importing transformers takes
seconds; the test batches its calls).

  make DIR VOCAB [DTYPE] [UNTIED]  a random GPT2LMHeadModel (2 layers, 4 heads, dim 64,
                                   context 32), every parameter drawn so that no mapping
                                   mistake hides behind zeros and ones, save_pretrained(DIR)
  llmc DIR FILE VERSION            DIR's model as llm.c's model file (3: fp32, 5: bf16; then
                                   DIR-bf16ref holds the bf16-rounded model to compare with)
  logits DIR LOGITS.f32 TOKEN...   transformers' logits on the tokens equal harness's
                                   (LOGITS.f32 from gpt_logits) within 1e-4
  generate DIR N PROMPT GOT        greedy generate of N tokens from the prompt's bytes as ids
                                   equals GOT (harness generate's output: PROMPT, the new
                                   tokens' bytes, a newline)
  tokens DIR VOCAB                 DIR/train{VOCAB}.h5, val{VOCAB}.h5: random tokens
  same CKPT_A CKPT_B               two harness checkpoints hold the same /params
  near CKPT_A CKPT_B TOL           their /params differ (not equal) by at most TOL
  shift FILE NAME                  rewrites FILE's header: tensor NAME's data_offsets lie
"""
import json, struct, sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def make(d, vocab, dtype="float32", untied="tied"):
    torch.manual_seed(vocab)
    cfg = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=64, n_layer=2, n_head=4,
                     tie_word_embeddings=(untied != "untied"))
    m = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(".weight") and p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))   # layer norm gains
            else:
                p.copy_(0.1 * torch.randn_like(p))
    m.to(getattr(torch, dtype)).save_pretrained(d, safe_serialization=True)


def load(d):
    m = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32)
    return m.eval()


def logits(d, path, tokens):
    m, info = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.endswith(".attn.bias")]
    bad = missing + list(info["unexpected_keys"]) + list(info["mismatched_keys"]) + list(info["error_msgs"])
    assert not bad, f"from_pretrained({d}) loads it with complaints: {bad}"
    ids = torch.tensor([[int(t) for t in tokens]])
    with torch.no_grad():
        want = m.eval()(ids).logits[0].double().numpy()
    got = np.fromfile(path, dtype=np.float32).reshape(want.shape).astype(np.float64)
    diff = np.abs(got - want).max()
    print(f"logits {d}: max |harness - transformers| = {diff:.2e} over {want.shape}")
    assert diff <= 1e-4, diff


def llmc(d, path, version):
    m = load(d)
    c = m.config
    L, C, V, T = c.n_layer, c.n_embd, c.vocab_size, c.n_positions
    Vp = (V + 127) // 128 * 128   # llm.c pads to 128; harness to 64: the import must cope
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    wte = torch.zeros(Vp, C)
    wte[:V] = sd["transformer.wte.weight"]
    def stack(name, conv1d):
        return torch.stack([sd[f"transformer.h.{i}.{name}"].t() if conv1d else
                            sd[f"transformer.h.{i}.{name}"] for i in range(L)])
    parts = [wte, sd["transformer.wpe.weight"], stack("ln_1.weight", 0), stack("ln_1.bias", 0),
             stack("attn.c_attn.weight", 1), stack("attn.c_attn.bias", 0),
             stack("attn.c_proj.weight", 1), stack("attn.c_proj.bias", 0),
             stack("ln_2.weight", 0), stack("ln_2.bias", 0), stack("mlp.c_fc.weight", 1),
             stack("mlp.c_fc.bias", 0), stack("mlp.c_proj.weight", 1), stack("mlp.c_proj.bias", 0),
             sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"]]
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, version, T, V, L, c.n_head, C, Vp]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for p in parts:
            p = p.contiguous().float()
            if version == 5:
                f.write(p.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
            else:
                f.write(p.numpy().tobytes())
    if version == 5:   # the reference is the bf16-rounded model
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        m.save_pretrained(d + "-bf16ref", safe_serialization=True)


def generate(d, n, prompt, got_path):
    m = load(d)
    prompt = prompt.encode()
    ids = torch.tensor([list(prompt)])
    with torch.no_grad():
        out = m.generate(ids, max_new_tokens=int(n), do_sample=False, pad_token_id=0)
    want = bytes(out[0, ids.shape[1]:].tolist())
    got = open(got_path, "rb").read()
    assert got.startswith(prompt) and got.endswith(b"\n"), got
    got = got[len(prompt):-1]
    print(f"greedy continuation: harness {list(got)}, transformers {list(want)}")
    assert got == want


def tokens(d, vocab):
    import h5py
    rng = np.random.default_rng(7)
    for split in ("train", "val"):
        with h5py.File(f"{d}/{split}{vocab}.h5", "w") as f:
            f["tokens"] = rng.integers(0, vocab, 4000).astype(np.uint16)
            f.attrs["vocab_size"] = vocab


def params(path):
    import h5py
    with h5py.File(path, "r") as f:
        return {k: f["params"][k][()] for k in f["params"]}


def compare(a, b, tol):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys(), (sorted(pa), sorted(pb))
    worst = max(float(np.abs(pa[k] - pb[k]).max()) for k in pa)
    print(f"params {a} vs {b}: max |difference| = {worst:.3e}")
    if tol == 0:
        assert worst == 0, worst
    else:
        assert 0 < worst <= tol, worst


def shift(path, name):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    b, e = h[name]["data_offsets"]
    h[name]["data_offsets"] = [b, e + 4]   # one float more than its shape holds
    text = json.dumps(h).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def run(cmd, a):
    if cmd == "make": make(a[0], int(a[1]), *a[2:])
    elif cmd == "llmc": llmc(a[0], a[1], int(a[2]))
    elif cmd == "logits": logits(a[0], a[1], a[2:])
    elif cmd == "generate": generate(*a)
    elif cmd == "tokens": tokens(a[0], int(a[1]))
    elif cmd == "same": compare(a[0], a[1], 0)
    elif cmd == "near": compare(a[0], a[1], float(a[2]))
    elif cmd == "shift": shift(*a)
    else: sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    args = sys.argv[1:]
    while args:
        n = args.index("::") if "::" in args else len(args)
        run(args[0], args[1:n])
        args = args[n + 1:]
