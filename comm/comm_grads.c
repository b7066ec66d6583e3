/* Bucketed gradient all-reduce on host memory, overlapped with backward.
 *
 * comm_grads_ready(offset) starts MPI_Iallreduce(IN_PLACE, SUM) for each bucket now complete;
 * comm_grads_wait() finishes them and scales by 1/world.  MPI requires nonblocking collectives
 * on a communicator to be started in the same order on every rank: buckets start in bucket
 * order (0, 1, 2, ...) on every rank, so that holds whenever all ranks register the same n and
 * bucket_bytes and call ready/wait at the same points of the step (which the identical model
 * and training loop on every rank guarantee).  No blocking collective may be issued on this
 * comm between the first ready and the wait of a step.
 *
 * With world == 1 nothing here calls MPI.  Nothing here allocates after register.
 * A buffer registered with comm_grads_register_device goes to comm_gpu_grads.c instead. */
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "comm_internal.h"

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int comm_grads_plan(comm *c, int64_t n, size_t bucket_bytes, const char *who, char *err,
                    size_t errlen) {
    int64_t count = comm_bucket_count(n, bucket_bytes, INT_MAX);
    comm_bucket *buckets = NULL;
    MPI_Request *requests = NULL;
    unsigned char *gather_done = NULL;
    if (comm_gather_settle(c, err, errlen)) return 1;
    if (count > 0) {
        buckets = malloc((size_t)count * sizeof *buckets);
        requests = malloc((size_t)count * sizeof *requests);
        gather_done = calloc((size_t)count, 1);
        if (!buckets || !requests || !gather_done) {
            free(buckets);
            free(requests);
            free(gather_done);
            return comm_error(err, errlen, "%s: out of memory for %lld buckets", who,
                              (long long)count);
        }
        comm_bucket_plan(n, bucket_bytes, INT_MAX, buckets);
        for (int64_t i = 0; i < count; i++) requests[i] = MPI_REQUEST_NULL;
    }
    free(c->buckets);
    free(c->requests);
    free(c->gather_done);
    free(c->bucket_t0);
    free(c->bucket_t1);
    c->bucket_t0 = c->bucket_t1 = NULL;
    comm_shm_grads_close(c);
    c->grads_n = n;
    c->buckets = buckets;
    c->requests = requests;
    c->gather_done = gather_done;
    c->num_buckets = count;
    c->started = 0;
    c->completed = 0;
    return 0;
}

int comm_grads_register(comm *c, float *grads, int64_t n, size_t bucket_bytes,
                        char *err, size_t errlen) {
    if (n < 0) return comm_error(err, errlen, "comm_grads_register: negative size %lld", (long long)n);
    if (n > 0 && !grads) return comm_error(err, errlen, "comm_grads_register: buffer is NULL");
    if (bucket_bytes == 0) return comm_error(err, errlen, "comm_grads_register: bucket_bytes is 0");
    if (c->started > c->completed)
        return comm_error(err, errlen, "comm_grads_register: buckets of the previous buffer are "
                          "still in flight (call comm_grads_wait first)");
    if (comm_grads_plan(c, n, bucket_bytes, "comm_grads_register", err, errlen)) return 1;
    if (c->grads_on_device) comm_gpu_forget_grads(c);
    c->grads = grads;
    return comm_zero_plan(c, err, errlen);   /* shard layout and bf16 buffers (comm_zero.c) */
}

/* Node shared memory (with MPI between nodes, across nodes) averages fp32 gradients, of the
 * whole buffer or, sharded on one node, of each rank's shard; bf16 exchanges and sharded ones
 * across nodes go through comm_zero.c's collectives.  Buckets are only copied during
 * backward, the exchange runs in the wait. */
int comm_grads_node_memory(const comm *c) {
    return c->shm && c->grad_dtype == COMM_GRAD_FP32 && (!c->shard || c->shm->cross == MPI_COMM_NULL);
}

/* Start buckets started..k-1, where bucket k is the first one reaching below offset. */
static int start_buckets(comm *c, int64_t offset, char *err, size_t errlen) {
    while (c->started < c->num_buckets && c->buckets[c->started].start >= offset) {
        comm_bucket b = c->buckets[c->started];
        if (c->started == 0) {
            c->bucket_seq0 = c->sequence + 1;
            c->xchg_t0 = now_seconds();
        }
        /* With fingerprint checking on, a mismatch skips this bucket on every rank. */
        comm_op op = c->shard ? COMM_OP_GRADS_SHARD : COMM_OP_GRADS_BUCKET;
        comm_type type = c->grad_dtype == COMM_GRAD_BF16 ? COMM_TYPE_BF16 : COMM_TYPE_F32;
        if (comm_collective_join(c, op, type, b.count, 0, err, errlen))
            return 1;
        if (c->bucket_t0) c->bucket_t0[c->started] = c->bucket_t1[c->started] = now_seconds();
        if (comm_grads_node_memory(c)) {
            comm_shm_grads_bucket(c, b.start, b.count);
        } else if (c->world_size > 1 && (c->shard || c->grad_dtype != COMM_GRAD_FP32)) {
            if (comm_zero_start_bucket(c, c->started, err, errlen)) return 1;
        } else if (c->world_size > 1) {
            int rc = MPI_Iallreduce(MPI_IN_PLACE, c->grads + b.start, b.count, MPI_FLOAT, MPI_SUM,
                                    c->world, &c->requests[c->started]);
            if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Iallreduce (gradient bucket)", err, errlen);
        }
        c->started++;
    }
    return 0;
}

int comm_grads_ready(comm *c, int64_t offset, char *err, size_t errlen) {
    if (offset < 0 || offset > c->grads_n)
        return comm_error(err, errlen, "comm_grads_ready: offset %lld outside [0, %lld]",
                          (long long)offset, (long long)c->grads_n);
    if (c->gather_buf && comm_gather_settle(c, err, errlen)) return 1;
    if (c->grads_on_device) return comm_gpu_grads_ready(c, offset, err, errlen);
    int64_t before = c->started;
    if (start_buckets(c, offset, err, errlen)) return 1;
    if (c->world_size == 1 || comm_grads_node_memory(c)) {   /* nothing in flight until the wait */
        c->completed = c->started;
        return 0;
    }
    /* Without a progress thread, MPI advances nonblocking collectives only inside MPI calls:
     * poke the oldest unfinished buckets so the reduction moves while backward computes. */
    if (c->started > before) {
        while (c->completed < c->started) {
            int done = 0;
            int rc = MPI_Test(&c->requests[c->completed], &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Test (gradient bucket)", err, errlen);
            if (!done) break;
            if (c->bucket_t1) c->bucket_t1[c->completed] = now_seconds();
            c->completed++;
        }
    }
    return 0;
}

/* A step's exchange has finished at t1, in flight since `from`: its bus bytes (nccl-tests'
 * convention: an all-reduce of S bytes over W ranks moves 2 (W-1)/W x S per rank, a
 * reduce-scatter (W-1)/W x S; S in the wire's type) and seconds. */
static void add_bus_stats(comm *c, double from, double t1) {
    double W = (double)c->world_size;
    double wire = c->grad_dtype == COMM_GRAD_BF16 ? 2.0 : 4.0;
    double factor = (c->shard ? 1.0 : 2.0) * (W - 1.0) / W;
    c->xchg_bus_bytes += factor * wire * (double)c->grads_n;
    c->xchg_seconds += t1 - from;
}

void comm_grads_bus_stats(comm *c, double *bus_bytes, double *seconds) {
    *bus_bytes = c->xchg_bus_bytes;
    *seconds = c->xchg_seconds;
    c->xchg_bus_bytes = c->xchg_seconds = 0.0;
}

/* Buckets not yet started (ready never reached offset 0) are started here first, so the
 * whole buffer is averaged on return. */
int comm_grads_wait(comm *c, char *err, size_t errlen) {
    if (c->gather_buf && comm_gather_settle(c, err, errlen)) return 1;
    if (c->grads_on_device) return comm_gpu_grads_wait(c, err, errlen);
    double t0 = now_seconds();
    int status = start_buckets(c, 0, err, errlen);
    if (status == 0 && comm_grads_node_memory(c)) {
        if (c->started > 0) {   /* the watchdog times the wait as bucket 0's */
            comm_fingerprint fp = {c->bucket_seq0, c->shard ? COMM_OP_GRADS_SHARD : COMM_OP_GRADS_BUCKET,
                                   COMM_TYPE_F32, c->buckets[0].count, 0};
            comm_wait_begin(c, &fp);
        }
        status = comm_shm_grads_finish(c, err, errlen);   /* averaged on return */
        comm_collective_end(c);
        for (int64_t i = 0; c->bucket_t1 && i < c->started; i++) c->bucket_t1[i] = now_seconds();
    } else if (status == 0 && c->world_size > 1) {
        int64_t first = c->completed;
        if (first < c->started) {   /* the watchdog times the wait for the oldest open bucket */
            comm_fingerprint fp = {c->bucket_seq0 + (uint64_t)first,
                                   c->shard ? COMM_OP_GRADS_SHARD : COMM_OP_GRADS_BUCKET,
                                   c->grad_dtype == COMM_GRAD_BF16 ? COMM_TYPE_BF16 : COMM_TYPE_F32,
                                   c->buckets[first].count, 0};
            comm_wait_begin(c, &fp);
        }
        /* Waitall takes an int count; more than INT_MAX buckets is only possible with absurd
         * sizes, but wait in int-sized slices anyway. */
        /* traced: one bucket at a time, so that each one's completion is stamped */
        for (; c->bucket_t1 && status == 0 && first < c->started; first++) {
            int rc = MPI_Wait(&c->requests[first], MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Wait (gradient bucket)", err, errlen);
            c->bucket_t1[first] = now_seconds();
        }
        while (status == 0 && first < c->started) {
            int64_t left = c->started - first;
            int pending = (int)(left < INT_MAX ? left : INT_MAX);
            int rc = MPI_Waitall(pending, c->requests + first, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Waitall (gradient buckets)", err, errlen);
            first += pending;
        }
        comm_collective_end(c);   /* every bucket started so far is complete */
        /* Divide rather than multiply by 1/world: the average is then correctly rounded
         * (sum of equal values / world is exact); the loop is memory-bound either way.  Into
         * the shard (zero_stage 1) or the whole buffer; widened from bf16 first if need be. */
        if (status == 0) comm_zero_finish(c);
    }
    double t1 = now_seconds();
    if (status == 0 && c->world_size > 1 && c->started > 0)
        add_bus_stats(c, comm_grads_node_memory(c) ? t0 : c->xchg_t0, t1);
    c->bucket_timed = c->started;
    c->started = 0;
    c->completed = 0;
    c->wait_seconds += t1 - t0;
    return status;
}

int comm_grads_time_buckets(comm *c, char *err, size_t errlen) {
    if (c->grads_on_device || c->bucket_t0 || c->num_buckets == 0) return 0;
    c->bucket_t0 = calloc((size_t)c->num_buckets, sizeof *c->bucket_t0);
    c->bucket_t1 = calloc((size_t)c->num_buckets, sizeof *c->bucket_t1);
    if (!c->bucket_t0 || !c->bucket_t1) {
        free(c->bucket_t0);
        free(c->bucket_t1);
        c->bucket_t0 = c->bucket_t1 = NULL;
        return comm_error(err, errlen, "comm_grads_time_buckets: out of memory");
    }
    return 0;
}

int64_t comm_grads_bucket_times(const comm *c, const double **start, const double **end) {
    *start = c->bucket_t0;
    *end = c->bucket_t1;
    return c->bucket_t0 ? c->bucket_timed : 0;
}

double comm_grads_wait_seconds(comm *c) {
    if (c->grads_on_device) return comm_gpu_grads_wait_seconds(c);
    double s = c->wait_seconds;
    c->wait_seconds = 0.0;
    return s;
}

int64_t comm_grads_buckets(const comm *c) { return c->num_buckets; }
