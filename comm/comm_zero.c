/* Sharded gradients and parameters (ZeRO-1) and bf16 gradients on the wire, host memory.
 *
 * The exchange keeps comm_grads.c's buckets, order and overlap; only the MPI call per bucket
 * changes (comm_zero_start_bucket) and what comm_grads_wait does at the end
 * (comm_zero_finish).  Uneven shards: MPI_Ireduce_scatter / MPI_Iallgatherv take a count per
 * rank, so the shards are simply floor(n r / world) boundaries, no padding.  The count and
 * displacement arrays of a non-blocking collective must stay untouched until it completes,
 * so every bucket has its own row of them, computed once at register.
 *
 * Determinism: MPI picks the same algorithm for the same counts and world on every run, so a
 * run's sums are reproducible (bit-exact resume); they may round differently from the
 * all-reduce of stage 0 when more than two ranks add up (a different association). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

/* MPI_User_function: inout[i] = bf16(in[i] + inout[i]), the addition in fp32.  Commutative
 * and the same bits whichever operand comes first. */
static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

int comm_zero_active(const comm *c) { return c->shard && c->world_size > 1; }

int comm_grads_set_exchange(comm *c, int shard, comm_grad_dtype dtype, char *err, size_t errlen) {
    if (shard != 0 && shard != 1)
        return comm_error(err, errlen, "comm_grads_set_exchange: shard must be 0 or 1, not %d", shard);
    if (dtype != COMM_GRAD_FP32 && dtype != COMM_GRAD_BF16)
        return comm_error(err, errlen, "comm_grads_set_exchange: unknown gradient type %d", (int)dtype);
    if (c->started > c->completed || c->gather_buf)
        return comm_error(err, errlen, "comm_grads_set_exchange: buckets are in flight");
    c->shard = shard;
    c->grad_dtype = dtype;
    return 0;
}

void comm_grads_shard_range(const comm *c, int64_t *lo, int64_t *hi) {
    *lo = c->shard_lo;
    *hi = c->shard_hi;
}

float *comm_grads_shard(comm *c) { return c->shard ? c->shard_grads : NULL; }

/* The buffers of a plan; the bf16 sum operator outlives them (a new plan reuses it). */
static void free_plan_buffers(comm *c) {
    if (c->owns_shard_grads) free(c->shard_grads);
    free(c->wire16);
    free(c->shard16);
    free(c->shard_counts);
    free(c->shard_displs);
    c->shard_grads = NULL;
    c->owns_shard_grads = 0;
    c->wire16 = c->shard16 = NULL;
    c->shard_counts = c->shard_displs = NULL;
}

void comm_zero_free(comm *c) {
    free_plan_buffers(c);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && c->bf16_sum != MPI_OP_NULL && c->bf16_sum != 0) MPI_Op_free(&c->bf16_sum);
    c->bf16_sum = MPI_OP_NULL;
}

int comm_zero_plan(comm *c, char *err, size_t errlen) {
    int world = c->world_size;
    int64_t n = c->grads_n;
    free_plan_buffers(c);
    comm_shard_bounds(n, c->shard ? world : 1, c->shard ? c->rank : 0, &c->shard_lo, &c->shard_hi);
    int64_t mine = c->shard_hi - c->shard_lo;
    if (world == 1) {   /* nothing travels: the shard is the whole buffer */
        c->shard_grads = c->shard ? c->grads : NULL;
        return 0;
    }
    if (c->shard && (n > INT_MAX))
        return comm_error(err, errlen, "train.zero_stage=1: %lld parameters exceed the MPI "
                          "backend's int displacements (at most %d)", (long long)n, INT_MAX);
    if (c->grad_dtype == COMM_GRAD_BF16 && (c->bf16_sum == MPI_OP_NULL || c->bf16_sum == 0)) {
        int rc = MPI_Op_create(bf16_sum, 1, &c->bf16_sum);
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Op_create (bf16 sum)", err, errlen);
    }
    size_t cells = (size_t)c->num_buckets * (size_t)world;
    int fail = 0;
    if (c->shard) {
        c->owns_shard_grads = 1;
        fail |= !(c->shard_grads = malloc((size_t)mine * sizeof(float) + 1));
        fail |= !(c->shard_counts = malloc(cells * sizeof(int) + 1));
        fail |= !(c->shard_displs = malloc(cells * sizeof(int) + 1));
        if (c->grad_dtype == COMM_GRAD_BF16)
            fail |= !(c->shard16 = malloc((size_t)mine * sizeof(uint16_t) + 1));
    }
    if (c->grad_dtype == COMM_GRAD_BF16)
        fail |= !(c->wire16 = malloc((size_t)n * sizeof(uint16_t) + 1));
    if (fail) {
        comm_zero_free(c);
        return comm_error(err, errlen, "comm_grads_register: out of memory for the sharded / "
                          "bf16 gradient buffers (%lld elements)", (long long)n);
    }
    if (c->shard) {
        for (int64_t b = 0; b < c->num_buckets; b++) {
            comm_bucket k = c->buckets[b];
            for (int r = 0; r < world; r++) {
                int64_t lo, hi;
                comm_shard_bounds(n, world, r, &lo, &hi);
                int64_t cnt = comm_range_overlap(k.start, k.count, lo, hi);
                c->shard_counts[b * world + r] = (int)cnt;
                c->shard_displs[b * world + r] = (int)(cnt > 0 ? (lo > k.start ? lo : k.start) - k.start : 0);
            }
        }
    }
    return 0;
}

int comm_zero_start_bucket(comm *c, int64_t i, char *err, size_t errlen) {
    comm_bucket b = c->buckets[i];
    int bf16 = c->grad_dtype == COMM_GRAD_BF16;
    if (bf16)
        for (int64_t j = b.start; j < b.start + b.count; j++) c->wire16[j] = f32_to_bf16(c->grads[j]);
    int rc;
    if (!c->shard) {
        rc = MPI_Iallreduce(MPI_IN_PLACE, c->wire16 + b.start, b.count, MPI_UINT16_T,
                            c->bf16_sum, c->world, &c->requests[i]);
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Iallreduce (bf16 gradient bucket)", err, errlen);
        return 0;
    }
    const int *counts = c->shard_counts + i * c->world_size;
    int mine = counts[c->rank];
    /* where this rank's part of the bucket lands in its shard */
    int64_t at = mine > 0 ? b.start + c->shard_displs[i * c->world_size + c->rank] - c->shard_lo : 0;
    if (bf16)
        rc = MPI_Ireduce_scatter(c->wire16 + b.start, c->shard16 + at, counts, MPI_UINT16_T,
                                 c->bf16_sum, c->world, &c->requests[i]);
    else
        rc = MPI_Ireduce_scatter(c->grads + b.start, c->shard_grads + at, counts, MPI_FLOAT,
                                 MPI_SUM, c->world, &c->requests[i]);
    if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Ireduce_scatter (gradient bucket)", err, errlen);
    return 0;
}

/* Divide rather than multiply by 1/world, as comm_grads.c does. */
void comm_zero_finish(comm *c) {
    const float world = (float)c->world_size;
    int64_t mine = c->shard_hi - c->shard_lo;
    if (c->shard && c->grad_dtype == COMM_GRAD_BF16) {
        for (int64_t i = 0; i < mine; i++) c->shard_grads[i] = bf16_to_f32(c->shard16[i]) / world;
    } else if (c->shard) {
        for (int64_t i = 0; i < mine; i++) c->shard_grads[i] /= world;
    } else if (c->grad_dtype == COMM_GRAD_BF16) {
        for (int64_t i = 0; i < c->grads_n; i++) c->grads[i] = bf16_to_f32(c->wire16[i]) / world;
    } else {
        for (int64_t i = 0; i < c->grads_n; i++) c->grads[i] /= world;
    }
}

/* ---- the parameters' all-gather, overlapped with the next forward ------------------------ */

static double now_seconds(void) { return (double)comm_now_ns() * 1e-9; }

/* Host memory: bucket i's all-gather is complete (waits for it).  The watchdog times the wait
 * as that bucket's. */
static int post_bucket(comm *c, int64_t i, char *err, size_t errlen);

static int gather_wait_bucket(comm *c, int64_t i, char *err, size_t errlen) {
    if (c->gather_done[i]) return 0;
    uint64_t seq = c->gather_seq0 + (uint64_t)(c->num_buckets - 1 - i);
    if (c->gather_lazy) {   /* posted only now: every rank needs the buckets in one order */
        int st = post_bucket(c, i, err, errlen);
        seq = c->sequence;
        if (st) {
            c->gather_done[i] = 1;
            c->gather_left--;
            return 1;
        }
    }
    comm_fingerprint fp = {seq, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32, c->buckets[i].count, 0};
    double t0 = now_seconds();
    comm_wait_begin(c, &fp);
    int rc = MPI_Wait(&c->requests[i], MPI_STATUS_IGNORE);
    comm_wait_end(c);
    c->wait_seconds += now_seconds() - t0;
    c->gather_done[i] = 1;
    c->gather_left--;
    if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Wait (parameter all-gather)", err, errlen);
    return 0;
}

/* Every bucket done: nothing in flight any more. */
static void gather_close(comm *c) {
    if (c->gather_left > 0) return;
    c->gather_buf = NULL;
    if (!c->grads_on_device) comm_collective_end(c);
}

/* Bucket i's non-blocking all-gather into gather_buf (joined: sequence, fingerprint).  With
 * fingerprint checking on, a mismatch skips it on every rank. */
static int post_bucket(comm *c, int64_t i, char *err, size_t errlen) {
    comm_bucket b = c->buckets[i];
    int world = c->world_size;
    if (comm_collective_join(c, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32, b.count, 0, err, errlen))
        return 1;
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, c->gather_buf + b.start,
                             c->shard_counts + i * world, c->shard_displs + i * world, MPI_FLOAT,
                             c->world, &c->requests[i]);
    if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Iallgatherv (parameters)", err, errlen);
    return 0;
}

int comm_shards_allgather_lazy(comm *c, int on) {
    if (c->gather_buf) return 1;
    c->gather_lazy = on != 0;
    return 0;
}

int comm_gather_settle(comm *c, char *err, size_t errlen) {
    return c->gather_buf ? comm_shards_allgather_finish(c, err, errlen) : 0;
}

int comm_shards_allgather_start(comm *c, float *buf, char *err, size_t errlen) {
    if (!c->shard) return comm_error(err, errlen, "comm_shards_allgather: the exchange is not sharded");
    if (comm_gather_settle(c, err, errlen)) return 1;
    if (c->world_size == 1 || c->num_buckets == 0) return 0;
    if (c->started > 0)
        return comm_error(err, errlen, "comm_shards_allgather: gradient buckets are in flight "
                          "(call comm_grads_wait first)");
    for (int64_t i = 0; i < c->num_buckets; i++) c->gather_done[i] = 0;
    c->gather_left = c->num_buckets;
    c->gather_seq0 = c->sequence + 1;
    if (comm_grads_node_memory(c)) {   /* one node: through the window, done on return */
        int status = comm_collective_begin(c, COMM_OP_PARAMS_ALLGATHER, COMM_TYPE_F32, c->grads_n,
                                           0, err, errlen);
        if (status == 0) status = comm_shm_params_gather(c, buf, err, errlen);
        comm_collective_end(c);
        return status;
    }
    if (c->grads_on_device) {
        c->gather_buf = buf;
        int status = comm_gpu_shards_allgather_start(c, buf, err, errlen);
        if (status || c->gather_left == 0) c->gather_buf = NULL;   /* blocking (staged), or failed */
        return status;
    }
    int status = 0;
    c->gather_buf = buf;
    for (int64_t i = c->num_buckets - 1; i >= 0 && !c->gather_lazy; i--)
        if ((status = post_bucket(c, i, err, errlen)) != 0) break;
    if (status) {   /* what was posted still completes (the requests left are null) */
        char ignore[8];
        comm_shards_allgather_finish(c, ignore, sizeof ignore);
    }
    return status;
}

int comm_shards_allgather_need(comm *c, int64_t offset, int64_t count, char *err, size_t errlen) {
    if (!c->gather_buf) return 0;
    if (offset < 0 || count < 0 || offset + count > c->grads_n)
        return comm_error(err, errlen, "comm_shards_allgather_need: range [%lld, +%lld) outside "
                          "the %lld-element buffer", (long long)offset, (long long)count,
                          (long long)c->grads_n);
    if (c->grads_on_device) {
        int status = comm_gpu_shards_allgather_need(c, offset, count, err, errlen);
        gather_close(c);
        return status;
    }
    int status = 0;
    for (int64_t i = c->num_buckets - 1; i >= 0 && status == 0; i--) {
        comm_bucket b = c->buckets[i];
        if (b.start >= offset + count) break;   /* bucket starts decrease with i */
        if (comm_range_overlap(b.start, b.count, offset, offset + count) > 0)
            status = gather_wait_bucket(c, i, err, errlen);
    }
    /* Without a progress thread MPI moves only inside MPI calls: poke the next bucket the
     * forward will need, so it travels while this layer computes. */
    for (int64_t i = c->num_buckets - 1; i >= 0 && status == 0 && !c->gather_lazy; i--) {
        if (c->gather_done[i]) continue;
        int done = 0;
        int rc = MPI_Test(&c->requests[i], &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Test (parameter all-gather)", err, errlen);
        else if (done) {
            c->gather_done[i] = 1;
            c->gather_left--;
            continue;
        }
        break;
    }
    gather_close(c);
    return status;
}

int comm_shards_allgather_finish(comm *c, char *err, size_t errlen) {
    if (!c->gather_buf) return 0;
    int status = 0;
    if (c->grads_on_device) {
        status = comm_gpu_shards_allgather_finish(c, err, errlen);   /* marks every bucket done */
    } else {
        for (int64_t i = c->num_buckets - 1; i >= 0; i--) {
            char e2[256];
            int st = gather_wait_bucket(c, i, e2, sizeof e2);   /* every request ends, even after a failure */
            if (st && status == 0) status = comm_error(err, errlen, "%s", e2);
        }
    }
    gather_close(c);
    return status;
}

int comm_shards_allgather(comm *c, float *buf, char *err, size_t errlen) {
    if (comm_shards_allgather_start(c, buf, err, errlen)) return 1;
    return comm_shards_allgather_finish(c, err, errlen);
}

/* counts / displacements of [offset, offset + count) over the shards, relative to offset */
static int range_layout(comm *c, int64_t offset, int64_t count, int *counts, int *displs) {
    for (int r = 0; r < c->world_size; r++) {
        int64_t lo, hi;
        comm_shard_bounds(c->grads_n, c->world_size, r, &lo, &hi);
        int64_t cnt = comm_range_overlap(offset, count, lo, hi);
        counts[r] = (int)cnt;
        displs[r] = (int)(cnt > 0 ? (lo > offset ? lo : offset) - offset : 0);
    }
    return 0;
}

int comm_shard_gather(comm *c, const float *shard, int64_t offset, int64_t count, float *out,
                      char *err, size_t errlen) {
    if (!c->shard) return comm_error(err, errlen, "comm_shard_gather: the exchange is not sharded");
    if (comm_gather_settle(c, err, errlen)) return 1;
    if (offset < 0 || count < 0 || offset + count > c->grads_n || count > INT_MAX)
        return comm_error(err, errlen, "comm_shard_gather: range [%lld, +%lld) outside the "
                          "%lld-element buffer", (long long)offset, (long long)count,
                          (long long)c->grads_n);
    if (c->world_size == 1) {
        memcpy(out, shard + offset, (size_t)count * sizeof(float));
        return 0;
    }
    int world = c->world_size;
    int *counts = malloc(2 * (size_t)world * sizeof(int));
    if (!counts) return comm_error(err, errlen, "comm_shard_gather: out of memory");
    int *displs = counts + world;
    range_layout(c, offset, count, counts, displs);
    int status = comm_collective_begin(c, COMM_OP_SHARD_GATHER, COMM_TYPE_F32, count, 0, err, errlen);
    if (status == 0) {
        int mine = counts[c->rank];
        const float *send = mine > 0 ? shard + (offset + displs[c->rank] - c->shard_lo) : shard;
        int rc = MPI_Gatherv(send, mine, MPI_FLOAT, out, counts, displs, MPI_FLOAT, 0, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Gatherv (shard)", err, errlen);
    }
    comm_collective_end(c);
    free(counts);
    return status;
}

int comm_shard_scatter(comm *c, const float *full, float *shard, char *err, size_t errlen) {
    if (!c->shard) return comm_error(err, errlen, "comm_shard_scatter: the exchange is not sharded");
    if (comm_gather_settle(c, err, errlen)) return 1;
    if (c->world_size == 1) {
        memcpy(shard, full, (size_t)c->grads_n * sizeof(float));
        return 0;
    }
    int world = c->world_size;
    int *counts = malloc(2 * (size_t)world * sizeof(int));
    if (!counts) return comm_error(err, errlen, "comm_shard_scatter: out of memory");
    int *displs = counts + world;
    range_layout(c, 0, c->grads_n, counts, displs);
    int status = comm_collective_begin(c, COMM_OP_SHARD_SCATTER, COMM_TYPE_F32, c->grads_n, 0,
                                       err, errlen);
    if (status == 0) {
        int rc = MPI_Scatterv(full, counts, displs, MPI_FLOAT, shard, counts[c->rank], MPI_FLOAT,
                              0, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Scatterv (shard)", err, errlen);
    }
    comm_collective_end(c);
    free(counts);
    return status;
}
