/* test_util.c: see test_util.h. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>

uint64_t tu_next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_uniform(uint64_t *state, double lo, double hi) {
    return lo + (hi - lo) * ((double)(tu_next_u64(state) >> 11) * 0x1p-53);
}

void tu_fill_uniform(double *x, int64_t n, uint64_t *state, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tu_uniform(state, lo, hi);
}

double tu_max_keep_nan(double worst, double d) {
    if (isnan(worst) || isnan(d)) return NAN;
    return d > worst ? d : worst;
}

void tu_to_float(float *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

void tu_to_double(double *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

static int report(const char *what, int64_t worst, double got, double want, double ratio) {
    if (worst < 0) return 0;
    fprintf(stderr, "%s: element %lld is %.9g, expected %.9g (error %.3g x tolerance)\n", what,
            (long long)worst, got, want, ratio);
    return 1;
}

/* |got - want|: 0 for the same value (the same infinity included), NaN when either is NaN or
 * only one is infinite - so that an infinite reference, whose tolerance is infinite, does not
 * accept any result, and `!(err <= tol)` fails */
static double elem_err(double got, double want) {
    if (got == want) return 0.0;
    if (!isfinite(got) || !isfinite(want)) return NAN;
    return fabs(got - want);
}

int tu_close(const char *what, const double *got, const double *want, int64_t n, double rtol,
             double atol) {
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double err = elem_err(got[i], want[i]);
        double tol = atol + rtol * fabs(want[i]);
        double ratio = err / tol;
        if (!(err <= tol) && (worst < 0 || !(ratio <= worst_ratio))) {
            worst = i;
            worst_ratio = ratio;
        }
    }
    return worst < 0 ? 0 : report(what, worst, got[worst], want[worst], worst_ratio);
}

int tu_close_f(const char *what, const float *got, const double *want, int64_t n, double rtol,
               double atol) {
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double err = elem_err((double)got[i], want[i]);
        double tol = atol + rtol * fabs(want[i]);
        double ratio = err / tol;
        if (!(err <= tol) && (worst < 0 || !(ratio <= worst_ratio))) {
            worst = i;
            worst_ratio = ratio;
        }
    }
    return worst < 0 ? 0 : report(what, worst, got[worst], want[worst], worst_ratio);
}

int tu_close_scaled_f(const char *what, const float *got, const double *want,
                      const double *scale, int64_t n, double tol) {
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double err = elem_err((double)got[i], want[i]);
        double t = tol * scale[i];
        double ratio = err / t;
        if (!(err <= t) && (worst < 0 || !(ratio <= worst_ratio))) {
            worst = i;
            worst_ratio = ratio;
        }
    }
    return worst < 0 ? 0 : report(what, worst, got[worst], want[worst], worst_ratio);
}

void tu_gemm_abt_scale(double *scale, const double *a, const double *b, const double *bias,
                       int B, int K, int O) {
    for (int r = 0; r < B; r++)
        for (int o = 0; o < O; o++) {
            double s = bias ? fabs(bias[o]) : 0.0;
            for (int k = 0; k < K; k++) s += fabs(a[r * K + k]) * fabs(b[o * K + k]);
            scale[r * O + o] = s;
        }
}
