/* gpu_compare.c: see gpu_compare.h. */
#include "gpu_compare.h"

#include <math.h>
#include <string.h>

double gc_max_keep_nan(double worst, double d) {
    if (isnan(worst) || isnan(d)) return NAN;
    return d > worst ? d : worst;
}

/* one element pair into the running result */
static void add_pair(gc_diff *r, int64_t i, double w, double g, int same_bits) {
    if (isnan(w) && isnan(g)) return;
    if (!same_bits) r->differ++;
    if (!isfinite(w) || !isfinite(g)) {
        if (w == g) return;                         /* the same infinity */
        if (!isnan(r->max_diff)) r->worst = i;     /* the first mismatch is reported */
        r->max_diff = NAN;
        return;
    }
    double diff = fabs(g - w);
    r->max_ref = gc_max_keep_nan(r->max_ref, fabs(w));
    if (!isnan(r->max_diff) && diff > r->max_diff) r->worst = i;
    r->max_diff = gc_max_keep_nan(r->max_diff, diff);
}

gc_diff gc_diff_f(const float *want, const float *got, int64_t n) {
    gc_diff r = {0.0, 0.0, -1, 0};
    for (int64_t i = 0; i < n; i++)
        add_pair(&r, i, want[i], got[i], memcmp(&want[i], &got[i], sizeof(float)) == 0);
    return r;
}

gc_diff gc_diff_d(const double *want, const double *got, int64_t n) {
    gc_diff r = {0.0, 0.0, -1, 0};
    for (int64_t i = 0; i < n; i++)
        add_pair(&r, i, want[i], got[i], memcmp(&want[i], &got[i], sizeof(double)) == 0);
    return r;
}

double gc_rel(const gc_diff *d) { return d->max_ref > 0.0 ? d->max_diff / d->max_ref : d->max_diff; }

int gc_within(const gc_diff *d, double tol) {
    if (tol == 0.0) return d->differ == 0 && !isnan(d->max_diff);
    return gc_rel(d) <= tol;
}
