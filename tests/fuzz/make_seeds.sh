#!/usr/bin/env bash
# Regenerates the seed corpora of the HDF5 fuzzers (the config seeds are hand-written):
#   corpus/dataset/*.h5     tiny classification files (16 samples of 4x4 and similar) written
#                           with h5py the ways people write them, plus a few broken ones
#   corpus/tokens/*.h5      tiny token datasets (64 ids), good and broken
#   corpus/checkpoint/*.h5  real checkpoints of a tiny model, written by `harness train`
#                           (AdamW, SGD with momentum), and one with the same layout written
#                           by h5py in HDF5's oldest format (no metadata checksums, so
#                           mutations reach deeper into the reader)
# Usage: bash tests/fuzz/make_seeds.sh [HARNESS_BINARY]   (default build/trainer/harness)
# Needs python3 with h5py and numpy (Debian: python3-h5py) and mpirun-free harness (1 rank).
set -euo pipefail
FUZZ=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$FUZZ/../.." && pwd)
HARNESS=${1:-$ROOT/build/trainer/harness}
PY=${PY:-/usr/bin/python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$FUZZ/corpus/dataset" "$WORK" <<'PY'
import os, sys, h5py, numpy as np
out, work = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)
x = rng.integers(0, 256, size=(16, 4, 4), dtype=np.uint8)
y = (np.arange(16) % 10).astype(np.int64)
def w(name, **kw):
    return h5py.File(os.path.join(out, name), "w", **kw)
with w("u8_hw.h5") as f:                       # the obvious way
    f["images"] = x; f["labels"] = y; f.attrs["num_classes"] = 10
with w("f32_flat_meanstd.h5") as f:            # float32 [N,D], labels int32, mean/std
    f["images"] = (x.reshape(16, 16) / 255.0).astype(np.float32)
    f["labels"] = y.astype(np.int32)
    f.attrs["num_classes"] = 10; f.attrs["mean"] = 0.5; f.attrs["std"] = np.float32(0.25)
with w("u8_hwc_gzip_names.h5") as f:           # chunked + gzip + shuffle, vlen class names
    f.create_dataset("images", data=x.reshape(16, 4, 2, 2), chunks=(4, 4, 2, 2),
                     compression="gzip", shuffle=True)
    d = f.create_dataset("labels", data=(y % 3).astype(np.uint8), chunks=(8,), fletcher32=True)
    d.attrs["num_classes"] = np.array([3], dtype=np.int64)
    f.attrs["class_names"] = ["zero", "one", "tw\u00f6"]
with w("u8_fixed_names_latest.h5", libver="latest") as f:   # newest format, fixed strings
    f["images"] = x; f["labels"] = (y % 4).astype(np.int16)
    f.attrs["num_classes"] = np.uint16(4)
    f.attrs["class_names"] = np.array([b"a", b"bb ", b"ccc", b"d"])
# broken on purpose: the error paths are worth mutating from too
with w("bad_label.h5") as f:
    f["images"] = x; yy = y.copy(); yy[5] = 10; f["labels"] = yy; f.attrs["num_classes"] = 10
with w("bad_shape_types.h5") as f:
    f["images"] = x.astype(np.int16); f["labels"] = y.astype(np.float32)
    f.attrs["num_classes"] = "ten"; f.attrs["mean"] = 0.5
# for the checkpoint seeds: a training set of the tiny model's input shape
with h5py.File(os.path.join(work, "train.h5"), "w") as f:
    f["images"] = x; f["labels"] = y; f.attrs["num_classes"] = 10
PY

# Token datasets (fuzz_tokens): the obvious h5py ways, the newest and the oldest format, and
# broken ones (float ids, a token outside the vocabulary).
"$PY" - "$FUZZ/corpus/tokens" <<'PY'
import os, sys, h5py, numpy as np
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
t = ((np.arange(64) * 37 + 11) % 256).astype(np.uint16)
def w(name, **kw):
    return h5py.File(os.path.join(out, name), "w", **kw)
with w("u16_bytes.h5") as f:                   # the obvious way, vlen str tokenizer
    f["tokens"] = t; f.attrs["vocab_size"] = 256; f.attrs["tokenizer"] = "bytes"
with w("i32_attrs_on_tokens_earliest.h5", libver="earliest") as f:  # no metadata checksums
    d = f.create_dataset("tokens", data=(t.astype(np.int32) * 300))
    d.attrs["vocab_size"] = np.int64(80000); d.attrs["eot_token"] = np.int32(79999)
    d.attrs["tokenizer"] = np.bytes_("gpt2")
with w("u16_chunked_gzip_latest.h5", libver="latest") as f:
    f.create_dataset("tokens", data=t, chunks=(16,), compression="gzip", shuffle=True)
    f.attrs["vocab_size"] = np.uint16(256)
with w("bad_float.h5") as f:
    f["tokens"] = t.astype(np.float32); f.attrs["vocab_size"] = 256
with w("bad_token.h5") as f:
    tt = t.copy(); tt[40] = 256; f["tokens"] = tt; f.attrs["vocab_size"] = 256
PY

run() {  # run NAME SETTINGS...: a 2-step training run that leaves one checkpoint
  local name=$1; shift
  "$HARNESS" train --set data.train="$WORK/train.h5" --set data.test= \
    --set "model.layers=[{type: flatten}, {type: linear, out: 10}]" \
    --set train.steps=2 --set train.batch_size=4 --set log.progress=false \
    --set run.device=cpu --set run.dir="$WORK/$name" "$@" >/dev/null
  cp "$(ls "$WORK/$name"/checkpoints/step_*.h5 | tail -1)" "$FUZZ/corpus/checkpoint/$name.h5"
}
source "$ROOT/tests/mpi_env.sh"
mkdir -p "$FUZZ/corpus/checkpoint"
run adamw
run sgd_momentum --set train.optimizer=sgd --set train.momentum=0.9

# The AdamW checkpoint copied object by object into a file in HDF5's oldest format (what a
# user's h5py script would write): same names, values and meta_crc32, no metadata checksums.
"$PY" - "$FUZZ/corpus/checkpoint/adamw.h5" "$FUZZ/corpus/checkpoint/adamw_h5py_oldformat.h5" <<'PY'
import sys, h5py, numpy as np
src, dst = sys.argv[1], sys.argv[2]
with h5py.File(src, "r") as s, h5py.File(dst, "w", libver="earliest") as d:
    def copy(name, obj):
        if isinstance(obj, h5py.Dataset):
            d.create_dataset(name, data=obj[()])
        else:
            d.require_group(name)
        for k, v in obj.attrs.items():
            d[name].attrs.create(k, v, dtype=obj.attrs.get_id(k).dtype)
    s.visititems(copy)
PY
ls -l "$FUZZ/corpus/dataset" "$FUZZ/corpus/checkpoint"

# corpus/import: llm.c and nanoGPT token files behind fuzz_import's 4-byte prefix (format,
# vocabulary size, split); corpus/tokenizer: text for the tiny vocabulary, and a small GPT-2
# vocabulary (encoder.json NUL vocab.bpe) behind fuzz_tokenizer's mode byte.
"$PY" - "$FUZZ/corpus" <<'PY'
import json, os, struct, sys
import numpy as np
out = sys.argv[1]
for d in ("import", "tokenizer"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
def llmc(tokens, magic=20240520, version=1, count=None):
    h = np.zeros(256, np.int32)
    h[:3] = [magic, version, len(tokens) if count is None else count]
    return h.tobytes() + np.array(tokens, np.uint16).tobytes()
def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
t = list(range(0, 50257, 2513))
w("import/llmc_one.bin", bytes([1, 0, 0, 0]) + llmc(t))
w("import/llmc_two.bin", bytes([1, 0, 0, 128]) + llmc(t) + llmc(t[::-1]))
w("import/llmc_vocab300.bin", bytes([1]) + struct.pack("<H", 300) + bytes([0]) + llmc([5, 299, 300]))
w("import/llmc_bad_magic.bin", bytes([1, 0, 0, 0]) + llmc(t, magic=20240521))
w("import/llmc_truncated.bin", bytes([1, 0, 0, 0]) + llmc(t, count=100))
w("import/nanogpt_two.bin", bytes([0]) + struct.pack("<H", 1000) + bytes([64]) +
  np.arange(0, 1000, 37, dtype=np.uint16).tobytes())
w("import/nanogpt_odd.bin", bytes([0, 16, 0, 0, 1, 2, 3]))
w("tokenizer/text.txt", b"\x00Hello there, the hell's  2024!!\n\n\n  <|endoftext|>caf\xc3\xa9 \xff\xfe\xf0\x9f\x98")
def ch(b):
    keep = 33 <= b <= 126 or 161 <= b <= 172 or b >= 174
    return chr(b) if keep else chr(256 + sum(1 for c in range(b) if not (33 <= c <= 126 or 161 <= c <= 172 or c >= 174)))
enc = {ch(b): b for b in range(256)}
merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "t"), ("Ġt", "he")]
for i, (a, b) in enumerate(merges):
    enc[a + b] = 256 + i
enc["<|endoftext|>"] = 256 + len(merges)
bpe = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
w("tokenizer/vocab.bin", b"\x01" + json.dumps(enc).encode() + b"\x00" + bpe.encode())
PY
