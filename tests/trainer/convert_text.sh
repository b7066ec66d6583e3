# harness convert text / convert tokens / inspect, end to end: outputs read back with h5py,
# the progress display on a terminal, the default corpus (launch/corpus.sh), and every bad
# input a non-zero exit with a message naming the file.
source "$(dirname "$0")/common.sh"
D=$WORK/convert_text
rm -rf "$D"
mkdir -p "$D"
cd "$D"

printf 'First file: caf\xc3\xa9, \xff bytes.\n' > a.txt
printf 'Second file.\n%%\nThe end.\n' > b.txt
out=$("$HARNESS" convert text a.txt b.txt --out bytes --val-fraction 0.2)
echo "$out"
grep -q "bytes in, .* tokens out" <<<"$out" || fail "no summary: $out"
grep -q "tokens/s" <<<"$out" || fail "no tokens/s: $out"
"$PY" - <<'PY'
import h5py, numpy as np
want = open("a.txt", "rb").read() + open("b.txt", "rb").read()
with h5py.File("bytes/train.h5") as t, h5py.File("bytes/val.h5") as v:
    got = np.concatenate([t["tokens"][:], v["tokens"][:]])
    assert t["tokens"].dtype == np.uint16
    assert bytes(got.astype(np.uint8)) == want
    assert v["tokens"].shape[0] == int(0.2 * len(want))
    assert int(t.attrs["vocab_size"]) == 256 and t.attrs["tokenizer"] in (b"bytes", "bytes")
PY
ins=$("$HARNESS" inspect bytes/train.h5)
echo "$ins"
for want in "token dataset" "uint16" "vocab_size  256" "tokenizer   bytes" "First file: café, \\\\xff"; do
  grep -q "$want" <<<"$ins" || fail "inspect lacks '$want'"
done

# llm.c and nanoGPT files
"$PY" - <<'PY'
import numpy as np
h = np.zeros(256, np.int32); h[:3] = [20240520, 1, 5]
with open("s0.bin", "wb") as f: f.write(h.tobytes() + np.array([464, 3290, 318, 257, 50256], np.uint16).tobytes())
h[2] = 2
with open("s1.bin", "wb") as f: f.write(h.tobytes() + np.array([15496, 0], np.uint16).tobytes())
np.array([1, 2, 3, 99], np.uint16).tofile("train.bin")
np.array([1, 2, 3], np.uint16).tofile("bigtok.bin")
with open("bigtok.bin", "ab") as f: f.write(np.array([100], np.uint16).tobytes())
with open("odd.bin", "wb") as f: f.write(b"\x01\x00\x02")
h[0] = 1234
with open("magic.bin", "wb") as f: f.write(h.tobytes())
h[0], h[1] = 20240520, 3
with open("version.bin", "wb") as f: f.write(h.tobytes())
h[1], h[2] = 1, 1000
with open("short.bin", "wb") as f: f.write(h.tobytes() + b"\x00\x00" * 10)
PY
"$HARNESS" convert tokens --from llmc s0.bin s1.bin --out llmc.h5
ins=$("$HARNESS" inspect llmc.h5)
echo "$ins"
for want in "tokens      7 (uint16)" "vocab_size  50257" "eot_token   50256" "464 3290 318 257 50256 15496 0"; do
  grep -q "$want" <<<"$ins" || fail "inspect llmc.h5 lacks '$want'"
done
"$HARNESS" convert tokens --from nanogpt train.bin --vocab-size 100 --out nano.h5
"$PY" -c "
import h5py; f = h5py.File('nano.h5')
assert list(f['tokens'][:]) == [1, 2, 3, 99] and int(f.attrs['vocab_size']) == 100"

# bad input: non-zero exit, the file named, what was expected said
expect_fail() {   # expect_fail WORDS... -- ARGS...: harness ARGS fails, stderr has each word
  local words=()
  while [ "$1" != "--" ]; do words+=("$1"); shift; done
  shift
  if "$HARNESS" "$@" > out.txt 2> err.txt; then fail "harness $* succeeded"; fi
  for w in "${words[@]}"; do
    grep -qF -- "$w" err.txt || fail "harness $*: stderr lacks '$w': $(cat err.txt)"
  done
  echo "ok (refused): harness $* -> $(head -1 err.txt)"
}
expect_fail "missing.txt" "cannot read" -- convert text a.txt missing.txt --out x
expect_fail "--tokenizer gpt2 needs --vocab" -- convert text a.txt --out x --tokenizer gpt2
expect_fail "nodir/encoder.json" -- convert text a.txt --out x --tokenizer gpt2 --vocab nodir
expect_fail "--tokenizer must be" -- convert text a.txt --out x --tokenizer words
expect_fail "--val-fraction" -- convert text a.txt --out x --val-fraction 1.5
expect_fail "magic.bin" "magic 1234, expected 20240520" -- convert tokens --from llmc s0.bin magic.bin --out x.h5
expect_fail "version.bin" "version 3, expected 1" -- convert tokens --from llmc version.bin --out x.h5
expect_fail "short.bin" "truncated" "1000 tokens" -- convert tokens --from llmc short.bin --out x.h5
expect_fail "bigtok.bin" "token 3" "outside [0, vocab_size = 100)" -- convert tokens --from nanogpt bigtok.bin --vocab-size 100 --out x.h5
expect_fail "--from nanogpt needs --vocab-size" -- convert tokens --from nanogpt train.bin --out x.h5
expect_fail "odd.bin" "odd number" -- convert tokens --from nanogpt odd.bin --vocab-size 10 --out x.h5
expect_fail "--from must be llmc or nanogpt" -- convert tokens --from megatron train.bin --out x.h5
[ ! -e x.h5 ] && [ ! -e x/train.h5 ] || fail "a refused conversion left a file behind"

# progress on a terminal (script(1) gives the command a pty)
if command -v script > /dev/null; then
  "$PY" -c "
import random
random.seed(1)
w = ['alpha', 'beta', 'gamma', 'delta', '42', 'x']
with open('big.txt', 'w') as f:
    for i in range(400000): f.write(' '.join(random.choice(w) for _ in range(5)) + '\n')"
  script -qec "$HARNESS convert text big.txt --out big" /dev/null > tty.txt
  grep -q "MiB .*tokens .*MB/s" tty.txt || fail "no progress display on a terminal: $(cat tty.txt)"
  "$HARNESS" convert text big.txt --out big 2> notty.txt > /dev/null
  [ ! -s notty.txt ] || fail "progress written when stderr is not a terminal"
fi

# the default corpus
if [ -d /usr/share/games/fortunes ]; then
  out=$(HARNESS="$HARNESS" OUT="$D/fortunes" bash "$(dirname "$0")/../../launch/corpus.sh")
  echo "$out"
  grep -q "42 files" <<<"$out" || fail "corpus.sh: $out"
  "$HARNESS" inspect "$D/fortunes/val.h5" | head -8
fi
echo "convert text/tokens: ok"
