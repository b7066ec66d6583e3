/* gpt2_import: HuggingFace and llm.c GPT-2 weights -> a parameters-only harness checkpoint. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpt2_common.h"
#include "interop.h"
#include "safetensors.h"

/* ---- HuggingFace: config.json ---- */

static int json_int_key(json_t *root, const char *path, const char *key, const char *alt,
                        int64_t lo, int64_t hi, int64_t *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v && alt) v = json_object_get(root, alt);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return snprintf(err, errlen, "%s: %s must be an integer in [%lld, %lld]", path, key,
                        (long long)lo, (long long)hi), -1;
    *out = json_integer_value(v);
    return 0;
}

/* GPT-2's architecture as harness builds it: anything else is refused by name. */
static int read_hf_config(const char *path, gpt2_dims *d, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line), -1;
    int rc = -1;
    int64_t layers, heads, dim, context, vocab;
    json_t *type = json_object_get(root, "model_type"), *act = json_object_get(root,
        "activation_function"), *eps = json_object_get(root, "layer_norm_epsilon"),
        *inner = json_object_get(root, "n_inner"), *tie = json_object_get(root, "tie_word_embeddings"),
        *by_layer = json_object_get(root, "scale_attn_by_inverse_layer_idx"),
        *scale = json_object_get(root, "scale_attn_weights");
    const char *act_name = json_is_string(act) ? json_string_value(act) : "gelu_new";
    if (!json_is_string(type) || strcmp(json_string_value(type), "gpt2") != 0) {
        snprintf(err, errlen, "%s: model_type is %s, not gpt2: harness imports GPT-2 models only",
                 path, json_is_string(type) ? json_string_value(type) : "missing");
    } else if (json_int_key(root, path, "n_layer", NULL, 1, 4096, &layers, err, errlen) ||
               json_int_key(root, path, "n_head", NULL, 1, 4096, &heads, err, errlen) ||
               json_int_key(root, path, "n_embd", NULL, 1, 1 << 16, &dim, err, errlen) ||
               json_int_key(root, path, "n_positions", "n_ctx", 1, 1 << 20, &context, err, errlen) ||
               json_int_key(root, path, "vocab_size", NULL, 1, 1 << 30, &vocab, err, errlen)) {
        /* err set */
    } else if (dim % heads != 0) {
        snprintf(err, errlen, "%s: n_embd %lld is not a multiple of n_head %lld", path,
                 (long long)dim, (long long)heads);
    } else if (strcmp(act_name, "gelu_new") && strcmp(act_name, "gelu_pytorch_tanh")) {
        snprintf(err, errlen, "%s: activation_function %s: harness's GELU is the tanh "
                 "approximation (gelu_new)", path, act_name);
    } else if (eps && (!json_is_number(eps) || fabs(json_number_value(eps) - 1e-5) > 1e-9)) {
        snprintf(err, errlen, "%s: layer_norm_epsilon must be 1e-5 (harness's layer norm)", path);
    } else if (inner && !json_is_null(inner) &&
               (!json_is_integer(inner) || json_integer_value(inner) != 4 * dim)) {
        snprintf(err, errlen, "%s: n_inner must be null or 4 x n_embd (%lld)", path,
                 (long long)(4 * dim));
    } else if (json_is_true(by_layer) || json_is_false(scale)) {
        snprintf(err, errlen, "%s: attention scaled otherwise than by 1/sqrt(head dim) "
                 "(scale_attn_by_inverse_layer_idx / scale_attn_weights)", path);
    } else {
        d->layers = (int)layers;
        d->heads = (int)heads;
        d->dim = (int)dim;
        d->context = (int)context;
        d->vocab = vocab;
        d->tie = !json_is_false(tie);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* The header entry of model tensor `name`: GPT2LMHeadModel's name, or GPT2Model's without
 * the "transformer." prefix. */
static const st_tensor *hf_find(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t && !strncmp(name, "transformer.", 12)) t = st_find(f, name + 12);
    return t;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Whether the file's lm_head.weight differs from its token embedding (an untied head). */
static int hf_head_untied(const st_file *f, char *err, size_t errlen) {
    const st_tensor *h = st_find(f, "lm_head.weight"), *e = hf_find(f, "transformer.wte.weight");
    if (!h || !e) return 0;
    if (h->count != e->count) return 1;
    float *a = malloc((size_t)h->count * sizeof(float)), *b = malloc((size_t)h->count * sizeof(float));
    int rc = -1;
    if (!a || !b) snprintf(err, errlen, "%s: out of memory", f->path);
    else if (st_read(f, h, a, err, errlen) == 0 && st_read(f, e, b, err, errlen) == 0)
        rc = memcmp(a, b, (size_t)h->count * sizeof(float)) != 0;
    free(a);
    free(b);
    return rc;
}

/* Every model tensor from the file (checked against config.json's shape); then anything in the
 * file that the model did not take is an error, except GPT-2's causal-mask buffers. */
static int hf_fill(const st_file *f, const model *m, int64_t vocab, float *params, char *err,
                   size_t errlen) {
    char *used = calloc((size_t)f->n + 1, 1);
    int64_t largest = 1;
    for (int i = 0; i < m->n_tensors; i++) largest = m->tensors[i].count > largest ? m->tensors[i].count : largest;
    float *buf = malloc((size_t)largest * sizeof(float));
    int rc = -1;
    if (!used || !buf) {
        snprintf(err, errlen, "%s: out of memory", f->path);
        goto out;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (t->is_buffer) continue;
        const st_tensor *s = hf_find(f, t->name);
        int64_t want[4];
        int nd = gpt2_outside_shape(t, vocab, want);
        char ws[96], gs[96];
        shape_text(ws, sizeof ws, nd, want);
        if (!s) {
            snprintf(err, errlen, "%s: no tensor %s of shape %s: not a GPT-2 model of "
                     "config.json's shape", f->path, t->name, ws);
            goto out;
        }
        used[s - f->tensors] = 1;
        int same = s->ndim == nd;
        for (int d = 0; same && d < nd; d++) same = s->shape[d] == want[d];
        if (!same) {
            shape_text(gs, sizeof gs, s->ndim, s->shape);
            snprintf(err, errlen, "%s: tensor %s is %s but config.json's GPT-2 needs %s",
                     f->path, s->name, gs, ws);
            goto out;
        }
        if (st_read(f, s, buf, err, errlen) != 0) goto out;
        gpt2_convert(t, vocab, buf, params + t->offset, 0);
    }
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[i].name;
        size_t len = strlen(name);
        int mask = (len > 10 && !strcmp(name + len - 10, ".attn.bias")) ||
                   (len > 17 && !strcmp(name + len - 17, ".attn.masked_bias"));
        if (!used[i] && !mask && strcmp(name, "lm_head.weight") != 0) {
            snprintf(err, errlen, "%s: tensor %s is not part of a GPT-2 model (another "
                     "architecture?)", f->path, name);
            goto out;
        }
    }
    rc = 0;
out:
    free(used);
    free(buf);
    return rc;
}

int interop_import_hf(const char *dir, const char *out_ckpt, char *info, size_t infolen,
                      char *err, size_t errlen) {
    char cpath[1100], spath[1100];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    snprintf(spath, sizeof spath, "%s/model.safetensors", dir);
    gpt2_dims d;
    if (read_hf_config(cpath, &d, err, errlen) != 0) return -1;
    struct stat sb;
    if (stat(spath, &sb) != 0) {
        snprintf(err, errlen, "%s: %s (harness reads safetensors; save with "
                 "save_pretrained(DIR, safe_serialization=True))", spath, strerror(errno));
        return -1;
    }
    st_file f;
    if (st_open(spath, &f, err, errlen) != 0) return -1;
    int untied = hf_head_untied(&f, err, errlen);
    if (untied < 0) {
        st_close(&f);
        return -1;
    }
    if (untied) d.tie = 0;
    config cfg;
    gpt2_config(&d, &cfg);
    kern_ctx *k = NULL;
    model m;
    float *params = NULL;
    int rc = -1;
    if (gpt2_build(&cfg, d.vocab, 1, 1, &k, &m, err, errlen) != 0) goto out;
    if (!(params = calloc((size_t)m.n_params + 1, sizeof(float)))) {
        snprintf(err, errlen, "out of memory for %lld parameters", (long long)m.n_params);
        goto out;
    }
    if (hf_fill(&f, &m, d.vocab, params, err, errlen) != 0) goto out;
    if (gpt2_write_checkpoint(out_ckpt, &cfg, &m, params, err, errlen) != 0) goto out;
    if (info) gpt2_describe(&d, &m, info, infolen);
    rc = 0;
out:
    free(params);
    if (k) model_free(&m), kern_destroy(k);
    st_close(&f);
    return rc;
}

/* ---- llm.c: gpt2_124M.bin ---- */

/* llm.c's model file: a header of 256 int32 - magic 20240326, version (3: fp32, 5: bf16),
 * max_seq_len, vocab_size, num_layers, num_heads, channels, padded_vocab_size - then every
 * parameter, layer-stacked, in this order (weights [out, in] like nn.Linear): */
#define LLMC_MAGIC 20240326
#define LLMC_TENSORS 16
static const char *const llmc_names[LLMC_TENSORS] = {
    "transformer.wte.weight", "transformer.wpe.weight", "ln_1.weight", "ln_1.bias",
    "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
    "mlp.c_proj.bias", "transformer.ln_f.weight", "transformer.ln_f.bias"};

/* Elements of each block above (the per-layer ones for all layers together). */
static void llmc_sizes(const int32_t *h, int64_t *sz) {
    int64_t T = h[2], L = h[4], C = h[6], Vp = h[7];
    int64_t s[LLMC_TENSORS] = {Vp * C, T * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C,
                               L * C, L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C,
                               L * C, C, C};
    memcpy(sz, s, sizeof s);
}

static int llmc_header(FILE *fp, const char *path, int32_t *h, gpt2_dims *d, char *err,
                       size_t errlen) {
    if (fread(h, sizeof(int32_t), 256, fp) != 256)
        return snprintf(err, errlen, "%s: shorter than llm.c's 1024-byte header", path), -1;
    if (h[0] != LLMC_MAGIC)
        return snprintf(err, errlen, "%s: magic %d is not llm.c's model file (%d)%s", path, h[0],
                        LLMC_MAGIC, h[0] == 20240520 ? "; this is a token shard: harness "
                        "convert tokens --from llmc" : ""), -1;
    if (h[1] != 3 && h[1] != 5)
        return snprintf(err, errlen, "%s: llm.c model version %d; harness reads 3 (fp32) and 5 "
                        "(bf16)", path, h[1]), -1;
    if (h[2] < 1 || h[3] < 1 || h[4] < 1 || h[5] < 1 || h[6] < 1 || h[6] % h[5] != 0 ||
        h[7] < h[3] || h[2] > (1 << 20) || h[4] > 4096 || h[6] > (1 << 16) || h[7] > (1 << 30))
        return snprintf(err, errlen, "%s: header shapes make no GPT-2 (max_seq_len %d, vocab %d, "
                        "layers %d, heads %d, channels %d, padded vocab %d)", path, h[2], h[3],
                        h[4], h[5], h[6], h[7]), -1;
    d->context = h[2];
    d->vocab = h[3];
    d->layers = h[4];
    d->heads = h[5];
    d->dim = h[6];
    d->tie = 1;
    return 0;
}

/* Reads n elements of the file's dtype into out (float32). */
static int llmc_read(FILE *fp, int bf16, float *out, int64_t n) {
    if (!bf16) return fread(out, sizeof(float), (size_t)n, fp) == (size_t)n ? 0 : -1;
    uint16_t *raw = (uint16_t *)(out + n) - n;   /* the upper half of out, widened forward */
    if (fread(raw, 2, (size_t)n, fp) != (size_t)n) return -1;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)raw[i] << 16;
        memcpy(&out[i], &bits, 4);
    }
    return 0;
}

/* Places block b of the file (buf, llm.c layout) into the model's tensors. */
static int llmc_place(const model *m, const int32_t *h, int b, const float *buf, float *params,
                      char *err, size_t errlen) {
    int L = b >= 2 && b < 14 ? h[4] : 1;
    int64_t sz[LLMC_TENSORS];
    llmc_sizes(h, sz);
    int64_t per = sz[b] / L;
    for (int l = 0; l < L; l++) {
        char name[96];
        if (b >= 2 && b < 14) snprintf(name, sizeof name, "transformer.h.%d.%s", l, llmc_names[b]);
        else snprintf(name, sizeof name, "%s", llmc_names[b]);
        const model_tensor *t = NULL;
        for (int i = 0; i < m->n_tensors && !t; i++)
            if (!strcmp(m->tensors[i].name, name)) t = &m->tensors[i];
        if (!t) return snprintf(err, errlen, "the model has no tensor %s", name), -1;
        if (b == 0) {   /* the token embedding: llm.c pads to h[7] rows, harness to 64 */
            gpt2_convert(t, h[3], buf, params + t->offset, 0);
        } else if (per != t->count) {
            return snprintf(err, errlen, "tensor %s: %lld elements in the file, %lld in the model",
                            name, (long long)per, (long long)t->count), -1;
        } else {
            memcpy(params + t->offset, buf + (int64_t)l * per, (size_t)per * sizeof(float));
        }
    }
    return 0;
}

int interop_import_llmc(const char *path, const char *out_ckpt, char *info, size_t infolen,
                        char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1;
    int32_t h[256];
    gpt2_dims d;
    struct stat sb;
    if (llmc_header(fp, path, h, &d, err, errlen) != 0 || fstat(fileno(fp), &sb) != 0) {
        fclose(fp);
        return -1;
    }
    int bf16 = h[1] == 5;
    int64_t sz[LLMC_TENSORS], total = 0, largest = 0;
    llmc_sizes(h, sz);
    for (int b = 0; b < LLMC_TENSORS; b++) {
        total += sz[b];
        largest = sz[b] > largest ? sz[b] : largest;
    }
    int64_t want = 1024 + total * (bf16 ? 2 : 4);
    if ((int64_t)sb.st_size != want) {
        snprintf(err, errlen, "%s: %lld bytes, but its header's shapes need %lld (%s)", path,
                 (long long)sb.st_size, (long long)want,
                 sb.st_size < want ? "truncated?" : "not llm.c's layout?");
        fclose(fp);
        return -1;
    }
    config cfg;
    gpt2_config(&d, &cfg);
    kern_ctx *k = NULL;
    model m;
    float *params = NULL, *buf = NULL;
    int rc = -1;
    if (gpt2_build(&cfg, d.vocab, 1, 1, &k, &m, err, errlen) != 0) goto out;
    params = calloc((size_t)m.n_params + 1, sizeof(float));
    buf = malloc((size_t)largest * sizeof(float));
    if (!params || !buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int b = 0; b < LLMC_TENSORS; b++) {
        if (llmc_read(fp, bf16, buf, sz[b]) != 0) {
            snprintf(err, errlen, "%s: cannot read tensor %s", path, llmc_names[b]);
            goto out;
        }
        if (llmc_place(&m, h, b, buf, params, err, errlen) != 0) goto out;
    }
    if (gpt2_write_checkpoint(out_ckpt, &cfg, &m, params, err, errlen) != 0) goto out;
    if (info) gpt2_describe(&d, &m, info, infolen);
    rc = 0;
out:
    free(params);
    free(buf);
    if (k) model_free(&m), kern_destroy(k);
    fclose(fp);
    return rc;
}
