/* model: layer list, flat parameters, forward and backward over kernels.
 *
 * plan() walks the config once and fixes every shape, parameter offset and buffer size;
 * model_build allocates what it planned and model_estimate_bytes only adds it up. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, int layer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int layer, const char *fmt, ...) {
    int n = snprintf(err, errlen, "model.layers[%d]: ", layer);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen) vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int64_t features(model_shape s) { return s.c * s.h * s.w; }

/* What plan() found, for allocation and estimates. */
typedef struct {
    int64_t act_floats;       /* every activation buffer that is not a view */
    int64_t max_features;     /* widest activation: sizes the gradient ping-pong buffers */
    int64_t max_channels;     /* widest batch norm */
    int64_t mask_bytes, argmax_ints, bn_floats, bn_doubles, skip_floats, proj_floats;
    size_t workspace;         /* largest conv workspace */
} plan_totals;

static void name_param(model_layer *L, int i, const char *w, const char *b) {
    snprintf(L->w_name, sizeof L->w_name, "layers.%d.%s", i, w);
    snprintf(L->b_name, sizeof L->b_name, "layers.%d.%s", i, b);
}

/* Conv / pool geometry for a layer whose input is `in` (B is set per call). */
static kern_conv_shape conv_geometry(model_shape in, int k_out, int kernel, int stride,
                                     int padding, int dilation, int groups) {
    kern_conv_shape s;
    memset(&s, 0, sizeof s);
    s.B = 1;
    s.C = (int)in.c;
    s.H = (int)in.h;
    s.W = (int)in.w;
    s.K = k_out;
    s.R = s.S = kernel;
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = padding;
    s.dil_h = s.dil_w = dilation;
    s.groups = groups;
    return s;
}

static int plan(model *m, const config *cfg, const int64_t *sample_shape, int sample_ndim,
                int64_t n_classes, int64_t batch, kern_ctx *k, plan_totals *t, char *err,
                size_t errlen) {
    memset(t, 0, sizeof *t);
    m->n_layers = cfg->n_layers;
    m->n_classes = n_classes;
    m->batch = batch;
    /* dataset samples: [D] -> (D,1,1); [H,W] -> (1,H,W); [H,W,C] -> (C,H,W) (converted) */
    model_shape in = {1, 1, 1};
    if (sample_ndim == 1) in.c = sample_shape[0];
    else if (sample_ndim == 2) { in.h = sample_shape[0]; in.w = sample_shape[1]; }
    else { in.h = sample_shape[0]; in.w = sample_shape[1]; in.c = sample_shape[2]; }
    m->input = in;
    m->in_features = features(in);
    t->max_features = features(in);

    int64_t off = 0, boff = 0;
    double flops = 0;
    int seen_params = 0, open_block = -1;
    for (int i = 0; i < cfg->n_layers; i++) {
        const layer_config *lc = &cfg->layers[i];
        model_layer *L = &m->layers[i];
        memset(L, 0, sizeof *L);
        L->type = lc->type;
        L->in = in;
        L->out = in;
        L->w_off = L->b_off = L->rm_off = L->rv_off = -1;
        L->block_start = -1;
        int spatial = lc->type == LAYER_CONV2D || lc->type == LAYER_MAXPOOL2D ||
                      lc->type == LAYER_AVGPOOL2D || lc->type == LAYER_GLOBAL_AVGPOOL ||
                      lc->type == LAYER_BATCHNORM2D;
        if (spatial && sample_ndim == 3 && m->input.c > 1)
            return fail(err, errlen, i, "%s on channels-last images [N,H,W,C] with C = %lld is "
                        "not supported yet (store them as [N,H,W] per channel, or use linear "
                        "layers)", layer_type_name(lc->type), (long long)m->input.c);
        if (spatial && in.h * in.w == 1 && lc->type != LAYER_BATCHNORM2D &&
            lc->type != LAYER_GLOBAL_AVGPOOL)
            return fail(err, errlen, i, "%s needs an image input [C,H,W], but its input is a "
                        "vector of %lld features", layer_type_name(lc->type),
                        (long long)features(in));
        double layer_flops = 0;   /* forward multiply-adds x 2 */
        switch (lc->type) {
        case LAYER_LINEAR:
            L->out = (model_shape){lc->out, 1, 1};
            L->bias = lc->bias;
            L->w_off = off;
            off += features(in) * lc->out;
            if (L->bias) {
                L->b_off = off;
                off += lc->out;
            }
            name_param(L, i, "weight", "bias");
            layer_flops = 2.0 * (double)features(in) * (double)lc->out;
            break;
        case LAYER_CONV2D: {
            if (in.c % lc->groups != 0 || lc->out % lc->groups != 0)
                return fail(err, errlen, i, "groups %d must divide the input channels (%lld) and "
                            "out (%d)", lc->groups, (long long)in.c, lc->out);
            L->conv = conv_geometry(in, lc->out, lc->kernel, lc->stride, lc->padding,
                                    lc->dilation, lc->groups);
            int P = kern_conv_out_h(&L->conv), Q = kern_conv_out_w(&L->conv);
            if (P <= 0 || Q <= 0)
                return fail(err, errlen, i, "a %dx%d kernel (dilation %d, padding %d) does not "
                            "fit its %lldx%lld input", lc->kernel, lc->kernel, lc->dilation,
                            lc->padding, (long long)in.h, (long long)in.w);
            L->out = (model_shape){lc->out, P, Q};
            L->bias = lc->bias;
            L->w_off = off;
            off += (int64_t)lc->out * (in.c / lc->groups) * lc->kernel * lc->kernel;
            if (L->bias) {
                L->b_off = off;
                off += lc->out;
            }
            name_param(L, i, "weight", "bias");
            kern_conv_shape q = L->conv;   /* workspaces grow with the batch (cuDNN) */
            q.B = (int)batch;
            size_t ws = k ? kern_conv2d_workspace(k, &q) : 0;
            if (ws > t->workspace) t->workspace = ws;
            layer_flops = 2.0 * (double)lc->out * (double)(in.c / lc->groups) * lc->kernel *
                          lc->kernel * P * Q;
            break;
        }
        case LAYER_MAXPOOL2D:
        case LAYER_AVGPOOL2D: {
            if (lc->padding * 2 > lc->kernel)
                return fail(err, errlen, i, "padding %d is more than half the %d-wide window",
                            lc->padding, lc->kernel);
            L->conv = conv_geometry(in, (int)in.c, lc->kernel, lc->stride, lc->padding, 1, 1);
            int P = kern_conv_out_h(&L->conv), Q = kern_conv_out_w(&L->conv);
            if (P <= 0 || Q <= 0)
                return fail(err, errlen, i, "a %dx%d window does not fit its %lldx%lld input",
                            lc->kernel, lc->kernel, (long long)in.h, (long long)in.w);
            L->out = (model_shape){in.c, P, Q};
            if (lc->type == LAYER_MAXPOOL2D) t->argmax_ints += batch * features(L->out);
            break;
        }
        case LAYER_GLOBAL_AVGPOOL:
            L->conv = conv_geometry(in, (int)in.c, 1, 1, 0, 1, 1);
            L->conv.R = (int)in.h;
            L->conv.S = (int)in.w;
            L->out = (model_shape){in.c, 1, 1};
            break;
        case LAYER_BATCHNORM2D:
            L->eps = lc->eps;
            L->momentum = lc->momentum;
            L->sync = lc->sync;
            L->bias = 1;
            L->w_off = off;
            L->b_off = off + in.c;
            off += 2 * in.c;
            name_param(L, i, "weight", "bias");
            L->rm_off = boff;
            L->rv_off = boff + in.c;
            boff += 2 * in.c;
            snprintf(L->rm_name, sizeof L->rm_name, "layers.%d.running_mean", i);
            snprintf(L->rv_name, sizeof L->rv_name, "layers.%d.running_var", i);
            t->bn_floats += 2 * in.c;
            t->bn_doubles += 2 * in.c + 1;
            if (in.c > t->max_channels) t->max_channels = in.c;
            layer_flops = 8.0 * (double)features(in);
            break;
        case LAYER_DROPOUT:
            L->p = lc->p;
            t->mask_bytes += batch * features(in);
            break;
        case LAYER_RESIDUAL_START:
            open_block = i;
            t->skip_floats += batch * features(in);
            break;
        case LAYER_RESIDUAL_END: {
            if (open_block < 0) return fail(err, errlen, i, "residual_end without residual_start");
            L->block_start = open_block;
            model_shape skip = m->layers[open_block].in;
            open_block = -1;
            L->project = lc->project;
            if (!lc->project) {
                if (skip.c != in.c || skip.h != in.h || skip.w != in.w)
                    return fail(err, errlen, i, "the block changes the shape from [%lld,%lld,%lld] "
                                "to [%lld,%lld,%lld]; set project: true on this residual_end "
                                "(a 1x1 convolution on the shortcut)", (long long)skip.c,
                                (long long)skip.h, (long long)skip.w, (long long)in.c,
                                (long long)in.h, (long long)in.w);
                break;
            }
            if (in.h < 1 || skip.h % in.h != 0 || skip.w % in.w != 0 ||
                skip.h / in.h != skip.w / in.w)
                return fail(err, errlen, i, "cannot project the shortcut [%lld,%lld,%lld] onto "
                            "[%lld,%lld,%lld] with a strided 1x1 convolution", (long long)skip.c,
                            (long long)skip.h, (long long)skip.w, (long long)in.c,
                            (long long)in.h, (long long)in.w);
            int stride = (int)(skip.h / in.h);
            L->conv = conv_geometry(skip, (int)in.c, 1, stride, 0, 1, 1);
            L->bias = 1;
            L->w_off = off;
            off += in.c * skip.c;
            L->b_off = off;
            off += in.c;
            name_param(L, i, "shortcut.weight", "shortcut.bias");
            kern_conv_shape q = L->conv;
            q.B = (int)batch;
            size_t ws = k ? kern_conv2d_workspace(k, &q) : 0;
            if (ws > t->workspace) t->workspace = ws;
            t->proj_floats += batch * features(in);
            layer_flops = 2.0 * (double)in.c * (double)skip.c * in.h * in.w;
            break;
        }
        case LAYER_FLATTEN:
            L->out = (model_shape){features(in), 1, 1};
            break;
        case LAYER_RELU: case LAYER_GELU: case LAYER_TYPE_COUNT:
            break;
        }
        /* forward, then backward: the weight gradient and (except for the first layer with
         * parameters, which needs no input gradient) the input gradient */
        int has_params = L->w_off >= 0;
        flops += layer_flops * (has_params ? (seen_params ? 3 : 2) : 1);
        seen_params |= has_params;
        int view = lc->type == LAYER_FLATTEN || lc->type == LAYER_RESIDUAL_START;
        if (!view) t->act_floats += batch * features(L->out);
        in = L->out;
        if (features(in) > t->max_features) t->max_features = features(in);
    }
    if (features(in) != n_classes) {
        snprintf(err, errlen,
                 "model.layers: the last layer has %lld outputs but the dataset has %lld classes"
                 " (num_classes); set the last linear layer's out to %lld",
                 (long long)features(in), (long long)n_classes, (long long)n_classes);
        return -1;
    }
    m->n_params = off;
    m->n_buffers = boff;
    m->flops_per_sample = flops;
    t->act_floats += batch * m->in_features;
    return 0;
}

static int64_t plan_bytes(const model *m, const plan_totals *t) {
    int64_t floats = 2 * m->n_params + m->n_buffers + t->act_floats +
                     2 * m->batch * t->max_features + m->batch + t->bn_floats + t->skip_floats +
                     t->proj_floats;
    return floats * 4 + t->mask_bytes + t->argmax_ints * 4 + t->bn_doubles * 8 +
           (int64_t)t->workspace;
}

int64_t model_estimate_bytes(const config *cfg, const int64_t *sample_shape, int sample_ndim,
                             int64_t n_classes, int64_t batch, int64_t *n_params) {
    model *m = calloc(1, sizeof *m);
    plan_totals t;
    char err[256];
    int64_t bytes = -1;
    if (m && plan(m, cfg, sample_shape, sample_ndim, n_classes, batch, NULL, &t, err,
                  sizeof err) == 0) {
        /* conv workspaces are not known without a backend: one im2col image per conv layer
         * bounds them (C*R*S*P*Q floats) */
        for (int i = 0; i < m->n_layers; i++) {
            const model_layer *L = &m->layers[i];
            if (L->type == LAYER_CONV2D || (L->type == LAYER_RESIDUAL_END && L->project)) {
                size_t ws = (size_t)L->conv.C * L->conv.R * L->conv.S * features(L->out) / L->out.c * 4;
                if (ws > t.workspace) t.workspace = ws;
            }
        }
        *n_params = m->n_params;
        bytes = plan_bytes(m, &t);
    }
    free(m);
    return bytes;
}

#define ALLOC(ptr, bytes)                                        \
    do {                                                         \
        if (!((ptr) = kern_alloc(k, (size_t)(bytes)))) goto oom; \
    } while (0)

int model_build(model *m, const config *cfg, const int64_t *sample_shape, int sample_ndim,
                int64_t n_classes, int64_t batch, kern_ctx *k, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    plan_totals t;
    if (plan(m, cfg, sample_shape, sample_ndim, n_classes, batch, k, &t, err, errlen) != 0) {
        memset(m, 0, sizeof *m);
        return -1;
    }
    m->k = k;
    ALLOC(m->params, m->n_params * 4);
    ALLOC(m->grads, m->n_params * 4);
    if (m->n_buffers) ALLOC(m->buffers, m->n_buffers * 4);
    ALLOC(m->losses, batch * 4);
    if (t.workspace) ALLOC(m->conv_workspace, t.workspace);
    if (!(m->act = calloc((size_t)m->n_layers + 1, sizeof(float *)))) goto oom;
    if (t.max_channels && (!(m->host_sums = calloc((size_t)(2 * t.max_channels + 1), sizeof(double))) ||
                           !(m->host_floats = calloc((size_t)(2 * t.max_channels), sizeof(float)))))
        goto oom;
    ALLOC(m->act[0], batch * m->in_features * 4);
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        if (L->type == LAYER_FLATTEN || L->type == LAYER_RESIDUAL_START) {
            m->act[i + 1] = m->act[i];   /* a view: same memory */
        } else {
            ALLOC(m->act[i + 1], batch * features(L->out) * 4);
        }
        switch (L->type) {
        case LAYER_DROPOUT: ALLOC(L->mask, batch * features(L->in)); break;
        case LAYER_MAXPOOL2D: ALLOC(L->argmax, batch * features(L->out) * 4); break;
        case LAYER_BATCHNORM2D:
            ALLOC(L->mean_invstd, 2 * L->in.c * 4);
            ALLOC(L->bn_sums, (2 * L->in.c + 1) * 8);
            break;
        case LAYER_RESIDUAL_START: ALLOC(L->skip_grad, batch * features(L->in) * 4); break;
        case LAYER_RESIDUAL_END:
            if (L->project) ALLOC(L->proj_out, batch * features(L->out) * 4);
            break;
        default: break;
        }
    }
    for (int j = 0; j < 2; j++) ALLOC(m->dbuf[j], batch * t.max_features * 4);
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating the model (%lld parameters, batch %lld)",
             (long long)m->n_params, (long long)batch);
    model_free(m);
    return -1;
}

void model_free(model *m) {
    kern_ctx *k = m->k;
    if (!k) {
        free(m->act);
        free(m->host_sums);
        free(m->host_floats);
        memset(m, 0, sizeof *m);
        return;
    }
    kern_free(k, m->params);
    kern_free(k, m->grads);
    kern_free(k, m->buffers);
    kern_free(k, m->losses);
    kern_free(k, m->conv_workspace);
    if (m->act) {
        kern_free(k, m->act[0]);
        for (int i = 0; i < m->n_layers; i++) {
            model_layer *L = &m->layers[i];
            if (L->type != LAYER_FLATTEN && L->type != LAYER_RESIDUAL_START)
                kern_free(k, m->act[i + 1]);
            kern_free(k, L->mask);
            kern_free(k, L->argmax);
            kern_free(k, L->mean_invstd);
            kern_free(k, L->bn_sums);
            kern_free(k, L->skip_grad);
            kern_free(k, L->proj_out);
        }
        free(m->act);
    }
    kern_free(k, m->dbuf[0]);
    kern_free(k, m->dbuf[1]);
    free(m->host_sums);
    free(m->host_floats);
    memset(m, 0, sizeof *m);
}

int model_tensors(const model *m, model_tensor *out, int max) {
    int n = 0;
    for (int i = 0; i < m->n_layers && n + 2 <= max; i++) {
        const model_layer *L = &m->layers[i];
        if (L->w_off < 0) continue;
        if (L->type == LAYER_LINEAR)
            out[n++] = (model_tensor){L->w_name, 0, L->w_off, L->in.c * L->in.h * L->in.w *
                                      L->out.c, 2, {L->out.c, features(L->in), 0, 0}};
        else if (L->type == LAYER_BATCHNORM2D)
            out[n++] = (model_tensor){L->w_name, 0, L->w_off, L->in.c, 1, {L->in.c, 0, 0, 0}};
        else   /* conv2d and the residual projection: [K, C/groups, R, S] */
            out[n++] = (model_tensor){L->w_name, 0, L->w_off,
                                      (int64_t)L->conv.K * (L->conv.C / L->conv.groups) *
                                          L->conv.R * L->conv.S,
                                      4, {L->conv.K, L->conv.C / L->conv.groups, L->conv.R,
                                          L->conv.S}};
        if (L->b_off >= 0) {
            int64_t c = L->type == LAYER_BATCHNORM2D ? L->in.c : L->out.c;
            out[n++] = (model_tensor){L->b_name, 0, L->b_off, c, 1, {c, 0, 0, 0}};
        }
    }
    for (int i = 0; i < m->n_layers && n + 2 <= max; i++) {
        const model_layer *L = &m->layers[i];
        if (L->rm_off < 0) continue;
        out[n++] = (model_tensor){L->rm_name, 1, L->rm_off, L->in.c, 1, {L->in.c, 0, 0, 0}};
        out[n++] = (model_tensor){L->rv_name, 1, L->rv_off, L->in.c, 1, {L->in.c, 0, 0, 0}};
    }
    return n;
}

void model_init_params(model *m, const char *init, uint64_t seed) {
    /* Each tensor gets its own Philox stream (its index), so adding a layer at the end does
     * not change the initial weights of the others. */
    int normal = strcmp(init, "normal") == 0;
    uint64_t stream = 0;
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        if (L->w_off < 0) continue;
        if (L->type == LAYER_BATCHNORM2D) {
            kern_fill(m->k, m->params + L->w_off, 1.0f, L->in.c);
            kern_fill(m->k, m->params + L->b_off, 0.0f, L->in.c);
            kern_fill(m->k, m->buffers + L->rm_off, 0.0f, L->in.c);
            kern_fill(m->k, m->buffers + L->rv_off, 1.0f, L->in.c);
            stream += 2;
            continue;
        }
        int64_t fan_in = L->type == LAYER_LINEAR ? features(L->in)
                         : (int64_t)(L->conv.C / L->conv.groups) * L->conv.R * L->conv.S;
        int64_t n_w = L->b_off >= 0 ? L->b_off - L->w_off : fan_in * (L->type == LAYER_LINEAR
                                                                          ? L->out.c : L->conv.K);
        float bound = 1.0f / sqrtf((float)fan_in);
        float *w = m->params + L->w_off;
        if (normal) kern_init_normal(m->k, w, n_w, 0.0f, 0.02f, seed, stream++);
        else kern_init_uniform(m->k, w, n_w, -bound, bound, seed, stream++);
        if (L->b_off < 0) continue;
        int64_t n_b = L->out.c;
        if (normal) {
            kern_fill(m->k, m->params + L->b_off, 0.0f, n_b);
            stream++;
        } else {
            kern_init_uniform(m->k, m->params + L->b_off, n_b, -bound, bound, seed, stream++);
        }
    }
}

float *model_input(model *m) { return m->act[0]; }
float *model_dlogits(model *m) { return m->dbuf[0]; }

/* Batch norm statistics over this rank's samples, summed over all ranks when synchronised:
 * sums[2C] and the count of values per channel. */
static double bn_reduce(model *m, const model_layer *L, double *sums_dev, int64_t B) {
    double count = (double)(B * L->in.h * L->in.w);
    if (!L->sync || !m->allreduce) return count;
    int c2 = (int)(2 * L->in.c);
    kern_to_host(m->k, m->host_sums, sums_dev, (size_t)c2 * sizeof(double));
    m->host_sums[c2] = count;
    if (m->allreduce(m->allreduce_user, m->host_sums, c2 + 1) != 0) return -1.0;
    kern_to_device(m->k, sums_dev, m->host_sums, (size_t)c2 * sizeof(double));
    return m->host_sums[c2];
}

float *model_forward(model *m, int64_t B, int training, uint64_t seed, uint64_t step_id,
                     int64_t sample_base) {
    kern_ctx *k = m->k;
    for (int i = 0; i < m->n_layers; i++) {
        model_layer *L = &m->layers[i];
        const float *in = m->act[i];
        float *out = m->act[i + 1];
        int64_t n_in = B * features(L->in), n_out = B * features(L->out);
        kern_conv_shape cs = L->conv;
        cs.B = (int)B;
        switch (L->type) {
        case LAYER_FLATTEN: case LAYER_RESIDUAL_START: case LAYER_TYPE_COUNT:
            break;
        case LAYER_LINEAR:
            kern_linear_forward(k, out, in, m->params + L->w_off,
                                L->bias ? m->params + L->b_off : NULL, (int)B,
                                (int)features(L->in), (int)L->out.c);
            break;
        case LAYER_CONV2D:
            kern_conv2d_forward(k, out, in, m->params + L->w_off,
                                L->bias ? m->params + L->b_off : NULL, &cs, m->conv_workspace);
            break;
        case LAYER_MAXPOOL2D:
            kern_maxpool2d_forward(k, out, L->argmax, in, &cs);
            break;
        case LAYER_AVGPOOL2D: case LAYER_GLOBAL_AVGPOOL:
            kern_avgpool2d_forward(k, out, in, &cs);
            break;
        case LAYER_BATCHNORM2D: {
            int C = (int)L->in.c, HW = (int)(L->in.h * L->in.w);
            float *gamma = m->params + L->w_off, *beta = m->params + L->b_off;
            float *rm = m->buffers + L->rm_off, *rv = m->buffers + L->rv_off;
            if (!training) {
                kern_batchnorm_forward_eval(k, out, in, gamma, beta, rm, rv, L->eps, (int)B, C, HW);
                break;
            }
            kern_batchnorm_stats(k, L->bn_sums, in, (int)B, C, HW);
            double count = bn_reduce(m, L, L->bn_sums, B);
            kern_batchnorm_forward(k, out, L->mean_invstd, in, gamma, beta, L->bn_sums, count,
                                   L->eps, rm, rv, L->momentum, (int)B, C, HW);
            break;
        }
        case LAYER_RESIDUAL_END: {
            const float *skip = m->act[L->block_start];
            kern_copy(k, out, in, n_out);
            if (L->project) {
                kern_conv2d_forward(k, L->proj_out, skip, m->params + L->w_off,
                                    m->params + L->b_off, &cs, m->conv_workspace);
                kern_axpy(k, out, 1.0f, L->proj_out, n_out);
            } else {
                kern_axpy(k, out, 1.0f, skip, n_out);
            }
            break;
        }
        case LAYER_RELU:
            kern_relu_forward(k, out, in, n_in);
            break;
        case LAYER_GELU:
            kern_gelu_forward(k, out, in, n_in);
            break;
        case LAYER_DROPOUT:
            if (!training || L->p == 0.0f) {
                kern_copy(k, out, in, n_in);
                break;
            }
            /* One Philox stream per (layer, step, global sample): the mask of a sample does
             * not depend on which rank holds it or how the batch was split. */
            for (int64_t b = 0; b < B; b++) {
                int64_t f = features(L->in);
                uint64_t stream = (step_id << 24) ^ ((uint64_t)(sample_base + b) << 6) ^
                                  (uint64_t)i;
                kern_dropout_forward(k, out + b * f, L->mask + b * f, in + b * f, f, L->p,
                                     seed ^ 0x64726f706f7574ULL, stream);
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
    /* the first layer with parameters needs no input gradient, and nothing below it runs */
    int first_param_layer = m->n_layers;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].w_off >= 0) { first_param_layer = i; break; }

    for (int i = m->n_layers - 1; i >= 0; i--) {
        model_layer *L = &m->layers[i];
        float *dout = m->dbuf[cur], *din = m->dbuf[cur ^ 1];
        const float *in = m->act[i];
        int need_din = i > first_param_layer;
        int64_t n_in = B * features(L->in), n_out = B * features(L->out);
        kern_conv_shape cs = L->conv;
        cs.B = (int)B;
        switch (L->type) {
        case LAYER_FLATTEN: case LAYER_TYPE_COUNT:
            break;
        case LAYER_LINEAR:
            kern_linear_backward(k, need_din ? din : NULL, m->grads + L->w_off,
                                 L->bias ? m->grads + L->b_off : NULL, dout, in,
                                 m->params + L->w_off, (int)B, (int)features(L->in),
                                 (int)L->out.c);
            cur ^= 1;
            break;
        case LAYER_CONV2D:
            kern_conv2d_backward(k, need_din ? din : NULL, m->grads + L->w_off,
                                 L->bias ? m->grads + L->b_off : NULL, dout, in,
                                 m->params + L->w_off, &cs, m->conv_workspace);
            cur ^= 1;
            break;
        case LAYER_MAXPOOL2D:
            if (need_din) kern_maxpool2d_backward(k, din, dout, L->argmax, &cs);
            cur ^= 1;
            break;
        case LAYER_AVGPOOL2D: case LAYER_GLOBAL_AVGPOOL:
            if (need_din) kern_avgpool2d_backward(k, din, dout, &cs);
            cur ^= 1;
            break;
        case LAYER_BATCHNORM2D: {
            int C = (int)L->in.c, HW = (int)(L->in.h * L->in.w);
            /* local sums give this rank's share of dgamma/dbeta (the gradient all-reduce adds
             * the ranks up); the input gradient needs the sums over the whole batch */
            kern_batchnorm_backward_reduce(k, L->bn_sums, dout, in, L->mean_invstd, (int)B, C, HW);
            /* dbeta += sum dy, dgamma += sum dy*xhat: the double sums pass through the host
             * as floats; din is free scratch until the input gradient is written below */
            kern_to_host(k, m->host_sums, L->bn_sums, (size_t)(2 * C) * sizeof(double));
            for (int j = 0; j < 2 * C; j++) m->host_floats[j] = (float)m->host_sums[j];
            kern_to_device(k, din, m->host_floats, (size_t)(2 * C) * sizeof(float));
            kern_axpy(k, m->grads + L->b_off, 1.0f, din, C);
            kern_axpy(k, m->grads + L->w_off, 1.0f, din + C, C);
            if (need_din) {
                double count = bn_reduce(m, L, L->bn_sums, B);
                kern_batchnorm_backward(k, din, dout, in, L->mean_invstd, m->params + L->w_off,
                                        L->bn_sums, count, (int)B, C, HW);
            }
            cur ^= 1;
            break;
        }
        case LAYER_RESIDUAL_END: {
            /* the sum's gradient flows unchanged into the block and into the shortcut */
            model_layer *S = &m->layers[L->block_start];
            if (L->project)
                kern_conv2d_backward(k, S->skip_grad, m->grads + L->w_off, m->grads + L->b_off,
                                     dout, m->act[L->block_start], m->params + L->w_off, &cs,
                                     m->conv_workspace);
            else
                kern_copy(k, S->skip_grad, dout, n_out);
            break;
        }
        case LAYER_RESIDUAL_START:
            kern_axpy(k, dout, 1.0f, L->skip_grad, n_in);
            break;
        case LAYER_RELU:
            if (need_din) kern_relu_backward(k, dout, dout, in, n_in);
            break;
        case LAYER_GELU:
            if (need_din) kern_gelu_backward(k, dout, dout, in, n_in);
            break;
        case LAYER_DROPOUT:
            if (need_din && L->p > 0.0f) kern_dropout_backward(k, dout, dout, L->mask, n_in, L->p);
            break;
        }
        if (L->w_off >= 0 && on_layer_done) on_layer_done(user, L->w_off);
        if (i <= first_param_layer) break;
    }
}

int model_first_nonfinite_layer(model *m, int64_t B) {
    if (kern_has_nonfinite(m->k, m->act[0], B * m->in_features)) return -1;
    for (int i = 0; i < m->n_layers; i++)
        if (kern_has_nonfinite(m->k, m->act[i + 1], B * features(m->layers[i].out))) return i;
    return m->n_layers;
}

int model_first_nonfinite_tensor(model *m, int grads) {
    model_tensor t[MODEL_MAX_TENSORS];
    int n = model_tensors(m, t, MODEL_MAX_TENSORS);
    const float *base = grads ? m->grads : m->params;
    for (int i = 0; i < n; i++)
        if (!t[i].is_buffer && kern_has_nonfinite(m->k, base + t[i].offset, t[i].count)) return i;
    return -1;
}
