/* gpt2_common: what import and export share - the GPT-2 shape, the model built for it on the
 * CPU, the name and layout differences between GPT-2's tensors and harness's.  Private to
 * trainer/interop. */
#ifndef HARNESS_GPT2_COMMON_H
#define HARNESS_GPT2_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kernels.h"
#include "model.h"

typedef struct {
    int layers, heads, dim, context;
    int64_t vocab;            /* before padding */
    int tie;                  /* the head is the token embedding */
} gpt2_dims;

/* The model.gpt config of d (biases on, no dropout, CPU) over the defaults. */
void gpt2_config(const gpt2_dims *d, config *cfg);

/* A CPU backend and cfg's GPT built for `batch` sequences of d->vocab tokens.  0 or -1 with err. */
int gpt2_build(const config *cfg, int64_t vocab, int64_t batch, int decode, kern_ctx **k,
               model *m, char *err, size_t errlen);

/* GPT-2's Conv1D weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj): stored [in, out]. */
int gpt2_is_conv1d(const char *name);
/* The token embedding or an untied head: [Vp, C] in harness, [V, C] in GPT-2. */
int gpt2_is_vocab_rows(const char *name);

/* The GPT-2 shape a model tensor has outside harness: dims reversed for Conv1D weights, V rows
 * for vocabulary tensors.  Returns ndim. */
int gpt2_outside_shape(const model_tensor *t, int64_t vocab, int64_t *shape);

/* Copies the outside layout src into harness's layout dst[t->count] (transposed for Conv1D;
 * padding rows zero) - or back (to_outside). */
void gpt2_convert(const model_tensor *t, int64_t vocab, const float *src, float *dst,
                  int to_outside);

/* Writes m's parameters (host copy `params`) as a parameters-only checkpoint at path with
 * cfg as its config.  0 or -1 with err. */
int gpt2_write_checkpoint(const char *path, const config *cfg, model *m, const float *params,
                          char *err, size_t errlen);

/* "12 layers, 12 heads, dim 768, context 1024, vocabulary 50257 (50304 padded), 124.4M
 * parameters" */
void gpt2_describe(const gpt2_dims *d, const model *m, char *buf, size_t n);

#endif
