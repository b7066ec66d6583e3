/* reference_gpt.c: the float64 reference of reference_gpt.h, written from the definitions in
 * kernels.h with plain loops (every score and sum formed explicitly). */
#include "reference_gpt.h"

#include <math.h>
#include <string.h>

void ref_embedding_forward(double *out, const int32_t *tokens, const double *wte,
                           const double *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) {
                size_t r = (size_t)b * T + t;
                out[r * C + i] =
                    wte[(size_t)tokens[r] * C + i] + (wpe ? wpe[(size_t)t * C + i] : 0.0);
            }
}

void ref_embedding_backward(double *dwte, double *dwpe, const double *dout,
                            const int32_t *tokens, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) {
                size_t r = (size_t)b * T + t;
                dwte[(size_t)tokens[r] * C + i] += dout[r * C + i];
                if (dwpe) dwpe[(size_t)t * C + i] += dout[r * C + i];
            }
}

static void row_stats(const double *x, int C, double eps, double *mean, double *rstd) {
    double s = 0.0, ss = 0.0;
    for (int i = 0; i < C; i++) s += x[i];
    *mean = s / C;
    for (int i = 0; i < C; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *rstd = 1.0 / sqrt(ss / C + eps);
}

void ref_layernorm_forward(double *out, double *mean_rstd, const double *x, const double *w,
                           const double *b, int N, int C, double eps) {
    for (int r = 0; r < N; r++) {
        const double *xr = x + (size_t)r * C;
        double mean, rstd;
        row_stats(xr, C, eps, &mean, &rstd);
        for (int i = 0; i < C; i++)
            out[(size_t)r * C + i] = (xr[i] - mean) * rstd * w[i] + (b ? b[i] : 0.0);
        if (mean_rstd) {
            mean_rstd[r] = mean;
            mean_rstd[N + r] = rstd;
        }
    }
}

/* d xhat_i / d x_j = rstd (delta_ij - 1/C - xhat_i xhat_j / C), applied to dxhat = dout*w */
void ref_layernorm_backward(double *din, double *dw, double *db, const double *dout,
                            const double *x, const double *w, int N, int C, double eps) {
    for (int r = 0; r < N; r++) {
        const double *xr = x + (size_t)r * C, *g = dout + (size_t)r * C;
        double mean, rstd;
        row_stats(xr, C, eps, &mean, &rstd);
        for (int i = 0; i < C; i++) {
            dw[i] += g[i] * (xr[i] - mean) * rstd;
            if (db) db[i] += g[i];
        }
        if (!din) continue;
        for (int j = 0; j < C; j++) {
            double xj = (xr[j] - mean) * rstd, s = 0.0;
            for (int i = 0; i < C; i++) {
                double xi = (xr[i] - mean) * rstd;
                s += g[i] * w[i] * rstd * ((i == j) - 1.0 / C - xi * xj / C);
            }
            din[(size_t)r * C + j] = s;
        }
    }
}

void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int C,
                           int NH) {
    int HS = C / NH;
    double scale = 1.0 / sqrt((double)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * HS;
                double *a = att + (((size_t)b * NH + h) * T + t) * T;
                double m = -INFINITY;
                for (int s = 0; s < T; s++) {
                    if (s > t) {
                        a[s] = 0.0;
                        continue;
                    }
                    const double *k = qkv + ((size_t)b * T + s) * 3 * C + C + (size_t)h * HS;
                    double d = 0.0;
                    for (int i = 0; i < HS; i++) d += q[i] * k[i];
                    a[s] = d * scale;
                    if (a[s] > m) m = a[s];
                }
                double sum = 0.0;
                for (int s = 0; s <= t; s++) sum += (a[s] = exp(a[s] - m));
                for (int s = 0; s <= t; s++) a[s] /= sum;
                double *o = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                for (int i = 0; i < HS; i++) {
                    double acc = 0.0;
                    for (int s = 0; s <= t; s++)
                        acc += a[s] * qkv[((size_t)b * T + s) * 3 * C + 2 * C + h * HS + i];
                    o[i] = acc;
                }
            }
}

void ref_attention_lse(double *lse, const double *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    double scale = 1.0 / sqrt((double)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * HS;
                double sc[T > 0 ? T : 1], m = -INFINITY, sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    const double *k = qkv + ((size_t)b * T + s) * 3 * C + C + (size_t)h * HS;
                    double d = 0.0;
                    for (int i = 0; i < HS; i++) d += q[i] * k[i];
                    sc[s] = d * scale;
                    if (sc[s] > m) m = sc[s];
                }
                for (int s = 0; s <= t; s++) sum += exp(sc[s] - m);
                lse[((size_t)b * NH + h) * T + t] = m + log(sum);
            }
}

void ref_attention_backward(double *dqkv, const double *dout, const double *qkv,
                            const double *att, int B, int T, int C, int NH) {
    int HS = C / NH;
    double scale = 1.0 / sqrt((double)HS);
    memset(dqkv, 0, (size_t)B * T * 3 * C * sizeof(double));
#define QKV(b, t, part, i) ((((size_t)(b) * T + (t)) * 3 + (part)) * C + (size_t)h * HS + (i))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *p = att + (((size_t)b * NH + h) * T + t) * T;
                const double *g = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
                double dp[T > 0 ? T : 1], dot = 0.0;
                for (int s = 0; s <= t; s++) {
                    dp[s] = 0.0;
                    for (int i = 0; i < HS; i++) {
                        dp[s] += g[i] * qkv[QKV(b, s, 2, i)];
                        dqkv[QKV(b, s, 2, i)] += p[s] * g[i];   /* dv */
                    }
                    dot += p[s] * dp[s];
                }
                for (int s = 0; s <= t; s++) {
                    double ds = p[s] * (dp[s] - dot) * scale;   /* d score before scaling */
                    for (int i = 0; i < HS; i++) {
                        dqkv[QKV(b, t, 0, i)] += ds * qkv[QKV(b, s, 1, i)];
                        dqkv[QKV(b, s, 1, i)] += ds * qkv[QKV(b, t, 0, i)];
                    }
                }
            }
#undef QKV
}

void ref_softmax_xent_acc(double *losses, double *dlogits, double *acc, const double *logits,
                          const int32_t *labels, int B, int C, int ld, double grad_scale) {
    for (int r = 0; r < B; r++) {
        const double *z = logits + (size_t)r * ld;
        double *d = dlogits ? dlogits + (size_t)r * ld : NULL;
        int y = labels[r];
        if (y < 0 || y >= C) {
            if (losses) losses[r] = NAN;
            if (d)
                for (int j = 0; j < ld; j++) d[j] = j < C ? NAN : 0.0;
            acc[0] += NAN;
            continue;
        }
        double m = z[0];
        int am = 0;
        for (int j = 1; j < C; j++)
            if (z[j] > m) m = z[j], am = j;
        double sum = 0.0;
        for (int j = 0; j < C; j++) sum += exp(z[j] - m);
        double loss = log(sum) + m - z[y];
        if (losses) losses[r] = loss;
        acc[0] += loss;
        acc[1] += am == y;
        if (d)
            for (int j = 0; j < ld; j++)
                d[j] = j < C ? (exp(z[j] - m) / sum - (j == y)) * grad_scale : 0.0;
    }
}
