/* optim: schedules (linear warmup, then cosine or linear decay to min_lr), clipping, update. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int optim_create(optim *o, const config *cfg, int64_t n_params, int64_t total_steps,
                 kern_ctx *k, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    o->k = k;
    o->type = cfg->optimizer;
    o->n = n_params;
    o->lr = cfg->lr;
    o->min_lr = cfg->min_lr;
    o->momentum = cfg->momentum;
    o->nesterov = cfg->nesterov;
    o->beta1 = cfg->beta1;
    o->beta2 = cfg->beta2;
    o->eps = cfg->eps;
    o->weight_decay = cfg->weight_decay;
    o->clip = cfg->clip_grad_norm;
    o->schedule = cfg->schedule;
    o->warmup = cfg->warmup_steps;
    o->total_steps = total_steps;
    size_t bytes = (size_t)n_params * sizeof(float);
    int need_m = o->type == OPT_ADAMW || o->momentum > 0.0f;
    if (need_m && !(o->m = kern_alloc(k, bytes))) goto oom;
    if (o->type == OPT_ADAMW && !(o->v = kern_alloc(k, bytes))) goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating optimizer state (%lld parameters)",
             (long long)n_params);
    optim_free(o);
    return -1;
}

void optim_free(optim *o) {
    if (o->k) {
        kern_free(o->k, o->m);
        kern_free(o->k, o->v);
    }
    memset(o, 0, sizeof *o);
}

float optim_lr(const optim *o, int64_t step) {
    if (o->warmup > 0 && step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    if (o->schedule == SCHED_CONSTANT) return o->lr;
    int64_t span = o->total_steps - o->warmup;
    if (span <= 0) return o->lr;
    double frac = (double)(step - o->warmup) / (double)span;  /* 0 .. 1 */
    if (frac > 1.0) frac = 1.0;
    double decay = o->schedule == SCHED_COSINE ? 0.5 * (1.0 + cos(3.14159265358979323846 * frac)) : 1.0 - frac;
    return (float)(o->min_lr + (o->lr - o->min_lr) * decay);
}

double optim_grad_norm(optim *o, const float *grads) {
    return sqrt(kern_sumsq(o->k, grads, o->n));
}

void optim_clip(optim *o, float *grads, double norm) {
    if (o->clip > 0.0f && norm > o->clip)
        kern_scale(o->k, grads, (float)(o->clip / (norm + 1e-6)), o->n);
}

void optim_step(optim *o, float *params, const float *grads, float lr) {
    o->t++;
    if (o->type == OPT_ADAMW)
        kern_adamw_update(o->k, params, o->m, o->v, grads, o->n, lr, o->beta1, o->beta2, o->eps,
                          o->weight_decay, o->t);
    else
        kern_sgd_update(o->k, params, o->m, grads, o->n, lr, o->momentum, o->weight_decay,
                        o->nesterov, o->t == 1);
}
