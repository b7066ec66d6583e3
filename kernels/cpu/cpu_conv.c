/* cpu_conv.c: 2-D convolution on the CPU as im2col + one GEMM (kcpu_gemm) per image and group,
 * except the shapes that oneDNN's own convolution runs faster (cpu_conv_dnnl.c decides and
 * runs them; the workspace then covers its blocked copies as well).
 *
 * Shapes (NCHW, row-major), with Cg = C/groups, Kg = K/groups, PQ = P*Q, CRSg = Cg*R*S:
 *   in[B,C,H,W]  w[K,Cg,R,S] = groups x [Kg, CRSg] matrices  b[K]  out[B,K,P,Q]
 *   cols[C*R*S, PQ]: row (c,r,s), column (p,q) holds in[c, p*sh - ph + r*dh, q*sw - pw + s*dw]
 *   (0 outside the image).  Group g's rows (c in [g*Cg, (g+1)*Cg)) are contiguous, so its
 *   matrix is cols + g*CRSg*PQ.
 * Per image and group:
 *   forward   out_g[Kg,PQ]  = w_g[Kg,CRSg] @ cols_g[CRSg,PQ] (+ b, seeded before the GEMM)
 *   backward  dw_g[Kg,CRSg] += dout_g[Kg,PQ] @ cols_g^T
 *             dcols_g[CRSg,PQ] = w_g^T @ dout_g, then col2im adds dcols into din
 * The workspace is one image's cols (C*R*S*PQ floats), reused for dcols in backward.
 * Fast paths: a 1x1, stride-1, unpadded convolution needs no im2col: the image in[C,HW] is
 * already cols (and din[C,HW] is dcols), so it is GEMMs only and the workspace is not touched.
 * A stride-1 "same"-width convolution (3x3 pad 1, ...) copies each cols row as one contiguous
 * run of the image (see is_contiguous).  Nothing allocates; the loops are plain copies and
 * adds that gcc vectorises. */
#include "cpu_internal.h"

#include <string.h>

static int is_pointwise(const kern_conv_shape *s) {
    return s->R == 1 && s->S == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_h == 0 &&
           s->pad_w == 0;
}

size_t kcpu_conv2d_workspace(void *c, const kern_conv_shape *s) {
    int P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
    if (P <= 0 || Q <= 0) return 0;
    size_t im2col = (size_t)s->C * s->R * s->S * (size_t)P * Q * sizeof(float);
#ifdef HARNESS_HAVE_DNNL
    /* the shapes oneDNN runs (cpu_conv_dnnl.c) need room for their blocked copies too */
    return kcpu_conv_dnnl_workspace(kcpu_conv_state(c), s, im2col);
#else
    return im2col;
#endif
}

/* The outputs q in [*q0, *q1) whose input q*stride + off lies inside [0, W), for a kernel
 * offset off = s*dw - pw (columns) or r*dh - ph (rows, with H, P). */
static void valid_range(int off, int stride, int W, int Q, int *q0, int *q1) {
    int lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int hi = W - off <= 0 ? 0 : (W - off + stride - 1) / stride;   /* first q with q*sw+off >= W */
    if (lo > Q) lo = Q;
    if (hi > Q) hi = Q;
    if (hi < lo) hi = lo;
    *q0 = lo;
    *q1 = hi;
}

/* Stride 1 with Q == W ("same" width: 2*pw == dw*(S-1), e.g. 3x3 pad 1): for one (c,r,s) the
 * in-image part of a cols row is one contiguous run of x shifted by (r*dh - ph)*W + s*dw - pw,
 * except at the wrap positions q < q0 and q >= q1 of each output row, which fall outside the
 * image row (in x they alias a neighbouring row).  Copying (or adding) the whole run at once
 * and fixing the wrap positions replaces P short row copies by one long one. */
static int is_contiguous(const kern_conv_shape *s, int Q) {
    return s->stride_h == 1 && s->stride_w == 1 && Q == s->W;
}

/* cols[C*R*S, P*Q] from one image x[C,H,W] */
static void im2col(float *restrict cols, const float *restrict x, const kern_conv_shape *s,
                   int P, int Q) {
    const int C = s->C, H = s->H, W = s->W, R = s->R, S = s->S;
    const int sh = s->stride_h, sw = s->stride_w;
    const int contiguous = is_contiguous(s, Q);
    for (int c = 0; c < C; c++) {
        const float *restrict xc = x + (size_t)c * H * W;
        for (int r = 0; r < R; r++) {
            int hoff = r * s->dil_h - s->pad_h;
            int p0, p1;   /* output rows whose input row is inside the image */
            valid_range(hoff, sh, H, P, &p0, &p1);
            for (int t = 0; t < S; t++) {
                int woff = t * s->dil_w - s->pad_w;
                int q0, q1;
                valid_range(woff, sw, W, Q, &q0, &q1);
                float *restrict row = cols + ((size_t)(c * R + r) * S + t) * P * Q;
                int pe = q1 > q0 ? p1 : p0;   /* no column inside: every row is zero */
                memset(row, 0, (size_t)p0 * Q * sizeof(float));
                memset(row + (size_t)pe * Q, 0, (size_t)(P - pe) * Q * sizeof(float));
                if (pe <= p0) continue;
                if (contiguous) {
                    /* row[p*Q + q] = xc[(p + hoff)*W + q + woff], from (p0,q0) to (p1-1,q1-1) */
                    size_t n = (size_t)(p1 - p0 - 1) * Q + (q1 - q0);
                    float *restrict dst = row + (size_t)p0 * Q + q0;
                    const float *restrict src = xc + (size_t)(p0 + hoff) * W + (q0 + woff);
                    for (size_t i = 0; i < n; i++) dst[i] = src[i];
                    for (int p = p0; p < p1; p++) {
                        float *restrict d = row + (size_t)p * Q;
                        for (int q = 0; q < q0; q++) d[q] = 0.0f;
                        for (int q = q1; q < Q; q++) d[q] = 0.0f;
                    }
                    continue;
                }
                for (int p = p0; p < pe; p++) {
                    float *restrict dst = row + (size_t)p * Q;
                    const float *restrict xrow = xc + (size_t)(p * sh + hoff) * W;
                    for (int q = 0; q < q0; q++) dst[q] = 0.0f;
                    if (sw == 1) {
                        for (int q = q0; q < q1; q++) dst[q] = xrow[q + woff];
                    } else {
                        for (int q = q0; q < q1; q++) dst[q] = xrow[q * sw + woff];
                    }
                    for (int q = q1; q < Q; q++) dst[q] = 0.0f;
                }
            }
        }
    }
}

/* dx[C,H,W] += cols[C*R*S, P*Q] scattered back (the adjoint of im2col).  The contiguous case
 * zeroes the wrap positions of cols first (cols is scratch), then adds whole runs. */
static void col2im_add(float *restrict dx, float *restrict cols, const kern_conv_shape *s,
                       int P, int Q) {
    const int C = s->C, H = s->H, W = s->W, R = s->R, S = s->S;
    const int sh = s->stride_h, sw = s->stride_w;
    const int contiguous = is_contiguous(s, Q);
    for (int c = 0; c < C; c++) {
        float *restrict xc = dx + (size_t)c * H * W;
        for (int r = 0; r < R; r++) {
            int hoff = r * s->dil_h - s->pad_h;
            int p0, p1;
            valid_range(hoff, sh, H, P, &p0, &p1);
            for (int t = 0; t < S; t++) {
                int woff = t * s->dil_w - s->pad_w;
                int q0, q1;
                valid_range(woff, sw, W, Q, &q0, &q1);
                float *restrict row = cols + ((size_t)(c * R + r) * S + t) * P * Q;
                if (p1 <= p0 || q1 <= q0) continue;
                if (contiguous) {
                    for (int p = p0; p < p1; p++) {
                        float *restrict d = row + (size_t)p * Q;
                        for (int q = 0; q < q0; q++) d[q] = 0.0f;
                        for (int q = q1; q < Q; q++) d[q] = 0.0f;
                    }
                    size_t n = (size_t)(p1 - p0 - 1) * Q + (q1 - q0);
                    const float *restrict src = row + (size_t)p0 * Q + q0;
                    float *restrict dst = xc + (size_t)(p0 + hoff) * W + (q0 + woff);
                    for (size_t i = 0; i < n; i++) dst[i] += src[i];
                    continue;
                }
                for (int p = p0; p < p1; p++) {
                    const float *restrict src = row + (size_t)p * Q;
                    float *restrict xrow = xc + (size_t)(p * sh + hoff) * W;
                    if (sw == 1) {
                        for (int q = q0; q < q1; q++) xrow[q + woff] += src[q];
                    } else {
                        for (int q = q0; q < q1; q++) xrow[q * sw + woff] += src[q];
                    }
                }
            }
        }
    }
}

/* Sum of x[n] in float with 16 independent partial sums: a vectorisable reduction (gcc will
 * not reorder a single running sum) and a smaller rounding error than one running sum. */
static float sum_f32(const float *restrict x, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += x[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += x[i];
    for (int j = 0; j < 8; j++) acc[j] += acc[j + 8];
    for (int j = 0; j < 4; j++) acc[j] += acc[j + 4];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail;
}

int kcpu_conv2d_library(void *c, const kern_conv_shape *s) {
#ifdef HARNESS_HAVE_DNNL
    return kcpu_conv_dnnl_routes(kcpu_conv_state(c), s);
#else
    return 0;
#endif
}

void kcpu_conv2d_forward(void *ctx, float *restrict out, const float *restrict in,
                         const float *restrict w, const float *restrict b,
                         const kern_conv_shape *s, void *workspace) {
    const int P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
    if (s->B <= 0 || s->K <= 0 || P <= 0 || Q <= 0) return;
#ifdef HARNESS_HAVE_DNNL
    if (kcpu_conv_dnnl_forward(kcpu_conv_state(ctx), out, in, w, b, s, workspace) == 0) return;
#endif
    const int G = s->groups, Kg = s->K / G, Cg = s->C / G, PQ = P * Q;
    const int CRSg = Cg * s->R * s->S;
    const int pointwise = is_pointwise(s);
    float *cols = workspace;
    for (int n = 0; n < s->B; n++) {
        const float *x = in + (size_t)n * s->C * s->H * s->W;
        float *y = out + (size_t)n * s->K * PQ;
        /* out seeded with the bias (beta = 1) or overwritten (beta = 0) */
        float beta = 0.0f;
        if (b) {
            for (int k = 0; k < s->K; k++) {
                float *restrict yk = y + (size_t)k * PQ;
                const float bk = b[k];
                for (int i = 0; i < PQ; i++) yk[i] = bk;
            }
            beta = 1.0f;
        }
        if (CRSg == 0) {
            if (!b) memset(y, 0, (size_t)s->K * PQ * sizeof(float));
            continue;
        }
        const float *xcols = x;
        if (!pointwise) {
            im2col(cols, x, s, P, Q);
            xcols = cols;
        }
        for (int g = 0; g < G; g++) {
            /* y_g[Kg,PQ] (+)= w_g[Kg,CRSg] @ cols_g[CRSg,PQ] */
            kcpu_gemm(ctx, 0, 0, Kg, PQ, CRSg, w + (size_t)g * Kg * CRSg, CRSg,
                      xcols + (size_t)g * CRSg * PQ, PQ, beta, y + (size_t)g * Kg * PQ, PQ);
        }
    }
}

void kcpu_conv2d_backward(void *ctx, float *restrict din, float *restrict dw,
                          float *restrict db, const float *restrict dout,
                          const float *restrict in, const float *restrict w,
                          const kern_conv_shape *s, void *workspace) {
    const int P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
    const size_t CHW = (size_t)s->C * s->H * s->W;
    if (s->B <= 0) return;
    if (s->K <= 0 || P <= 0 || Q <= 0) {
        if (din) memset(din, 0, (size_t)s->B * CHW * sizeof(float));
        return;
    }
#ifdef HARNESS_HAVE_DNNL
    if (kcpu_conv_dnnl_backward(kcpu_conv_state(ctx), din, dw, db, dout, in, w, s, workspace) == 0)
        return;
#endif
    const int G = s->groups, Kg = s->K / G, Cg = s->C / G, PQ = P * Q;
    const int CRSg = Cg * s->R * s->S;
    const int pointwise = is_pointwise(s);
    float *cols = workspace;
    for (int n = 0; n < s->B; n++) {
        const float *x = in + (size_t)n * CHW;
        const float *dy = dout + (size_t)n * s->K * PQ;
        float *dx = din ? din + (size_t)n * CHW : NULL;
        if (db)
            for (int k = 0; k < s->K; k++) db[k] += sum_f32(dy + (size_t)k * PQ, PQ);
        if (CRSg == 0) continue;

        /* dw_g[Kg,CRSg] += dy_g[Kg,PQ] @ cols_g[CRSg,PQ]^T (dw NULL: din only, benchmarks) */
        if (dw) {
            const float *xcols = x;
            if (!pointwise) {
                im2col(cols, x, s, P, Q);
                xcols = cols;
            }
            for (int g = 0; g < G; g++)
                kcpu_gemm(ctx, 0, 1, Kg, CRSg, PQ, dy + (size_t)g * Kg * PQ, PQ,
                          xcols + (size_t)g * CRSg * PQ, PQ, 1.0f, dw + (size_t)g * Kg * CRSg,
                          CRSg);
        }
        if (!dx) continue;

        /* dcols_g[CRSg,PQ] = w_g[Kg,CRSg]^T @ dy_g[Kg,PQ]; pointwise: dcols is dx itself */
        float *dcols = pointwise ? dx : cols;
        for (int g = 0; g < G; g++)
            kcpu_gemm(ctx, 1, 0, CRSg, PQ, Kg, w + (size_t)g * Kg * CRSg, CRSg,
                      dy + (size_t)g * Kg * PQ, PQ, 0.0f, dcols + (size_t)g * CRSg * PQ, PQ);
        if (!pointwise) {
            memset(dx, 0, CHW * sizeof(float));
            col2im_add(dx, cols, s, P, Q);
        }
    }
}
