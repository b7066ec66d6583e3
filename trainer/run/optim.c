/* optim: schedules (linear warmup, then cosine or linear decay to min_lr), clipping, update. */
#include "optim.h"

#include "elementwise.h"   /* kern_grad_verdict */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int optim_state_count(const config *cfg) {
    return cfg->optimizer == OPT_ADAMW ? 2 : cfg->momentum > 0.0f ? 1 : 0;
}

int optim_create(optim *o, const config *cfg, int64_t n_params, int64_t total_steps,
                 kern_ctx *k, char *err, size_t errlen) {
    return optim_create_shard(o, cfg, n_params, 0, n_params, total_steps, k, err, errlen);
}

int optim_create_shard(optim *o, const config *cfg, int64_t n_params, int64_t lo, int64_t count,
                       int64_t total_steps, kern_ctx *k, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    o->k = k;
    o->type = cfg->optimizer;
    o->n = count;
    o->shard_lo = lo;
    o->n_total = n_params;
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
    o->max_skips = cfg->nonfinite == NONFINITE_SKIP ? OPTIM_MAX_SKIPS : 0;
    size_t bytes = (size_t)count * sizeof(float) + (count == 0 ? sizeof(float) : 0);
    int need_m = o->type == OPT_ADAMW || o->momentum > 0.0f;
    if (need_m && !(o->m = kern_alloc(k, bytes))) goto oom;
    if (o->type == OPT_ADAMW && !(o->v = kern_alloc(k, bytes))) goto oom;
    if (!(o->gstate = kern_alloc(k, KERN_GS_LEN * sizeof(double)))) goto oom;   /* zeroed */
    if (kern_get_backend(k) != KERN_CPU && !(o->sumsq = kern_alloc(k, sizeof(double)))) goto oom;
    if (!(o->runs = malloc(sizeof *o->runs))) goto oom;
    o->n_runs = 1;
    o->runs[0] = (struct optim_run){0, count, 1};
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating optimizer state (%lld parameters)",
             (long long)count);
    optim_free(o);
    return -1;
}

int optim_set_decay(optim *o, const int64_t *offsets, const int64_t *counts, const int *decay,
                    int n) {
    struct optim_run *runs = malloc((size_t)(n > 0 ? n : 1) * sizeof *runs);
    if (!runs) return -1;
    int k = 0;
    int64_t lo = o->shard_lo, hi = o->shard_lo + o->n;
    for (int i = 0; i < n; i++) {
        /* the part of tensor i inside the shard, in shard coordinates */
        int64_t a = offsets[i] > lo ? offsets[i] : lo;
        int64_t b = offsets[i] + counts[i] < hi ? offsets[i] + counts[i] : hi;
        if (b <= a) continue;
        if (k > 0 && runs[k - 1].decay == (decay[i] != 0) &&
            runs[k - 1].offset + runs[k - 1].count == a - lo)
            runs[k - 1].count += b - a;
        else
            runs[k++] = (struct optim_run){a - lo, b - a, decay[i] != 0};
    }
    free(o->runs);
    o->runs = runs;
    o->n_runs = k;
    return 0;
}

void optim_free(optim *o) {
    free(o->runs);
    if (o->k) {
        kern_free(o->k, o->m);
        kern_free(o->k, o->v);
        kern_free(o->k, o->gstate);
        kern_free(o->k, o->sumsq);
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
    for (int i = 0; i < o->n_runs; i++) {
        int64_t off = o->runs[i].offset, n = o->runs[i].count;
        float wd = o->runs[i].decay ? o->weight_decay : 0.0f;
        if (o->type == OPT_ADAMW)
            kern_adamw_update(o->k, params + off, o->m + off, o->v + off, grads + off, n, lr,
                              o->beta1, o->beta2, o->eps, wd, o->t);
        else
            kern_sgd_update(o->k, params + off, o->m ? o->m + off : NULL, grads + off, n, lr,
                            o->momentum, wd, o->nesterov, o->t == 1);
    }
}

int64_t optim_count_step(optim *o) {
    o->t++;   /* an attempt; optim_read takes the skipped ones off again */
    return o->t + o->skips_seen;
}

void optim_device_step(optim *o, float *params, const float *grads, float lr, int64_t step) {
    int64_t t_plus = optim_count_step(o);
    optim_queue_update(o, params, grads, lr, step, t_plus);
}

void optim_queue_update(optim *o, float *params, const float *grads, float lr, int64_t step,
                        int64_t t_plus) {
    int max_run = o->max_skips;
    double ss_known;
    if (o->sum_across_ranks && o->sumsq) {
        /* Sharded on a GPU: the shard's sum of squares into device memory, summed over the
         * ranks there (the caller queues one all-reduce of one double), then a one-thread
         * verdict into gstate: the guarded updates below read it, the host never does. */
        kern_sumsq_to(o->k, o->sumsq, grads, o->n);
        o->sum_across_ranks(o->sum_user, o->sumsq);
        kern_grad_verdict_from(o->k, o->gstate, o->sumsq, o->clip, max_run, step);
    } else if (o->sum_across_ranks) {
        /* Sharded on the CPU: this shard's sum of squares (from the exchange, or the same
         * per-shard reduction as kern_sumsq), summed over the ranks in double, then the same
         * verdict as kern_grad_stats. */
        double ss;
        if (!o->known_sumsq || !o->known_sumsq(o->sum_user, &ss))
            ss = kern_sumsq(o->k, grads, o->n);
        o->sum_across_ranks(o->sum_user, &ss);
        kern_grad_verdict(o->gstate, sqrt(ss), o->clip, max_run, step);
    } else if (o->known_sumsq && o->known_sumsq(o->sum_user, &ss_known)) {
        /* from the exchange: the same verdict as kern_grad_stats */
        kern_grad_verdict(o->gstate, sqrt(ss_known), o->clip, max_run, step);
    } else {
        kern_grad_stats(o->k, o->gstate, grads, o->n, o->clip, max_run, step);
    }
    for (int i = 0; i < o->n_runs; i++) {
        int64_t off = o->runs[i].offset, n = o->runs[i].count;
        float wd = o->runs[i].decay ? o->weight_decay : 0.0f;
        if (o->type == OPT_ADAMW)
            kern_adamw_update_guarded(o->k, params + off, o->m + off, o->v + off, grads + off, n,
                                      lr, o->beta1, o->beta2, o->eps, wd, o->gstate, t_plus);
        else
            kern_sgd_update_guarded(o->k, params + off, o->m ? o->m + off : NULL, grads + off, n,
                                    lr, o->momentum, wd, o->nesterov, o->gstate, t_plus);
    }
}

void optim_read(optim *o, optim_verdict *v) {
    double gs[KERN_GS_LEN];
    kern_to_host(o->k, gs, o->gstate, sizeof gs);
    int64_t skipped = (int64_t)gs[KERN_GS_SKIPPED];
    memset(v, 0, sizeof *v);
    v->norm = gs[KERN_GS_NORM];
    v->skipped = gs[KERN_GS_SKIP] != 0.0;
    v->skipped_total = skipped;
    v->new_skips = skipped - o->skips_seen;
    v->run = (int64_t)gs[KERN_GS_RUN];
    v->stop = gs[KERN_GS_STOP] != 0.0;
    v->stop_step = (int64_t)gs[KERN_GS_STOP_STEP];
    o->t -= v->new_skips;
    o->skips_seen = skipped;
}
