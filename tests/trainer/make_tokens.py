"""Writes byte-level token datasets the obvious h5py way, for the GPT tests.

Usage: make_tokens.py DIR [TOKENS]
DIR/train.h5 and DIR/val.h5: /tokens uint16, attrs vocab_size 256 and tokenizer "bytes"; the
text is English-like sentences from a fixed word list and a fixed seed (learnable structure:
a GPT's loss falls well below log(256) within a few hundred steps)."""
import sys
import h5py, numpy as np

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 60000
rng = np.random.default_rng(1234)
subjects = ["the cat", "a dog", "my friend", "the old man", "our teacher", "the small bird"]
verbs = ["sees", "likes", "finds", "follows", "paints", "remembers"]
objects = ["the red ball", "a quiet river", "the tall tree", "an open door", "the warm sun"]
ends = [".", "!", ".", "?"]
parts = []
size = 0
while size < n + 200:
    s = (f"{subjects[rng.integers(len(subjects))]} {verbs[rng.integers(len(verbs))]} "
         f"{objects[rng.integers(len(objects))]}{ends[rng.integers(len(ends))]}\n")
    parts.append(s)
    size += len(s)
data = np.frombuffer("".join(parts).encode(), dtype=np.uint8).astype(np.uint16)
cut = int(n * 0.9)
for name, part in (("train", data[:cut]), ("val", data[cut:n])):
    with h5py.File(f"{out}/{name}.h5", "w") as f:
        f["tokens"] = part
        f.attrs["vocab_size"] = 256
        f.attrs["tokenizer"] = "bytes"
