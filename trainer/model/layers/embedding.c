/* embedding: token ids [t] -> [t, C]: wte[token] + wpe[position].
 * Parameters weight [Vp, C] (named wte in presets: the vocabulary padded to a multiple of
 * 64; the padding rows start at zero and are never looked up) and, with context > 0,
 * position.weight [context, C] (wpe).  Init N(0, 0.02) (GPT-2), or the preset's std. */
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct {
    int64_t wte, wpe;    /* wpe = -1 without positions */
    int64_t V, Vp, C, context;
} embedding_state;

int64_t layer_embedding_weight(const model_layer *L, int64_t *rows, int64_t *dim) {
    const embedding_state *s = L->state;
    *rows = s->Vp;
    *dim = s->C;
    return s->wte;
}

static int embedding_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    embedding_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (L->index != 0 || shape_features(L->in) != 1)
        return plan_fail(err, errlen, L, "an embedding must be the first layer (it takes the "
                         "token ids)");
    s->V = p->vocab;
    s->Vp = p->vocab_padded;
    s->C = L->cfg.out;
    s->context = L->cfg.context;
    if (s->context > 0 && s->context < L->in.t)
        return plan_fail(err, errlen, L, "context %lld is shorter than the samples' %lld "
                         "positions", (long long)s->context, (long long)L->in.t);
    L->out = (model_shape){L->in.t, s->C, 1, 1};
    float std = L->cfg.init_std > 0.0f ? L->cfg.init_std : 0.02f;
    const char *wname = L->cfg.name[0] ? "wte.weight" : "weight";
    const char *pname = L->cfg.name[0] ? "wpe.weight" : "position.weight";
    int64_t wd[2] = {s->Vp, s->C}, pd[2] = {s->context, s->C};
    s->wte = plan_param(p, L, wname, 2, wd, INIT_NORMAL, std, 0);
    if (s->wte < 0) return plan_fail(err, errlen, L, "out of memory");
    p->m->tensors[p->m->n_tensors - 1].init_count = s->V * s->C;
    s->wpe = -1;
    if (s->context > 0 && (s->wpe = plan_param(p, L, pname, 2, pd, INIT_NORMAL, std, 0)) < 0)
        return plan_fail(err, errlen, L, "out of memory");
    if (p->embedding < 0) p->embedding = L->index;
    if (!p->decode) plan_gpt_scratch(p, L->in.t, s->C, 1, s->Vp);
    return 0;
}

static void embedding_forward(model *m, model_layer *L, const model_pass *a) {
    const embedding_state *s = L->state;
    const float *wpe = s->wpe >= 0 ? m->params + s->wpe : NULL;
    if (wpe && a->decode) wpe += a->pos * s->C;   /* one position: the new token's */
    kern_embedding_forward(m->k, layer_out(m, L), m->tokens, m->params + s->wte, wpe,
                           (int)a->B, (int)a->T, (int)s->C);
}

static int embedding_backward(model *m, model_layer *L, const model_pass *a, float *dout,
                              float *din, int need_din) {
    const embedding_state *s = L->state;
    (void)din; (void)need_din;
    kern_embedding_backward(m->k, m->grads + s->wte, s->wpe >= 0 ? m->grads + s->wpe : NULL,
                            dout, m->tokens, (int)a->B, (int)a->T, (int)s->C, (int)s->Vp,
                            m->workspace);
    return 0;
}

const layer_ops layer_embedding = {embedding_plan, embedding_forward, embedding_backward, 0};
