/* layernorm over the last dimension (PyTorch nn.LayerNorm(C), biased variance):
 * rows = B*t of C features.  Parameters weight [C] (1), bias [C] (0; none with bias: false). */
#include <stdlib.h>

#include "layer.h"

typedef struct {
    int64_t w, b;
    float *mean_rstd;   /* [2 * rows] saved by forward */
} layernorm_state;

static int layernorm_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    layernorm_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    int64_t C = shape_features(L->in), d[1] = {C};
    L->out = L->in;
    s->w = plan_param(p, L, "weight", 1, d, INIT_ONE, 0, 0);
    s->b = L->cfg.bias ? plan_param(p, L, "bias", 1, d, INIT_ZERO, 0, 1) : -1;
    if (s->w < 0 || (L->cfg.bias && s->b < 0) ||
        plan_memory(p, (void **)&s->mean_rstd, (size_t)(2 * p->batch * L->in.t) * 4))
        return plan_fail(err, errlen, L, "out of memory");
    if (!p->decode) plan_gpt_scratch(p, L->in.t, C, 1, 0);
    L->flops_fwd = 8.0 * (double)shape_size(L->in);
    L->flops_bwd_in = 12.0 * (double)shape_size(L->in);
    return 0;
}

static void layernorm_forward(model *m, model_layer *L, const model_pass *a) {
    const layernorm_state *s = L->state;
    kern_layernorm_forward(m->k, layer_out(m, L), s->mean_rstd, layer_in(m, L), m->params + s->w,
                           s->b >= 0 ? m->params + s->b : NULL, (int)pass_rows(a),
                           (int)shape_features(L->in), L->cfg.eps);
}

static int layernorm_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                              float *din, int need_din) {
    const layernorm_state *s = L->state;
    kern_layernorm_backward(m->k, need_din ? din : NULL, m->grads + s->w,
                            s->b >= 0 ? m->grads + s->b : NULL, dout, layer_in(m, L),
                            s->mean_rstd, m->params + s->w, (int)pass_rows(a),
                            (int)shape_features(L->in), m->workspace);
    return 1;
}

const layer_ops layer_layernorm = {layernorm_plan, layernorm_forward, layernorm_backward, 0};
