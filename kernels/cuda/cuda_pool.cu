/* cuda_pool.cu: max and average pooling on the GPU, with the CPU's exact conventions
 * (cpu_pool.c), so that the results are bit-identical to it.
 *
 *   in[B,C,H,W] -> out[B,C,P,Q], window R x S at (p*sh - ph, q*sw - pw), dilation 1, clipped
 *   to the image.  A "plane" is one (image, channel) pair.
 *   max:  out = max over the window; argmax = h*W + w of the first maximum in row-major window
 *         order (NaN wins; -1 for a window wholly in the padding).
 *   avg:  out = window sum / (R*S) (count_include_pad=True), summed in the CPU's order (8
 *         partial sums per window row), so a global average pool is the same number too.
 *
 * Forward: one thread per output element.  Backward: one thread per INPUT element, which
 * gathers from the outputs whose windows contain it, in increasing output order starting from
 * 0 - exactly the sums that the CPU's scatter (din = 0; din[...] += ... over the outputs in
 * order) makes, without atomics: deterministic, bit-identical, and every din element written
 * (no separate zeroing pass). */
#include "cuda_internal.h"

#include <math.h>

/* floor(a / b) for b > 0 and any sign of a */
__device__ static inline int floor_div(int a, int b) {
    int q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The outputs o in [*lo, *hi] whose window [o*stride - pad, o*stride - pad + win) contains
 * position x, within [0, n): o*stride <= x + pad < o*stride + win.  Empty when *lo > *hi. */
__device__ static inline void windows_containing(int x, int pad, int win, int stride, int n,
                                                 int *lo, int *hi) {
    int first = floor_div(x + pad - win, stride) + 1;   /* smallest o with o*stride > x+pad-win */
    int last = floor_div(x + pad, stride);
    *lo = first > 0 ? first : 0;
    *hi = last < n - 1 ? last : n - 1;
}

/* Pooling geometry of a shape: output size with dilation 1 (as the CPU's pool_out) */
static void pool_out(const kern_conv_shape *s, int *P, int *Q) {
    *P = kcuda_conv_out_size(s->H, s->pad_h, 1, s->R, s->stride_h);
    *Q = kcuda_conv_out_size(s->W, s->pad_w, 1, s->S, s->stride_w);
}

typedef struct {
    int H, W, P, Q, R, S, sh, sw, ph, pw;
} pool_geom;

static pool_geom geometry(const kern_conv_shape *s, int P, int Q) {
    pool_geom g = {s->H, s->W, P, Q, s->R, s->S, s->stride_h, s->stride_w, s->pad_h, s->pad_w};
    return g;
}

/* Output element idx of out[planes,P,Q]: its plane and its window, clipped to the image, as
 * rows [h0, h1) and columns [w0, w1) of the plane. */
typedef struct {
    int64_t plane;
    int h0, h1, w0, w1;
} output_window;

__device__ static inline output_window window_of_output(int64_t idx, const pool_geom &g) {
    output_window o;
    int q = (int)(idx % g.Q);
    int64_t t = idx / g.Q;
    int p = (int)(t % g.P);
    o.plane = t / g.P;
    int hs = p * g.sh - g.ph, ws = q * g.sw - g.pw;
    o.h0 = hs < 0 ? 0 : hs, o.h1 = hs + g.R > g.H ? g.H : hs + g.R;
    o.w0 = ws < 0 ? 0 : ws, o.w1 = ws + g.S > g.W ? g.W : ws + g.S;
    return o;
}

/* Input element idx of in[planes,H,W]: its plane, its position (h, w), and the outputs
 * [p0, p1] x [q0, q1] of the plane whose windows contain it (empty when p0 > p1 or q0 > q1). */
typedef struct {
    int64_t plane;
    int h, w, p0, p1, q0, q1;
} input_windows;

__device__ static inline input_windows windows_of_input(int64_t idx, const pool_geom &g) {
    input_windows i;
    i.w = (int)(idx % g.W);
    int64_t t = idx / g.W;
    i.h = (int)(t % g.H);
    i.plane = t / g.H;
    windows_containing(i.h, g.ph, g.R, g.sh, g.P, &i.p0, &i.p1);
    windows_containing(i.w, g.pw, g.S, g.sw, g.Q, &i.q0, &i.q1);
    return i;
}

__global__ static void maxpool_forward_kernel(float *out, int32_t *argmax, const float *in,
                                              int64_t n, pool_geom g) {
    KCUDA_GRID_STRIDE_LOOP(idx, n) {
        const output_window o = window_of_output(idx, g);
        const float *x = in + o.plane * g.H * g.W;
        float best = -INFINITY;
        int32_t at = -1;
        for (int h = o.h0; h < o.h1; h++)
            for (int w = o.w0; w < o.w1; w++) {
                float v = x[h * g.W + w];
                if (v > best || at < 0 || (isnan(v) && !isnan(best))) {
                    best = v;
                    at = h * g.W + w;
                }
            }
        out[idx] = best;
        argmax[idx] = at;
    }
}

/* din[plane, h, w] = sum of dout over the outputs of the plane whose argmax is (h, w) */
__global__ static void maxpool_backward_kernel(float *din, const float *dout,
                                               const int32_t *argmax, int64_t n, pool_geom g) {
    KCUDA_GRID_STRIDE_LOOP(idx, n) {
        const input_windows elem = windows_of_input(idx, g);
        const float *dy = dout + elem.plane * g.P * g.Q;
        const int32_t *am = argmax + elem.plane * g.P * g.Q;
        const int32_t self = elem.h * g.W + elem.w;
        float acc = 0.0f;
        for (int p = elem.p0; p <= elem.p1; p++)
            for (int q = elem.q0; q <= elem.q1; q++)
                if (am[p * g.Q + q] == self) acc += dy[p * g.Q + q];
        din[idx] = acc;
    }
}

__global__ static void avgpool_forward_kernel(float *out, const float *in, int64_t n,
                                              pool_geom g, float inv) {
    KCUDA_GRID_STRIDE_LOOP(idx, n) {
        const output_window o = window_of_output(idx, g);
        const float *x = in + o.plane * g.H * g.W;
        float sum = 0.0f;
        for (int h = o.h0; h < o.h1; h++) {
            /* the CPU's order: 8 partial sums over the row, combined pairwise, then the tail */
            const float *row = x + h * g.W;
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            int w = o.w0;
            for (; w + 8 <= o.w1; w += 8) {
#pragma unroll
                for (int j = 0; j < 8; j++) acc[j] += row[w + j];
            }
            float rs = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                       ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for (; w < o.w1; w++) rs += row[w];
            sum += rs;
        }
        out[idx] = sum * inv;
    }
}

/* din[plane, h, w] = sum of dout * inv over the outputs whose window contains (h, w) */
__global__ static void avgpool_backward_kernel(float *din, const float *dout, int64_t n,
                                               pool_geom g, float inv) {
    KCUDA_GRID_STRIDE_LOOP(idx, n) {
        const input_windows elem = windows_of_input(idx, g);
        const float *dy = dout + elem.plane * g.P * g.Q;
        float acc = 0.0f;
        for (int p = elem.p0; p <= elem.p1; p++)
            for (int q = elem.q0; q <= elem.q1; q++) acc += dy[p * g.Q + q] * inv;
        din[idx] = acc;
    }
}

/* The outputs that a forward pass of shape s computes (B*C*P*Q), and its P and Q; 0 when there
 * are none. */
static int64_t forward_elements(const kern_conv_shape *s, int *P, int *Q) {
    pool_out(s, P, Q);
    int64_t n = (int64_t)s->B * s->C * *P * *Q;
    return *P <= 0 || *Q <= 0 || n <= 0 ? 0 : n;
}

/* The din elements that a backward pass of shape s computes (B*C*H*W), and its P and Q; 0 when
 * there is nothing to launch: no input, or no output, where nothing flows back (din zeroed). */
static int64_t backward_elements(kcuda_ctx *c, float *din, const kern_conv_shape *s, int *P,
                                 int *Q) {
    pool_out(s, P, Q);
    int64_t n = (int64_t)s->B * s->C * s->H * s->W;
    if (n <= 0) return 0;
    if (*P <= 0 || *Q <= 0) {
        KCUDA_OP(c, cudaMemsetAsync(din, 0, (size_t)n * sizeof(float), c->stream));
        return 0;
    }
    return n;
}

void kcuda_maxpool2d_forward(void *ctx, float *out, int32_t *argmax, const float *in,
                             const kern_conv_shape *s) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P, Q;
    int64_t n = forward_elements(s, &P, &Q);
    if (n == 0) return;
    maxpool_forward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        out, argmax, in, n, geometry(s, P, Q));
    KCUDA_LAUNCHED(c, "maxpool_forward_kernel");
}

void kcuda_maxpool2d_backward(void *ctx, float *din, const float *dout, const int32_t *argmax,
                              const kern_conv_shape *s) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P, Q;
    int64_t n = backward_elements(c, din, s, &P, &Q);
    if (n == 0) return;
    maxpool_backward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        din, dout, argmax, n, geometry(s, P, Q));
    KCUDA_LAUNCHED(c, "maxpool_backward_kernel");
}

void kcuda_avgpool2d_forward(void *ctx, float *out, const float *in, const kern_conv_shape *s) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P, Q;
    int64_t n = forward_elements(s, &P, &Q);
    if (n == 0) return;
    const float inv = 1.0f / (float)(s->R * s->S);   /* as the CPU computes it */
    avgpool_forward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        out, in, n, geometry(s, P, Q), inv);
    KCUDA_LAUNCHED(c, "avgpool_forward_kernel");
}

void kcuda_avgpool2d_backward(void *ctx, float *din, const float *dout,
                              const kern_conv_shape *s) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P, Q;
    int64_t n = backward_elements(c, din, s, &P, &Q);
    if (n == 0) return;
    const float inv = 1.0f / (float)(s->R * s->S);
    avgpool_backward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        din, dout, n, geometry(s, P, Q), inv);
    KCUDA_LAUNCHED(c, "avgpool_backward_kernel");
}
