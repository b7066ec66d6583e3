/* linear: out[rows, O] = in[rows, I] @ W[O, I]^T + b[O] on the last dimension (rows = B*t;
 * an image or vector sample is one row of c*h*w features, as after nn.Flatten).
 * Parameters weight [O, I], bias [O] (PyTorch nn.Linear layout and init). */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

typedef struct {
    int64_t w, b;   /* offsets; b = -1 without bias */
    int64_t I, O;
} linear_state;

static int linear_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    linear_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    s->I = shape_features(L->in);
    s->O = L->cfg.out;
    L->out = (model_shape){L->in.t, s->O, 1, 1};
    /* presets give a normal init with their own std and zero biases */
    int preset = L->cfg.init_std > 0.0f;
    int64_t wd[2] = {s->O, s->I}, bd[1] = {s->O};
    float bound = 1.0f / sqrtf((float)s->I);
    s->w = plan_param(p, L, "weight", 2, wd, preset ? INIT_NORMAL : INIT_FANIN,
                      preset ? L->cfg.init_std : bound, 0);
    s->b = -1;
    if (L->cfg.bias) s->b = plan_param(p, L, "bias", 1, bd, preset ? INIT_ZERO : INIT_FANIN, bound, 1);
    if (s->w < 0 || (L->cfg.bias && s->b < 0)) return plan_fail(err, errlen, L, "out of memory");
    double f = 2.0 * (double)s->I * (double)s->O * (double)L->in.t;
    L->flops_fwd = L->flops_bwd_w = L->flops_bwd_in = f;
    L->overwrites = 1;   /* kern_linear_backward_ex(overwrite) */
    return 0;
}

static void linear_forward(model *m, model_layer *L, const model_pass *a) {
    const linear_state *s = L->state;
    const float *b = s->b >= 0 ? m->params + s->b : NULL;
    if (L->fused_act != KERN_ACT_NONE) {
        /* this layer and the activation after it: act[i+1] = pre-activation (gelu's backward
         * reads it; not written for relu), act[i+2] = the activation's output */
        float *pre = L->fused_act == KERN_ACT_GELU ? layer_out(m, L) : NULL;
        kern_linear_act_forward(m->k, pre, m->act[L->index + 2], layer_in(m, L),
                                m->params + s->w, b, (int)pass_rows(a), (int)s->I, (int)s->O,
                                (kern_act)L->fused_act);
        return;
    }
    kern_linear_forward(m->k, layer_out(m, L), layer_in(m, L), m->params + s->w, b,
                        (int)pass_rows(a), (int)s->I, (int)s->O);
}

static int linear_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                           float *din, int need_din) {
    const linear_state *s = L->state;
    kern_linear_backward_ex(m->k, need_din ? din : NULL, m->grads + s->w,
                            s->b >= 0 ? m->grads + s->b : NULL, dout, layer_in(m, L),
                            m->params + s->w, (int)pass_rows(a), (int)s->I, (int)s->O,
                            a->overwrite);
    return 1;
}

const layer_ops layer_linear = {linear_plan, linear_forward, linear_backward, 0};
