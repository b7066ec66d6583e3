# GPT-2 interop against transformers itself (see CMakeLists.txt).  transformers' side is
# batched into three python processes (hf_gpt2.py, commands separated by ::).
# Arguments: harness, mpirun, gpt_logits, the build directory, a scratch directory.
set -euo pipefail
HARNESS=$1 MPIRUN=$2 LOGITS=$3 BUILD=$4 W=$5/gpt2
HERE=$(dirname "$0")
source "$HERE/venv.sh"
make_hf_venv "$BUILD"
HF() { "$HFPY" "$HERE/hf_gpt2.py" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TRANSFORMERS_OFFLINE=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
TOKENS=(5 17 299 0 42 42 7 256 128 3 64 1)

# expect_error WHAT PATTERN... -- COMMAND: fails within seconds, message matching each pattern
expect_error() {
  local what=$1; shift
  local pats=()
  while [ "$1" != "--" ]; do pats+=("$1"); shift; done; shift
  local rc=0
  timeout 60 "$@" >"$W/out.txt" 2>"$W/err.txt" || rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$what: exit $rc"
  for p in "${pats[@]}"; do
    grep -q -- "$p" "$W/err.txt" || fail "$what: message lacks '$p': $(cat "$W/err.txt")"
  done
  echo "refused as expected ($what): $(tail -n 1 "$W/err.txt" | head -c 300)"
}

# transformers makes the models: F32 with a vocabulary of 300 (harness pads it to 320), BF16,
# F16, an untied head, a byte-level one (256) for generation; llm.c files of the first (fp32,
# and bf16 with its rounded twin hf-bf16ref); token files of vocabulary 300
HF make "$W/hf" 300 :: make "$W/hf-bfloat16" 300 bfloat16 :: make "$W/hf-float16" 300 float16 \
   :: make "$W/hf-untied" 300 float32 untied :: make "$W/hf256" 256 \
   :: llmc "$W/hf" "$W/gpt2.bin" 3 :: llmc "$W/hf" "$W/gpt2-bf16.bin" 5 :: tokens "$W" 300

# 1. imports: safetensors (4 kinds) and llm.c (fp32, bf16)
BYTES=(5 17 255 0 42 42 7 200 128 3 64 1)
for m in hf hf-bfloat16 hf-float16 hf-untied hf256; do
  "$HARNESS" convert weights --from hf "$W/$m" --out "$W/$m.h5" | tee "$W/$m.txt"
  [ $m = hf256 ] && toks=("${BYTES[@]}") || toks=("${TOKENS[@]}")
  "$LOGITS" "$W/$m.h5" "$W/$m.f32" "${toks[@]}"
done
grep -q "untied head" "$W/hf-untied.txt" || fail "an untied lm_head.weight was not imported as an untied head"
for m in gpt2 gpt2-bf16; do
  "$HARNESS" convert weights --from llmc "$W/$m.bin" --out "$W/$m.h5"
  "$LOGITS" "$W/$m.h5" "$W/$m.f32" "${TOKENS[@]}"
done

# 2. wrong files: named file and tensor, non-zero exit, no hang
cp -r "$W/hf" "$W/trunc"
size=$(stat -c %s "$W/trunc/model.safetensors")
truncate -s $((size - 1000)) "$W/trunc/model.safetensors"
expect_error "truncated safetensors" "trunc/model.safetensors" "tensor transformer\." "truncated" -- \
  "$HARNESS" convert weights --from hf "$W/trunc" --out "$W/bad.h5"
cp -r "$W/hf" "$W/lie"
HF shift "$W/lie/model.safetensors" transformer.h.1.mlp.c_fc.weight
expect_error "header lying about a size" "lie/model.safetensors" "transformer.h.1.mlp.c_fc.weight" -- \
  "$HARNESS" convert weights --from hf "$W/lie" --out "$W/bad.h5"
cp -r "$W/hf" "$W/shape"
sed -i 's/"n_embd": 64/"n_embd": 128/' "$W/shape/config.json"
expect_error "config of another shape" "shape/model.safetensors" \
  "tensor transformer.wte.weight is \[300, 64\]" "needs \[300, 128\]" -- \
  "$HARNESS" convert weights --from hf "$W/shape" --out "$W/bad.h5"
cp -r "$W/hf" "$W/llama"
sed -i 's/"model_type": "gpt2"/"model_type": "llama"/' "$W/llama/config.json"
expect_error "another architecture" "llama/config.json" "model_type is llama" -- \
  "$HARNESS" convert weights --from hf "$W/llama" --out "$W/bad.h5"
head -c 5000 "$W/gpt2.bin" > "$W/short.bin"
expect_error "truncated llm.c file" "short.bin" "truncated" -- \
  "$HARNESS" convert weights --from llmc "$W/short.bin" --out "$W/bad.h5"
[ ! -e "$W/bad.h5" ] || fail "a refused import left $W/bad.h5 behind"
gpt=(--set model.gpt.layers=2 --set model.gpt.heads=4 --set model.gpt.dim=64
     --set model.gpt.context=32 --set train.batch_size=8 --set log.progress=false)
expect_error "init_from of another vocabulary" "model.init_from" "vocabulary of 256" "has 300" -- \
  "$HARNESS" train "${gpt[@]}" --set data.train="$W/val300.h5" --set data.test="" \
  --set model.init_from="$W/hf256.h5" --set train.steps=1 --set run.dir="$W/bad"
expect_error "--resume from parameters only" "model.init_from" -- \
  "$HARNESS" train "${gpt[@]}" --set data.train="$W/train300.h5" --set data.test="" \
  --resume "$W/hf.h5" --set train.steps=1 --set run.dir="$W/bad"

# 3. train from the import on 2 ranks (tiny lr: the parameters move, but stay within 3 AdamW
#    steps of the import), export, re-import; the untied head exported too
"$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "${gpt[@]}" --set data.train="$W/train300.h5" \
  --set data.test="$W/val300.h5" --set model.init_from="$W/hf.h5" --set train.steps=3 \
  --set train.lr=1e-5 --set train.optimizer=adamw --set train.weight_decay=0 \
  --set run.dir="$W/ft" 2>&1 | tee "$W/ft.log"
grep -q "parameters from $W/hf.h5" "$W/ft.log" || fail "the run did not say it started from the import"
FT=$W/ft/checkpoints/step_00000003.h5
"$HARNESS" export --checkpoint "$FT" --format hf --out "$W/export"
"$LOGITS" "$FT" "$W/ft.f32" "${TOKENS[@]}"
"$HARNESS" convert weights --from hf "$W/export" --out "$W/reimp.h5"
"$HARNESS" export --checkpoint "$W/hf-untied.h5" --format hf --out "$W/export-untied"
# a model without biases goes out with zero biases (GPT-2 always has them)
"$HARNESS" train "${gpt[@]}" --set data.train="$W/train300.h5" --set data.test="" \
  --set model.gpt.bias=false --set train.steps=2 --set run.dir="$W/nobias" 2>/dev/null
"$HARNESS" export --checkpoint "$W/nobias/checkpoints/step_00000002.h5" --format hf --out "$W/export-nobias"
"$LOGITS" "$W/nobias/checkpoints/step_00000002.h5" "$W/nobias.f32" "${TOKENS[@]}"

# 4. harness generate from an import (byte-level data, vocabulary 256)
"$HFPY" "$(dirname "$HERE")/trainer/make_tokens.py" "$W" 3000
prompt="the cat sees"
"$HARNESS" generate --checkpoint "$W/hf256.h5" --set data.train="$W/train.h5" --prompt "$prompt" \
  --tokens 8 --temperature 0 > "$W/gen.txt"

# transformers checks it all: logits of every import within 1e-4 of transformers' own, the
# exports loaded by from_pretrained with the same logits, the re-import equal to the trained
# checkpoint, the fine-tuned parameters near the import, the greedy continuation equal
L=()
for m in hf hf-bfloat16 hf-float16 hf-untied hf256; do
  [ $m = hf256 ] && toks=("${BYTES[@]}") || toks=("${TOKENS[@]}")
  L+=(logits "$W/$m" "$W/$m.f32" "${toks[@]}" ::)
done
HF "${L[@]}" logits "$W/hf" "$W/gpt2.f32" "${TOKENS[@]}" \
   :: logits "$W/hf-bf16ref" "$W/gpt2-bf16.f32" "${TOKENS[@]}" \
   :: logits "$W/export" "$W/ft.f32" "${TOKENS[@]}" \
   :: logits "$W/export-untied" "$W/hf-untied.f32" "${TOKENS[@]}" \
   :: logits "$W/export-nobias" "$W/nobias.f32" "${TOKENS[@]}" \
   :: same "$FT" "$W/reimp.h5" :: near "$W/hf.h5" "$FT" 5e-5 \
   :: generate "$W/hf256" 8 "$prompt" "$W/gen.txt"
echo "interop_gpt2: all checks passed"
