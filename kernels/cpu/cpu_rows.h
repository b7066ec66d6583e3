/* cpu_rows.h: reductions over one row of floats for the CPU backend's row-wise ops (softmax,
 * cross-entropy, layer norm).  Eight independent partial results, combined in a fixed order:
 * gcc vectorises them without reassociating, and the result is the same bits on every run. */
#ifndef HARNESS_KERNELS_CPU_ROWS_H
#define HARNESS_KERNELS_CPU_ROWS_H

#include <math.h>

/* max_j x[j], j < n (-inf when n == 0) */
static inline float kcpu_row_max(const float *restrict x, int n) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) m[k] = x[j + k] > m[k] ? x[j + k] : m[k];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    for (int k = 1; k < 8; k++) m[0] = m[k] > m[0] ? m[k] : m[0];
    return m[0];
}

/* sum_j x[j] in double */
static inline double kcpu_row_sum(const float *restrict x, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[j + k];
    for (; j < n; j++) acc[0] += x[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* sum_j x[j] y[j] in double */
static inline double kcpu_row_dot(const float *restrict x, const float *restrict y, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)x[j + k] * y[j + k];
    for (; j < n; j++) acc[0] += (double)x[j] * y[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#endif
