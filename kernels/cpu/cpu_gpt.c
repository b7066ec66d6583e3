/* cpu_gpt.c: the language-model ops on the CPU - embeddings, layer norm, causal attention
 * (OpenBLAS GEMMs per sequence and head), the padded-vocabulary loss.
 * Sequences are [B, T, C] row-major.  Every loop runs in a fixed order, so results are the
 * same bits on every run. */
#include "cpu_backend.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t kcpu_gpt_workspace(kcpu_ctx *c, int B, int T, int C, int NH, int V) {
    (void)c; (void)B; (void)C; (void)NH; (void)V;
    /* attention backward: the score gradients of one (sequence, head) [T, T] */
    return (size_t)T * (size_t)T * sizeof(float);
}

void kcpu_embedding_forward(kcpu_ctx *c, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C) {
    (void)c;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *restrict o = out + ((size_t)b * T + t) * C;
            const float *restrict e = wte + (size_t)tokens[(size_t)b * T + t] * C;
            if (wpe) {
                const float *restrict p = wpe + (size_t)t * C;
                for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
            } else {
                memcpy(o, e, (size_t)C * sizeof(float));
            }
        }
}

void kcpu_embedding_backward(kcpu_ctx *c, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V, void *workspace) {
    (void)c; (void)V; (void)workspace;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *restrict g = dout + ((size_t)b * T + t) * C;
            float *restrict e = dwte + (size_t)tokens[(size_t)b * T + t] * C;
            for (int i = 0; i < C; i++) e[i] += g[i];
            if (dwpe) {
                float *restrict p = dwpe + (size_t)t * C;
                for (int i = 0; i < C; i++) p[i] += g[i];
            }
        }
}

void kcpu_layernorm_forward(kcpu_ctx *c, float *out, float *mean_rstd, const float *x,
                            const float *w, const float *b, int N, int C, float eps) {
    (void)c;
    for (int r = 0; r < N; r++) {
        const float *restrict xr = x + (size_t)r * C;
        float *restrict o = out + (size_t)r * C;
        double s = 0.0, ss = 0.0;
        for (int i = 0; i < C; i++) s += xr[i];
        float mean = (float)(s / C);
        for (int i = 0; i < C; i++) {
            float d = xr[i] - mean;
            ss += (double)d * d;
        }
        float rstd = (float)(1.0 / sqrt(ss / C + (double)eps));
        for (int i = 0; i < C; i++) {
            float n = (xr[i] - mean) * rstd;
            o[i] = n * w[i] + (b ? b[i] : 0.0f);
        }
        mean_rstd[r] = mean;
        mean_rstd[N + r] = rstd;
    }
}

/*   xhat = (x - mean) * rstd,  dxhat = dout * w
 *   din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
 *   dw += sum_rows dout * xhat,  db += sum_rows dout */
void kcpu_layernorm_backward(kcpu_ctx *c, float *din, float *dw, float *db, const float *dout,
                             const float *x, const float *mean_rstd, const float *w, int N,
                             int C, void *workspace) {
    (void)c; (void)workspace;
    for (int r = 0; r < N; r++) {
        const float *restrict xr = x + (size_t)r * C, *restrict g = dout + (size_t)r * C;
        float mean = mean_rstd[r], rstd = mean_rstd[N + r];
        double a = 0.0, bsum = 0.0;
        for (int i = 0; i < C; i++) {
            float xhat = (xr[i] - mean) * rstd;
            float dxhat = g[i] * w[i];
            a += dxhat;
            bsum += (double)dxhat * xhat;
            dw[i] += g[i] * xhat;
            if (db) db[i] += g[i];
        }
        if (!din) continue;
        float ma = (float)(a / C), mb = (float)(bsum / C);
        float *restrict d = din + (size_t)r * C;
        for (int i = 0; i < C; i++) {
            float xhat = (xr[i] - mean) * rstd;
            d[i] = rstd * (g[i] * w[i] - ma - xhat * mb);
        }
    }
}

/* Causal softmax of the scores of row t in place: s in [0, t] scaled, the rest zero. */
static void causal_softmax_row(float *restrict row, int t, int T, float scale) {
    float m = -INFINITY;
    for (int s = 0; s <= t; s++) m = row[s] > m ? row[s] : m;
    double sum = 0.0;
    for (int s = 0; s <= t; s++) {
        row[s] = expf((row[s] - m) * scale);
        sum += row[s];
    }
    float inv = (float)(1.0 / sum);
    for (int s = 0; s <= t; s++) row[s] *= inv;
    for (int s = t + 1; s < T; s++) row[s] = 0.0f;
}

void kcpu_attention_forward(kcpu_ctx *c, float *out, float *att, const float *qkv, int B,
                            int T, int C, int NH, void *workspace) {
    (void)c; (void)workspace;
    int HS = C / NH, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * C + (size_t)h * HS;
            /* scores[T,T] = q @ k^T (the upper triangle is computed and then masked) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, q, ld, k, ld,
                        0.0f, a, T);
            for (int t = 0; t < T; t++) causal_softmax_row(a + (size_t)t * T, t, T, scale);
            /* out[T,HS] = att @ v */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, v, ld,
                        0.0f, o, C);
        }
}

/* With P = att, dP = dout @ v^T, dS = P * (dP - rowsum(P * dP)) * scale:
 *   dq = dS @ k,  dk = dS^T @ q,  dv = P^T @ dout */
void kcpu_attention_backward(kcpu_ctx *c, float *dqkv, const float *dout, const float *qkv,
                             const float *att, int B, int T, int C, int NH, void *workspace) {
    (void)c;
    int HS = C / NH, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    float *ds = workspace;   /* [T, T] */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HS;
            const float *k = q + C, *v = q + 2 * C;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *g = dout + (size_t)b * T * C + (size_t)h * HS;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * HS;
            float *dk = dq + C, *dv = dq + 2 * C;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, g, C, v, ld,
                        0.0f, ds, T);
            for (int t = 0; t < T; t++) {
                const float *restrict pr = p + (size_t)t * T;
                float *restrict dr = ds + (size_t)t * T;
                double dot = 0.0;
                for (int s = 0; s <= t; s++) dot += (double)pr[s] * dr[s];
                float d = (float)dot;
                for (int s = 0; s <= t; s++) dr[s] = pr[s] * (dr[s] - d) * scale;
                for (int s = t + 1; s < T; s++) dr[s] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, ds, T, k, ld,
                        0.0f, dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, ds, T, q, ld,
                        0.0f, dk, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, p, T, g, C,
                        0.0f, dv, ld);
        }
}

void kcpu_attention_decode(kcpu_ctx *c, float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int t, int Tmax, int C, int NH,
                           void *workspace) {
    (void)c;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    float *w = workspace;   /* [t + 1] <= [Tmax] */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *qh = q + (size_t)b * C + (size_t)h * HS;
            const float *kb = kcache + (size_t)b * Tmax * C + (size_t)h * HS;
            const float *vb = vcache + (size_t)b * Tmax * C + (size_t)h * HS;
            for (int s = 0; s <= t; s++) {
                float dot = 0.0f;
                for (int i = 0; i < HS; i++) dot += qh[i] * kb[(size_t)s * C + i];
                w[s] = dot;
            }
            causal_softmax_row(w, t, t + 1, scale);
            float *o = out + (size_t)b * C + (size_t)h * HS;
            for (int i = 0; i < HS; i++) o[i] = 0.0f;
            for (int s = 0; s <= t; s++)
                for (int i = 0; i < HS; i++) o[i] += w[s] * vb[(size_t)s * C + i];
        }
}

void kcpu_softmax_xent_acc(kcpu_ctx *c, float *losses, float *dlogits, double *acc,
                           const float *logits, const int32_t *labels, int B, int C, int ld,
                           float grad_scale) {
    double total = 0.0;
    int64_t right = 0;
    for (int r = 0; r < B; r++) {
        int64_t correct = 0;
        float *d = dlogits ? dlogits + (size_t)r * ld : NULL;
        total += kcpu_softmax_xent(c, losses ? losses + r : NULL, d, &correct,
                                   logits + (size_t)r * ld, labels + r, 1, C, grad_scale);
        right += correct;
        if (d)
            for (int j = C; j < ld; j++) d[j] = 0.0f;
    }
    acc[0] += total;
    acc[1] += (double)right;
}
