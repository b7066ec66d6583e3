/* cpu_elementwise.c: fills, copies, input conversion and activations on the CPU.
 *
 * Loops are written for gcc's vectoriser: restrict pointers, no calls, no early exits.
 * Activations allow in-place use (out == in, din == dout), which restrict forbids, so each
 * has an aliasing-free out-of-place loop and a separate single-pointer in-place loop. */
#include "cpu_internal.h"

#include <string.h>

#include "elementwise.h"

void kcpu_fill(void *c, float *restrict x, float value, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = value;
}

void kcpu_copy(void *c, float *dst, const float *src, int64_t n) {
    if (n > 0 && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
}

void kcpu_scale(void *c, float *restrict x, float alpha, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

const char *kcpu_simd_level(void) {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    /* the order and the tests of the clones' resolver (KCPU_SIMD) */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "loops x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3")) return "loops x86-64-v3 (AVX2)";
    return "loops x86-64";
#else
    return "loops as compiled";
#endif
}

/* y += alpha*x; y == x is allowed (then y *= 1 + alpha). */
KCPU_SIMD void kcpu_axpy(void *c, float *y, float alpha, const float *x, int64_t n) {
    if (y == x) {
        kcpu_scale(c, y, 1.0f + alpha, n);
        return;
    }
    float *restrict yr = y;
    const float *restrict xr = x;
    for (int64_t i = 0; i < n; i++) yr[i] += alpha * xr[i];
}

KCPU_SIMD void kcpu_u8_to_f32(void *c, float *restrict dst, const uint8_t *restrict src, int64_t n,
                    float in_scale, float mean, float std) {
    for (int64_t i = 0; i < n; i++) dst[i] = ((float)src[i] * in_scale - mean) / std;
}

KCPU_SIMD static void normalize_inplace(float *restrict x, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = (x[i] - mean) / std;
}

KCPU_SIMD void kcpu_f32_normalize(void *c, float *dst, const float *src, int64_t n, float mean,
                        float std) {
    if (dst == src) {
        normalize_inplace(dst, n, mean, std);
        return;
    }
    float *restrict d = dst;
    const float *restrict s = src;
    for (int64_t i = 0; i < n; i++) d[i] = (s[i] - mean) / std;
}

/* ---- ReLU ---- */

KCPU_SIMD static void relu_forward_inplace(float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];   /* NaN propagates, as in PyTorch */
}

KCPU_SIMD void kcpu_relu_forward(void *c, float *out, const float *in, int64_t n) {
    if (out == in) {
        relu_forward_inplace(out, n);
        return;
    }
    float *restrict o = out;
    const float *restrict x = in;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] < 0.0f ? 0.0f : x[i];
}

KCPU_SIMD static void relu_backward_inplace(float *restrict d, const float *restrict in, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = d[i];
        d[i] = in[i] > 0.0f ? g : 0.0f;
    }
}

KCPU_SIMD void kcpu_relu_backward(void *c, float *din, const float *dout, const float *in, int64_t n) {
    if (din == dout) {
        relu_backward_inplace(din, in, n);
        return;
    }
    float *restrict dx = din;
    const float *restrict dy = dout;
    const float *restrict x = in;
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i];
        dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
}

/* ---- GELU (tanh approximation) ---- */

KCPU_SIMD static void gelu_forward_inplace(float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = kern_gelu(x[i]);
}

KCPU_SIMD void kcpu_gelu_forward(void *c, float *out, const float *in, int64_t n) {
    if (out == in) {
        gelu_forward_inplace(out, n);
        return;
    }
    float *restrict o = out;
    const float *restrict x = in;
    for (int64_t i = 0; i < n; i++) o[i] = kern_gelu(x[i]);
}

KCPU_SIMD static void gelu_backward_inplace(float *restrict d, const float *restrict in, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] *= kern_gelu_grad(in[i]);
}

KCPU_SIMD void kcpu_gelu_backward(void *c, float *din, const float *dout, const float *in, int64_t n) {
    if (din == dout) {
        gelu_backward_inplace(din, in, n);
        return;
    }
    float *restrict dx = din;
    const float *restrict dy = dout;
    const float *restrict x = in;
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * kern_gelu_grad(x[i]);
}
