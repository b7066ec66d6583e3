/* model: layer list, flat parameters, forward and backward over kernels. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *msg, int layer) {
    snprintf(err, errlen, "model.layers[%d]: %s", layer, msg);
    return -1;
}

int model_build(model *m, const config *cfg, int64_t in_features, int64_t n_classes,
                int64_t batch, kern_ctx *k, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->k = k;
    m->in_features = in_features;
    m->n_classes = n_classes;
    m->batch = batch;
    m->n_layers = cfg->n_layers;

    /* shapes and parameter offsets */
    int64_t width = in_features, max_width = in_features, off = 0;
    double flops = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        const layer_config *lc = &cfg->layers[i];
        model_layer *L = &m->layers[i];
        L->type = lc->type;
        L->in = width;
        L->out = width;
        L->w_off = L->b_off = -1;
        switch (lc->type) {
        case LAYER_LINEAR:
            if (lc->out < 1) return fail(err, errlen, "linear needs out >= 1", i);
            L->out = lc->out;
            L->bias = lc->bias;
            L->w_off = off;
            off += L->in * L->out;
            snprintf(L->w_name, sizeof L->w_name, "layers.%d.weight", i);
            if (L->bias) {
                L->b_off = off;
                off += L->out;
                snprintf(L->b_name, sizeof L->b_name, "layers.%d.bias", i);
            }
            /* forward GEMM, and in backward the dW GEMM plus the dX GEMM (skipped for the
             * first layer, which needs no input gradient) */
            flops += 2.0 * (double)L->in * (double)L->out * (i == 0 ? 2 : 3);
            break;
        case LAYER_DROPOUT:
            L->p = lc->p;
            break;
        case LAYER_FLATTEN: case LAYER_RELU: case LAYER_GELU:
            break;
        }
        width = L->out;
        if (width > max_width) max_width = width;
    }
    if (width != n_classes) {
        snprintf(err, errlen,
                 "model.layers: the last layer has %lld outputs but the dataset has %lld classes"
                 " (num_classes); set the last linear layer's out to %lld",
                 (long long)width, (long long)n_classes, (long long)n_classes);
        return -1;
    }
    m->n_params = off;
    m->flops_per_sample = flops;

    size_t pbytes = (size_t)off * sizeof(float);
    m->params = kern_alloc(k, pbytes);
    m->grads = kern_alloc(k, pbytes);
    m->act = calloc((size_t)m->n_layers + 1, sizeof(float *));
    m->losses = kern_alloc(k, (size_t)batch * sizeof(float));
    if (!m->params || !m->grads || !m->act || !m->losses) goto oom;
    m->act[0] = kern_alloc(k, (size_t)(batch * in_features) * sizeof(float));
    if (!m->act[0]) goto oom;
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        if (L->type == LAYER_FLATTEN) {
            m->act[i + 1] = m->act[i];   /* a view: same memory, same [batch, width] */
            continue;
        }
        m->act[i + 1] = kern_alloc(k, (size_t)(batch * L->out) * sizeof(float));
        if (!m->act[i + 1]) goto oom;
        if (L->type == LAYER_DROPOUT) {
            L->mask = kern_alloc(k, (size_t)(batch * L->in));
            if (!L->mask) goto oom;
        }
    }
    for (int j = 0; j < 2; j++) {
        m->dbuf[j] = kern_alloc(k, (size_t)(batch * max_width) * sizeof(float));
        if (!m->dbuf[j]) goto oom;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating the model (%lld parameters, batch %lld)",
             (long long)off, (long long)batch);
    model_free(m);
    return -1;
}

int64_t model_estimate_bytes(const config *cfg, int64_t in_features, int64_t batch,
                             int64_t *n_params) {
    /* the same walk as model_build, counting instead of allocating (floats, then bytes) */
    int64_t width = in_features, max_width = in_features, params = 0;
    int64_t act = batch * in_features, masks = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        const layer_config *lc = &cfg->layers[i];
        int64_t out = width;
        if (lc->type == LAYER_LINEAR) {
            if (lc->out < 1) return -1;
            out = lc->out;
            params += width * out + (lc->bias ? out : 0);
        }
        if (lc->type == LAYER_DROPOUT) masks += batch * width;   /* bytes */
        if (lc->type != LAYER_FLATTEN) act += batch * out;
        width = out;
        if (width > max_width) max_width = width;
    }
    *n_params = params;
    int64_t floats = 2 * params + act + 2 * batch * max_width + batch;
    return floats * (int64_t)sizeof(float) + masks;
}

void model_free(model *m) {
    if (!m->k) return;
    kern_ctx *k = m->k;
    kern_free(k, m->params);
    kern_free(k, m->grads);
    kern_free(k, m->losses);
    if (m->act) {
        kern_free(k, m->act[0]);
        for (int i = 0; i < m->n_layers; i++) {
            if (m->layers[i].type != LAYER_FLATTEN) kern_free(k, m->act[i + 1]);
            kern_free(k, m->layers[i].mask);
        }
        free(m->act);
    }
    kern_free(k, m->dbuf[0]);
    kern_free(k, m->dbuf[1]);
    memset(m, 0, sizeof *m);
}

void model_init_params(model *m, const char *init, uint64_t seed) {
    /* Each tensor gets its own Philox stream (its index), so adding a layer at the end does
     * not change the initial weights of the others. */
    int normal = strcmp(init, "normal") == 0;
    uint64_t stream = 0;
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        if (L->type != LAYER_LINEAR) continue;
        float bound = 1.0f / sqrtf((float)L->in);
        float *w = m->params + L->w_off;
        if (normal) kern_init_normal(m->k, w, L->in * L->out, 0.0f, 0.02f, seed, stream++);
        else kern_init_uniform(m->k, w, L->in * L->out, -bound, bound, seed, stream++);
        if (!L->bias) continue;
        if (normal) {
            kern_fill(m->k, m->params + L->b_off, 0.0f, L->out);
            stream++;
        } else {
            kern_init_uniform(m->k, m->params + L->b_off, L->out, -bound, bound, seed, stream++);
        }
    }
}

int model_tensors(const model *m, model_tensor *out, int max) {
    int n = 0;
    for (int i = 0; i < m->n_layers && n < max; i++) {
        const model_layer *L = &m->layers[i];
        if (L->type != LAYER_LINEAR) continue;
        out[n++] = (model_tensor){L->w_name, L->w_off, L->in * L->out, 2, {L->out, L->in}};
        if (L->bias && n < max)
            out[n++] = (model_tensor){L->b_name, L->b_off, L->out, 1, {L->out, 0}};
    }
    return n;
}

float *model_input(model *m) { return m->act[0]; }
float *model_dlogits(model *m) { return m->dbuf[0]; }

float *model_forward(model *m, int64_t B, int training, uint64_t seed, uint64_t step_id,
                     int64_t sample_base) {
    kern_ctx *k = m->k;
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        const float *in = m->act[i];
        float *out = m->act[i + 1];
        switch (L->type) {
        case LAYER_FLATTEN:
            break;
        case LAYER_LINEAR:
            kern_linear_forward(k, out, in, m->params + L->w_off,
                                L->bias ? m->params + L->b_off : NULL, (int)B, (int)L->in,
                                (int)L->out);
            break;
        case LAYER_RELU:
            kern_relu_forward(k, out, in, B * L->in);
            break;
        case LAYER_GELU:
            kern_gelu_forward(k, out, in, B * L->in);
            break;
        case LAYER_DROPOUT:
            if (!training || L->p == 0.0f) {
                kern_copy(k, out, in, B * L->in);
                break;
            }
            /* One Philox stream per (layer, step, global sample): the mask of a sample does
             * not depend on which rank holds it or how the batch was split. */
            for (int64_t b = 0; b < B; b++) {
                uint64_t stream = (step_id << 24) ^ ((uint64_t)(sample_base + b) << 6) ^
                                  (uint64_t)i;
                kern_dropout_forward(k, out + b * L->in, L->mask + b * L->in, in + b * L->in,
                                     L->in, L->p, seed ^ 0x64726f706f7574ULL, stream);
            }
            break;
        }
    }
    return m->act[m->n_layers];
}

void model_backward(model *m, int64_t B,
                    void (*on_layer_done)(void *user, int64_t param_offset), void *user) {
    kern_ctx *k = m->k;
    int cur = 0;   /* m->dbuf[cur] holds the gradient of the current layer's output */
    /* the first layer with parameters needs no input gradient */
    int first_param_layer = m->n_layers;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].type == LAYER_LINEAR) { first_param_layer = i; break; }

    for (int i = m->n_layers - 1; i >= 0; i--) {
        model_layer *L = &m->layers[i];
        float *dout = m->dbuf[cur], *din = m->dbuf[cur ^ 1];
        const float *in = m->act[i];
        int need_din = i > first_param_layer;
        switch (L->type) {
        case LAYER_FLATTEN:
            break;
        case LAYER_LINEAR:
            kern_linear_backward(k, need_din ? din : NULL, m->grads + L->w_off,
                                 L->bias ? m->grads + L->b_off : NULL, dout, in,
                                 m->params + L->w_off, (int)B, (int)L->in, (int)L->out);
            cur ^= 1;
            if (on_layer_done) on_layer_done(user, L->w_off);
            break;
        case LAYER_RELU:
            if (need_din) kern_relu_backward(k, dout, dout, in, B * L->in);
            break;
        case LAYER_GELU:
            if (need_din) kern_gelu_backward(k, dout, dout, in, B * L->in);
            break;
        case LAYER_DROPOUT:
            if (need_din && L->p > 0.0f) kern_dropout_backward(k, dout, dout, L->mask,
                                                               B * L->in, L->p);
            break;
        }
        if (i <= first_param_layer) break;   /* nothing below needs gradients */
    }
}

int model_first_nonfinite_layer(model *m, int64_t B) {
    if (kern_has_nonfinite(m->k, m->act[0], B * m->in_features)) return -1;
    for (int i = 0; i < m->n_layers; i++)
        if (kern_has_nonfinite(m->k, m->act[i + 1], B * m->layers[i].out)) return i;
    return m->n_layers;
}

int model_first_nonfinite_tensor(model *m, int grads) {
    model_tensor t[2 * CFG_MAX_LAYERS];
    int n = model_tensors(m, t, 2 * CFG_MAX_LAYERS);
    const float *base = grads ? m->grads : m->params;
    for (int i = 0; i < n; i++)
        if (kern_has_nonfinite(m->k, base + t[i].offset, t[i].count)) return i;
    return -1;
}
