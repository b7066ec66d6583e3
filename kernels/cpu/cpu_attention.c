/* cpu_attention.c: causal multi-head self-attention on the CPU, OpenBLAS GEMMs per (sequence,
 * head) on strided views of the fused projection qkv[B,T,3C] (leading dimension 3C; head h's
 * q, k, v start at columns h*HS, C + h*HS, 2C + h*HS).
 *
 * The probabilities are never stored: the forward keeps one logsumexp per row,
 * lse[b,h,t] = log sum_{s<=t} exp(S[t,s]) with S the scaled scores q_t.k_s / sqrt(HS), and the
 * backward recomputes P[t,s] = exp(S[t,s] - lse[t]) a block of rows at a time.  Only the lower
 * triangle is computed, in blocks of BLK query rows (block_rows): rows [r0, r1) need the keys
 * [0, r1) only, so every GEMM of a block is (r1-r0) x r1 (about half the work of T x T for long
 * sequences).  Per (b, h), with D[t] = dout_t . out_t (= sum_s P[t,s] dP[t,s]):
 *   forward   S = q[r0:r1] k[0:r1]^T; P = masked softmax, lse; out[r0:r1] = P v[0:r1]
 *   backward  (row blocks last to first) P again from lse; dP = dout[r0:r1] v[0:r1]^T;
 *             dS = P * (dP - D) / sqrt(HS);
 *             dq[r0:r1] = dS k[0:r1];  dk[0:r1] += dS^T q[r0:r1];  dv[0:r1] += P^T dout[r0:r1]
 * The scratch is one or two [BLK, T] strips (BLK <= T/8 + 32 rows), not [T, T].  Every entry
 * above the diagonal of a strip is 0 when a GEMM reads it, every loop runs in a fixed order:
 * the same bits on every run for a given OpenBLAS thread count.  The softmax rows use
 * kern_exp_nonpos and the reductions of cpu_rows.h so that gcc vectorises them. */
#include "cpu_internal.h"

#include <math.h>

#include "cpu_rows.h"
#include "elementwise.h"

/* Rows per block: small enough to skip most of the upper triangle, large enough that the
 * GEMMs stay efficient: T/8 in multiples of 32, so that at most 1/16 of the computed entries
 * are masked ones (T >= 256). */
static int block_rows(int T) {
    int b = (T / 8 + 31) / 32 * 32;
    return b > 32 ? b : 32;
}

size_t kcpu_gpt_workspace(void *c, int B, int T, int C, int NH, int V) {
    /* attention backward: the P and dS strips, [BLK, T] each (forward: one); decode: one row
     * of weights [T]; layer norm backward: one row's xhat and dxhat, [2, C] */
    int blk = block_rows(T) < T ? block_rows(T) : T;
    size_t att = 2 * (size_t)T * (size_t)blk, cc = 2 * (size_t)C;
    size_t m = att > cc ? att : cc;
    return (m > (size_t)T ? m : (size_t)T) * sizeof(float);
}

/* row[0:n) = softmax(row[0:n) * scale) in place (n >= 1), then row[n:end) = 0; returns the
 * row's logsumexp, log sum_s exp(row[s] * scale) */
KCPU_SIMD static float softmax_row(float *restrict row, int n, int end, float scale) {
    float m = kcpu_row_max(row, n);
    int s;
    for (s = 0; s < n; s++) row[s] = kern_exp_nonpos((row[s] - m) * scale);
    double sum = kcpu_row_sum(row, n);
    float inv = (float)(1.0 / sum);
    for (s = 0; s < n; s++) row[s] *= inv;
    for (s = n; s < end; s++) row[s] = 0.0f;
    return (float)((double)m * scale + log(sum));
}

KCPU_SIMD void kcpu_attention_forward(void *c, float *out, float *lse, const float *qkv, int B,
                            int T, int C, int NH, void *workspace) {
    const int HS = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const int BLK = block_rows(T);
    float *p = workspace;   /* [BLK, T]: scores, then probabilities, of one row block */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *l = lse + ((size_t)b * NH + h) * T;
            float *o = out + (size_t)b * T * C + (size_t)h * HS;
            for (int r0 = 0; r0 < T; r0 += BLK) {
                int r1 = r0 + BLK < T ? r0 + BLK : T, m = r1 - r0;
                kcpu_sgemm(0, 1, m, r1, HS, 1.0f,
                            q + (size_t)r0 * ld, ld, k, ld, 0.0f, p, T);
                for (int t = r0; t < r1; t++)
                    l[t] = softmax_row(p + (size_t)(t - r0) * T, t + 1, r1, scale);
                kcpu_sgemm(0, 0, m, HS, r1, 1.0f, p, T,
                            v, ld, 0.0f, o + (size_t)r0 * C, C);
            }
        }
}

/* Rows [r0, r1) of P (from the scores in p and lse) and of dS (from dP in ds, in place):
 * P = exp(S * scale - lse), dS = P * (dP - D) * scale, both 0 for s > t. */
KCPU_SIMD static void block_probs_and_grads(float *restrict p, float *restrict ds, const float *restrict l,
                                  const float *g, const float *o, int r0, int r1, int T, int C,
                                  int HS, float scale) {
    for (int t = r0; t < r1; t++) {
        float *restrict pr = p + (size_t)(t - r0) * T;
        float *restrict dr = ds + (size_t)(t - r0) * T;
        float d = (float)kcpu_row_dot(g + (size_t)t * C, o + (size_t)t * C, HS);
        float lt = l[t];
        int s;
        for (s = 0; s <= t; s++) {
            pr[s] = kern_exp_nonpos(pr[s] * scale - lt);
            dr[s] = pr[s] * (dr[s] - d) * scale;
        }
        for (; s < r1; s++) pr[s] = dr[s] = 0.0f;
    }
}

KCPU_SIMD void kcpu_attention_backward(void *c, float *dqkv, const float *dout, const float *qkv,
                             const float *out, const float *lse, int B, int T, int C, int NH,
                             void *workspace) {
    const int HS = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const int BLK = block_rows(T);
    const int rows = BLK < T ? BLK : T;
    float *p = workspace, *ds = p + (size_t)rows * T;   /* [BLK, T] each */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            const float *l = lse + ((size_t)b * NH + h) * T;
            const float *g = dout + (size_t)b * T * C + (size_t)h * HS;
            const float *o = out + (size_t)b * T * C + (size_t)h * HS;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * HS;
            float *dk = dq + C, *dv = dq + 2 * C;
            /* the last row block first: it reaches every key, so its dk, dv GEMMs write
             * (beta 0) all of dk[0:T], dv[0:T], and the blocks above accumulate onto them */
            for (int r0 = (T - 1) / BLK * BLK; r0 >= 0; r0 -= BLK) {
                int r1 = r0 + BLK < T ? r0 + BLK : T, m = r1 - r0;
                float beta = r1 == T ? 0.0f : 1.0f;
                const float *qb = q + (size_t)r0 * ld, *gb = g + (size_t)r0 * C;
                kcpu_sgemm(0, 1, m, r1, HS, 1.0f, qb, ld,
                            k, ld, 0.0f, p, T);
                kcpu_sgemm(0, 1, m, r1, HS, 1.0f, gb, C,
                            v, ld, 0.0f, ds, T);
                block_probs_and_grads(p, ds, l, g, o, r0, r1, T, C, HS, scale);
                kcpu_sgemm(0, 0, m, HS, r1, 1.0f, ds, T,
                            k, ld, 0.0f, dq + (size_t)r0 * ld, ld);
                kcpu_sgemm(1, 0, r1, HS, m, 1.0f, ds, T,
                            qb, ld, beta, dk, ld);
                kcpu_sgemm(1, 0, r1, HS, m, 1.0f, p, T,
                            gb, C, beta, dv, ld);
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
