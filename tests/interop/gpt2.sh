# GPT-2 interop against transformers itself (see CMakeLists.txt).
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
  echo "refused as expected ($what): $(head -c 300 "$W/err.txt")"
}

# 1. import from safetensors (F32, vocabulary 300 padded to 320; BF16; F16; an untied head):
#    harness's logits equal transformers' within 1e-4
HF make "$W/hf" 300
"$HARNESS" convert weights --from hf "$W/hf" --out "$W/imp.h5"
"$LOGITS" "$W/imp.h5" "$W/imp.f32" "${TOKENS[@]}"
HF logits "$W/hf" "$W/imp.f32" "${TOKENS[@]}"
for dt in bfloat16 float16; do
  HF make "$W/hf-$dt" 300 $dt
  "$HARNESS" convert weights --from hf "$W/hf-$dt" --out "$W/imp-$dt.h5"
  "$LOGITS" "$W/imp-$dt.h5" "$W/imp-$dt.f32" "${TOKENS[@]}"
  HF logits "$W/hf-$dt" "$W/imp-$dt.f32" "${TOKENS[@]}"
done
HF make "$W/hf-untied" 300 float32 untied
"$HARNESS" convert weights --from hf "$W/hf-untied" --out "$W/imp-untied.h5" | grep -q "untied head" ||
  fail "an untied lm_head.weight was not imported as an untied head"
"$LOGITS" "$W/imp-untied.h5" "$W/imp-untied.f32" "${TOKENS[@]}"
HF logits "$W/hf-untied" "$W/imp-untied.f32" "${TOKENS[@]}"

# 2. llm.c's model file, fp32 (version 3) and bf16 (version 5)
HF llmc "$W/hf" "$W/gpt2.bin" 3
"$HARNESS" convert weights --from llmc "$W/gpt2.bin" --out "$W/llmc.h5"
"$LOGITS" "$W/llmc.h5" "$W/llmc.f32" "${TOKENS[@]}"
HF logits "$W/hf" "$W/llmc.f32" "${TOKENS[@]}"
cp -r "$W/hf" "$W/hfb"
HF llmc "$W/hfb" "$W/gpt2-bf16.bin" 5
"$HARNESS" convert weights --from llmc "$W/gpt2-bf16.bin" --out "$W/llmc-bf16.h5"
"$LOGITS" "$W/llmc-bf16.h5" "$W/llmc-bf16.f32" "${TOKENS[@]}"
HF logits "$W/hfb-bf16ref" "$W/llmc-bf16.f32" "${TOKENS[@]}"

# 3. wrong files: named file and tensor, non-zero exit, no hang
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
expect_error "config of another shape" "shape/model.safetensors" "tensor transformer.wte.weight is \\[300, 64\\]" "needs \\[300, 128\\]" -- \
  "$HARNESS" convert weights --from hf "$W/shape" --out "$W/bad.h5"
cp -r "$W/hf" "$W/llama"
sed -i 's/"model_type": "gpt2"/"model_type": "llama"/' "$W/llama/config.json"
expect_error "another architecture" "llama/config.json" "model_type is llama" -- \
  "$HARNESS" convert weights --from hf "$W/llama" --out "$W/bad.h5"
head -c 5000 "$W/gpt2.bin" > "$W/short.bin"
expect_error "truncated llm.c file" "short.bin" "truncated" -- \
  "$HARNESS" convert weights --from llmc "$W/short.bin" --out "$W/bad.h5"
[ ! -e "$W/bad.h5" ] || fail "a refused import left $W/bad.h5 behind"

# 4. train from the import on 2 ranks (tiny lr: the parameters move, but stay within 3 AdamW
#    steps of the import), export, load with from_pretrained: same logits; re-import: same
"$HFPY" - "$W" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(7)
for split in ("train", "val"):
    with h5py.File(f"{sys.argv[1]}/{split}300.h5", "w") as f:
        f["tokens"] = rng.integers(0, 300, 4000).astype(np.uint16)
        f.attrs["vocab_size"] = 300
PY
gpt=(--set model.gpt.layers=2 --set model.gpt.heads=4 --set model.gpt.dim=64
     --set model.gpt.context=32)
"$MPIRUN" --oversubscribe -np 2 "$HARNESS" train "${gpt[@]}" --set data.train="$W/train300.h5" \
  --set data.test="$W/val300.h5" --set model.init_from="$W/imp.h5" --set train.steps=3 \
  --set train.batch_size=8 --set train.lr=1e-5 --set train.optimizer=adamw \
  --set train.weight_decay=0 --set log.progress=false --set run.dir="$W/ft" 2>&1 | tee "$W/ft.log"
grep -q "parameters from $W/imp.h5" "$W/ft.log" || fail "the run did not say it started from the import"
HF near "$W/imp.h5" "$W/ft/checkpoints/step_00000003.h5" 5e-5
"$HARNESS" export --checkpoint "$W/ft/checkpoints/step_00000003.h5" --format hf --out "$W/export"
"$LOGITS" "$W/ft/checkpoints/step_00000003.h5" "$W/ft.f32" "${TOKENS[@]}"
HF logits "$W/export" "$W/ft.f32" "${TOKENS[@]}"
"$HARNESS" convert weights --from hf "$W/export" --out "$W/reimp.h5"
HF same "$W/ft/checkpoints/step_00000003.h5" "$W/reimp.h5"
# the untied head goes out as lm_head.weight and comes back
"$HARNESS" export --checkpoint "$W/imp-untied.h5" --format hf --out "$W/export-untied"
HF logits "$W/export-untied" "$W/imp-untied.f32" "${TOKENS[@]}"
# a vocabulary mismatch named
HF make "$W/hf256" 256
"$HARNESS" convert weights --from hf "$W/hf256" --out "$W/imp256.h5"
expect_error "init_from of another vocabulary" "model.init_from" "vocabulary of 256" "has 300" -- \
  "$HARNESS" train "${gpt[@]}" --set data.train="$W/val300.h5" --set data.test="" \
  --set model.init_from="$W/imp256.h5" --set train.steps=1 --set train.batch_size=8 --set run.dir="$W/bad"
expect_error "--resume from parameters only" "model.init_from" -- \
  "$HARNESS" train "${gpt[@]}" --set data.train="$W/train300.h5" --set data.test="" \
  --resume "$W/imp.h5" --set train.steps=1 --set train.batch_size=8 --set run.dir="$W/bad"

# 5. harness generate from an import: the same greedy continuation as transformers' generate
"$HFPY" "$(dirname "$HERE")/trainer/make_tokens.py" "$W" 3000
prompt="the cat sees"
"$HARNESS" generate --checkpoint "$W/imp256.h5" --set data.train="$W/train.h5" --prompt "$prompt" \
  --tokens 8 --temperature 0 > "$W/gen.txt"
HF generate "$W/hf256" 8 "$prompt" "$W/gen_hf.bin"
"$HFPY" - "$W" "$prompt" <<'PY'
import sys
w, prompt = sys.argv[1], sys.argv[2].encode()
got = open(f"{w}/gen.txt", "rb").read()
want = open(f"{w}/gen_hf.bin", "rb").read()
assert got.startswith(prompt) and got.endswith(b"\n"), got
got = got[len(prompt):-1]
print(f"greedy continuation: harness {list(got)}, transformers {list(want)}")
assert got == want
PY
echo "interop_gpt2: all checks passed"
