/* batchnorm2d over [c, h, w] per channel: batch statistics in training (summed over all
 * ranks when synchronised), running statistics in evaluation.  Parameters weight = gamma [C],
 * bias = beta [C]; buffers running_mean, running_var [C] (PyTorch nn.BatchNorm2d). */
#include <stdlib.h>

#include "layer.h"

typedef struct {
    int64_t w, b, rm, rv;
    float *mean_invstd;   /* [2C] saved by forward */
    double *sums;         /* [2C + 1] statistics / backward sums (+ count) */
} bn_state;

static int bn_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    bn_state *s = calloc(1, sizeof *s);
    if (!(L->state = s)) return plan_fail(err, errlen, L, "out of memory");
    if (L->in.t != 1)
        return plan_fail(err, errlen, L, "batchnorm2d needs images; use layernorm on sequences");
    if (p->m->input_desc.sample_ndim == 3 && p->m->input.c > 1)
        return plan_fail(err, errlen, L, "batchnorm2d on channels-last images [N,H,W,C] with C "
                         "= %lld is not supported yet", (long long)p->m->input.c);
    int64_t C = L->in.c, d[1] = {C};
    L->out = L->in;
    s->w = plan_param(p, L, "weight", 1, d, INIT_ONE, 0, 0);
    s->b = plan_param(p, L, "bias", 1, d, INIT_ZERO, 0, 1);
    s->rm = plan_buffer(p, L, "running_mean", C);
    s->rv = plan_buffer(p, L, "running_var", C);
    if (s->w < 0 || s->b < 0 || s->rm < 0 || s->rv < 0) return plan_fail(err, errlen, L, "out of memory");
    /* running_var starts at 1: its tensor is a buffer, initialised like a ONE parameter */
    p->m->tensors[p->m->n_tensors - 1].init = INIT_ONE;
    if (plan_memory(p, (void **)&s->mean_invstd, (size_t)(2 * C) * 4) ||
        plan_memory(p, (void **)&s->sums, (size_t)(2 * C + 1) * 8))
        return plan_fail(err, errlen, L, "out of memory");
    if (C > p->max_channels) p->max_channels = C;
    L->flops_fwd = 8.0 * (double)shape_size(L->in);
    return 0;
}

/* Statistics over this rank's samples, summed over all ranks when synchronised: sums[2C] and
 * the count of values per channel. */
static double bn_reduce(model *m, const model_layer *L, double *sums_dev, int64_t B) {
    double count = (double)(B * L->in.h * L->in.w);
    if (!L->cfg.sync || !m->allreduce) return count;
    int c2 = (int)(2 * L->in.c);
    kern_to_host(m->k, m->host_sums, sums_dev, (size_t)c2 * sizeof(double));
    m->host_sums[c2] = count;
    if (m->allreduce(m->allreduce_user, m->host_sums, c2 + 1) != 0) return -1.0;
    kern_to_device(m->k, sums_dev, m->host_sums, (size_t)c2 * sizeof(double));
    return m->host_sums[c2];
}

static void bn_forward(model *m, model_layer *L, const model_pass *a) {
    bn_state *s = L->state;
    int C = (int)L->in.c, HW = (int)(L->in.h * L->in.w);
    float *gamma = m->params + s->w, *beta = m->params + s->b;
    float *rm = m->buffers + s->rm, *rv = m->buffers + s->rv;
    float *out = layer_out(m, L);
    const float *in = layer_in(m, L);
    if (!a->training) {
        kern_batchnorm_forward_eval(m->k, out, in, gamma, beta, rm, rv, L->cfg.eps, (int)a->B, C, HW);
        return;
    }
    kern_batchnorm_stats(m->k, s->sums, in, (int)a->B, C, HW);
    double count = bn_reduce(m, L, s->sums, a->B);
    kern_batchnorm_forward(m->k, out, s->mean_invstd, in, gamma, beta, s->sums, count,
                           L->cfg.eps, rm, rv, L->cfg.momentum, (int)a->B, C, HW);
}

static int bn_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                       int need_din) {
    bn_state *s = L->state;
    kern_ctx *k = m->k;
    int C = (int)L->in.c, HW = (int)(L->in.h * L->in.w);
    const float *in = layer_in(m, L);
    /* local sums give this rank's share of dgamma/dbeta (the gradient all-reduce adds the
     * ranks up); the input gradient needs the sums over the whole batch */
    kern_batchnorm_backward_reduce(k, s->sums, dout, in, s->mean_invstd, (int)a->B, C, HW);
    /* dbeta += sum dy, dgamma += sum dy*xhat, from the double sums, on the backend */
    kern_batchnorm_param_grads(k, m->grads + s->w, m->grads + s->b, s->sums, C);
    if (need_din) {
        double count = bn_reduce(m, L, s->sums, a->B);
        kern_batchnorm_backward(k, din, dout, in, s->mean_invstd, m->params + s->w, s->sums,
                                count, (int)a->B, C, HW);
    }
    return 1;
}

const layer_ops layer_batchnorm2d = {bn_plan, bn_forward, bn_backward, 0};
