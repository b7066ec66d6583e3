/* gpu_compare.h: how the GPU tests compare a GPU result with the CPU's, written so that NaN
 * never passes: a NaN or an infinity on one side only makes the difference NaN, and every
 * check is "within" (d <= tol), which NaN fails.  NaN on both sides at the same element counts
 * as equal (the CPU reference has NaN there too; payloads may differ).
 * tests/kernels/test_compare_nan.c feeds NaN to each of these and expects failure. */
#ifndef HARNESS_TESTS_GPU_COMPARE_H
#define HARNESS_TESTS_GPU_COMPARE_H

#include <stdint.h>

typedef struct {
    double max_diff;   /* max |got - want|; NaN when some element is NaN or infinite on one
                        * side only (or infinite with the other sign) */
    double max_ref;    /* max |want| over the elements finite on both sides */
    int64_t worst;     /* the element of max_diff (the first mismatched one); -1: none */
    int64_t differ;    /* elements whose bits differ (NaN on both sides: equal) */
} gc_diff;

gc_diff gc_diff_f(const float *want, const float *got, int64_t n);
gc_diff gc_diff_d(const double *want, const double *got, int64_t n);
/* max_diff / max_ref (max_diff itself when max_ref is 0); NaN when max_diff is */
double gc_rel(const gc_diff *d);
/* 1 when gc_rel(d) <= tol (tol 0: every bit equal), else 0 (NaN: 0) */
int gc_within(const gc_diff *d, double tol);
/* max(worst, d) that keeps a NaN once seen (fmax and `if (d > worst)` drop it) */
double gc_max_keep_nan(double worst, double d);

#endif
