#!/usr/bin/env bash
# The default text corpus for language models: Debian's fortune cookie files (packages
# fortunes and fortunes-min, installed by launch/deps.sh), about 2.5 MB of English quotes,
# jokes, poems and short prose in 42 files (art, computers, cookie, ..., wisdom, work, zippy;
# the pictures of ascii-art left out; UTF-8, each fortune ended by a line "%").  Converted with
# the byte tokenizer (vocabulary 256) into datasets/fortunes/train.h5 (first 90% of the text)
# and datasets/fortunes/val.h5 (last 10%).
#   bash launch/corpus.sh                  # needs build/trainer/harness (launch/build.sh)
#   HARNESS=path/to/harness OUT=dir bash launch/corpus.sh --tokenizer gpt2 --vocab DIR
# Arguments are passed to `harness convert text`.  Does nothing when OUT/val.h5 exists and no
# arguments are given.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${FORTUNES_DIR:-/usr/share/games/fortunes}
out=${OUT:-datasets/fortunes}
harness=${HARNESS:-build/trainer/harness}
[ $# -eq 0 ] && [ -f "$out/val.h5" ] && exit 0
files=()
for f in "$src"/*; do
  case "$f" in *.dat | *.u8 | */ascii-art) continue ;; esac
  [ -f "$f" ] && files+=("$f")
done
if [ ${#files[@]} -eq 0 ]; then
  echo "corpus.sh: no fortune files in $src (apt-get install fortunes, or bash launch/deps.sh)" >&2
  exit 1
fi
exec "$harness" convert text "${files[@]}" --out "$out" "$@"
