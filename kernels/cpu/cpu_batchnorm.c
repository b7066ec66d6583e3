/* cpu_batchnorm.c: batch norm on the CPU, in the steps of kernels.h so that the statistics
 * (sums, red) can be all-reduced between them (synchronised batch norm).
 *
 *   x, out, dout, din [B,C,HW];  gamma, beta, running_* [C];
 *   sums[2C] = {sum x, sum x^2},  mean_invstd[2C] = {mean, invstd},  red[2C] = {sum dy,
 *   sum dy*xhat}, every sum over the B*HW values of a channel.
 * Sums are accumulated in double: 8 partial sums per (image, channel) row (vectorisable),
 * then added row by row.  Element-wise passes fold the per-channel constants first, so each
 * element costs one or two multiply-adds in float. */
#include "cpu_internal.h"
#include "elementwise.h"

#include <math.h>

/* sum of row[n] and of row[n]^2 in double */
KCPU_SIMD static void row_sums(const float *restrict row, int n, double *sum, double *sumsq) {
    double s[8] = {0}, q[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            double v = row[i + j];
            s[j] += v;
            q[j] += v * v;
        }
    double ts = 0.0, tq = 0.0;
    for (; i < n; i++) {
        double v = row[i];
        ts += v;
        tq += v * v;
    }
    for (int j = 0; j < 8; j++) ts += s[j], tq += q[j];
    *sum = ts;
    *sumsq = tq;
}

/* sum of dy[n] and of dy[n]*(x[n] - mean) in double */
KCPU_SIMD static void row_dsums(const float *restrict dy, const float *restrict x, double mean, int n,
                      double *sum, double *sumdx) {
    double s[8] = {0}, d[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            double g = dy[i + j];
            s[j] += g;
            d[j] += g * ((double)x[i + j] - mean);
        }
    double ts = 0.0, td = 0.0;
    for (; i < n; i++) {
        double g = dy[i];
        ts += g;
        td += g * ((double)x[i] - mean);
    }
    for (int j = 0; j < 8; j++) ts += s[j], td += d[j];
    *sum = ts;
    *sumdx = td;
}

void kcpu_batchnorm_stats(void *ctx, double *restrict sums, const float *restrict x, int B,
                          int C, int HW) {
    for (int c = 0; c < 2 * C; c++) sums[c] = 0.0;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s, q;
            row_sums(x + ((size_t)b * C + c) * HW, HW, &s, &q);
            sums[c] += s;
            sums[C + c] += q;
        }
}

void kcpu_batchnorm_forward(void *ctx, float *restrict out, float *restrict mean_invstd,
                            const float *restrict x, const float *restrict gamma,
                            const float *restrict beta, const double *restrict sums,
                            double count, float eps, float *restrict running_mean,
                            float *restrict running_var, float momentum, int B, int C, int HW) {
    for (int c = 0; c < C; c++)
        kern_bn_channel_stats(mean_invstd, running_mean, running_var, sums, count, eps,
                              momentum, C, c);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float mean = mean_invstd[c];
            const float scale = mean_invstd[C + c] * gamma[c], shift = beta[c];
            const float *restrict xr = x + ((size_t)b * C + c) * HW;
            float *restrict yr = out + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) yr[i] = (xr[i] - mean) * scale + shift;
        }
}

void kcpu_batchnorm_forward_eval(void *ctx, float *restrict out, const float *restrict x,
                                 const float *restrict gamma, const float *restrict beta,
                                 const float *restrict running_mean,
                                 const float *restrict running_var, float eps, int B, int C,
                                 int HW) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float mean = running_mean[c];
            const float scale = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
            const float shift = beta[c];
            const float *restrict xr = x + ((size_t)b * C + c) * HW;
            float *restrict yr = out + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) yr[i] = (xr[i] - mean) * scale + shift;
        }
}

void kcpu_batchnorm_backward_reduce(void *ctx, double *restrict red,
                                    const float *restrict dout, const float *restrict x,
                                    const float *restrict mean_invstd, int B, int C, int HW) {
    /* red[C+c] = sum dy*xhat = invstd * sum dy*(x - mean) */
    for (int c = 0; c < 2 * C; c++) red[c] = 0.0;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)b * C + c) * HW;
            double s, d;
            row_dsums(dout + off, x + off, mean_invstd[c], HW, &s, &d);
            red[c] += s;
            red[C + c] += d;
        }
    for (int c = 0; c < C; c++) red[C + c] *= mean_invstd[C + c];
}

void kcpu_batchnorm_backward(void *ctx, float *restrict din, const float *restrict dout,
                             const float *restrict x, const float *restrict mean_invstd,
                             const float *restrict gamma, const double *restrict red,
                             double count, int B, int C, int HW) {
    /* din = a*dy - a/count*red_dy - a/count*red_dyxhat*invstd*(x - mean), a = gamma*invstd:
     * per channel din = a*dy + k1*(x - mean) + k0 */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const double invstd = mean_invstd[C + c];
            const double a = (double)gamma[c] * invstd;
            const float fa = (float)a;
            const float k0 = (float)(-a * red[c] / count);
            const float k1 = (float)(-a * red[C + c] * invstd / count);
            const float mean = mean_invstd[c];
            size_t off = ((size_t)b * C + c) * HW;
            const float *restrict dy = dout + off, *restrict xr = x + off;
            float *restrict dx = din + off;
            for (int i = 0; i < HW; i++) dx[i] = fa * dy[i] + k1 * (xr[i] - mean) + k0;
        }
}
