/* residual_start / residual_end: the block between them gets a skip connection,
 *   out = block(x) + x             (or + a strided 1x1 convolution of x with project: true)
 * residual_start is a view that remembers x; backward adds the shortcut's gradient to the
 * block's. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

typedef struct {
    float *skip_grad;        /* residual_start: [batch, features] gradient via the shortcut */
} start_state;

typedef struct {
    int start;               /* index of its residual_start */
    int project;
    kern_conv_shape conv;    /* projection (B set per call) */
    int64_t w, b;
    float *proj_out;         /* [batch, out features] */
} end_state;

static int start_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    start_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    L->out = L->in;
    p->open_block = L->index;
    if (!p->decode && plan_memory(p, (void **)&s->skip_grad, (size_t)(p->batch * shape_size(L->in)) * 4))
        return plan_fail(err, errlen, L, "out of memory");
    return 0;
}

static int start_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                          float *din, int need_din) {
    start_state *s = L->state;
    (void)din; (void)need_din;
    kern_axpy(m->k, dout, 1.0f, s->skip_grad, a->B * shape_size(L->in));
    return 0;
}

static int end_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    end_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (p->open_block < 0) return plan_fail(err, errlen, L, "residual_end without residual_start");
    s->start = p->open_block;
    p->open_block = -1;
    model_shape skip = p->m->layers[s->start].in, in = L->in;
    L->out = in;
    s->project = L->cfg.project;
    s->w = s->b = -1;
    if (!s->project) {
        if (skip.t != in.t || skip.c != in.c || skip.h != in.h || skip.w != in.w)
            return plan_fail(err, errlen, L, "the block changes the shape from [%lld,%lld,%lld] "
                             "to [%lld,%lld,%lld]; set project: true on this residual_end (a 1x1 "
                             "convolution on the shortcut)", (long long)skip.c, (long long)skip.h,
                             (long long)skip.w, (long long)in.c, (long long)in.h, (long long)in.w);
        return 0;
    }
    if (in.t != 1 || in.h < 1 || skip.h % in.h != 0 || skip.w % in.w != 0 ||
        skip.h / in.h != skip.w / in.w)
        return plan_fail(err, errlen, L, "cannot project the shortcut [%lld,%lld,%lld] onto "
                         "[%lld,%lld,%lld] with a strided 1x1 convolution", (long long)skip.c,
                         (long long)skip.h, (long long)skip.w, (long long)in.c, (long long)in.h,
                         (long long)in.w);
    kern_conv_shape g = {0};
    g.B = 1;
    g.C = (int)skip.c;
    g.H = (int)skip.h;
    g.W = (int)skip.w;
    g.K = (int)in.c;
    g.R = g.S = 1;
    g.stride_h = g.stride_w = (int)(skip.h / in.h);
    g.dil_h = g.dil_w = 1;
    g.groups = 1;
    s->conv = g;
    int64_t wd[4] = {in.c, skip.c, 1, 1}, bd[1] = {in.c};
    float bound = 1.0f / sqrtf((float)skip.c);
    s->w = plan_param(p, L, "shortcut.weight", 4, wd, INIT_FANIN, bound, 0);
    s->b = plan_param(p, L, "shortcut.bias", 1, bd, INIT_FANIN, bound, 1);
    if (s->w < 0 || s->b < 0 ||
        plan_memory(p, (void **)&s->proj_out, (size_t)(p->batch * shape_size(in)) * 4))
        return plan_fail(err, errlen, L, "out of memory");
    plan_conv_workspace(p, &s->conv, in);
    L->flops_fwd = L->flops_bwd_w = L->flops_bwd_in = 2.0 * (double)in.c * (double)skip.c * in.h * in.w;
    return 0;
}

static void end_forward(model *m, model_layer *L, const model_pass *a) {
    end_state *s = L->state;
    const float *skip = m->act[s->start];
    float *out = layer_out(m, L);
    int64_t n = a->B * a->T * shape_features(L->out);
    kern_copy(m->k, out, layer_in(m, L), n);
    if (s->project) {
        kern_conv_shape cs = s->conv;
        cs.B = (int)a->B;
        kern_conv2d_forward(m->k, s->proj_out, skip, m->params + s->w, m->params + s->b, &cs,
                            m->workspace);
        kern_axpy(m->k, out, 1.0f, s->proj_out, n);
    } else {
        kern_axpy(m->k, out, 1.0f, skip, n);
    }
}

static int end_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                        int need_din) {
    end_state *s = L->state;
    start_state *start = m->layers[s->start].state;
    (void)din; (void)need_din;
    /* the sum's gradient flows unchanged into the block and into the shortcut */
    if (s->project) {
        kern_conv_shape cs = s->conv;
        cs.B = (int)a->B;
        kern_conv2d_backward(m->k, start->skip_grad, m->grads + s->w, m->grads + s->b, dout,
                             m->act[s->start], m->params + s->w, &cs, m->workspace);
    } else {
        kern_copy(m->k, start->skip_grad, dout, a->B * shape_size(L->out));
    }
    return 0;
}

const layer_ops layer_residual_start = {start_plan, NULL, start_backward, 1};
const layer_ops layer_residual_end = {end_plan, end_forward, end_backward, 0};
