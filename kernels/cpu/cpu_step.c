/* cpu_step.c: the CPU twins of the ops that keep a GPU step free of host round trips -
 * dropout over a batch's rows in one call, the optimizer's verdict (norm, clip factor,
 * skip/stop) in backend memory and the updates guarded by it, batch-norm parameter gradients
 * from the double sums.  Each is built from the existing CPU ops so that it gives the same
 * bits as the per-sample / host-side sequence it replaces (tests/kernels/test_kernels_step.c). */
#include "cpu_internal.h"

#include <math.h>

#include "elementwise.h"

KCPU_SIMD void kcpu_dropout_forward_rows(void *c, float *out, uint8_t *mask, const float *in,
                               int64_t rows, int64_t row_elems, float p, uint64_t seed,
                               uint64_t step_id, int64_t first_row, int layer) {
    const kern_step_values *sv = kcpu_step_values(c);
    if (sv) step_id = sv->step_id;   /* recorded: the step's values (kernels.h) */
    for (int64_t r = 0; r < rows; r++)
        kcpu_dropout_forward(c, out + r * row_elems, mask + r * row_elems, in + r * row_elems,
                             row_elems, p, seed,
                             kern_dropout_stream(step_id, first_row + r, layer));
}

void kcpu_grad_stats(void *c, double *gs, const float *grads, int64_t n, float clip_norm,
                     int max_run, int64_t step) {
    const kern_step_values *sv = kcpu_step_values(c);
    if (sv) step = sv->step;
    double norm = sqrt(kcpu_sumsq(c, grads, n));
    kern_grad_verdict(gs, norm, clip_norm, max_run, step);
}

/* The host is the device here: the sum goes straight to *sumsq. */
void kcpu_sumsq_to(void *c, double *sumsq, const float *grads, int64_t n) {
    *sumsq = kcpu_sumsq(c, grads, n);
}

void kcpu_grad_verdict_from(void *c, double *gs, const double *sumsq, float clip_norm,
                            int max_run, int64_t step) {
    const kern_step_values *sv = kcpu_step_values(c);
    if (sv) step = sv->step;
    kern_grad_verdict(gs, sqrt(*sumsq), clip_norm, max_run, step);
}

KCPU_SIMD void kcpu_sgd_update_guarded(void *c, float *restrict param, float *restrict buf,
                             const float *restrict grad, int64_t n, float lr, float momentum,
                             float weight_decay, int nesterov, const double *gs, int64_t t_plus) {
    if (gs[KERN_GS_SKIP] != 0.0) return;
    const kern_step_values *sv = kcpu_step_values(c);
    if (sv) {
        lr = sv->lr;
        t_plus = sv->t_plus;
    }
    int first = t_plus - (int64_t)gs[KERN_GS_SKIPPED] == 1;
    float scale = (float)gs[KERN_GS_SCALE];
    if (scale == 1.0f) {
        kcpu_sgd_update(c, param, buf, grad, n, lr, momentum, weight_decay, nesterov, first);
        return;
    }
    /* grad * scale rounds exactly as kern_scale's x *= scale did before the update */
    if (momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++)
            param[i] = kern_sgd_plain(param[i], grad[i] * scale, lr, weight_decay);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        param[i] = kern_sgd_momentum(param[i], &buf[i], grad[i] * scale, lr, momentum,
                                     weight_decay, nesterov, first);
}

KCPU_SIMD void kcpu_adamw_update_guarded(void *c, float *restrict param, float *restrict m,
                               float *restrict v, const float *restrict grad, int64_t n,
                               float lr, float beta1, float beta2, float eps,
                               float weight_decay, const double *gs, int64_t t_plus) {
    if (gs[KERN_GS_SKIP] != 0.0) return;
    const kern_step_values *sv = kcpu_step_values(c);
    if (sv) {
        lr = sv->lr;
        t_plus = sv->t_plus;
    }
    int64_t t = t_plus - (int64_t)gs[KERN_GS_SKIPPED];
    float scale = (float)gs[KERN_GS_SCALE];
    if (scale == 1.0f) {
        kcpu_adamw_update(c, param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, t);
        return;
    }
    /* per-step scalars exactly as kcpu_adamw_update computes them */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    for (int64_t i = 0; i < n; i++)
        param[i] = kern_adamw(param[i], &m[i], &v[i], grad[i] * scale, beta1, beta2, eps, decay,
                              step_size, bc2_sqrt);
}

void kcpu_batchnorm_param_grads(void *c, float *restrict dgamma, float *restrict dbeta,
                                const double *restrict red, int C) {
    for (int j = 0; j < C; j++) {
        dbeta[j] += (float)red[j];
        dgamma[j] += (float)red[C + j];
    }
}
