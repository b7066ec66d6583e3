/* trace: a timeline of chosen training steps on every rank, written as Chrome trace-event JSON
 * (RUN_DIR/trace.json; opens in Perfetto and chrome://tracing).
 *
 * One process per rank ("rank R"), one thread (track) per stream: "host" (data wait, the
 * all-reduce wait, evaluation, checkpoints), "compute" (copy to the device, forward and
 * backward per layer, optimizer) and "all-reduce" (each gradient bucket from its start to its
 * completion).  Compute spans are kern_marks: the host clock on the CPU backend, CUDA events on
 * the compute stream on GPUs (the device's time, not the host's queueing), resolved when the
 * traced steps are over.  Spans are complete events ("ph":"X"), so every begin has its end.
 *
 * Off costs nothing: with a NULL trace, or outside the traced steps, every call returns at
 * its first test - no clock read, no allocation.  Storage is allocated at trace_open. */
#ifndef HARNESS_TRACE_H
#define HARNESS_TRACE_H

#include <stdint.h>

#include "comm.h"
#include "kernels.h"

typedef struct trace trace;

typedef enum { TRACE_HOST = 0, TRACE_COMPUTE = 1, TRACE_COMM = 2, TRACE_TRACKS = 3 } trace_track;

/* Traces steps [first, first + count) (1-based, as in the logs), with room for
 * spans_per_step spans each.  Collective (a barrier sets the common time origin).  0 or -1. */
int trace_open(trace **out, kern_ctx *k, comm *c, int64_t first, int64_t count,
               int spans_per_step, char *err, size_t errlen);
/* Called at the start of every step (1-based): switches recording on inside the window. */
void trace_step_begin(trace *t, int64_t step);
/* At the end of every step: the step's own span on the host track. */
void trace_step_end(trace *t);
static inline int trace_on(const trace *t) { return t && *(const int *)t; }

/* Host-clock spans: begin returns a handle for end (-1 when not recording). */
int trace_host_begin(trace *t, trace_track track, const char *name, int arg);
/* name and what (may be NULL) are shown as "name what": static strings, or strings that
 * outlive the trace (layer type names). */
void trace_host_end(trace *t, int span);
/* A span of known host times (e.g. an all-reduce bucket comm timed itself). */
void trace_host_span(trace *t, trace_track track, const char *name, int arg, double t0, double t1);
/* Compute-stream spans (kern_marks). */
int trace_compute_begin(trace *t, const char *name, const char *what, int arg);
void trace_compute_end(trace *t, int span);

/* Collective: resolves the device marks, and rank 0 writes run_dir/trace.json with every
 * rank's spans (gathered through per-rank part files in run_dir).  0 or -1. */
int trace_write(trace *t, comm *c, const char *run_dir, char *err, size_t errlen);
void trace_free(trace *t);

#endif
