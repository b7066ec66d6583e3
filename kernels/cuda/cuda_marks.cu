/* cuda_marks.cu: trace marks as CUDA events on the compute stream (kern_marks, kernels.h).
 *
 * Slot 0 is the anchor: the stream is synchronised, the event recorded and the host clock read
 * right after, so event 0 sits at a known host time (to within the record call).  A later
 * slot's host time is that plus cudaEventElapsedTime(event 0, event i): the device's own
 * timeline, with the host's queueing left out.  Events are created once, with timing. */
#include "cuda_internal.h"

#include <stdlib.h>
#include <time.h>

typedef struct {
    int n;
    cudaEvent_t *events;   /* [n] */
    double anchor_host;    /* host seconds at event 0 */
} kcuda_marks;

static double host_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *kcuda_marks_create(void *ctx, int n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    kcuda_marks *m = (kcuda_marks *)calloc(1, sizeof *m);
    if (!m) return NULL;
    m->events = (cudaEvent_t *)calloc((size_t)n, sizeof *m->events);
    if (!m->events) { free(m); return NULL; }
    m->n = n;
    for (int i = 0; i < n; i++)
        if (!KCUDA_CALL(c, cudaEventCreateWithFlags(&m->events[i], cudaEventDefault))) {
            m->n = i;
            kcuda_marks_free(c, m);
            return NULL;
        }
    return m;
}

void kcuda_mark(void *ctx, void *marks, int i) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    kcuda_marks *m = (kcuda_marks *)marks;
    if (i == 0) {
        KCUDA_CALL(c, cudaStreamSynchronize(c->stream));
        KCUDA_CALL(c, cudaEventRecord(m->events[0], c->stream));
        m->anchor_host = host_now();
        return;
    }
    KCUDA_CALL(c, cudaEventRecord(m->events[i], c->stream));
}

int kcuda_marks_read(void *ctx, void *marks, int n, double *seconds) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    kcuda_marks *m = (kcuda_marks *)marks;
    if (!KCUDA_CALL(c, cudaEventSynchronize(m->events[n - 1]))) return -1;
    seconds[0] = m->anchor_host;
    for (int i = 1; i < n; i++) {
        float ms = 0.0f;
        if (!KCUDA_CALL(c, cudaEventElapsedTime(&ms, m->events[0], m->events[i]))) return -1;
        seconds[i] = m->anchor_host + 1e-3 * (double)ms;
    }
    return 0;
}

void kcuda_marks_free(void *c, void *marks) {
    kcuda_marks *m = (kcuda_marks *)marks;
    for (int i = 0; i < m->n; i++) cudaEventDestroy(m->events[i]);
    free(m->events);
    free(m);
}
