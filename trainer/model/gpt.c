/* gpt: the model.gpt preset. */
#include "gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    layer_config *l;
    int n;
} layer_list;

static layer_config *add(layer_list *ls, layer_type type, const char *name) {
    layer_config *l = &ls->l[ls->n++];
    memset(l, 0, sizeof *l);
    l->type = type;
    if (name) snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

/* transformer.h.I.<what>: a layer norm, or a linear layer of `out` features */
static void add_norm(layer_list *ls, const config *cfg, int block, const char *what) {
    char name[48];
    snprintf(name, sizeof name, "transformer.h.%d.%s", block, what);
    layer_config *l = add(ls, LAYER_LAYERNORM, name);
    l->eps = 1e-5f;
    l->bias = cfg->gpt_bias;
}

static void add_linear(layer_list *ls, const config *cfg, int block, const char *what, int out,
                       float std) {
    char name[48];
    snprintf(name, sizeof name, "transformer.h.%d.%s", block, what);
    layer_config *l = add(ls, LAYER_LINEAR, name);
    l->out = out;
    l->bias = cfg->gpt_bias;
    l->init_std = std;
}

int gpt_expand(const config *cfg, const model_input_desc *in, layer_config **out, int *n,
               char *err, size_t errlen) {
    int L = cfg->gpt_layers, C = cfg->gpt_dim;
    float p = cfg->gpt_dropout;
    if (!in->tokens) {
        snprintf(err, errlen, "model.gpt: a GPT trains on a token dataset (/tokens), but %s "
                 "holds images or vectors", cfg->train_path);
        return -1;
    }
    if (in->sample_shape[0] > cfg->gpt_context) {
        snprintf(err, errlen, "model.gpt.context: %d is shorter than the samples' %lld tokens",
                 cfg->gpt_context, (long long)in->sample_shape[0]);
        return -1;
    }
    int per_block = 14 + (p > 0 ? 2 : 0);
    layer_list ls = {calloc((size_t)(4 + L * per_block), sizeof(layer_config)), 0};
    if (!ls.l) return snprintf(err, errlen, "out of memory"), -1;
    float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)L);
    layer_config *e = add(&ls, LAYER_EMBEDDING, "transformer");
    e->out = C;
    e->context = cfg->gpt_context;
    e->init_std = std;
    if (p > 0) add(&ls, LAYER_DROPOUT, "transformer.drop")->p = p;
    for (int i = 0; i < L; i++) {
        /* attention: x + c_proj(attn(c_attn(ln_1(x)))); MLP: x + c_proj(gelu(c_fc(ln_2(x)))) */
        add(&ls, LAYER_RESIDUAL_START, NULL);
        add_norm(&ls, cfg, i, "ln_1");
        add_linear(&ls, cfg, i, "attn.c_attn", 3 * C, std);
        char name[48];
        snprintf(name, sizeof name, "transformer.h.%d.attn", i);
        add(&ls, LAYER_ATTENTION, name)->heads = cfg->gpt_heads;
        add_linear(&ls, cfg, i, "attn.c_proj", C, proj_std);
        if (p > 0) add(&ls, LAYER_DROPOUT, NULL)->p = p;
        add(&ls, LAYER_RESIDUAL_END, NULL);
        add(&ls, LAYER_RESIDUAL_START, NULL);
        add_norm(&ls, cfg, i, "ln_2");
        add_linear(&ls, cfg, i, "mlp.c_fc", 4 * C, std);
        add(&ls, LAYER_GELU, NULL);
        add_linear(&ls, cfg, i, "mlp.c_proj", C, proj_std);
        if (p > 0) add(&ls, LAYER_DROPOUT, NULL)->p = p;
        add(&ls, LAYER_RESIDUAL_END, NULL);
    }
    layer_config *f = add(&ls, LAYER_LAYERNORM, "transformer.ln_f");
    f->eps = 1e-5f;
    f->bias = cfg->gpt_bias;
    layer_config *h = add(&ls, LAYER_LM_HEAD, "lm_head");
    h->tie = cfg->gpt_tie;
    h->init_std = std;
    *out = ls.l;
    *n = ls.n;
    return 0;
}
