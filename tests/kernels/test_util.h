/* test_util.h: small helpers shared by the kernels tests: deterministic random test data and
 * element-wise comparisons that print the worst offender. */
#ifndef HARNESS_TESTS_KERNELS_TEST_UTIL_H
#define HARNESS_TESTS_KERNELS_TEST_UTIL_H

#include <stdint.h>

/* splitmix64: test data only (the kernels' own RNG is Philox, tested separately) */
uint64_t tu_next_u64(uint64_t *state);
double tu_uniform(uint64_t *state, double lo, double hi);
void tu_fill_uniform(double *x, int64_t n, uint64_t *state, double lo, double hi);

/* max(worst, d) that keeps a NaN once seen (fmax and `if (d > worst)` drop it), for worst
 * errors that are then checked with `worst <= tol` */
double tu_max_keep_nan(double worst, double d);

/* float <-> double array copies */
void tu_to_float(float *dst, const double *src, int64_t n);
void tu_to_double(double *dst, const float *src, int64_t n);

/* 0 when |got[i] - want[i]| <= atol + rtol*|want[i]| for all i (NaN never passes); else
 * prints the worst element, with `what`, and returns 1. */
int tu_close(const char *what, const double *got, const double *want, int64_t n, double rtol,
             double atol);
int tu_close_f(const char *what, const float *got, const double *want, int64_t n, double rtol,
               double atol);
/* 0 when |got[i] - want[i]| <= tol * scale[i] for all i: for sums of products, where the
 * natural scale of the rounding error is sum_k |a_k b_k| rather than the result itself. */
int tu_close_scaled_f(const char *what, const float *got, const double *want,
                      const double *scale, int64_t n, double tol);

/* scale[B,O] = sum_k |a[B,K]| |b[O,K]| (+ |bias[O]|), the error scale of a @ b^T + bias */
void tu_gemm_abt_scale(double *scale, const double *a, const double *b, const double *bias,
                       int B, int K, int O);

#endif
