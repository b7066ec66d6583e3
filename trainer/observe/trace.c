/* trace: spans of the traced steps, kept in arrays sized at open, written as Chrome
 * trace-event JSON at the end (see trace.h). */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name;     /* static */
    const char *what;     /* NULL, or a layer type's name */
    int arg;              /* layer index, bucket index, or -1 */
    int track;
    int device;           /* t0/t1 are kern_marks slots, resolved at trace_write */
    int64_t step;
    double t0, t1;        /* host seconds; device spans: slots until resolved */
} trace_span;

struct trace {
    int on;               /* first member: trace_on() reads it */
    int rank;
    kern_ctx *k;
    int64_t first, last;  /* traced steps [first, last] */
    int64_t step;         /* the step being recorded */
    double origin;        /* host seconds at the common barrier */
    int n_spans, cap_spans;
    trace_span *spans;
    kern_marks *marks;
    int n_marks, cap_marks;
    int anchored;         /* mark 0 taken */
    int step_span;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int trace_open(trace **out, kern_ctx *k, comm *c, int64_t first, int64_t count,
               int spans_per_step, char *err, size_t errlen) {
    *out = NULL;
    trace *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, errlen, "log.trace: out of memory"), -1;
    t->rank = comm_rank(c);
    t->k = k;
    t->first = first;
    t->last = first + count - 1;
    /* + a few spans per step that are not per layer, and evaluation/checkpoint spans */
    t->cap_spans = (int)(count * (spans_per_step + 16) + 64);
    t->cap_marks = 2 * t->cap_spans + 1;
    t->spans = calloc((size_t)t->cap_spans, sizeof *t->spans);
    t->marks = kern_marks_create(k, t->cap_marks);
    t->n_marks = 1;   /* slot 0: the anchor */
    if (!t->spans || !t->marks) {
        trace_free(t);
        return snprintf(err, errlen, "log.trace: out of memory for %lld traced steps",
                        (long long)count), -1;
    }
    if (comm_barrier(c, err, errlen) != 0) {
        trace_free(t);
        return -1;
    }
    t->origin = now_s();
    *out = t;
    return 0;
}

void trace_step_begin(trace *t, int64_t step) {
    if (!t) return;
    t->on = step >= t->first && step <= t->last;
    if (!t->on) return;
    t->step = step;
    if (!t->anchored) {
        kern_mark(t->k, t->marks, 0);
        t->anchored = 1;
    }
    t->step_span = trace_host_begin(t, TRACE_HOST, "step", -1);
}

/* Recording stays on until the next step begins: the evaluation and checkpoint that follow a
 * traced step belong to its picture. */
void trace_step_end(trace *t) {
    if (!trace_on(t)) return;
    trace_host_end(t, t->step_span);
}

static int add_span(trace *t, trace_track track, const char *name, int arg, int device) {
    if (t->n_spans >= t->cap_spans) return -1;   /* full: later spans are dropped */
    trace_span *s = &t->spans[t->n_spans];
    s->name = name;
    s->arg = arg;
    s->track = track;
    s->device = device;
    s->step = t->step;
    s->what = NULL;
    s->t0 = s->t1 = -1;
    return t->n_spans++;
}

int trace_host_begin(trace *t, trace_track track, const char *name, int arg) {
    if (!trace_on(t)) return -1;
    int i = add_span(t, track, name, arg, 0);
    if (i >= 0) t->spans[i].t0 = now_s();
    return i;
}

void trace_host_end(trace *t, int span) {
    if (!t || span < 0) return;
    t->spans[span].t1 = now_s();
}

void trace_host_span(trace *t, trace_track track, const char *name, int arg, double t0,
                     double t1) {
    if (!trace_on(t)) return;
    int i = add_span(t, track, name, arg, 0);
    if (i < 0) return;
    t->spans[i].t0 = t0;
    t->spans[i].t1 = t1;
}

int trace_compute_begin(trace *t, const char *name, const char *what, int arg) {
    if (!trace_on(t) || t->n_marks + 2 > t->cap_marks) return -1;
    int i = add_span(t, TRACE_COMPUTE, name, arg, 1);
    if (i < 0) return -1;
    t->spans[i].what = what;
    t->spans[i].t0 = t->n_marks;
    kern_mark(t->k, t->marks, t->n_marks++);
    return i;
}

void trace_compute_end(trace *t, int span) {
    if (!t || span < 0) return;
    t->spans[span].t1 = t->n_marks;
    kern_mark(t->k, t->marks, t->n_marks++);
}

/* Orders one track's events by start, the enclosing (longer) span first. */
static int by_track_then_start(const void *a, const void *b) {
    const trace_span *x = a, *y = b;
    if (x->track != y->track) return x->track - y->track;
    if (x->t0 != y->t0) return x->t0 < y->t0 ? -1 : 1;
    double dx = x->t1 - x->t0, dy = y->t1 - y->t0;
    return dx > dy ? -1 : dx < dy ? 1 : 0;
}

static const char *track_name(int track) {
    return track == TRACE_HOST ? "host" : track == TRACE_COMPUTE ? "compute" : "all-reduce";
}

/* This rank's events as JSON objects, each followed by ",\n".  Returns a malloc'd string. */
static char *format_events(trace *t, size_t *len) {
    size_t cap = 1024 + (size_t)t->n_spans * 200, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    n += (size_t)snprintf(buf + n, cap - n,
                          "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                          "\"args\":{\"name\":\"rank %d\"}},\n"
                          "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                          "\"args\":{\"sort_index\":%d}},\n", t->rank, t->rank, t->rank, t->rank);
    for (int tr = 0; tr < TRACE_TRACKS; tr++)
        n += (size_t)snprintf(buf + n, cap - n,
                              "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                              "\"args\":{\"name\":\"%s\"}},\n", t->rank, tr, track_name(tr));
    for (int i = 0; i < t->n_spans; i++) {
        const trace_span *s = &t->spans[i];
        if (s->t0 < 0 || s->t1 < s->t0) continue;   /* never ended */
        double ts = (s->t0 - t->origin) * 1e6, dur = (s->t1 - s->t0) * 1e6;
        char arg[48] = "";
        if (s->arg >= 0) snprintf(arg, sizeof arg, ",\"%s\":%d",
                                  s->track == TRACE_COMM ? "bucket" : "layer", s->arg);
        n += (size_t)snprintf(buf + n, cap - n,
                              "{\"name\":\"%s%s%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,"
                              "\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"step\":%lld%s}},\n",
                              s->name, s->what ? " " : "", s->what ? s->what : "", s->name,
                              t->rank, s->track, ts, dur, (long long)s->step, arg);
        if (cap - n < 512) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) { free(buf); return NULL; }
            buf = grown;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

int trace_write(trace *t, comm *c, const char *run_dir, char *err, size_t errlen) {
    int st = 0;
    t->on = 0;
    if (t->n_marks > 1) {
        double *sec = malloc((size_t)t->n_marks * sizeof *sec);
        if (!sec || kern_marks_read(t->k, t->marks, t->n_marks, sec) != 0) {
            st = -1;
        } else {
            for (int i = 0; i < t->n_spans; i++) {
                trace_span *s = &t->spans[i];
                if (!s->device || s->t0 < 0 || s->t1 < 0) continue;
                s->t0 = sec[(int)s->t0];
                s->t1 = sec[(int)s->t1];
                s->device = 0;
            }
        }
        free(sec);
    }
    qsort(t->spans, (size_t)t->n_spans, sizeof *t->spans, by_track_then_start);
    size_t len = 0;
    char *mine = st == 0 ? format_events(t, &len) : NULL;
    if (!mine) st = -1;
    /* rank by rank to rank 0 (comm offers broadcasts; a trace is written once per run) */
    FILE *f = NULL;
    char path[1200], tmp[1210];
    snprintf(path, sizeof path, "%s/trace.json", run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (t->rank == 0) {
        f = fopen(tmp, "w");
        if (f) fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
    }
    int world = comm_world(c);
    for (int r = 0; r < world; r++) {
        int64_t n = r == t->rank ? (int64_t)len : 0;
        if (comm_broadcast(c, &n, sizeof n, r, err, errlen) != 0) { free(mine); return -1; }
        char *buf = r == t->rank ? mine : malloc((size_t)n + 1);
        if (!buf) return snprintf(err, errlen, "trace: out of memory"), free(mine), -1;
        if (n > 0 && comm_broadcast(c, buf, (size_t)n, r, err, errlen) != 0) {
            if (buf != mine) free(buf);
            free(mine);
            return -1;
        }
        if (f && n > 0) fwrite(buf, 1, (size_t)n, f);
        if (buf != mine) free(buf);
    }
    free(mine);
    if (t->rank == 0) {
        if (!f) {
            snprintf(err, errlen, "%s: cannot write", tmp);
            return -1;
        }
        /* a last event with no trailing comma closes the array */
        fprintf(f, "{\"name\":\"process_labels\",\"ph\":\"M\",\"pid\":0,\"tid\":0,"
                "\"args\":{\"labels\":\"harness\"}}\n]}\n");
        if (fclose(f) != 0 || rename(tmp, path) != 0) {
            snprintf(err, errlen, "%s: cannot write", path);
            return -1;
        }
    }
    if (st != 0) snprintf(err, errlen, "trace: reading the device marks failed");
    return st;
}

void trace_free(trace *t) {
    if (!t) return;
    kern_marks_free(t->k, t->marks);
    free(t->spans);
    free(t);
}
