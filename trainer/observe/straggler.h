/* straggler: the spread of step times across ranks at each log interval, and which rank is
 * persistently slower than the others.
 *
 * A rank's step time here is its busy time: the step's wall time minus the time it waited for
 * the gradient all-reduce.  The all-reduce makes every rank's wall time equal to the slowest
 * rank's, so only the busy time tells which rank holds the others up.  A rank is a straggler
 * when its busy time exceeds the median of the other ranks' by more than pct percent for
 * `intervals` log intervals in a row. */
#ifndef HARNESS_STRAGGLER_H
#define HARNESS_STRAGGLER_H

#include <stddef.h>

#include "comm.h"

typedef struct {
    int world, rank;
    double *times;         /* [world] busy seconds per step, this interval */
    double *sorted;        /* [world] scratch */
    float pct;
    int intervals;
    int candidate, streak; /* the rank that was slowest by more than pct, and for how long */
} straggler;

typedef struct {
    double min_s, median_s, max_s;  /* busy seconds per step across ranks */
    int slowest;                    /* the rank with max_s */
    double excess;                  /* slowest / median of the others - 1 */
    int streak;                     /* intervals in a row the slowest rank exceeded pct */
    int warn;                       /* streak reached `intervals` at this interval (or again
                                     * `intervals` later) */
} straggler_report;

int straggler_open(straggler *s, int world, int rank, float pct, int intervals, char *err,
                   size_t errlen);
/* Collective, at every log interval: my_step_s is this rank's busy seconds per step. */
int straggler_interval(straggler *s, comm *c, double my_step_s, straggler_report *out,
                       char *err, size_t errlen);
void straggler_close(straggler *s);

#endif
