/* reference_cnn.c: see reference_cnn.h.  Every op is one loop nest over the definition. */
#include "reference_cnn.h"

#include <math.h>
#include <string.h>

int ref_conv_out(int in, int pad, int dil, int win, int stride) {
    int span = in + 2 * pad - dil * (win - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* Visits every (b, k, p, q, c, r, t) term of the convolution with in-image input position:
 * the forward adds w*x into out, the backward sends dout back to din, dw and db. */
void ref_conv2d_forward(double *out, const double *in, const double *w, const double *b,
                        const kern_conv_shape *s) {
    int P = ref_conv_out(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
    int Q = ref_conv_out(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
    int Cg = s->C / s->groups, Kg = s->K / s->groups;
    for (int n = 0; n < s->B; n++)
        for (int k = 0; k < s->K; k++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++) {
                    double acc = b ? b[k] : 0.0;
                    int g = k / Kg;
                    for (int cg = 0; cg < Cg; cg++)
                        for (int r = 0; r < s->R; r++)
                            for (int t = 0; t < s->S; t++) {
                                int h = p * s->stride_h - s->pad_h + r * s->dil_h;
                                int x = q * s->stride_w - s->pad_w + t * s->dil_w;
                                if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                                int c = g * Cg + cg;
                                acc += w[((k * Cg + cg) * s->R + r) * s->S + t] *
                                       in[((n * s->C + c) * s->H + h) * s->W + x];
                            }
                    out[((n * s->K + k) * P + p) * Q + q] = acc;
                }
}

void ref_conv2d_backward(double *din, double *dw, double *db, const double *dout,
                         const double *in, const double *w, const kern_conv_shape *s) {
    int P = ref_conv_out(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
    int Q = ref_conv_out(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
    int Cg = s->C / s->groups, Kg = s->K / s->groups;
    if (din) memset(din, 0, sizeof(double) * s->B * s->C * s->H * s->W);
    for (int n = 0; n < s->B; n++)
        for (int k = 0; k < s->K; k++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++) {
                    double g_out = dout[((n * s->K + k) * P + p) * Q + q];
                    if (db) db[k] += g_out;
                    int g = k / Kg;
                    for (int cg = 0; cg < Cg; cg++)
                        for (int r = 0; r < s->R; r++)
                            for (int t = 0; t < s->S; t++) {
                                int h = p * s->stride_h - s->pad_h + r * s->dil_h;
                                int x = q * s->stride_w - s->pad_w + t * s->dil_w;
                                if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                                int c = g * Cg + cg;
                                int wi = ((k * Cg + cg) * s->R + r) * s->S + t;
                                int xi = ((n * s->C + c) * s->H + h) * s->W + x;
                                dw[wi] += g_out * in[xi];
                                if (din) din[xi] += g_out * w[wi];
                            }
                }
}

static void pool_dims(const kern_conv_shape *s, int *P, int *Q) {
    *P = ref_conv_out(s->H, s->pad_h, 1, s->R, s->stride_h);
    *Q = ref_conv_out(s->W, s->pad_w, 1, s->S, s->stride_w);
}

void ref_maxpool2d_forward(double *out, int32_t *argmax, const double *in,
                           const kern_conv_shape *s) {
    int P, Q;
    pool_dims(s, &P, &Q);
    for (int pl = 0; pl < s->B * s->C; pl++)
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++) {
                double best = -INFINITY;
                int at = -1;
                for (int r = 0; r < s->R; r++)
                    for (int t = 0; t < s->S; t++) {
                        int h = p * s->stride_h - s->pad_h + r;
                        int x = q * s->stride_w - s->pad_w + t;
                        if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                        double v = in[(pl * s->H + h) * s->W + x];
                        if (at < 0 || v > best) {
                            best = v;
                            at = h * s->W + x;
                        }
                    }
                out[(pl * P + p) * Q + q] = best;
                argmax[(pl * P + p) * Q + q] = at;
            }
}

void ref_maxpool2d_backward(double *din, const double *dout, const int32_t *argmax,
                            const kern_conv_shape *s) {
    int P, Q;
    pool_dims(s, &P, &Q);
    memset(din, 0, sizeof(double) * s->B * s->C * s->H * s->W);
    for (int pl = 0; pl < s->B * s->C; pl++)
        for (int i = 0; i < P * Q; i++)
            din[pl * s->H * s->W + argmax[pl * P * Q + i]] += dout[pl * P * Q + i];
}

void ref_avgpool2d_forward(double *out, const double *in, const kern_conv_shape *s) {
    int P, Q;
    pool_dims(s, &P, &Q);
    for (int pl = 0; pl < s->B * s->C; pl++)
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++) {
                double acc = 0.0;
                for (int r = 0; r < s->R; r++)
                    for (int t = 0; t < s->S; t++) {
                        int h = p * s->stride_h - s->pad_h + r;
                        int x = q * s->stride_w - s->pad_w + t;
                        if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                        acc += in[(pl * s->H + h) * s->W + x];
                    }
                out[(pl * P + p) * Q + q] = acc / (s->R * s->S);
            }
}

void ref_avgpool2d_backward(double *din, const double *dout, const kern_conv_shape *s) {
    int P, Q;
    pool_dims(s, &P, &Q);
    memset(din, 0, sizeof(double) * s->B * s->C * s->H * s->W);
    for (int pl = 0; pl < s->B * s->C; pl++)
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++)
                for (int r = 0; r < s->R; r++)
                    for (int t = 0; t < s->S; t++) {
                        int h = p * s->stride_h - s->pad_h + r;
                        int x = q * s->stride_w - s->pad_w + t;
                        if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                        din[(pl * s->H + h) * s->W + x] +=
                            dout[(pl * P + p) * Q + q] / (s->R * s->S);
                    }
}

void ref_batchnorm_stats(double *sums, const double *x, int B, int C, int HW) {
    for (int c = 0; c < C; c++) {
        double s = 0.0, q = 0.0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double v = x[(b * C + c) * HW + i];
                s += v;
                q += v * v;
            }
        sums[c] = s;
        sums[C + c] = q;
    }
}

void ref_batchnorm_forward(double *out, double *mean_invstd, const double *x,
                           const double *gamma, const double *beta, const double *sums,
                           double count, double eps, double *running_mean, double *running_var,
                           double momentum, int B, int C, int HW) {
    for (int c = 0; c < C; c++) {
        double mean = sums[c] / count;
        double var = sums[C + c] / count - mean * mean;
        double invstd = 1.0 / sqrt(var + eps);
        mean_invstd[c] = mean;
        mean_invstd[C + c] = invstd;
        if (running_mean && running_var) {
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean;
            running_var[c] =
                (1.0 - momentum) * running_var[c] + momentum * var * count / (count - 1.0);
        }
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                int j = (b * C + c) * HW + i;
                out[j] = (x[j] - mean) * invstd * gamma[c] + beta[c];
            }
    }
}

void ref_batchnorm_forward_eval(double *out, const double *x, const double *gamma,
                                const double *beta, const double *running_mean,
                                const double *running_var, double eps, int B, int C, int HW) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                int j = (b * C + c) * HW + i;
                out[j] = (x[j] - running_mean[c]) / sqrt(running_var[c] + eps) * gamma[c] +
                         beta[c];
            }
}

void ref_batchnorm_backward_reduce(double *red, const double *dout, const double *x,
                                   const double *mean_invstd, int B, int C, int HW) {
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                int j = (b * C + c) * HW + i;
                double xhat = (x[j] - mean_invstd[c]) * mean_invstd[C + c];
                sdy += dout[j];
                sdyx += dout[j] * xhat;
            }
        red[c] = sdy;
        red[C + c] = sdyx;
    }
}

void ref_batchnorm_backward(double *din, const double *dout, const double *x,
                            const double *mean_invstd, const double *gamma, const double *red,
                            double count, int B, int C, int HW) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                int j = (b * C + c) * HW + i;
                double invstd = mean_invstd[C + c];
                double xhat = (x[j] - mean_invstd[c]) * invstd;
                din[j] = gamma[c] * invstd / count *
                         (count * dout[j] - red[c] - xhat * red[C + c]);
            }
}
