/* cpu_layernorm.c: layer norm over the last dimension of x[N, C] on the CPU (biased variance,
 * as PyTorch's nn.LayerNorm).  Row statistics in double, with the reductions of cpu_rows.h. */
#include "cpu_internal.h"

#include <math.h>

#include "cpu_rows.h"

KCPU_SIMD void kcpu_layernorm_forward(void *c, float *out, float *mean_rstd, const float *x,
                            const float *w, const float *b, int N, int C, float eps) {
    for (int r = 0; r < N; r++) {
        const float *restrict xr = x + (size_t)r * C;
        float *restrict o = out + (size_t)r * C;
        float mean = (float)(kcpu_row_sum(xr, C) / C);
        for (int i = 0; i < C; i++) o[i] = xr[i] - mean;   /* centred row, then the output */
        float rstd = (float)(1.0 / sqrt(kcpu_row_dot(o, o, C) / C + (double)eps));
        if (b)
            for (int i = 0; i < C; i++) o[i] = o[i] * rstd * w[i] + b[i];
        else
            for (int i = 0; i < C; i++) o[i] = o[i] * rstd * w[i];
        mean_rstd[r] = mean;
        mean_rstd[N + r] = rstd;
    }
}

/*   xhat = (x - mean) * rstd,  dxhat = dout * w
 *   din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
 *   dw += sum_rows dout * xhat,  db += sum_rows dout     (rows in order)
 * The workspace holds one row's xhat and dxhat (2C floats). */
KCPU_SIMD void kcpu_layernorm_backward(void *c, float *din, float *dw, float *db, const float *dout,
                             const float *x, const float *mean_rstd, const float *w, int N,
                             int C, void *workspace) {
    float *restrict xhat = workspace, *restrict dxhat = xhat + C;
    for (int r = 0; r < N; r++) {
        const float *restrict xr = x + (size_t)r * C, *restrict g = dout + (size_t)r * C;
        float mean = mean_rstd[r], rstd = mean_rstd[N + r];
        for (int i = 0; i < C; i++) {
            xhat[i] = (xr[i] - mean) * rstd;
            dxhat[i] = g[i] * w[i];
            dw[i] += g[i] * xhat[i];
        }
        if (db)
            for (int i = 0; i < C; i++) db[i] += g[i];
        if (!din) continue;
        float ma = (float)(kcpu_row_sum(dxhat, C) / C);
        float mb = (float)(kcpu_row_dot(dxhat, xhat, C) / C);
        float *restrict d = din + (size_t)r * C;
        for (int i = 0; i < C; i++) d[i] = rstd * (dxhat[i] - ma - xhat[i] * mb);
    }
}
