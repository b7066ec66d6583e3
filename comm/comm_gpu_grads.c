/* Bucketed gradient all-reduce on device memory, overlapped with backward: NCCL, or MPI through
 * a pinned host mirror (MPI_STAGED).  comm.h ("GPU backends") says what the calls promise;
 * comm_gpu_internal.h draws the streams and events.
 *
 * Buckets start in bucket order (0, 1, 2, ...) on every rank and each one is joined (sequence
 * number, fingerprint) when comm_grads_ready queues it, exactly as on the host path, so the
 * sequence numbers and the watchdog's records are the same whichever backend runs.
 *
 * MPI_STAGED, bucket b: ready queues "copy b to the mirror" on comm's stream and records
 * copied[b]; the MPI all-reduce of b starts at the first later ready (or the wait) that finds
 * copied[b] complete - cudaEventQuery, never a host block during backward - and the buckets'
 * own communicator (grads_world) makes that timing harmless to the other collectives.  When MPI
 * has finished b (MPI_Test at each ready, MPI_Wait in the wait) the host divides it by world in
 * the mirror and queues the copy back on comm's stream; the compute stream waits for the last
 * one.  Dividing rather than multiplying by 1/world gives the host path's exact result.
 *
 * Sharded (zero_stage 1, comm.h): NCCL replaces each bucket's all-reduce by a group of
 * ncclReduce, one per rank whose shard meets the bucket, into the device shard buffer, and
 * comm_shards_allgather_start is a group of in-place ncclBroadcast per bucket, each followed by
 * an event that the compute stream waits for when the next forward needs the bucket
 * (comm_shards_allgather_need); MPI_STAGED keeps its
 * all-reduce (the shard is a slice of the averaged buffer) and all-gathers through the mirror.
 *
 * bf16 on the wire (comm.grad_dtype=bf16, world > 1): NCCL rounds the buckets of a ready into
 * a device bf16 copy (comm_gpu_wire.cu) on comm's stream, sums them there (ncclBfloat16,
 * ncclSum: each partial sum rounded to bf16, as the host path's user op) and widens the sums
 * divided by world into the gradients (or this rank's part into the shard); MPI_STAGED rounds
 * in the pinned mirror on the host and all-reduces with the host path's bf16 sum.
 *
 * Nothing here allocates after comm_grads_register_device (but the MPI_STAGED all-gather's
 * two small count arrays). */
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "comm_gpu_internal.h"
#include "comm_gpu_wire.h"

#define CUDA_TRY(call, what)                                                     \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        if (e_ != cudaSuccess) return comm_cuda_error(e_, (what), err, errlen);  \
    } while (0)

static double now_seconds(void) { return (double)comm_now_ns() * 1e-9; }

/* The first bucket that ready(offset) does not complete: buckets [c->started, end) are new. */
static int64_t ready_end(const comm *c, int64_t offset) {
    int64_t end = c->started;
    while (end < c->num_buckets && c->buckets[end].start >= offset) end++;
    return end;
}

/* Backward has queued the gradients of the buckets about to start: comm's stream waits for the
 * compute stream to get there (no host wait). */
static int after_compute(struct comm_gpu *g, char *err, size_t errlen) {
    CUDA_TRY(cudaEventRecord(g->produced, g->compute), "cudaEventRecord (gradients queued)");
    CUDA_TRY(cudaStreamWaitEvent(g->stream, g->produced, 0), "cudaStreamWaitEvent (comm stream)");
    return 0;
}

/* Adds the finished exposed-communication timings to wait_seconds; block: wait for them. */
static void collect_timing(comm *c, int block) {
    struct comm_gpu *g = c->gpu;
    for (int i = 0; i < 2; i++) {
        comm_gpu_timing *t = &g->timing[i];
        if (!t->pending) continue;
        cudaError_t e = block ? cudaEventSynchronize(t->end) : cudaEventQuery(t->end);
        if (e == cudaErrorNotReady) {
            comm_cuda_forget_not_ready();
            continue;
        }
        float ms = 0.0f;
        if (e == cudaSuccess && cudaEventElapsedTime(&ms, t->begin, t->end) == cudaSuccess && ms > 0)
            c->wait_seconds += (double)ms * 1e-3;
        (void)cudaGetLastError();
        t->pending = 0;
    }
}

/* The compute stream waits for everything queued on comm's stream so far.  timed: bracket that
 * wait with a pair of timing events (the GPU time the compute stream stands still). */
static int compute_after_comm(comm *c, int timed, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    comm_gpu_timing *t = &g->timing[g->timing_next];
    if (timed) {
        if (t->pending) collect_timing(c, 1);   /* two steps old: long done in practice */
        CUDA_TRY(cudaEventRecord(t->begin, g->compute), "cudaEventRecord (timing)");
    }
    CUDA_TRY(cudaEventRecord(g->reduced, g->stream), "cudaEventRecord (gradients averaged)");
    CUDA_TRY(cudaStreamWaitEvent(g->compute, g->reduced, 0), "cudaStreamWaitEvent (compute stream)");
    if (timed) {
        CUDA_TRY(cudaEventRecord(t->end, g->compute), "cudaEventRecord (timing)");
        t->pending = 1;
        g->timing_next ^= 1;
    }
    return 0;
}

/* ---- NCCL ---------------------------------------------------------------------------------- */

#ifdef HARNESS_HAVE_NCCL
/* Sharded (zero_stage 1), bucket i: one ncclReduce(ncclAvg) per rank whose shard meets the
 * bucket, root = that rank, count = the intersection, in one NCCL group; the root receives its
 * part into its shard buffer (dev_shard), which keeps the host path's uneven floor(n r / world)
 * layout without padding.  recvbuff matters only at the root. */
static int nccl_reduce_to_shards(comm *c, int64_t i, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    comm_bucket b = c->buckets[i];
    const int world = c->world_size;
    const int *counts = c->shard_counts + i * world, *displs = c->shard_displs + i * world;
    const int bf16 = g->dev_wire16 != NULL;   /* bf16 on the wire: summed, divided afterwards */
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return comm_nccl_error(r, "ncclGroupStart (gradient shards)", g->nccl, err, errlen);
    int status = 0;
    for (int root = 0; root < world && status == 0; root++) {
        if (counts[root] == 0) continue;
        int64_t at = b.start + displs[root];
        int mine = root == c->rank;
        if (bf16) {
            uint16_t *send = g->dev_wire16 + at;
            uint16_t *recv = mine ? g->dev_shard16 + (at - c->shard_lo) : send;
            r = ncclReduce(send, recv, (size_t)counts[root], ncclBfloat16, ncclSum, root, g->nccl,
                           g->stream);
        } else {
            const float *send = g->dev_grads + at;
            float *recv = mine ? g->dev_shard + (at - c->shard_lo) : (float *)send;
            r = ncclReduce(send, recv, (size_t)counts[root], ncclFloat, ncclAvg, root, g->nccl,
                           g->stream);
        }
        if (r != ncclSuccess)
            status = comm_nccl_error(r, "ncclReduce (gradient shard)", g->nccl, err, errlen);
    }
    r = ncclGroupEnd();
    if (r != ncclSuccess && status == 0)
        status = comm_nccl_error(r, "ncclGroupEnd (gradient shards)", g->nccl, err, errlen);
    return status;
}

/* bf16 on the wire: the sums of buckets [first, last) widened and divided by world, into the
 * gradients (stage 0) or this rank's part of them into the shard (stage 1), on comm's stream
 * after their collectives.  The buckets of one ready are one contiguous range. */
static int nccl_unwire(comm *c, int64_t first, int64_t last, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    if (!g->dev_wire16 || last <= first) return 0;
    int64_t lo = c->buckets[last - 1].start, hi = c->buckets[first].start + c->buckets[first].count;
    float world = (float)c->world_size;
    cudaError_t e = cudaSuccess;
    if (!c->shard) {
        e = comm_wire_from_bf16(g->dev_wire16 + lo, g->dev_grads + lo, hi - lo, world, g->stream);
    } else {
        int64_t a = lo > c->shard_lo ? lo : c->shard_lo, z = hi < c->shard_hi ? hi : c->shard_hi;
        if (z > a)
            e = comm_wire_from_bf16(g->dev_shard16 + (a - c->shard_lo), g->dev_shard + (a - c->shard_lo),
                                    z - a, world, g->stream);
    }
    return e == cudaSuccess ? 0 : comm_cuda_error(e, "widening bf16 gradient sums", err, errlen);
}

/* Queues the buckets ready(offset) completes: one ncclAllReduce(in place, ncclAvg) each, in one
 * NCCL group when there are several, and one queue entry (event) after them. */
static int nccl_start(comm *c, int64_t offset, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    int64_t end = ready_end(c, offset);
    if (end == c->started) return 0;
    if (after_compute(g, err, errlen)) return 1;
    int64_t first = c->started;
    uint64_t seq_first = 0, seq_last = 0;
    int status = 0, grouped = end - first > 1;
    const int bf16 = g->dev_wire16 != NULL;
    if (bf16) {   /* the buckets rounded to bf16 before the group (NCCL runs it at its end) */
        int64_t lo = c->buckets[end - 1].start, hi = c->buckets[first].start + c->buckets[first].count;
        CUDA_TRY(comm_wire_to_bf16(g->dev_grads + lo, g->dev_wire16 + lo, hi - lo, g->stream),
                 "rounding a gradient bucket to bf16");
    }
    ncclResult_t r = grouped ? ncclGroupStart() : ncclSuccess;
    if (r != ncclSuccess) return comm_nccl_error(r, "ncclGroupStart", g->nccl, err, errlen);
    while (c->started < end) {
        comm_bucket b = c->buckets[c->started];
        if (c->started == 0) c->bucket_seq0 = c->sequence + 1;
        /* With fingerprint checking on, a mismatch skips this bucket on every rank. */
        comm_op op = c->shard ? COMM_OP_GRADS_SHARD : COMM_OP_GRADS_BUCKET;
        if (comm_collective_join(c, op, bf16 ? COMM_TYPE_BF16 : COMM_TYPE_F32, b.count, 0, err,
                                 errlen)) {
            status = 1;
            break;
        }
        if (c->shard && c->world_size > 1) {
            status = nccl_reduce_to_shards(c, c->started, err, errlen);
            if (status) break;
        } else if (bf16) {
            uint16_t *p = g->dev_wire16 + b.start;
            r = ncclAllReduce(p, p, (size_t)b.count, ncclBfloat16, ncclSum, g->nccl, g->stream);
            if (r != ncclSuccess) {
                status = comm_nccl_error(r, "ncclAllReduce (bf16 gradient bucket)", g->nccl, err, errlen);
                break;
            }
        } else {
            float *p = g->dev_grads + b.start;
            r = ncclAllReduce(p, p, (size_t)b.count, ncclFloat, ncclAvg, g->nccl, g->stream);
            if (r != ncclSuccess) {
                status = comm_nccl_error(r, "ncclAllReduce (gradient bucket)", g->nccl, err, errlen);
                break;
            }
        }
        if (c->started == first) seq_first = c->sequence;
        seq_last = c->sequence;
        c->started++;
    }
    if (grouped) {
        r = ncclGroupEnd();
        if (r != ncclSuccess && status == 0)
            status = comm_nccl_error(r, "ncclGroupEnd (gradient buckets)", g->nccl, err, errlen);
    }
    if (status == 0) status = nccl_unwire(c, first, c->started, err, errlen);
    if (c->started > first) {
        char qerr[256];
        if (comm_gpu_queue_push(c, seq_first, seq_last,
                                c->shard ? COMM_OP_GRADS_SHARD : COMM_OP_GRADS_BUCKET,
                                bf16 ? COMM_TYPE_BF16 : COMM_TYPE_F32, first, 0, qerr,
                                sizeof qerr) && status == 0)
            status = comm_error(err, errlen, "%s", qerr);
    }
    return status;
}

/* No host wait: the compute stream waits for comm's stream.  Also reports an NCCL error that
 * the communicator has met since (so it surfaces even without the watchdog). */
static int nccl_wait(comm *c, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    int status = nccl_start(c, 0, err, errlen);
    collect_timing(c, 0);
    if (status == 0 && c->started > 0) status = compute_after_comm(c, 1, err, errlen);
    if (status == 0) status = comm_gpu_queue_poll(c, err, errlen);
    if (status == 0) {
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(g->nccl, &async);
        if (r != ncclSuccess)
            status = comm_nccl_error(r, "ncclCommGetAsyncError", g->nccl, err, errlen);
        else if (async != ncclSuccess && async != ncclInProgress)
            status = comm_nccl_error(async, "the NCCL communicator (asynchronous error)", g->nccl,
                                     err, errlen);
    }
    c->started = 0;
    c->completed = 0;
    return status;
}
#endif

/* ---- MPI_STAGED ---------------------------------------------------------------------------- */

/* Starts the MPI all-reduce of every bucket, in order, whose copy to the mirror has completed;
 * block: wait for the copies. */
static int staged_launch(comm *c, int block, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    while (g->launched < c->started) {
        int64_t k = g->launched;
        cudaError_t e = block ? cudaEventSynchronize(g->copied[k]) : cudaEventQuery(g->copied[k]);
        if (e == cudaErrorNotReady) {
            comm_cuda_forget_not_ready();
            return 0;
        }
        if (e != cudaSuccess) return comm_cuda_error(e, "copying a gradient bucket to the host", err, errlen);
        comm_bucket b = c->buckets[k];
        int rc;
        if (c->grad_dtype == COMM_GRAD_BF16) {   /* the host path's bf16 sum (comm_zero.c) */
            for (int64_t j = b.start; j < b.start + b.count; j++) c->wire16[j] = f32_to_bf16(g->mirror[j]);
            rc = MPI_Iallreduce(MPI_IN_PLACE, c->wire16 + b.start, b.count, MPI_UINT16_T,
                                c->bf16_sum, c->grads_world, &c->requests[k]);
        } else {
            rc = MPI_Iallreduce(MPI_IN_PLACE, g->mirror + b.start, b.count, MPI_FLOAT, MPI_SUM,
                                c->grads_world, &c->requests[k]);
        }
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Iallreduce (gradient bucket)", err, errlen);
        g->launched++;
    }
    return 0;
}

/* Bucket k's sum is in the mirror: average it there and queue its copy back. */
static int staged_return(comm *c, int64_t k, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    comm_bucket b = c->buckets[k];
    float *h = g->mirror + b.start;
    const float world = (float)c->world_size;
    if (c->grad_dtype == COMM_GRAD_BF16) {
        const uint16_t *w = c->wire16 + b.start;
        for (int i = 0; i < b.count; i++) h[i] = bf16_to_f32(w[i]) / world;
    } else {
        for (int i = 0; i < b.count; i++) h[i] /= world;
    }
    CUDA_TRY(cudaMemcpyAsync(g->dev_grads + b.start, h, (size_t)b.count * sizeof(float),
                             cudaMemcpyHostToDevice, g->stream),
             "cudaMemcpyAsync (gradient bucket back to the device)");
    return 0;
}

/* Without a progress thread MPI moves only inside MPI calls: test the oldest running buckets
 * and send the finished ones back. */
static int staged_progress(comm *c, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    while (g->returned < g->launched) {
        int done = 0;
        int rc = MPI_Test(&c->requests[g->returned], &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Test (gradient bucket)", err, errlen);
        if (!done) break;
        if (staged_return(c, g->returned, err, errlen)) return 1;
        g->returned++;
    }
    c->completed = g->returned;
    return 0;
}

static int staged_start(comm *c, int64_t offset, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    int64_t end = ready_end(c, offset);
    int multi = c->world_size > 1;
    if (end > c->started && multi && after_compute(g, err, errlen)) return 1;
    while (c->started < end) {
        comm_bucket b = c->buckets[c->started];
        if (c->started == 0) c->bucket_seq0 = c->sequence + 1;
        comm_type type = c->grad_dtype == COMM_GRAD_BF16 && multi ? COMM_TYPE_BF16 : COMM_TYPE_F32;
        if (comm_collective_join(c, COMM_OP_GRADS_BUCKET, type, b.count, 0, err, errlen))
            return 1;
        if (multi) {
            size_t bytes = (size_t)b.count * sizeof(float);
            CUDA_TRY(cudaMemcpyAsync(g->mirror + b.start, g->dev_grads + b.start, bytes,
                                     cudaMemcpyDeviceToHost, g->stream),
                     "cudaMemcpyAsync (gradient bucket to the host)");
            CUDA_TRY(cudaEventRecord(g->copied[c->started], g->stream), "cudaEventRecord (bucket copied)");
        }
        c->started++;
    }
    if (!multi) {   /* the average over one rank is the buffer itself */
        c->completed = c->started;
        return 0;
    }
    if (staged_launch(c, 0, err, errlen)) return 1;
    return staged_progress(c, err, errlen);
}

static int staged_wait(comm *c, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    double t0 = now_seconds();
    int status = staged_start(c, 0, err, errlen);
    if (status == 0 && c->world_size > 1) {
        int64_t first = g->returned;
        if (first < c->started) {   /* the watchdog times the wait for the oldest open bucket */
            comm_fingerprint fp = {c->bucket_seq0 + (uint64_t)first, COMM_OP_GRADS_BUCKET,
                                   c->grad_dtype == COMM_GRAD_BF16 ? COMM_TYPE_BF16 : COMM_TYPE_F32,
                                   c->buckets[first].count, 0};
            comm_wait_begin(c, &fp);
        }
        status = staged_launch(c, 1, err, errlen);
        while (status == 0 && g->returned < c->started) {
            int rc = MPI_Wait(&c->requests[g->returned], MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Wait (gradient bucket)", err, errlen);
            else status = staged_return(c, g->returned, err, errlen);
            if (status == 0) g->returned++;
        }
        comm_collective_end(c);   /* every bucket started so far is complete on the host */
        if (status == 0 && c->started > 0) status = compute_after_comm(c, 0, err, errlen);
    }
    c->started = 0;
    c->completed = 0;
    g->launched = 0;
    g->returned = 0;
    c->wait_seconds += now_seconds() - t0;
    return status;
}

/* ---- the parameters' all-gather after a sharded step ------------------------------------ */

#ifdef HARNESS_HAVE_NCCL
/* Per bucket, from the start of the buffer (bucket num_buckets - 1) to its end: one
 * ncclBroadcast (in place) per rank whose shard meets it, root = that rank, in one NCCL group,
 * then an event (gathered[i]) on comm's stream; each bucket is joined (sequence, fingerprint)
 * and the whole all-gather is one queue entry for the watchdog.  On comm's stream after the
 * compute stream's work so far (the optimizer); the compute stream waits for each bucket's
 * event when the forward needs it (comm_gpu_shards_allgather_need): no host wait. */
static int nccl_allgather_start(comm *c, float *buf, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    const int world = c->world_size;
    if (!g->gathered) return comm_error(err, errlen, "comm_shards_allgather: no bucket events");
    if (after_compute(g, err, errlen)) return 1;
    uint64_t seq_first = 0, seq_last = 0;
    int64_t posted = 0;
    int status = 0;
    for (int64_t i = c->num_buckets - 1; i >= 0 && status == 0; i--) {
        comm_bucket b = c->buckets[i];
        if (comm_collective_join(c, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32, b.count, 0, err,
                                 errlen)) {
            status = 1;
            break;
        }
        if (posted == 0) seq_first = c->sequence;
        seq_last = c->sequence;
        const int *counts = c->shard_counts + i * world, *displs = c->shard_displs + i * world;
        ncclResult_t r = ncclGroupStart();
        if (r != ncclSuccess) {
            status = comm_nccl_error(r, "ncclGroupStart (parameter all-gather)", g->nccl, err, errlen);
            break;
        }
        for (int root = 0; root < world && status == 0; root++) {
            if (counts[root] == 0) continue;
            float *p = buf + b.start + displs[root];
            r = ncclBroadcast(p, p, (size_t)counts[root], ncclFloat, root, g->nccl, g->stream);
            if (r != ncclSuccess)
                status = comm_nccl_error(r, "ncclBroadcast (parameter shard)", g->nccl, err, errlen);
        }
        r = ncclGroupEnd();
        if (r != ncclSuccess && status == 0)
            status = comm_nccl_error(r, "ncclGroupEnd (parameter all-gather)", g->nccl, err, errlen);
        cudaError_t e = cudaEventRecord(g->gathered[i], g->stream);
        if (e != cudaSuccess && status == 0)
            status = comm_cuda_error(e, "cudaEventRecord (bucket gathered)", err, errlen);
        posted++;
    }
    if (posted > 0) {
        char qerr[256];
        if (comm_gpu_queue_push(c, seq_first, seq_last, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32,
                                c->num_buckets - 1, 0, qerr, sizeof qerr) &&
            status == 0)
            status = comm_error(err, errlen, "%s", qerr);
    }
    if (status) {   /* the compute stream waits for whatever was queued */
        char ignore[8];
        compute_after_comm(c, 0, ignore, sizeof ignore);
    }
    return status;
}
#endif

/* MPI_STAGED: through the pinned mirror.  Each rank's shard goes to the host (the compute
 * stream's order, one host wait), MPI_Allgatherv there (the host path's layout), and the whole
 * buffer back (queued on the compute stream).  Blocking, simplest correct: it moves n floats
 * each way over PCIe. */
static int staged_allgather(comm *c, float *buf, char *err, size_t errlen) {
    struct comm_gpu *g = c->gpu;
    if (!g->mirror) return comm_error(err, errlen, "comm_shards_allgather: no pinned mirror");
    int64_t lo = c->shard_lo, mine = c->shard_hi - c->shard_lo;
    if (mine > 0)
        CUDA_TRY(cudaMemcpyAsync(g->mirror + lo, buf + lo, (size_t)mine * sizeof(float),
                                 cudaMemcpyDeviceToHost, g->compute),
                 "cudaMemcpyAsync (parameter shard to the host)");
    CUDA_TRY(cudaStreamSynchronize(g->compute), "cudaStreamSynchronize (parameter shard)");
    int world = c->world_size;
    int *counts = malloc(2 * (size_t)world * sizeof(int));
    if (!counts) return comm_error(err, errlen, "comm_shards_allgather: out of memory");
    int *displs = counts + world;
    for (int r = 0; r < world; r++) {
        int64_t a, z;
        comm_shard_bounds(c->grads_n, world, r, &a, &z);
        counts[r] = (int)(z - a);
        displs[r] = (int)a;
    }
    int status = comm_collective_begin(c, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32, c->grads_n, 0,
                                       err, errlen);
    if (status == 0) {
        int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g->mirror, counts, displs,
                                MPI_FLOAT, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Allgatherv (parameters)", err, errlen);
    }
    comm_collective_end(c);
    free(counts);
    if (status) return status;
    CUDA_TRY(cudaMemcpyAsync(buf, g->mirror, (size_t)c->grads_n * sizeof(float),
                             cudaMemcpyHostToDevice, g->compute),
             "cudaMemcpyAsync (parameters back to the device)");
    return 0;
}

/* MPI_STAGED is blocking: every bucket is done when _start returns. */
int comm_gpu_shards_allgather_start(comm *c, float *dev_buf, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_NCCL
    if (c->gpu->backend == COMM_GPU_NCCL) return nccl_allgather_start(c, dev_buf, err, errlen);
#endif
    int status = staged_allgather(c, dev_buf, err, errlen);
    for (int64_t i = 0; i < c->num_buckets; i++) c->gather_done[i] = 1;
    c->gather_left = 0;
    return status;
}

/* The compute stream waits for bucket i's broadcasts (once). */
static int compute_after_bucket(comm *c, int64_t i, char *err, size_t errlen) {
    if (c->gather_done[i]) return 0;
    c->gather_done[i] = 1;
    c->gather_left--;
    CUDA_TRY(cudaStreamWaitEvent(c->gpu->compute, c->gpu->gathered[i], 0),
             "cudaStreamWaitEvent (parameters gathered)");
    return 0;
}

int comm_gpu_shards_allgather_need(comm *c, int64_t offset, int64_t count, char *err,
                                   size_t errlen) {
    for (int64_t i = c->num_buckets - 1; i >= 0; i--) {
        comm_bucket b = c->buckets[i];
        if (b.start >= offset + count) break;   /* bucket starts decrease with i */
        if (comm_range_overlap(b.start, b.count, offset, offset + count) > 0 &&
            compute_after_bucket(c, i, err, errlen))
            return 1;
    }
    return 0;
}

/* Bucket 0 was queued last: its event follows every other bucket's on comm's stream. */
int comm_gpu_shards_allgather_finish(comm *c, char *err, size_t errlen) {
    if (c->gather_left == 0 || c->num_buckets == 0) return 0;
    int status = compute_after_bucket(c, 0, err, errlen);
    for (int64_t i = 0; i < c->num_buckets; i++) c->gather_done[i] = 1;
    c->gather_left = 0;
    return status;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int comm_gpu_grads_ready(comm *c, int64_t offset, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_NCCL
    if (c->gpu->backend == COMM_GPU_NCCL) return nccl_start(c, offset, err, errlen);
#endif
    return staged_start(c, offset, err, errlen);
}

int comm_gpu_grads_wait(comm *c, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_NCCL
    if (c->gpu->backend == COMM_GPU_NCCL) return nccl_wait(c, err, errlen);
#endif
    return staged_wait(c, err, errlen);
}

double comm_gpu_grads_wait_seconds(comm *c) {
    if (c->gpu && c->gpu->backend == COMM_GPU_NCCL) collect_timing(c, 0);
    double s = c->wait_seconds;
    c->wait_seconds = 0.0;
    return s;
}
