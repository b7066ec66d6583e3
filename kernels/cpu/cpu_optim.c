/* cpu_optim.c: reductions over flat parameter buffers and the optimizer updates on the CPU.
 * The per-element update math lives in elementwise.h, shared with the CUDA backend. */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

#include "elementwise.h"

/* Eight independent double accumulators: the vectoriser can use them as SIMD lanes without
 * reassociating anything, so the result is the same for a given n on every run. */
KCPU_SIMD double kcpu_sumsq(void *c, const float *restrict x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; i++) acc[0] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Inf and NaN are the floats whose exponent bits are all ones. */
int kcpu_has_nonfinite(void *c, const float *restrict x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof(u));
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

KCPU_SIMD void kcpu_sgd_update(void *c, float *restrict param, float *restrict buf,
                     const float *restrict grad, int64_t n, float lr, float momentum,
                     float weight_decay, int nesterov, int first) {
    if (momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++)
            param[i] = kern_sgd_plain(param[i], grad[i], lr, weight_decay);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        param[i] = kern_sgd_momentum(param[i], &buf[i], grad[i], lr, momentum, weight_decay,
                                     nesterov, first);
}

KCPU_SIMD void kcpu_adamw_update(void *c, float *restrict param, float *restrict m, float *restrict v,
                       const float *restrict grad, int64_t n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t t) {
    /* per-step scalars in double, as PyTorch computes them in Python */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    for (int64_t i = 0; i < n; i++)
        param[i] = kern_adamw(param[i], &m[i], &v[i], grad[i], beta1, beta2, eps, decay,
                              step_size, bc2_sqrt);
}
