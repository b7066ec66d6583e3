/* cpu_pool.c: max and average pooling on the CPU, one (image, channel) plane at a time.
 *
 *   in[B,C,H,W] -> out[B,C,P,Q], window R x S at (p*sh - ph, q*sw - pw), dilation 1
 *   max:  out = max over the window's in-image elements (padding is -inf, so it never wins);
 *         argmax[B,C,P,Q] = h*W + w of the first maximum in row-major window order; NaN wins
 *         (propagates, as in PyTorch).  Backward: din = 0, din[argmax] += dout.
 *   avg:  out = sum over the in-image elements / (R*S)  (count_include_pad=True).
 *         Backward: din = 0, din[window] += dout / (R*S).
 * The window is clipped to the image once per output row/column, so the inner loops carry no
 * bounds tests. */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

/* Pooling shapes ignore dilation: the output size is that of a dilation-1 window. */
static void pool_out(const kern_conv_shape *s, int *P, int *Q) {
    kern_conv_shape d = *s;
    d.dil_h = d.dil_w = 1;
    *P = kern_conv_out_h(&d);
    *Q = kern_conv_out_w(&d);
}

/* rows [*lo, *hi) of the window starting at `start` (length R) that lie inside [0, H) */
static void clip(int start, int R, int H, int *lo, int *hi) {
    *lo = start < 0 ? 0 : start;
    *hi = start + R > H ? H : start + R;
    if (*hi < *lo) *hi = *lo;
}

/* The common 2x2 window with stride 2 and no padding: every window lies inside the image, so
 * no clipping; the same rules as the general loop (first maximum in row-major window order,
 * NaN wins) written as selects the compiler can keep free of branches. */
static void maxpool_2x2(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                        int64_t planes, int H, int W, int P, int Q) {
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *restrict x = in + pl * H * W;
        float *restrict y = out + pl * P * Q;
        int32_t *restrict am = argmax + pl * P * Q;
        for (int p = 0; p < P; p++) {
            const float *restrict r0 = x + 2 * p * W, *restrict r1 = r0 + W;
            for (int q = 0; q < Q; q++) {
                int32_t i = 2 * p * W + 2 * q;
                float best = r0[2 * q];
                int32_t at = i;
                float v = r0[2 * q + 1];
                int take = v > best || (isnan(v) && !isnan(best));
                best = take ? v : best;
                at = take ? i + 1 : at;
                v = r1[2 * q];
                take = v > best || (isnan(v) && !isnan(best));
                best = take ? v : best;
                at = take ? i + W : at;
                v = r1[2 * q + 1];
                take = v > best || (isnan(v) && !isnan(best));
                best = take ? v : best;
                at = take ? i + W + 1 : at;
                y[p * Q + q] = best;
                am[p * Q + q] = at;
            }
        }
    }
}

void kcpu_maxpool2d_forward(void *c, float *restrict out, int32_t *restrict argmax,
                            const float *restrict in, const kern_conv_shape *s) {
    int P, Q;
    pool_out(s, &P, &Q);
    if (P <= 0 || Q <= 0) return;
    const int H = s->H, W = s->W;
    const int64_t planes = (int64_t)s->B * s->C;
    if (s->R == 2 && s->S == 2 && s->stride_h == 2 && s->stride_w == 2 && s->pad_h == 0 &&
        s->pad_w == 0) {
        maxpool_2x2(out, argmax, in, planes, H, W, P, Q);
        return;
    }
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *restrict x = in + pl * H * W;
        float *restrict y = out + pl * P * Q;
        int32_t *restrict am = argmax + pl * P * Q;
        for (int p = 0; p < P; p++) {
            int h0, h1;
            clip(p * s->stride_h - s->pad_h, s->R, H, &h0, &h1);
            for (int q = 0; q < Q; q++) {
                int w0, w1;
                clip(q * s->stride_w - s->pad_w, s->S, W, &w0, &w1);
                float best = -INFINITY;
                int32_t at = -1;   /* stays -1 only for a window entirely in the padding */
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) {
                        float v = x[h * W + w];
                        if (v > best || at < 0 || (isnan(v) && !isnan(best))) {
                            best = v;
                            at = h * W + w;
                        }
                    }
                y[p * Q + q] = best;
                am[p * Q + q] = at;
            }
        }
    }
}

void kcpu_maxpool2d_backward(void *c, float *restrict din, const float *restrict dout,
                             const int32_t *restrict argmax, const kern_conv_shape *s) {
    int P, Q;
    pool_out(s, &P, &Q);
    const int64_t planes = (int64_t)s->B * s->C, HW = (int64_t)s->H * s->W;
    memset(din, 0, (size_t)(planes * HW) * sizeof(float));
    if (P <= 0 || Q <= 0) return;
    const int PQ = P * Q;
    for (int64_t pl = 0; pl < planes; pl++) {
        float *restrict dx = din + pl * HW;
        const float *restrict dy = dout + pl * PQ;
        const int32_t *restrict am = argmax + pl * PQ;
        for (int i = 0; i < PQ; i++)
            if (am[i] >= 0) dx[am[i]] += dy[i];
    }
}

void kcpu_avgpool2d_forward(void *c, float *restrict out, const float *restrict in,
                            const kern_conv_shape *s) {
    int P, Q;
    pool_out(s, &P, &Q);
    if (P <= 0 || Q <= 0) return;
    const int H = s->H, W = s->W;
    const float inv = 1.0f / (float)(s->R * s->S);
    const int64_t planes = (int64_t)s->B * s->C;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *restrict x = in + pl * H * W;
        float *restrict y = out + pl * P * Q;
        for (int p = 0; p < P; p++) {
            int h0, h1;
            clip(p * s->stride_h - s->pad_h, s->R, H, &h0, &h1);
            for (int q = 0; q < Q; q++) {
                int w0, w1;
                clip(q * s->stride_w - s->pad_w, s->S, W, &w0, &w1);
                float sum = 0.0f;
                for (int h = h0; h < h1; h++) {
                    /* a global pool sums whole rows: 8 partial sums let gcc vectorise */
                    const float *restrict row = x + h * W;
                    float acc[8] = {0};
                    int w = w0;
                    for (; w + 8 <= w1; w += 8)
                        for (int j = 0; j < 8; j++) acc[j] += row[w + j];
                    float rs = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                               ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                    for (; w < w1; w++) rs += row[w];
                    sum += rs;
                }
                y[p * Q + q] = sum * inv;
            }
        }
    }
}

void kcpu_avgpool2d_backward(void *c, float *restrict din, const float *restrict dout,
                             const kern_conv_shape *s) {
    int P, Q;
    pool_out(s, &P, &Q);
    const int H = s->H, W = s->W;
    const int64_t planes = (int64_t)s->B * s->C;
    memset(din, 0, (size_t)(planes * H * W) * sizeof(float));
    if (P <= 0 || Q <= 0) return;
    const float inv = 1.0f / (float)(s->R * s->S);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *restrict dx = din + pl * H * W;
        const float *restrict dy = dout + pl * P * Q;
        for (int p = 0; p < P; p++) {
            int h0, h1;
            clip(p * s->stride_h - s->pad_h, s->R, H, &h0, &h1);
            for (int q = 0; q < Q; q++) {
                int w0, w1;
                clip(q * s->stride_w - s->pad_w, s->S, W, &w0, &w1);
                const float g = dy[p * Q + q] * inv;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) dx[h * W + w] += g;
            }
        }
    }
}
