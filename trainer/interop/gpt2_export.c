/* gpt2_export: a harness GPT checkpoint -> DIR/model.safetensors + DIR/config.json for
 * transformers' GPT2LMHeadModel; and the loader both export and the tests use. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data.h"
#include "fsutil.h"
#include "gpt2_common.h"
#include "interop.h"
#include "safetensors.h"

/* The vocabulary before padding: given, else the checkpoint's, else its training data's. */
static int find_vocab(const char *ckpt, const config *cfg, int64_t *vocab, char *err,
                      size_t errlen) {
    if (*vocab > 0) return 0;
    int rc = ckpt_read_vocab_size(ckpt, vocab, err, errlen);
    if (rc <= 0) return rc;
    data_info info;
    char derr[1024];
    if (cfg->train_path[0] && data_inspect(cfg->train_path, &info, derr, sizeof derr) == 0) {
        *vocab = info.kind == DATA_TOKENS ? info.vocab_size : 0;
        data_info_free(&info);
        if (*vocab > 0) return 0;
    }
    return snprintf(err, errlen, "%s does not record its vocabulary size and its data.train "
                    "(%s) does not tell it: give the vocabulary size (--vocab-size N)", ckpt,
                    cfg->train_path[0] ? cfg->train_path : "none"), -1;
}

int interop_load_gpt(const char *ckpt, int64_t vocab, int64_t batch, int decode, config *cfg,
                     kern_ctx **k, model *m, char *err, size_t errlen) {
    *k = NULL;
    config_defaults(cfg);
    char *text = ckpt_read_config(ckpt, err, errlen);
    if (!text) return -1;
    int st = config_load_string(cfg, ckpt, text, strlen(text), err, errlen);
    free(text);
    if (st != 0) return -1;
    if (cfg->gpt_layers <= 0)
        return snprintf(err, errlen, "%s: not a GPT checkpoint (its config has no model.gpt)",
                        ckpt), -1;
    if (find_vocab(ckpt, cfg, &vocab, err, errlen) != 0) return -1;
    if (gpt2_build(cfg, vocab, batch, decode, k, m, err, errlen) != 0) return -1;
    ckpt_state s;
    if (ckpt_read(ckpt, m, NULL, &s, err, errlen) != CKPT_OK) {
        model_free(m);
        kern_destroy(*k);
        *k = NULL;
        return -1;
    }
    return 0;
}

static int write_config_json(const char *path, const gpt2_dims *d, char *err, size_t errlen) {
    json_t *c = json_pack("{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:n, s:f, s:f, s:f,"
                          " s:f, s:b, s:b, s:b, s:b, s:I, s:I, s:s}",
                          "architectures", "GPT2LMHeadModel", "model_type", "gpt2",
                          "n_layer", (json_int_t)d->layers, "n_head", (json_int_t)d->heads,
                          "n_embd", (json_int_t)d->dim, "n_positions", (json_int_t)d->context,
                          "vocab_size", (json_int_t)d->vocab,
                          "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
                          "n_inner", "attn_pdrop", 0.0, "embd_pdrop", 0.0, "resid_pdrop", 0.0,
                          "initializer_range", 0.02, "scale_attn_weights", 1,
                          "scale_attn_by_inverse_layer_idx", 0, "reorder_and_upcast_attn", 0,
                          "tie_word_embeddings", d->tie, "bos_token_id", (json_int_t)(d->vocab - 1),
                          "eos_token_id", (json_int_t)(d->vocab - 1), "torch_dtype", "float32");
    if (!c) return snprintf(err, errlen, "%s: out of memory", path), -1;
    int rc = json_dump_file(c, path, JSON_INDENT(2));
    json_decref(c);
    if (rc != 0) return snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno)), -1;
    return 0;
}

/* The safetensors tensors of m (host copy params): GPT-2's names and layouts; biases of a
 * model without them (model.gpt.bias=false) are written as zeros, which is the same model. */
static int export_tensors(const model *m, const config *cfg, int64_t vocab, const float *params,
                          const char *path, char *err, size_t errlen) {
    int n_out = 0, cap = m->n_tensors * 2 + 1;
    st_out *out = calloc((size_t)cap, sizeof *out);
    float **bufs = calloc((size_t)cap, sizeof *bufs);
    char (*names)[112] = calloc((size_t)cap, sizeof *names);
    int rc = -1;
    if (!out || !bufs || !names) goto oom;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (t->is_buffer) continue;
        st_out *o = &out[n_out];
        int64_t shape[4];
        o->ndim = gpt2_outside_shape(t, vocab, shape);
        memcpy(o->shape, shape, sizeof shape);
        if (!(bufs[n_out] = malloc((size_t)t->count * sizeof(float)))) goto oom;
        gpt2_convert(t, vocab, params + t->offset, bufs[n_out], 1);
        snprintf(names[n_out], sizeof names[0], "%s", t->name);
        o->name = names[n_out];
        o->data = bufs[n_out++];
        /* a linear or layer norm without bias: GPT-2 has one, zero does the same */
        size_t len = strlen(t->name);
        int is_weight = len > 7 && !strcmp(t->name + len - 7, ".weight");
        if (!cfg->gpt_bias && is_weight && !gpt2_is_vocab_rows(t->name) &&
            strcmp(t->name, "transformer.wpe.weight") != 0) {
            st_out *b = &out[n_out];
            b->ndim = 1;
            b->shape[0] = gpt2_is_conv1d(t->name) ? shape[1] : shape[0];
            if (!(bufs[n_out] = calloc((size_t)b->shape[0], sizeof(float)))) goto oom;
            snprintf(names[n_out], sizeof names[0], "%.*sbias", (int)(len - 6), t->name);
            b->name = names[n_out];
            b->data = bufs[n_out++];
        }
    }
    rc = st_write(path, out, n_out, err, errlen);
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
out:
    for (int i = 0; bufs && i < n_out + 1 && i < cap; i++) free(bufs[i]);
    free(bufs);
    free(out);
    free(names);
    return rc;
}

int interop_export_hf(const char *ckpt, const char *out_dir, int64_t vocab, char *info,
                      size_t infolen, char *err, size_t errlen) {
    config cfg;
    kern_ctx *k = NULL;
    model m;
    if (interop_load_gpt(ckpt, vocab, 1, 1, &cfg, &k, &m, err, errlen) != 0) return -1;
    gpt2_dims d = {cfg.gpt_layers, cfg.gpt_heads, cfg.gpt_dim, cfg.gpt_context, m.n_classes,
                   cfg.gpt_tie};
    float *params = malloc((size_t)m.n_params * sizeof(float) + 1);
    int rc = -1;
    char path[1200];
    if (!params) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    kern_to_host(k, params, m.params, (size_t)m.n_params * sizeof(float));
    if (make_dirs(out_dir) != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", out_dir, strerror(errno));
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    if (export_tensors(&m, &cfg, d.vocab, params, path, err, errlen) != 0) goto out;
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    if (write_config_json(path, &d, err, errlen) != 0) goto out;
    if (info) gpt2_describe(&d, &m, info, infolen);
    rc = 0;
out:
    free(params);
    model_free(&m);
    kern_destroy(k);
    return rc;
}
