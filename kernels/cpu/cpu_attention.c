/* cpu_attention.c: causal multi-head self-attention on the CPU, OpenBLAS GEMMs per (sequence,
 * head) on strided views of the fused projection qkv[B,T,3C] (leading dimension 3C; head h's
 * q, k, v start at columns h*HS, C + h*HS, 2C + h*HS).
 *
 * Only the lower triangle is computed, in blocks of BLK query rows (block_rows): rows [r0, r1)
 * need the keys [0, r1) only, so the score and weighted-sum GEMMs of a block are (r1-r0) x r1
 * instead of T x T (about half the work for long sequences).  Per (b, h), with P = att, S the scaled
 * scores, dP = dout @ v^T and dS = P * (dP - rowsum(P * dP)) / sqrt(HS):
 *   forward   S[r0:r1, 0:r1] = q[r0:r1] k[0:r1]^T; P = masked softmax; out[r0:r1] = P v[0:r1]
 *   backward  dS[r0:r1, 0:r1] from dout[r0:r1] v[0:r1]^T;  dq[r0:r1] = dS[r0:r1, 0:r1] k[0:r1]
 *             per key block [c0, c1): dk[c0:c1] = dS[c0:T, c0:c1]^T q[c0:T],
 *                                     dv[c0:c1] = P[c0:T, c0:c1]^T dout[c0:T]
 * Every entry above the diagonal of att is 0, and so is every such entry of dS a GEMM reads.
 * Each GEMM writes its output once (beta 0), and every loop runs in a fixed order: the same
 * bits on every run for a given OpenBLAS thread count.  The softmax rows use kern_exp_nonpos
 * and the reductions of cpu_rows.h so that gcc vectorises them. */
#include "cpu_internal.h"

#include <cblas.h>
#include <math.h>

#include "cpu_rows.h"
#include "elementwise.h"

/* Rows per block: small enough to skip most of the upper triangle, large enough that the
 * GEMMs stay efficient (the key-side ones of backward are BLK wide): T/8 in multiples of 32,
 * so that at most 1/16 of the computed entries are masked ones (T >= 256). */
static int block_rows(int T) {
    int b = (T / 8 + 31) / 32 * 32;
    return b > 32 ? b : 32;
}

size_t kcpu_gpt_workspace(void *c, int B, int T, int C, int NH, int V) {
    /* attention backward: dS of one (sequence, head), [T, T]; decode: one row of weights;
     * layer norm backward: one row's xhat and dxhat, [2, C] */
    size_t tt = (size_t)T * (size_t)T, cc = 2 * (size_t)C;
    return (tt > cc ? tt : cc) * sizeof(float);
}

/* row[0:n) = softmax(row[0:n) * scale) in place (n >= 1), then row[n:end) = 0 */
static void softmax_row(float *restrict row, int n, int end, float scale) {
    float m = kcpu_row_max(row, n);
    int s;
    for (s = 0; s < n; s++) row[s] = kern_exp_nonpos((row[s] - m) * scale);
    float inv = (float)(1.0 / kcpu_row_sum(row, n));
    for (s = 0; s < n; s++) row[s] *= inv;
    for (s = n; s < end; s++) row[s] = 0.0f;
}

void kcpu_attention_forward(void *c, float *out, float *att, const float *qkv, int B,
                            int T, int C, int NH, void *workspace) {
    const int HS = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const int BLK = block_rows(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * C + (size_t)h * HS;
            for (int r0 = 0; r0 < T; r0 += BLK) {
                int r1 = r0 + BLK < T ? r0 + BLK : T, m = r1 - r0;
                float *ab = a + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, HS, 1.0f,
                            q + (size_t)r0 * ld, ld, k, ld, 0.0f, ab, T);
                for (int t = r0; t < r1; t++) softmax_row(a + (size_t)t * T, t + 1, T, scale);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HS, r1, 1.0f, ab, T,
                            v, ld, 0.0f, o + (size_t)r0 * C, C);
            }
        }
}

void kcpu_attention_backward(void *c, float *dqkv, const float *dout, const float *qkv,
                             const float *att, int B, int T, int C, int NH, void *workspace) {
    const int HS = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const int BLK = block_rows(T);
    float *ds = workspace;   /* [T, T]: the lower triangle of each row block */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *g = dout + (size_t)b * T * C + (size_t)h * HS;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * HS;
            float *dk = dq + C, *dv = dq + 2 * C;
            for (int r0 = 0; r0 < T; r0 += BLK) {
                int r1 = r0 + BLK < T ? r0 + BLK : T, m = r1 - r0;
                float *db = ds + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, HS, 1.0f,
                            g + (size_t)r0 * C, C, v, ld, 0.0f, db, T);
                for (int t = r0; t < r1; t++) {
                    const float *restrict pr = p + (size_t)t * T;
                    float *restrict dr = ds + (size_t)t * T;
                    float d = (float)kcpu_row_dot(pr, dr, t + 1);
                    for (int s = 0; s <= t; s++) dr[s] = pr[s] * (dr[s] - d) * scale;
                    for (int s = t + 1; s < r1; s++) dr[s] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HS, r1, 1.0f, db, T,
                            k, ld, 0.0f, dq + (size_t)r0 * ld, ld);
            }
            for (int c0 = 0; c0 < T; c0 += BLK) {
                int c1 = c0 + BLK < T ? c0 + BLK : T, n = c1 - c0;
                size_t off = (size_t)c0 * T + c0;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, HS, T - c0, 1.0f,
                            ds + off, T, q + (size_t)c0 * ld, ld, 0.0f, dk + (size_t)c0 * ld,
                            ld);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, HS, T - c0, 1.0f,
                            p + off, T, g + (size_t)c0 * C, C, 0.0f, dv + (size_t)c0 * ld, ld);
            }
        }
}

/* One query row per (sequence, head) against the cache: dot products, softmax, weighted sum
 * of the values, all over the positions [0, t]. */
void kcpu_attention_decode(void *c, float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int t, int Tmax, int C, int NH,
                           void *workspace) {
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    float *w = workspace;   /* [t + 1] <= [Tmax] */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *restrict qh = q + (size_t)b * C + (size_t)h * HS;
            const float *kb = kcache + (size_t)b * Tmax * C + (size_t)h * HS;
            const float *vb = vcache + (size_t)b * Tmax * C + (size_t)h * HS;
            for (int s = 0; s <= t; s++) {
                const float *restrict ks = kb + (size_t)s * C;
                float dot = 0.0f;
                for (int i = 0; i < HS; i++) dot += qh[i] * ks[i];
                w[s] = dot;
            }
            softmax_row(w, t + 1, t + 1, scale);
            float *restrict o = out + (size_t)b * C + (size_t)h * HS;
            for (int i = 0; i < HS; i++) o[i] = 0.0f;
            for (int s = 0; s <= t; s++) {
                const float *restrict vs = vb + (size_t)s * C;
                for (int i = 0; i < HS; i++) o[i] += w[s] * vs[i];
            }
        }
}
