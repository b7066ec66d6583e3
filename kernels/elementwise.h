/* elementwise.h: per-element math shared by the CPU and CUDA backends.
 *
 * Each function computes one element; the backends own the loops (CPU: plain vectorisable
 * loops, CUDA: one thread per element).  Everything here is branch-light so that gcc turns
 * the CPU loops into SIMD code. */
#ifndef HARNESS_KERNELS_ELEMENTWISE_H
#define HARNESS_KERNELS_ELEMENTWISE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kern_hd.h"
#include "kernels.h"   /* KERN_GS_* */

/* ---- exp of a non-positive argument ----
 * exp(a) for a <= 0 as plain arithmetic, so that the CPU loops that call it vectorise (libm's
 * expf is a call).  Cody-Waite reduction a = n ln2 + r, |r| <= ln2/2 (ln2 split as in
 * Cephes), Taylor to r^7 (truncation < 6e-9 relative), and 2^n put straight into the float's
 * exponent bits.  a is clamped below at -87 (NaN too), so the result never goes below
 * exp(-87) = 1.6e-38: never a denormal, whose arithmetic is very slow on x86.
 * A single clamp on purpose: with two, gcc specialises the clamped arms into constants and
 * computes them for every element (gelu's x / (1 + exp(88)) = a denormal, 10x slower). */
KERN_HD static inline float kern_bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
#endif
}

KERN_HD static inline float kern_exp_nonpos(float a) {
    const float magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer */
    a = a >= -87.0f ? a : -87.0f;
    float n = (a * 1.44269504088896341f + magic) - magic;   /* round(a / ln2), in [-126, 0] */
    float r = a - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * kern_bits_to_float((uint32_t)((int32_t)n + 127) << 23);   /* 2^n */
}

/* ---- GELU, tanh approximation (PyTorch approximate="tanh") ----
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = k (x + 0.044715 x^3),  k = sqrt(2/pi)
 * computed as x * s with s = 0.5 (1 + tanh(u)) = sigmoid(2u): the same function, without the
 * cancellation of 1 + tanh(u) for x << 0.  With e = exp(-2|u|) in (0, 1]:
 *   sigmoid(2u) = 1/(1+e) for u >= 0,  e/(1+e) for u < 0   (and 1 - sigmoid(2u) the other one) */
#define KERN_GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define KERN_GELU_C 0.044715f

KERN_HD static inline float kern_gelu(float x) {
    float u = KERN_GELU_K * (x + KERN_GELU_C * x * x * x);
    float e = kern_exp_nonpos(-2.0f * fabsf(u));
    float q = 1.0f / (1.0f + e);
    float s = u >= 0.0f ? q : e * q;
    return x * s;
}

/* d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) u'  with t = tanh(u), u' = k (1 + 3*0.044715 x^2)
 *             = s + 2 x s (1 - s) u'              with s = sigmoid(2u) */
KERN_HD static inline float kern_gelu_grad(float x) {
    float x2 = x * x;
    float u = KERN_GELU_K * (x + KERN_GELU_C * x2 * x);
    float e = kern_exp_nonpos(-2.0f * fabsf(u));
    float q = 1.0f / (1.0f + e);
    float s = u >= 0.0f ? q : e * q;       /* sigmoid(2u) */
    float s1 = u >= 0.0f ? e * q : q;      /* 1 - sigmoid(2u) */
    float du = KERN_GELU_K * (1.0f + 3.0f * KERN_GELU_C * x2);
    return s + 2.0f * x * s * s1 * du;
}

/* ---- optimizer updates (PyTorch semantics, see kernels.h) ---- */

/* SGD without momentum: param -= lr * (grad + wd*param). */
KERN_HD static inline float kern_sgd_plain(float param, float grad, float lr, float wd) {
    float g = grad + wd * param;
    return param - lr * g;
}

/* SGD with momentum; updates *buf, returns the new param.  first: buf = g (PyTorch's first
 * step clones the gradient instead of decaying a zero buffer). */
KERN_HD static inline float kern_sgd_momentum(float param, float *buf, float grad, float lr,
                                              float momentum, float wd, int nesterov, int first) {
    float g = grad + wd * param;
    float b = first ? g : momentum * (*buf) + g;
    *buf = b;
    float step = nesterov ? g + momentum * b : b;
    return param - lr * step;
}

/* AdamW for one element; updates *m and *v, returns the new param.
 *   decay     = 1 - lr*wd
 *   step_size = lr / (1 - b1^t)
 *   bc2_sqrt  = sqrt(1 - b2^t)
 * (the bias corrections are computed once per step by the caller, in double, as PyTorch does) */
KERN_HD static inline float kern_adamw(float param, float *m, float *v, float grad, float beta1,
                                       float beta2, float eps, float decay, float step_size,
                                       float bc2_sqrt) {
    float mm = beta1 * (*m) + (1.0f - beta1) * grad;
    float vv = beta2 * (*v) + (1.0f - beta2) * grad * grad;
    *m = mm;
    *v = vv;
    float denom = sqrtf(vv) / bc2_sqrt + eps;
    return param * decay - step_size * (mm / denom);
}

/* Batch norm, channel c of C: mean and inverse standard deviation from the (possibly
 * all-reduced) sums {sum x, sum x^2} over count values, saved as mean_invstd[c], [C + c]; the
 * running statistics move towards the batch's with the unbiased variance (PyTorch), unless
 * running_mean is NULL. */
KERN_HD static inline void kern_bn_channel_stats(float *mean_invstd, float *running_mean,
                                                 float *running_var, const double *sums,
                                                 double count, float eps, float momentum,
                                                 int C, int c) {
    double mean = sums[c] / count;
    double var = sums[C + c] / count - mean * mean;
    if (var < 0.0) var = 0.0;   /* rounding of E[x^2] - E[x]^2 */
    mean_invstd[c] = (float)mean;
    mean_invstd[C + c] = (float)(1.0 / sqrt(var + (double)eps));
    if (running_mean && running_var) {
        double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
}

/* ---- the optimizer's verdict on a step (kern_grad_stats), from the global gradient norm ----
 * gs[KERN_GS_*] (kernels.h): a finite norm gives the clip factor and clears the run of skips;
 * a non-finite one skips the step, and after max_run skips in a row stops the run at `step`;
 * once stopped every later step is skipped.  One function for the CPU and the device thread
 * that finishes the reduction, so both backends decide the same. */
KERN_HD static inline void kern_grad_verdict(double *gs, double norm, float clip_norm,
                                             int max_run, int64_t step) {
    gs[KERN_GS_NORM] = norm;
    if (gs[KERN_GS_STOP] != 0.0) {
        gs[KERN_GS_SKIP] = 1.0;
    } else if (isfinite(norm)) {
        gs[KERN_GS_SKIP] = 0.0;
        gs[KERN_GS_RUN] = 0.0;
        gs[KERN_GS_SCALE] = clip_norm > 0.0f && norm > clip_norm
                                ? (double)(float)(clip_norm / (norm + 1e-6)) : 1.0;
    } else {
        gs[KERN_GS_RUN] += 1.0;
        gs[KERN_GS_SKIP] = 1.0;
        if (gs[KERN_GS_RUN] <= (double)max_run) {
            gs[KERN_GS_SKIPPED] += 1.0;
        } else {
            gs[KERN_GS_STOP] = 1.0;
            gs[KERN_GS_STOP_STEP] = (double)step;
        }
    }
}

#endif
