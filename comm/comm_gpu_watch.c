/* comm_gpu_watch: the queue of NCCL launches not yet known to be complete, shared by the main
 * thread (which pushes) and the watchdog thread (which polls), and what the watchdog does with
 * it at each tick.
 *
 * With NCCL the host never waits for a bucket: completion is an event recorded on comm's stream
 * right after the launch.  Whoever calls cudaEventQuery on the oldest entries first - the
 * watchdog every tick, the main thread at each comm_grads_wait - retires them, and publishes in
 * this rank's slot which GPU collective is the oldest still in flight and since when, and the
 * newest one done.  So reports name GPU collectives the way they name host ones, and a
 * collective that stays queued longer than the timeout is a stall like any other.
 *
 * Threads.  The queue is under a mutex, held only around cudaEventQuery (which does not
 * block).  The watchdog calls no MPI and of NCCL only ncclCommGetAsyncError (each tick) and
 * ncclCommAbort (just before it ends the process): the two that NCCL's error handling expects
 * another thread to call while the communicator is in use.  cudaEventQuery is thread safe. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "comm_gpu_internal.h"

#define RELAXED memory_order_relaxed
#define ABORT_GRACE_NS INT64_C(10000000000)   /* ncclCommAbort may itself hang (NCCL bugs) */

/* ---- the queue ---------------------------------------------------------------------------- */

/* This rank's slot: the oldest GPU collective in flight (0 when none), since when. */
static void publish_locked(comm *c, struct comm_gpu *g) {
    comm_slot *s = c->self;
    if (g->tail < g->head) {
        const comm_gpu_pending *p = &g->ring[g->tail % g->ring_cap];
        atomic_store_explicit(&s->device_open_since_ns, p->since_ns, RELAXED);
        atomic_store_explicit(&s->device_open_seq, p->seq_first, RELAXED);
    } else {
        atomic_store_explicit(&s->device_open_seq, 0, RELAXED);
    }
}

/* Retires completed launches, oldest first.  cudaSuccess, or the error an event reported (that
 * launch stays queued). */
static cudaError_t retire_locked(comm *c, struct comm_gpu *g) {
    cudaError_t result = cudaSuccess;
    while (g->tail < g->head) {
        const comm_gpu_pending *p = &g->ring[g->tail % g->ring_cap];
        cudaError_t e = cudaEventQuery(p->done);
        if (e == cudaErrorNotReady) {
            comm_cuda_forget_not_ready();
            break;
        }
        if (e != cudaSuccess) {
            result = e;
            break;
        }
        atomic_store_explicit(&c->self->device_done_seq, p->seq_last, RELAXED);
        g->tail++;
    }
    publish_locked(c, g);
    return result;
}

int comm_gpu_queue_push(comm *c, uint64_t seq_first, uint64_t seq_last, int32_t op,
                        int32_t type, int64_t bucket, int64_t count, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    cudaError_t e = cudaSuccess;
    pthread_mutex_lock(&g->lock);
    while (e == cudaSuccess && g->head - g->tail >= g->ring_cap) {
        e = retire_locked(c, g);
        if (e != cudaSuccess || g->head - g->tail < g->ring_cap) break;
        /* The GPU is a whole queue behind: wait for its oldest launch.  Only this thread
         * records the events, so the entry stays valid while the lock is released. */
        cudaEvent_t oldest = g->ring[g->tail % g->ring_cap].done;
        pthread_mutex_unlock(&g->lock);
        e = cudaEventSynchronize(oldest);
        pthread_mutex_lock(&g->lock);
    }
    /* Entry `head` is this thread's until head moves: the watchdog reads [tail, head) only.
     * The lock is not held across cudaEventRecord, which can block when the GPU's queue is
     * full - exactly when the watchdog must not be kept waiting. */
    comm_gpu_pending *p = &g->ring[g->head % g->ring_cap];
    pthread_mutex_unlock(&g->lock);
    if (e == cudaSuccess) {
        p->seq_first = seq_first;
        p->seq_last = seq_last;
        p->op = op;
        p->type = type;
        p->bucket = bucket;
        p->start = bucket >= 0 ? c->buckets[bucket].start : 0;
        p->count = bucket >= 0 ? c->buckets[bucket].count : count;
        p->since_ns = comm_now_ns();
        e = cudaEventRecord(p->done, g->stream);
    }
    if (e == cudaSuccess) {
        pthread_mutex_lock(&g->lock);
        if (g->head++ == g->tail) publish_locked(c, g);
        pthread_mutex_unlock(&g->lock);
    }
    if (e != cudaSuccess) return comm_cuda_error(e, "queueing a collective on the GPU", err, errlen);
    return 0;
}

int comm_gpu_queue_poll(comm *c, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    pthread_mutex_lock(&g->lock);
    cudaError_t e = retire_locked(c, g);
    pthread_mutex_unlock(&g->lock);
    if (e != cudaSuccess) return comm_cuda_error(e, "a collective on the GPU", err, errlen);
    return 0;
}

int comm_gpu_queue_drain(comm *c, char *err, size_t errlen) {
    cudaError_t e = cudaStreamSynchronize(c->gpu->stream);
    if (e != cudaSuccess) return comm_cuda_error(e, "cudaStreamSynchronize (comm stream)", err, errlen);
    return comm_gpu_queue_poll(c, err, errlen);
}

/* ---- the watchdog's side ----------------------------------------------------------------- */

int comm_gpu_watch(comm *c, int64_t now_ns, int64_t timeout_ns, comm_gpu_watch_report *out) {
    if (!atomic_load_explicit(&c->gpu_watch, memory_order_acquire)) return 0;
    struct comm_gpu *g = c->gpu;
    memset(out, 0, sizeof *out);
    if (!g->watch_device_set) {   /* the runtime's current device is per thread */
        (void)cudaSetDevice(g->device);
        (void)cudaGetLastError();
        g->watch_device_set = 1;
    }
#ifdef HARNESS_HAVE_NCCL
    if (g->nccl_live) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(g->nccl, &async) == ncclSuccess && async != ncclSuccess &&
            async != ncclInProgress) {
            const char *last = ncclGetLastError(g->nccl);
            out->kind = COMM_GPU_WATCH_NCCL_ERROR;
            snprintf(out->detail, sizeof out->detail, "%s%s%s", ncclGetErrorString(async),
                     last && last[0] ? ": " : "", last ? last : "");
        }
    }
#endif
    pthread_mutex_lock(&g->lock);
    cudaError_t e = g->ring ? retire_locked(c, g) : cudaSuccess;
    int open = g->tail < g->head;
    if (open) {
        const comm_gpu_pending *p = &g->ring[g->tail % g->ring_cap];
        out->fp.seq = p->seq_first;
        out->fp.op = p->op;
        out->fp.type = p->type;
        out->fp.count = p->count;
        out->fp.root = 0;
        out->since_ns = p->since_ns;
        out->bucket = p->bucket;
        out->buckets = g->registered_buckets;
        out->start = p->start;
        out->count = p->count;
    }
    pthread_mutex_unlock(&g->lock);
    if (out->kind != COMM_GPU_WATCH_OK) return 1;
    /* A CUDA error is the main thread's to report (it meets it at its next call, with context);
     * here it only explains a stall. */
    if (e != cudaSuccess)
        snprintf(out->detail, sizeof out->detail, "the GPU reports %s (%s)", cudaGetErrorString(e),
                 cudaGetErrorName(e));
    if (open && now_ns - out->since_ns > timeout_ns) {
        out->kind = COMM_GPU_WATCH_STALL;
        return 1;
    }
    return 0;
}

#ifdef HARNESS_HAVE_NCCL
static void *abort_main(void *arg) {
    struct comm_gpu *g = arg;
    (void)ncclCommAbort(g->nccl);
    atomic_store(&g->abort_done, 1);
    return NULL;
}
#endif

void comm_gpu_exit_abort(comm *c) {
#ifdef HARNESS_HAVE_NCCL
    if (!atomic_load_explicit(&c->gpu_watch, memory_order_acquire)) return;
    struct comm_gpu *g = c->gpu;
    if (!g->nccl_live || atomic_exchange(&g->abort_started, 1)) return;
    /* On a thread of its own, so that an abort that hangs cannot keep the process alive. */
    pthread_t t;
    if (pthread_create(&t, NULL, abort_main, g) != 0) return;
    pthread_detach(t);
    int64_t until = comm_now_ns() + ABORT_GRACE_NS;
    while (!atomic_load(&g->abort_done) && comm_now_ns() < until) {
        struct timespec ts = {0, 10000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
#else
    (void)c;
#endif
}
