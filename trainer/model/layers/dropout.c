/* dropout: inverted dropout with probability p; the mask of every sample comes from its own
 * Philox stream (layer, step, global sample), so neither the rank that holds a sample nor the
 * split of the batch changes it.  Identity in evaluation. */
#include <stdlib.h>

#include "layer.h"

typedef struct {
    uint8_t *mask;   /* [batch, features] */
} dropout_state;

static int dropout_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    dropout_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    L->out = L->in;
    if (!p->decode && plan_memory(p, (void **)&s->mask, (size_t)(p->batch * shape_size(L->in))))
        return plan_fail(err, errlen, L, "out of memory");
    return 0;
}

static void dropout_forward(model *m, model_layer *L, const model_pass *a) {
    dropout_state *s = L->state;
    int64_t f = a->T * shape_features(L->in);   /* per sample */
    float *out = layer_out(m, L);
    const float *in = layer_in(m, L);
    if (!a->training || L->cfg.p == 0.0f) {
        kern_copy(m->k, out, in, a->B * f);
        return;
    }
    /* one call for the layer: row b draws from kern_dropout_stream(step, sample_base + b, i) */
    kern_dropout_forward_rows(m->k, out, s->mask, in, a->B, f, L->cfg.p,
                              a->seed ^ 0x64726f706f7574ULL, a->step_id, a->sample_base,
                              L->index);
}

static int dropout_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                            float *din, int need_din) {
    dropout_state *s = L->state;
    (void)din;
    if (need_din && L->cfg.p > 0.0f)
        kern_dropout_backward(m->k, dout, dout, s->mask, pass_rows(a) * shape_features(L->in),
                              L->cfg.p);
    return 0;
}

const layer_ops layer_dropout = {dropout_plan, dropout_forward, dropout_backward, 0};
