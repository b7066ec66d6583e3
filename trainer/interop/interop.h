/* interop: GPT-2 weights in and out of harness checkpoints.
 *
 *   import   HuggingFace (DIR/config.json + DIR/model.safetensors, GPT2LMHeadModel or GPT2Model
 *            names) or llm.c (gpt2_124M.bin: fp32 or bf16) -> a parameters-only checkpoint
 *            (no optimizer state, step 0) whose config is the matching model.gpt; a run starts
 *            from it with model.init_from.
 *   export   a GPT checkpoint -> DIR/model.safetensors + DIR/config.json that transformers'
 *            GPT2LMHeadModel.from_pretrained(DIR) loads as they are.
 *
 * Names are the same on both sides (harness's presets use nanoGPT's, which are GPT-2's with
 * the "transformer." prefix).  What differs: GPT-2's Conv1D weights are stored [in, out],
 * harness's linear weights [out, in] (transposed on the way); harness pads the vocabulary to
 * a multiple of 64 (padding rows zero on import, dropped on export); a tied head has no
 * tensor of its own on either side. */
#ifndef HARNESS_INTEROP_H
#define HARNESS_INTEROP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kernels.h"
#include "model.h"

/* Each: 0, or -1 with err naming the file (and the tensor or key).  info (may be NULL)
 * receives a one-line summary: layers, heads, dim, context, vocabulary, parameters. */
int interop_import_hf(const char *dir, const char *out_ckpt, char *info, size_t infolen,
                      char *err, size_t errlen);
int interop_import_llmc(const char *path, const char *out_ckpt, char *info, size_t infolen,
                        char *err, size_t errlen);

/* vocab: the vocabulary before padding; 0 = the checkpoint's /meta/vocab_size, else data.train's
 * vocab_size. */
int interop_export_hf(const char *ckpt, const char *out_dir, int64_t vocab, char *info,
                      size_t infolen, char *err, size_t errlen);

/* The GPT of checkpoint ckpt, rebuilt on the CPU for `batch` sequences (decode: for
 * model_decode_step) with its parameters loaded; *cfg receives its config.  vocab as above.
 * The caller frees with model_free(m) and kern_destroy(*k).  0 or -1 with err. */
int interop_load_gpt(const char *ckpt, int64_t vocab, int64_t batch, int decode, config *cfg,
                     kern_ctx **k, model *m, char *err, size_t errlen);

#endif
