/* lm_head: the language-model head, logits [t, Vp] = x [t, C] @ W[Vp, C]^T, no bias.  With
 * tie (the default, GPT-2) W is the token embedding's weight: one parameter, gradients from
 * both uses accumulated into it.  Vp is the vocabulary padded to a multiple of 64; the loss
 * never predicts the padding columns. */
#include <stdlib.h>

#include "layer.h"

typedef struct {
    int64_t w, C, Vp;
} head_state;

static int head_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    head_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (p->vocab <= 0)
        return plan_fail(err, errlen, L, "lm_head needs a token dataset (its outputs are the "
                         "vocabulary)");
    s->C = shape_features(L->in);
    s->Vp = p->vocab_padded;
    L->out = (model_shape){L->in.t, s->Vp, 1, 1};
    if (L->cfg.tie) {
        if (p->embedding < 0)
            return plan_fail(err, errlen, L, "tie: true needs an embedding layer before it");
        int64_t rows, dim;
        s->w = layer_embedding_weight(&p->m->layers[p->embedding], &rows, &dim);
        if (dim != s->C)
            return plan_fail(err, errlen, L, "tie: true needs %lld input features (the "
                             "embedding's), got %lld", (long long)dim, (long long)s->C);
        L->shared_off = s->w;   /* backward runs this layer before the embedding */
        L->shared_count = rows * dim;
    } else {
        int64_t wd[2] = {s->Vp, s->C};
        float std = L->cfg.init_std > 0.0f ? L->cfg.init_std : 0.02f;
        s->w = plan_param(p, L, "weight", 2, wd, INIT_NORMAL, std, 0);
        if (s->w < 0) return plan_fail(err, errlen, L, "out of memory");
        p->m->tensors[p->m->n_tensors - 1].init_count = p->vocab * s->C;
    }
    double f = 2.0 * (double)s->C * (double)s->Vp * (double)L->in.t;
    L->flops_fwd = L->flops_bwd_w = L->flops_bwd_in = f;
    L->overwrites = 1;
    return 0;
}

static void head_forward(model *m, model_layer *L, const model_pass *a) {
    const head_state *s = L->state;
    kern_linear_forward(m->k, layer_out(m, L), layer_in(m, L), m->params + s->w, NULL,
                        (int)pass_rows(a), (int)s->C, (int)s->Vp);
}

static int head_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                         int need_din) {
    const head_state *s = L->state;
    kern_linear_backward_ex(m->k, need_din ? din : NULL, m->grads + s->w, NULL, dout,
                            layer_in(m, L), m->params + s->w, (int)pass_rows(a), (int)s->C,
                            (int)s->Vp, a->overwrite);
    return 1;
}

const layer_ops layer_lm_head = {head_plan, head_forward, head_backward, 0};
