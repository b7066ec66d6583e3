/* cuda_elementwise.cu: fills, copies, input conversion and activations on the GPU.
 *
 * One grid-stride loop per op, int64 indices.  Each element is read and written by the same
 * thread, so in-place use (out == in, din == dout, y == x) is safe and no pointer is
 * __restrict__.  The per-element math is elementwise.h's, and this directory is compiled with
 * --fmad=false (see CMakeLists.txt), so the results are the CPU's bit for bit. */
#include "cuda_internal.h"

#include "elementwise.h"

__global__ static void fill_kernel(float *x, float value, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) x[i] = value;
}

__global__ static void scale_kernel(float *x, float alpha, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) x[i] *= alpha;
}

__global__ static void axpy_kernel(float *y, float alpha, const float *x, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) y[i] += alpha * x[i];
}

__global__ static void u8_to_f32_kernel(float *dst, const uint8_t *src, int64_t n,
                                        float in_scale, float mean, float std) {
    KCUDA_GRID_STRIDE_LOOP(i, n) dst[i] = ((float)src[i] * in_scale - mean) / std;
}

__global__ static void normalize_kernel(float *dst, const float *src, int64_t n, float mean,
                                        float std) {
    KCUDA_GRID_STRIDE_LOOP(i, n) dst[i] = (src[i] - mean) / std;
}

__global__ static void relu_forward_kernel(float *out, const float *in, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        float x = in[i];
        out[i] = x < 0.0f ? 0.0f : x;   /* NaN propagates, as on the CPU and in PyTorch */
    }
}

__global__ static void relu_backward_kernel(float *din, const float *dout, const float *in,
                                            int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) din[i] = in[i] > 0.0f ? dout[i] : 0.0f;
}

__global__ static void gelu_forward_kernel(float *out, const float *in, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) out[i] = kern_gelu(in[i]);
}

__global__ static void gelu_backward_kernel(float *din, const float *dout, const float *in,
                                            int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) din[i] = dout[i] * kern_gelu_grad(in[i]);
}

void kcuda_fill(void *ctx, float *x, float value, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    fill_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(x, value, n);
    KCUDA_LAUNCHED(c, "fill_kernel");
}

/* dst and src must be the same buffer or not overlap (cudaMemcpy semantics). */
void kcuda_copy(void *ctx, float *dst, const float *src, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0 || dst == src) return;
    KCUDA_OP(c, cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice,
                                  c->stream));
}

void kcuda_scale(void *ctx, float *x, float alpha, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    scale_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(x, alpha, n);
    KCUDA_LAUNCHED(c, "scale_kernel");
}

/* y += alpha*x; y == x is y *= 1 + alpha, rounded as the CPU rounds it. */
void kcuda_axpy(void *ctx, float *y, float alpha, const float *x, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    if (y == x) {
        kcuda_scale(c, y, 1.0f + alpha, n);
        return;
    }
    axpy_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(y, alpha, x, n);
    KCUDA_LAUNCHED(c, "axpy_kernel");
}

void kcuda_u8_to_f32(void *ctx, float *dst, const uint8_t *src, int64_t n, float in_scale,
                     float mean, float std) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    u8_to_f32_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(dst, src, n,
                                                                           in_scale, mean, std);
    KCUDA_LAUNCHED(c, "u8_to_f32_kernel");
}

void kcuda_f32_normalize(void *ctx, float *dst, const float *src, int64_t n, float mean,
                         float std) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    normalize_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(dst, src, n, mean,
                                                                           std);
    KCUDA_LAUNCHED(c, "normalize_kernel");
}

void kcuda_relu_forward(void *ctx, float *out, const float *in, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    relu_forward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(out, in, n);
    KCUDA_LAUNCHED(c, "relu_forward_kernel");
}

void kcuda_relu_backward(void *ctx, float *din, const float *dout, const float *in,
                         int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    relu_backward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(din, dout, in,
                                                                               n);
    KCUDA_LAUNCHED(c, "relu_backward_kernel");
}

void kcuda_gelu_forward(void *ctx, float *out, const float *in, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    gelu_forward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(out, in, n);
    KCUDA_LAUNCHED(c, "gelu_forward_kernel");
}

void kcuda_gelu_backward(void *ctx, float *din, const float *dout, const float *in,
                         int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    gelu_backward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(din, dout, in,
                                                                               n);
    KCUDA_LAUNCHED(c, "gelu_backward_kernel");
}
