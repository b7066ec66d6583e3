/* gpt: the model.gpt preset, expanded into a layer list (GPT-2 / nanoGPT architecture and
 * parameter names). */
#ifndef HARNESS_GPT_H
#define HARNESS_GPT_H

#include <stddef.h>

#include "config.h"
#include "model.h"

/* *out (malloc'd, *n layers):
 *   embedding (transformer.wte, transformer.wpe) [, dropout]
 *   per block i (transformer.h.i):
 *     residual_start, layernorm ln_1, linear attn.c_attn (3C), attention, linear attn.c_proj,
 *     [dropout,] residual_end,
 *     residual_start, layernorm ln_2, linear mlp.c_fc (4C), gelu, linear mlp.c_proj,
 *     [dropout,] residual_end
 *   layernorm transformer.ln_f, lm_head (tied to wte unless tie_embeddings is false)
 * Init: N(0, 0.02) weights, the two residual output projections N(0, 0.02/sqrt(2 x layers)),
 * zero biases, layer norms 1 / 0. */
int gpt_expand(const config *cfg, const model_input_desc *in, layer_config **out, int *n,
               char *err, size_t errlen);


#endif
