/* reference.h: plain-C float64 reference of every kernels.h op, for the tests.
 *
 * Naive loops in double, written straight from the formulas in kernels.h, with the same
 * argument order and the same overwrite/accumulate semantics (din overwritten, dw/db
 * accumulated).  Slow and obvious on purpose: the float32 backends are checked against these,
 * and these are checked against finite differences of themselves. */
#ifndef HARNESS_TESTS_KERNELS_REFERENCE_H
#define HARNESS_TESTS_KERNELS_REFERENCE_H

#include <stdint.h>

/* out[B,O] = in[B,I] @ w[O,I]^T + b[O]   (b may be NULL) */
void ref_linear_forward(double *out, const double *in, const double *w, const double *b, int B,
                        int I, int O);
/* din[B,I] = dout @ w (overwritten, skipped if NULL); dw[O,I] += dout^T @ in; db[O] += sum_b */
void ref_linear_backward(double *din, double *dw, double *db, const double *dout,
                         const double *in, const double *w, int B, int I, int O);

void ref_relu_forward(double *out, const double *in, int64_t n);
void ref_relu_backward(double *din, const double *dout, const double *in, int64_t n);
/* GELU, tanh approximation, with libm's tanh in double */
double ref_gelu(double x);
double ref_gelu_grad(double x);
void ref_gelu_forward(double *out, const double *in, int64_t n);
void ref_gelu_backward(double *din, const double *dout, const double *in, int64_t n);

/* Inverted dropout with a given 0/1 mask. */
void ref_dropout_forward(double *out, const uint8_t *mask, const double *in, int64_t n, double p);
void ref_dropout_backward(double *din, const double *dout, const uint8_t *mask, int64_t n,
                          double p);

/* losses[B] (may be NULL), dlogits[B,C] = (softmax - onehot) * grad_scale (may be NULL),
 * *correct = rows whose first argmax is the label (may be NULL); returns the sum of losses. */
double ref_softmax_xent(double *losses, double *dlogits, int64_t *correct, const double *logits,
                        const int32_t *labels, int B, int C, double grad_scale);

double ref_sumsq(const double *x, int64_t n);

/* Optimizer steps on double state, PyTorch semantics as written in kernels.h. */
void ref_sgd_update(double *param, double *buf, const double *grad, int64_t n, double lr,
                    double momentum, double weight_decay, int nesterov, int first);
void ref_adamw_update(double *param, double *m, double *v, const double *grad, int64_t n,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int64_t t);

#endif
