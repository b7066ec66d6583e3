/* attention: causal multi-head self-attention on a fused projection [t, 3C] -> [t, C]
 * (q, k, v side by side; the projections around it are linear layers, as in nanoGPT's
 * c_attn and c_proj).  Training saves one logsumexp per (sequence, head, position), lse
 * [B, heads, t], for backward, which recomputes the probabilities from it and from this layer's
 * output (still held: it is c_proj's input); nothing of size t x t is kept.  A model built for
 * generation keeps key/value caches [B, context, C] instead. */
#include <stdlib.h>

#include "layer.h"

typedef struct {
    int64_t C, NH, T;
    float *lse;              /* [batch, NH, T] */
    float *kcache, *vcache;  /* decode: [batch, T, C] */
    float *q;                /* decode: [batch, C] */
} attention_state;

static int attention_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    attention_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    int64_t C3 = shape_features(L->in);
    s->NH = L->cfg.heads;
    s->T = L->in.t;
    if (C3 % 3 != 0)
        return plan_fail(err, errlen, L, "attention takes the fused q, k, v projection (3 x "
                         "features), but its input has %lld features", (long long)C3);
    s->C = C3 / 3;
    if (s->C % s->NH != 0)
        return plan_fail(err, errlen, L, "%lld heads do not divide %lld features",
                         (long long)s->NH, (long long)s->C);
    L->out = (model_shape){s->T, s->C, 1, 1};
    size_t B = (size_t)p->batch, T = (size_t)s->T, C = (size_t)s->C;
    int bad;
    if (p->decode)
        bad = plan_memory(p, (void **)&s->kcache, B * T * C * 4) ||
              plan_memory(p, (void **)&s->vcache, B * T * C * 4) ||
              plan_memory(p, (void **)&s->q, B * C * 4);
    else
        bad = plan_memory(p, (void **)&s->lse, B * (size_t)s->NH * T * 4);
    if (bad) return plan_fail(err, errlen, L, "out of memory");
    plan_gpt_scratch(p, s->T, s->C, s->NH, 0);
    /* q.k and att.v: 2 T^2 C multiply-adds per sequence; backward twice that */
    L->flops_fwd = 4.0 * (double)s->T * (double)s->T * (double)s->C;
    L->flops_bwd_in = 2.0 * L->flops_fwd;
    return 0;
}

static void attention_forward(model *m, model_layer *L, const model_pass *a) {
    attention_state *s = L->state;
    const float *qkv = layer_in(m, L);
    float *out = layer_out(m, L);
    if (!a->decode) {
        kern_attention_forward(m->k, out, s->lse, qkv, (int)a->B, (int)s->T, (int)s->C,
                               (int)s->NH, m->workspace);
        return;
    }
    /* one new position per sequence: append its key and value to the caches */
    for (int64_t b = 0; b < a->B; b++) {
        const float *row = qkv + b * 3 * s->C;
        int64_t at = (b * s->T + a->pos) * s->C;
        kern_copy(m->k, s->q + b * s->C, row, s->C);
        kern_copy(m->k, s->kcache + at, row + s->C, s->C);
        kern_copy(m->k, s->vcache + at, row + 2 * s->C, s->C);
    }
    kern_attention_decode(m->k, out, s->q, s->kcache, s->vcache, (int)a->B, (int)a->pos,
                          (int)s->T, (int)s->C, (int)s->NH, m->workspace);
}

static int attention_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                              float *din, int need_din) {
    attention_state *s = L->state;
    if (!need_din) return 0;
    kern_attention_backward(m->k, din, dout, layer_in(m, L), layer_out(m, L), s->lse,
                            (int)a->B, (int)s->T, (int)s->C, (int)s->NH, m->workspace);
    return 1;
}

const layer_ops layer_attention = {attention_plan, attention_forward, attention_backward, 0};
