"""The PyTorch reference file of the kernels tests: what torch_reference.py and
torch_cnn_reference.py write, and torch_file.c reads.

The file is a flat list of named arrays, little-endian:
    8 bytes magic "HKTORCH1", then per array:
    u32 name length, name bytes, u32 dtype (0 float32, 1 int32), u64 count, count values
int64 tensors are written as int32.  The caller imports torch first (and skips without it).
"""
import os
import struct
import sys

import torch


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(b"HKTORCH1")

    def put(self, name, t):
        t = torch.as_tensor(t).detach().contiguous()
        if t.dtype == torch.float32:
            dtype, fmt = 0, "f"
        elif t.dtype in (torch.int32, torch.int64):
            t, dtype, fmt = t.to(torch.int32), 1, "i"
        else:
            raise TypeError(f"{name}: {t.dtype}")
        vals = t.reshape(-1).tolist()
        nb = name.encode()
        self.f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<IQ", dtype, len(vals)))
        self.f.write(struct.pack(f"<{len(vals)}{fmt}", *vals))

    def close(self):
        self.f.close()


def randn(gen, *shape, scale=1.0):
    """float32 standard normal numbers from gen, times scale"""
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * scale


def main(usage, seed, write_cases):
    """The main of a reference script: usage is its docstring; write_cases(w, gen) writes its
    arrays with Writer w and numbers drawn from gen (seeded with seed; torch on one thread).
    The file named by the one argument appears only when complete (written under a temporary
    name, then renamed).  Returns the exit code."""
    if len(sys.argv) != 2:
        print(usage, file=sys.stderr)
        return 2
    out = sys.argv[1]
    if os.path.exists(out):
        os.remove(out)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    tmp = out + ".tmp"
    w = Writer(tmp)
    write_cases(w, gen)
    w.close()
    os.replace(tmp, out)
    return 0
