/* model: the layer list, flat parameters, forward and backward over the layer table.
 *
 * plan() walks the layer configs once (the explicit model.layers, or a preset expanded by
 * gpt.c) and lets every layer fix its shapes, parameters and memory; model_build allocates
 * what was planned and model_estimate_bytes only adds it up. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt.h"
#include "layer.h"
#include "trace.h"

int plan_fail(char *err, size_t errlen, const model_layer *L, const char *fmt, ...) {
    int n = snprintf(err, errlen, "model.layers[%d]: ", L->index);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen) vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static model_tensor *new_tensor(model_plan *p) {
    model *m = p->m;
    if (m->n_tensors == p->cap_tensors) {
        int cap = p->cap_tensors ? 2 * p->cap_tensors : 64;
        model_tensor *t = realloc(m->tensors, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        m->tensors = t;
        p->cap_tensors = cap;
    }
    model_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    return t;
}

static void tensor_name(char *out, size_t n, const model_layer *L, const char *suffix) {
    if (L->cfg.name[0]) snprintf(out, n, "%s.%s", L->cfg.name, suffix);
    else snprintf(out, n, "layers.%d.%s", L->index, suffix);
}

int64_t plan_param(model_plan *p, model_layer *L, const char *suffix, int ndim,
                   const int64_t *dims, model_init_kind init, float init_a, int is_bias) {
    model_tensor *t = new_tensor(p);
    if (!t) return -1;
    tensor_name(t->name, sizeof t->name, L, suffix);
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->dims[d] = dims[d];
        t->count *= dims[d];
    }
    t->offset = p->m->n_params;
    t->init = init;
    t->init_a = init_a;
    t->is_bias = is_bias;
    t->decay = ndim >= 2 || p->decay_vectors;
    t->init_count = t->count;
    p->m->n_params += t->count;
    if (L->param_off < 0) L->param_off = t->offset;
    return t->offset;
}

int64_t plan_buffer(model_plan *p, model_layer *L, const char *suffix, int64_t count) {
    model_tensor *t = new_tensor(p);
    if (!t) return -1;
    tensor_name(t->name, sizeof t->name, L, suffix);
    t->is_buffer = 1;
    t->init = INIT_ZERO;
    t->ndim = 1;
    t->dims[0] = t->count = count;
    t->offset = p->m->n_buffers;
    t->init_count = count;
    p->m->n_buffers += count;
    return t->offset;
}

int plan_memory(model_plan *p, void **where, size_t bytes) {
    p->memory_bytes += (int64_t)bytes;
    if (p->n_alloc_requests == p->cap_alloc_requests) {
        int cap = p->cap_alloc_requests ? 2 * p->cap_alloc_requests : 64;
        struct plan_alloc *r = realloc(p->alloc_requests, (size_t)cap * sizeof *r);
        if (!r) return -1;
        p->alloc_requests = r;
        p->cap_alloc_requests = cap;
    }
    p->alloc_requests[p->n_alloc_requests++] = (struct plan_alloc){where, bytes};
    return 0;
}

void plan_scratch(model_plan *p, size_t bytes) {
    if (bytes > p->workspace) p->workspace = bytes;
}

void plan_gpt_scratch(model_plan *p, int64_t T, int64_t C, int64_t NH, int64_t V) {
    int64_t B = p->batch;
    if (p->k) {
        plan_scratch(p, kern_gpt_workspace(p->k, (int)B, (int)T, (int)C, (int)NH, (int)V));
        return;
    }
    /* without a backend, the sum of what either backend asks for bounds it: attention's
     * per-row D [B,NH,T] (CUDA) and two [T,T]-bounded row strips (CPU); layer norm's per-chunk
     * partial sums (chunks of 256 rows) and a row's xhat, dxhat; the embedding's sort */
    int64_t floats = B * NH * T + 2 * T * T + ((B * T + 255) / 256 + 1) * 2 * C + 2 * C * 64;
    plan_scratch(p, (size_t)floats * 4 + (size_t)(B * T) * 16 + (size_t)V * 8);
}

/* The layer configs of the model: the explicit list, or the preset's expansion (malloc'd). */
static int model_layer_configs(const config *cfg, const model_input_desc *in,
                               layer_config **out, int *n, char *err, size_t errlen) {
    if (cfg->gpt_layers > 0) return gpt_expand(cfg, in, out, n, err, errlen);
    *out = malloc((size_t)cfg->n_layers * sizeof **out);
    if (!*out) return snprintf(err, errlen, "out of memory"), -1;
    memcpy(*out, cfg->layers, (size_t)cfg->n_layers * sizeof **out);
    *n = cfg->n_layers;
    return 0;
}

static void plan_release(model_plan *p) {
    free(p->alloc_requests);
    p->alloc_requests = NULL;
}

static void free_layers(model *m) {
    for (int i = 0; i < m->n_layers; i++) free(m->layers[i].state);
    free(m->layers);
    free(m->tensors);
    m->layers = NULL;
    m->tensors = NULL;
}

/* A linear followed by relu or gelu becomes one op (see model_layer.fused_act).  Not when
 * the activation is the last layer: its output is the logits, which the loss overwrites
 * with their gradient before relu's backward would read them. */
static void fuse_activations(model *m) {
    for (int i = 0; i + 2 < m->n_layers; i++) {
        model_layer *L = &m->layers[i], *A = &m->layers[i + 1];
        if (L->type != LAYER_LINEAR || (A->type != LAYER_RELU && A->type != LAYER_GELU))
            continue;
        L->fused_act = A->type == LAYER_RELU ? KERN_ACT_RELU : KERN_ACT_GELU;
        A->fused = 1;
    }
}

/* Which gradients model_zero_grads must fill: walking the layers in backward order, the
 * first layer to write a tensor decides (it overwrites, or it adds to zeros).  The tensors
 * that need zeros are covered by one range (one fill); none when every first writer
 * overwrites. */
static void plan_zeroing(model *m) {
    int nt = m->n_tensors;
    char *seen = calloc((size_t)(nt ? nt : 1), 1), *zero = calloc((size_t)(nt ? nt : 1), 1);
    m->zero_off = 0;
    m->zero_count = m->n_params;   /* without memory for the walk: zero everything */
    if (!seen || !zero) goto done;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const model_layer *L = &m->layers[i];
        int64_t own_end = m->n_params;
        for (int j = i + 1; j < m->n_layers; j++)
            if (m->layers[j].param_off >= 0) { own_end = m->layers[j].param_off; break; }
        for (int t = 0; t < nt; t++) {
            const model_tensor *T = &m->tensors[t];
            if (T->is_buffer || seen[t]) continue;
            int own = L->param_off >= 0 && T->offset >= L->param_off && T->offset < own_end;
            int shared = L->shared_count > 0 && T->offset >= L->shared_off &&
                         T->offset < L->shared_off + L->shared_count;
            if (!own && !shared) continue;
            seen[t] = 1;
            zero[t] = !L->overwrites;
        }
    }
    int64_t lo = -1, hi = -1;
    for (int t = 0; t < nt; t++) {
        const model_tensor *T = &m->tensors[t];
        if (T->is_buffer || !(zero[t] || !seen[t])) continue;
        if (lo < 0 || T->offset < lo) lo = T->offset;
        if (T->offset + T->count > hi) hi = T->offset + T->count;
    }
    m->zero_off = lo < 0 ? 0 : lo;
    m->zero_count = lo < 0 ? 0 : hi - lo;
done:
    free(seen);
    free(zero);
}

void model_zero_grads(model *m) {
    if (m->zero_count > 0) kern_fill(m->k, m->grads + m->zero_off, 0.0f, m->zero_count);
    m->grads_unset = 1;
}

static int plan(model *m, const config *cfg, const model_input_desc *in, int64_t batch,
                int decode, kern_ctx *k, model_plan *p, char *err, size_t errlen) {
    p->m = m;
    p->k = k;
    p->batch = batch;
    p->decode = decode;
    p->open_block = p->embedding = -1;
    p->decay_vectors = cfg->gpt_layers == 0;
    p->vocab = in->tokens ? in->n_classes : 0;
    p->vocab_padded = (p->vocab + 63) / 64 * 64;
    m->input_desc = *in;
    m->n_classes = in->n_classes;
    m->batch = batch;
    m->decode = decode;
    layer_config *lcs = NULL;
    int n = 0;
    if (model_layer_configs(cfg, in, &lcs, &n, err, errlen) != 0) return -1;
    m->n_layers = n;
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!m->layers) {
        free(lcs);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    /* dataset samples: [D] -> (D,1,1); [H,W] -> (1,H,W); [H,W,C] -> (C,H,W) (converted);
     * tokens: [T] positions of one id each */
    model_shape s = {1, 1, 1, 1};
    const int64_t *d = in->sample_shape;
    if (in->tokens) s.t = d[0];
    else if (in->sample_ndim == 1) s.c = d[0];
    else if (in->sample_ndim == 2) { s.h = d[0]; s.w = d[1]; }
    else { s.h = d[0]; s.w = d[1]; s.c = d[2]; }
    m->input = s;
    m->in_features = shape_size(s);
    if (in->tokens && lcs[0].type != LAYER_EMBEDDING) {
        free(lcs);
        snprintf(err, errlen, "model.layers[0]: the dataset holds tokens, so the first layer "
                 "must be an embedding (or use the model.gpt preset)");
        return -1;
    }
    double flops = 0;
    int seen_params = 0;
    for (int i = 0; i < n; i++) {
        model_layer *L = &m->layers[i];
        L->cfg = lcs[i];
        L->type = lcs[i].type;
        L->index = i;
        L->ops = layer_table[L->type];
        L->in = L->out = s;
        L->param_off = -1;
        L->view = L->ops->view;
        if (L->type == LAYER_EMBEDDING && !in->tokens) {
            free(lcs);
            return plan_fail(err, errlen, L, "an embedding takes token ids, but the dataset "
                             "holds %s", "images or vectors");
        }
        if (L->ops->plan(L, p, err, errlen) != 0) {
            free(lcs);
            return -1;
        }
        int has_params = L->param_off >= 0;
        flops += L->flops_fwd + L->flops_bwd_w + (seen_params ? L->flops_bwd_in : 0);
        seen_params |= has_params;
        if (!L->view) p->act_floats += batch * shape_size(L->out);
        if (shape_size(L->in) > p->max_dfeatures) p->max_dfeatures = shape_size(L->in);
        if (i < n - 1 && shape_size(L->out) > p->max_dfeatures)
            p->max_dfeatures = shape_size(L->out);
        s = L->out;
    }
    free(lcs);
    /* parameters are laid out layer by layer: a layer's own run ends where the next one's begins */
    for (int i = 0, next = -1; i < n; i++) {
        model_layer *L = &m->layers[i];
        if (L->param_off < 0) continue;
        for (next = i + 1; next < n && m->layers[next].param_off < 0; next++) {}
        L->param_count = (next < n ? m->layers[next].param_off : m->n_params) - L->param_off;
    }
    fuse_activations(m);
    const model_layer *last = &m->layers[n - 1];
    m->rows_per_sample = last->out.t;
    m->out_ld = shape_features(last->out);
    if (in->tokens ? last->type != LAYER_LM_HEAD : shape_size(s) != in->n_classes) {
        if (in->tokens)
            snprintf(err, errlen, "model.layers: a language model ends with an lm_head layer "
                     "(its outputs are the vocabulary)");
        else
            snprintf(err, errlen,
                     "model.layers: the last layer has %lld outputs but the dataset has %lld "
                     "classes (num_classes); set the last linear layer's out to %lld",
                     (long long)shape_size(s), (long long)in->n_classes,
                     (long long)in->n_classes);
        return -1;
    }
    m->flops_per_sample = flops;
    if (!in->tokens) p->act_floats += batch * m->in_features;
    /* parameters first, then buffers, each in declaration order */
    model_tensor *sorted = malloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof *sorted);
    if (!sorted) return snprintf(err, errlen, "out of memory"), -1;
    int j = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_tensors; i++)
            if (m->tensors[i].is_buffer == pass) sorted[j++] = m->tensors[i];
    free(m->tensors);
    m->tensors = sorted;
    plan_zeroing(m);
    return 0;
}

static int64_t planned_bytes(const model *m, const model_plan *p) {
    int64_t floats = 2 * m->n_params + m->n_buffers + p->act_floats +
                     2 * m->batch * p->max_dfeatures + m->batch * m->rows_per_sample;
    int64_t tokens = m->input_desc.tokens ? m->batch * m->input.t * 4 : 0;
    return floats * 4 + tokens + p->memory_bytes + (int64_t)p->workspace;
}

int64_t model_estimate_bytes(const config *cfg, const model_input_desc *in, int64_t batch,
                             int64_t *n_params) {
    model *m = calloc(1, sizeof *m);
    model_plan p;
    memset(&p, 0, sizeof p);
    char err[256];
    int64_t bytes = -1;
    if (m && plan(m, cfg, in, batch, 0, NULL, &p, err, sizeof err) == 0) {
        *n_params = m->n_params;
        bytes = planned_bytes(m, &p);
    }
    plan_release(&p);
    if (m) free_layers(m);
    free(m);
    return bytes;
}

static void *track(model *m, void *ptr) {
    if (!ptr) return NULL;
    void **a = realloc(m->allocs, (size_t)(m->n_allocs + 1) * sizeof *a);
    if (!a) {
        kern_free(m->k, ptr);
        return NULL;
    }
    m->allocs = a;
    m->allocs[m->n_allocs++] = ptr;
    return ptr;
}

static void *alloc_tracked(model *m, kern_ctx *k, size_t bytes) {
    void *p = track(m, kern_alloc(k, bytes ? bytes : 4));
    if (p) m->allocated_bytes += (int64_t)bytes;
    return p;
}

#define ALLOC(ptr, bytes)                                                   \
    do {                                                                    \
        if (!((ptr) = alloc_tracked(m, k, (size_t)(bytes)))) goto oom;      \
    } while (0)

int model_build(model *m, const config *cfg, const model_input_desc *in, int64_t batch,
                int decode, kern_ctx *k, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    model_plan p;
    memset(&p, 0, sizeof p);
    if (plan(m, cfg, in, batch, decode, k, &p, err, errlen) != 0) {
        plan_release(&p);
        free_layers(m);
        memset(m, 0, sizeof *m);
        return -1;
    }
    m->k = k;
    ALLOC(m->params, m->n_params * 4);
    ALLOC(m->grads, m->n_params * 4);
    if (m->n_buffers) ALLOC(m->buffers, m->n_buffers * 4);
    ALLOC(m->losses, batch * m->rows_per_sample * 4);
    if (p.workspace) ALLOC(m->workspace, p.workspace);
    if (!(m->act = calloc((size_t)m->n_layers + 1, sizeof(float *)))) goto oom;
    if (p.max_channels && !(m->host_sums = calloc((size_t)(2 * p.max_channels + 1), sizeof(double))))
        goto oom;
    if (in->tokens) ALLOC(m->tokens, batch * m->input.t * 4);
    else ALLOC(m->act[0], batch * m->in_features * 4);
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        if (L->view) m->act[i + 1] = m->act[i];
        else ALLOC(m->act[i + 1], batch * shape_size(L->out) * 4);
    }
    for (int i = 0; i < p.n_alloc_requests; i++)
        ALLOC(*p.alloc_requests[i].where, p.alloc_requests[i].bytes);
    for (int j = 0; j < 2; j++) ALLOC(m->dbuf[j], batch * p.max_dfeatures * 4);
    plan_release(&p);
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating the model (%lld parameters, batch %lld)",
             (long long)m->n_params, (long long)batch);
    plan_release(&p);
    model_free(m);
    return -1;
}

void model_free(model *m) {
    for (int i = 0; i < m->n_allocs; i++) kern_free(m->k, m->allocs[i]);
    free(m->allocs);
    free(m->act);
    free(m->host_sums);
    free_layers(m);
    memset(m, 0, sizeof *m);
}

void model_move_grads(model *m, float *g) {
    if (g == m->grads) return;
    kern_copy(m->k, g, m->grads, m->n_params);
    for (int i = 0; i < m->n_allocs; i++) {
        if (m->allocs[i] != m->grads) continue;
        kern_free(m->k, m->allocs[i]);
        m->allocs[i] = m->allocs[--m->n_allocs];
        m->allocated_bytes -= m->n_params * 4;
        break;
    }
    m->grads = g;
}

void model_init_params(model *m, const char *init, uint64_t seed) {
    /* Each tensor gets its own Philox stream (its index), so adding a layer at the end does
     * not change the initial weights of the others. */
    int normal = strcmp(init, "normal") == 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *x = (t->is_buffer ? m->buffers : m->params) + t->offset;
        uint64_t stream = (uint64_t)i;
        switch (t->init) {
        case INIT_ONE: kern_fill(m->k, x, 1.0f, t->count); break;
        case INIT_ZERO: kern_fill(m->k, x, 0.0f, t->count); break;
        case INIT_NORMAL:
            kern_init_normal(m->k, x, t->init_count, 0.0f, t->init_a, seed, stream);
            break;
        case INIT_FANIN:
            if (normal && t->is_bias) kern_fill(m->k, x, 0.0f, t->init_count);
            else if (normal) kern_init_normal(m->k, x, t->init_count, 0.0f, 0.02f, seed, stream);
            else kern_init_uniform(m->k, x, t->init_count, -t->init_a, t->init_a, seed, stream);
            break;
        }
        if (t->init_count < t->count) kern_fill(m->k, x + t->init_count, 0.0f, t->count - t->init_count);
    }
}

float *model_input(model *m) { return m->act[0]; }
int32_t *model_input_tokens(model *m) { return m->tokens; }
float *model_dlogits(model *m) { return m->act[m->n_layers]; }
int model_is_lm(const model *m) { return m->input_desc.tokens; }
int64_t model_rows(const model *m, int64_t samples) { return samples * m->rows_per_sample; }

static float *forward_pass(model *m, const model_pass *base) {
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        model_pass a = *base;
        a.T = base->decode ? 1 : L->in.t;
        if (L->view || L->fused) continue;
        const char *what = L->fused_act == KERN_ACT_RELU   ? "linear+relu"
                           : L->fused_act == KERN_ACT_GELU ? "linear+gelu"
                                                           : layer_type_name(L->type);
        if (m->params_needed && L->param_off >= 0)
            m->params_needed(m->params_user, L->param_off, L->param_count);
        if (m->params_needed && L->shared_count > 0)
            m->params_needed(m->params_user, L->shared_off, L->shared_count);
        int span = trace_compute_begin(m->trace, "forward", what, i);
        L->ops->forward(m, L, &a);
        trace_compute_end(m->trace, span);
    }
    return m->act[m->n_layers];
}

float *model_forward(model *m, int64_t B, int training, uint64_t seed, uint64_t step_id,
                     int64_t sample_base) {
    model_pass a = {0};
    a.B = B;
    a.training = training;
    a.seed = seed;
    a.step_id = step_id;
    a.sample_base = sample_base;
    return forward_pass(m, &a);
}

float *model_decode_step(model *m, int64_t B, int64_t pos) {
    model_pass a = {0};
    a.B = B;
    a.decode = 1;
    a.pos = pos;
    return forward_pass(m, &a);
}

void model_backward(model *m, int64_t B,
                    void (*on_layer_done)(void *user, int64_t param_offset), void *user) {
    /* the first layer with parameters needs no input gradient, and nothing below it runs */
    int first_param_layer = m->n_layers;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].param_off >= 0) { first_param_layer = i; break; }
    float *dout = model_dlogits(m);   /* the gradient of the current layer's output */
    for (int i = m->n_layers - 1; i >= 0; i--) {
        model_layer *L = &m->layers[i];
        model_pass a = {0};
        a.B = B;
        a.T = L->in.t;
        a.training = 1;
        a.overwrite = m->grads_unset;
        float *din = dout == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0];
        int span = trace_compute_begin(m->trace, "backward", layer_type_name(L->type), i);
        if (L->ops->backward(m, L, &a, dout, din, i > first_param_layer)) dout = din;
        trace_compute_end(m->trace, span);
        if (L->param_off >= 0 && on_layer_done) on_layer_done(user, L->param_off);
        if (i <= first_param_layer) break;
    }
    m->grads_unset = 0;
}

int model_first_nonfinite_layer(model *m, int64_t B) {
    if (m->act[0] && kern_has_nonfinite(m->k, m->act[0], B * m->in_features)) return -1;
    for (int i = 0; i < m->n_layers; i++) {
        /* a linear fused with relu writes only the relu's output: non-finite values there
         * came from the linear (relu makes none) */
        int skip = m->layers[i].fused_act == KERN_ACT_RELU;
        if (kern_has_nonfinite(m->k, m->act[i + 1 + skip], B * shape_size(m->layers[i].out)))
            return i;
    }
    return m->n_layers;
}

int model_first_nonfinite_tensor(model *m, const float *base) {
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (!t->is_buffer && kern_has_nonfinite(m->k, base + t->offset, t->count)) return i;
    }
    return -1;
}
