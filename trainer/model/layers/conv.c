/* conv2d, maxpool2d, avgpool2d, global_avgpool on NCHW images [c, h, w] (t = 1).
 * conv2d parameters: weight [K, C/groups, R, S], bias [K] (PyTorch nn.Conv2d). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct {
    kern_conv_shape conv;   /* B set per call */
    int64_t w, b;
    int32_t *argmax;        /* maxpool2d: [batch, out features] */
} conv_state;

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

static int spatial_input(model_layer *L, model_plan *p, char *err, size_t errlen, int needs_hw) {
    const model_input_desc *in = &p->m->input_desc;
    if (L->in.t != 1)
        return plan_fail(err, errlen, L, "%s needs images, but its input is a sequence of %lld "
                         "positions", layer_type_name(L->type), (long long)L->in.t);
    if (in->sample_ndim == 3 && p->m->input.c > 1)
        return plan_fail(err, errlen, L, "%s on channels-last images [N,H,W,C] with C = %lld is "
                         "not supported yet (store them as [N,H,W] per channel, or use linear "
                         "layers)", layer_type_name(L->type), (long long)p->m->input.c);
    if (needs_hw && L->in.h * L->in.w == 1)
        return plan_fail(err, errlen, L, "%s needs an image input [C,H,W], but its input is a "
                         "vector of %lld features", layer_type_name(L->type),
                         (long long)shape_features(L->in));
    return 0;
}

/* The workspace conv2d needs for this geometry at the build's batch (cuDNN grows with it);
 * without a backend one im2col image bounds it. */
void plan_conv_workspace(model_plan *p, const kern_conv_shape *g, model_shape out) {
    kern_conv_shape q = *g;
    q.B = (int)p->batch;
    if (p->k) plan_scratch(p, kern_conv2d_workspace(p->k, &q));
    else plan_scratch(p, (size_t)g->C * g->R * g->S * out.h * out.w * 4);
}

static int conv_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    const layer_config *lc = &L->cfg;
    conv_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (spatial_input(L, p, err, errlen, 1)) return -1;
    model_shape in = L->in;
    if (in.c % lc->groups != 0 || lc->out % lc->groups != 0)
        return plan_fail(err, errlen, L, "groups %d must divide the input channels (%lld) and "
                         "out (%d)", lc->groups, (long long)in.c, lc->out);
    s->conv = conv_geometry(in, lc->out, lc->kernel, lc->stride, lc->padding, lc->dilation,
                            lc->groups);
    int P = kern_conv_out_h(&s->conv), Q = kern_conv_out_w(&s->conv);
    if (P <= 0 || Q <= 0)
        return plan_fail(err, errlen, L, "a %dx%d kernel (dilation %d, padding %d) does not fit "
                         "its %lldx%lld input", lc->kernel, lc->kernel, lc->dilation,
                         lc->padding, (long long)in.h, (long long)in.w);
    L->out = (model_shape){1, lc->out, P, Q};
    int64_t cg = in.c / lc->groups, fan_in = cg * lc->kernel * lc->kernel;
    int64_t wd[4] = {lc->out, cg, lc->kernel, lc->kernel}, bd[1] = {lc->out};
    float bound = 1.0f / sqrtf((float)fan_in);
    s->w = plan_param(p, L, "weight", 4, wd, INIT_FANIN, bound, 0);
    s->b = lc->bias ? plan_param(p, L, "bias", 1, bd, INIT_FANIN, bound, 1) : -1;
    if (s->w < 0 || (lc->bias && s->b < 0)) return plan_fail(err, errlen, L, "out of memory");
    plan_conv_workspace(p, &s->conv, L->out);
    double f = 2.0 * (double)lc->out * (double)fan_in * P * Q;
    L->flops_fwd = L->flops_bwd_w = L->flops_bwd_in = f;
    return 0;
}

static kern_conv_shape call_shape(const conv_state *s, const model_pass *a) {
    kern_conv_shape cs = s->conv;
    cs.B = (int)a->B;
    return cs;
}

static void conv_forward(model *m, model_layer *L, const model_pass *a) {
    const conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    kern_conv2d_forward(m->k, layer_out(m, L), layer_in(m, L), m->params + s->w,
                        s->b >= 0 ? m->params + s->b : NULL, &cs, m->workspace);
}

static int conv_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                         int need_din) {
    const conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    kern_conv2d_backward(m->k, need_din ? din : NULL, m->grads + s->w,
                         s->b >= 0 ? m->grads + s->b : NULL, dout, layer_in(m, L),
                         m->params + s->w, &cs, m->workspace);
    return 1;
}

static int pool_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    const layer_config *lc = &L->cfg;
    conv_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (spatial_input(L, p, err, errlen, 1)) return -1;
    model_shape in = L->in;
    if (lc->padding * 2 > lc->kernel)
        return plan_fail(err, errlen, L, "padding %d is more than half the %d-wide window",
                         lc->padding, lc->kernel);
    s->conv = conv_geometry(in, (int)in.c, lc->kernel, lc->stride, lc->padding, 1, 1);
    int P = kern_conv_out_h(&s->conv), Q = kern_conv_out_w(&s->conv);
    if (P <= 0 || Q <= 0)
        return plan_fail(err, errlen, L, "a %dx%d window does not fit its %lldx%lld input",
                         lc->kernel, lc->kernel, (long long)in.h, (long long)in.w);
    L->out = (model_shape){1, in.c, P, Q};
    if (L->type == LAYER_MAXPOOL2D &&
        plan_memory(p, (void **)&s->argmax, (size_t)(p->batch * shape_size(L->out)) * 4))
        return plan_fail(err, errlen, L, "out of memory");
    return 0;
}

static int global_pool_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    conv_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (spatial_input(L, p, err, errlen, 0)) return -1;
    s->conv = conv_geometry(L->in, (int)L->in.c, 1, 1, 0, 1, 1);
    s->conv.R = (int)L->in.h;
    s->conv.S = (int)L->in.w;
    L->out = (model_shape){1, L->in.c, 1, 1};
    return 0;
}

static void maxpool_forward(model *m, model_layer *L, const model_pass *a) {
    conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    kern_maxpool2d_forward(m->k, layer_out(m, L), s->argmax, layer_in(m, L), &cs);
}
static int maxpool_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                            float *din, int need_din) {
    conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    if (need_din) kern_maxpool2d_backward(m->k, din, dout, s->argmax, &cs);
    return 1;
}
static void avgpool_forward(model *m, model_layer *L, const model_pass *a) {
    conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    kern_avgpool2d_forward(m->k, layer_out(m, L), layer_in(m, L), &cs);
}
static int avgpool_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                            float *din, int need_din) {
    conv_state *s = L->state;
    kern_conv_shape cs = call_shape(s, a);
    if (need_din) kern_avgpool2d_backward(m->k, din, dout, &cs);
    return 1;
}

const layer_ops layer_conv2d = {conv_plan, conv_forward, conv_backward, 0};
const layer_ops layer_maxpool2d = {pool_plan, maxpool_forward, maxpool_backward, 0};
const layer_ops layer_avgpool2d = {pool_plan, avgpool_forward, avgpool_backward, 0};
const layer_ops layer_global_avgpool = {global_pool_plan, avgpool_forward, avgpool_backward, 0};
