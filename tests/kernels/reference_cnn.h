/* reference_cnn.h: plain-C float64 reference of the convolutional ops of kernels.h (conv2d,
 * max/avg pooling, batch norm), for the tests.
 *
 * Naive loops in double straight from the definitions (no im2col), same argument order and
 * overwrite/accumulate semantics as kernels.h: din overwritten, dw/db accumulated.  Shapes use
 * kern_conv_shape; output sizes come from ref_conv_out (dilation as given; the pools pass 1). */
#ifndef HARNESS_TESTS_KERNELS_REFERENCE_CNN_H
#define HARNESS_TESTS_KERNELS_REFERENCE_CNN_H

#include <stdint.h>

#include "kernels.h"

/* floor((in + 2*pad - dil*(win-1) - 1) / stride) + 1, or 0 when the window does not fit */
int ref_conv_out(int in, int pad, int dil, int win, int stride);

/* out[B,K,P,Q] = sum_{c in group, r, s} w[k, c - g*C/G, r, s] * in[b, c, p*sh-ph+r*dh,
 * q*sw-pw+s*dw] (+ b[k]); zero padding.  b may be NULL. */
void ref_conv2d_forward(double *out, const double *in, const double *w, const double *b,
                        const kern_conv_shape *s);
/* din (overwritten, skipped if NULL), dw += , db += (skipped if NULL) */
void ref_conv2d_backward(double *din, double *dw, double *db, const double *dout,
                         const double *in, const double *w, const kern_conv_shape *s);

/* Pools: window R x S, stride, padding, dilation 1; argmax as in kernels.h (h*W + w, first
 * maximum in row-major window order). */
void ref_maxpool2d_forward(double *out, int32_t *argmax, const double *in,
                           const kern_conv_shape *s);
void ref_maxpool2d_backward(double *din, const double *dout, const int32_t *argmax,
                            const kern_conv_shape *s);
/* count_include_pad=True: divide by R*S */
void ref_avgpool2d_forward(double *out, const double *in, const kern_conv_shape *s);
void ref_avgpool2d_backward(double *din, const double *dout, const kern_conv_shape *s);

/* Batch norm over x[B,C,HW], the same steps as kernels.h:
 *   stats: sums[2C] = {sum x, sum x^2};  forward: mean_invstd[2C], out, running stats
 *   (momentum, unbiased variance; NULL skips);  eval;  backward_reduce: red[2C] =
 *   {sum dy, sum dy*xhat};  backward: din = gamma*invstd/count*(count*dy - red_dy -
 *   xhat*red_dyxhat). */
void ref_batchnorm_stats(double *sums, const double *x, int B, int C, int HW);
void ref_batchnorm_forward(double *out, double *mean_invstd, const double *x,
                           const double *gamma, const double *beta, const double *sums,
                           double count, double eps, double *running_mean, double *running_var,
                           double momentum, int B, int C, int HW);
void ref_batchnorm_forward_eval(double *out, const double *x, const double *gamma,
                                const double *beta, const double *running_mean,
                                const double *running_var, double eps, int B, int C, int HW);
void ref_batchnorm_backward_reduce(double *red, const double *dout, const double *x,
                                   const double *mean_invstd, int B, int C, int HW);
void ref_batchnorm_backward(double *din, const double *dout, const double *x,
                            const double *mean_invstd, const double *gamma, const double *red,
                            double count, int B, int C, int HW);

#endif
