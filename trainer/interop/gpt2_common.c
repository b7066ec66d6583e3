/* gpt2_common: the model, names and layouts that import and export share (gpt2_common.h). */
#include "gpt2_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fsutil.h"

void gpt2_config(const gpt2_dims *d, config *cfg) {
    config_defaults(cfg);
    cfg->gpt_layers = d->layers;
    cfg->gpt_heads = d->heads;
    cfg->gpt_dim = d->dim;
    cfg->gpt_context = d->context;
    cfg->gpt_dropout = 0.0f;
    cfg->gpt_bias = 1;
    cfg->gpt_tie = d->tie;
    cfg->optimizer = OPT_ADAMW;
    cfg->train_path[0] = '\0';   /* no data yet: the fine-tuning run names its own */
    cfg->test_path[0] = '\0';
}

int gpt2_build(const config *cfg, int64_t vocab, int64_t batch, int decode, kern_ctx **k,
               model *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    kern_options ko = {0};
    ko.backend = KERN_CPU;
    ko.threads = cfg->threads > 0 ? cfg->threads : 1;
    ko.precision = KERN_FP32;
    if (kern_create(&ko, k, err, errlen) != 0) return -1;
    model_input_desc in = {0};
    in.tokens = 1;
    in.sample_ndim = 1;
    in.sample_shape[0] = cfg->gpt_context;
    in.n_classes = vocab;
    if (model_build(m, cfg, &in, batch, decode, *k, err, errlen) != 0) {
        kern_destroy(*k);
        *k = NULL;
        return -1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int gpt2_is_conv1d(const char *name) {
    return ends_with(name, ".attn.c_attn.weight") || ends_with(name, ".attn.c_proj.weight") ||
           ends_with(name, ".mlp.c_fc.weight") || ends_with(name, ".mlp.c_proj.weight");
}

int gpt2_is_vocab_rows(const char *name) {
    return !strcmp(name, "transformer.wte.weight") || !strcmp(name, "lm_head.weight");
}

int gpt2_outside_shape(const model_tensor *t, int64_t vocab, int64_t *shape) {
    for (int i = 0; i < t->ndim; i++) shape[i] = t->dims[i];
    if (t->ndim == 2 && gpt2_is_conv1d(t->name)) {
        shape[0] = t->dims[1];
        shape[1] = t->dims[0];
    } else if (gpt2_is_vocab_rows(t->name)) {
        shape[0] = vocab;
    }
    return t->ndim;
}

void gpt2_convert(const model_tensor *t, int64_t vocab, const float *src, float *dst,
                  int to_outside) {
    if (t->ndim == 2 && gpt2_is_conv1d(t->name)) {
        /* harness [out, in] <-> GPT-2 [in, out] */
        int64_t out = t->dims[0], in = t->dims[1];
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) {
                if (to_outside) dst[i * out + o] = src[o * in + i];
                else dst[o * in + i] = src[i * out + o];
            }
    } else if (gpt2_is_vocab_rows(t->name)) {
        /* [V, C] <-> [Vp, C]: the padding rows are zero and stay behind */
        size_t real = (size_t)(vocab * t->dims[1]);
        memcpy(dst, src, real * sizeof(float));
        if (!to_outside) memset(dst + real, 0, (size_t)(t->count - (int64_t)real) * sizeof(float));
    } else {
        memcpy(dst, src, (size_t)t->count * sizeof(float));
    }
}

int gpt2_write_checkpoint(const char *path, const config *cfg, model *m, const float *params,
                          char *err, size_t errlen) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (make_dirs(dir) != 0) return snprintf(err, errlen, "%s: cannot create it", dir), -1;
    }
    kern_to_device(m->k, m->params, params, (size_t)m->n_params * sizeof(float));
    char *yaml = config_to_yaml(cfg);
    if (!yaml) return snprintf(err, errlen, "out of memory"), -1;
    ckpt_state s = {0};
    s.seed = cfg->seed;
    s.world_size = 1;
    int rc = ckpt_write_file(path, m, NULL, &s, yaml, NULL, NULL, err, errlen);
    free(yaml);
    return rc;
}

void gpt2_describe(const gpt2_dims *d, const model *m, char *buf, size_t n) {
    int64_t padded = (d->vocab + 63) / 64 * 64;
    snprintf(buf, n, "%d layers, %d heads, dim %d, context %d, vocabulary %lld (%lld padded), "
             "%s head, %.1fM parameters", d->layers, d->heads, d->dim, d->context,
             (long long)d->vocab, (long long)padded, d->tie ? "tied" : "untied",
             (double)m->n_params / 1e6);
}
