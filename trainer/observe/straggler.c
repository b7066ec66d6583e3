/* straggler: per-interval step-time spread across ranks (see straggler.h). */
#include "straggler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int straggler_open(straggler *s, int world, int rank, float pct, int intervals, char *err,
                   size_t errlen) {
    memset(s, 0, sizeof *s);
    s->world = world;
    s->rank = rank;
    s->pct = pct;
    s->intervals = intervals;
    s->candidate = -1;
    s->times = calloc((size_t)world, sizeof *s->times);
    s->sorted = calloc((size_t)world, sizeof *s->sorted);
    if (!s->times || !s->sorted) {
        straggler_close(s);
        snprintf(err, errlen, "out of memory for the straggler report (%d ranks)", world);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n), sorted in place. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int straggler_interval(straggler *s, comm *c, double my_step_s, straggler_report *out,
                       char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    memset(s->times, 0, (size_t)s->world * sizeof *s->times);
    s->times[s->rank] = my_step_s;
    /* everyone's time in everyone's array: a sum where each rank fills only its own slot */
    if (s->world > 1 && comm_allreduce_sum_f64(c, s->times, s->world, err, errlen) != 0)
        return -1;
    int slowest = 0;
    for (int i = 1; i < s->world; i++)
        if (s->times[i] > s->times[slowest]) slowest = i;
    memcpy(s->sorted, s->times, (size_t)s->world * sizeof *s->sorted);
    out->median_s = median(s->sorted, s->world);
    out->min_s = s->sorted[0];
    out->max_s = s->sorted[s->world - 1];
    out->slowest = slowest;
    if (s->world < 2) {
        s->candidate = -1;
        s->streak = 0;
        return 0;
    }
    /* the median of the others: the slowest rank left out */
    int n = 0;
    for (int i = 0; i < s->world; i++)
        if (i != slowest) s->sorted[n++] = s->times[i];
    double others = median(s->sorted, n);
    out->excess = others > 0 ? s->times[slowest] / others - 1.0 : 0.0;
    if (out->excess * 100.0 > (double)s->pct) {
        s->streak = slowest == s->candidate ? s->streak + 1 : 1;
        s->candidate = slowest;
    } else {
        s->streak = 0;
        s->candidate = -1;
    }
    out->streak = s->streak;
    out->warn = s->streak >= s->intervals && (s->streak - s->intervals) % s->intervals == 0;
    return 0;
}

void straggler_close(straggler *s) {
    free(s->times);
    free(s->sorted);
    s->times = s->sorted = NULL;
}
