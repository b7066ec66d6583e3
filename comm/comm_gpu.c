/* comm_gpu: set-up and teardown of the GPU backends (comm.h, "GPU backends"): binding to the
 * device, comm's stream and events, choosing NCCL or MPI_STAGED, the NCCL communicator,
 * registering a device gradient buffer.  A build without CUDA gets the same API as stubs that
 * say so.
 *
 * comm_gpu_init is one collective made of a few agreements (comm_agree), so that a failure on
 * any rank - no device, a bad device number, NCCL refusing - ends it on every rank with the same
 * message instead of leaving the others waiting in ncclCommInitRank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HARNESS_HAVE_CUDA
#include "comm_gpu_internal.h"
#include "comm_gpu_choose.h"
#else
#include "comm_internal.h"
#endif

#define MESSAGE_BYTES 1024

const char *comm_gpu_backend_name(comm_gpu_backend backend) {
    switch (backend) {
    case COMM_GPU_NONE: return "none";
    case COMM_GPU_AUTO: return "auto";
    case COMM_GPU_NCCL: return "nccl";
    case COMM_GPU_MPI_STAGED: return "mpi-staged";
    }
    return "(unknown)";
}

int comm_gpu_built(comm_gpu_backend backend) {
#ifdef HARNESS_HAVE_CUDA
    if (backend == COMM_GPU_AUTO || backend == COMM_GPU_MPI_STAGED) return 1;
#ifdef HARNESS_HAVE_NCCL
    if (backend == COMM_GPU_NCCL) return 1;
#endif
#endif
    (void)backend;
    return 0;
}

#ifndef HARNESS_HAVE_CUDA

/* ---- a build without CUDA ---------------------------------------------------------------- */

int comm_gpu_init(comm *c, int device, void *compute_stream, comm_gpu_backend backend,
                  char *err, size_t errlen) {
    (void)c; (void)device; (void)compute_stream; (void)backend;
    return comm_error(err, errlen, "comm_gpu_init: no CUDA in this build (harness was configured "
                      "without the CUDA toolkit), so gradients cannot be averaged on GPUs");
}

comm_gpu_backend comm_gpu_backend_in_use(const comm *c) { (void)c; return COMM_GPU_NONE; }

int comm_grads_register_device(comm *c, float *dev_grads, int64_t n, size_t bucket_bytes,
                               char *err, size_t errlen) {
    (void)c; (void)dev_grads; (void)n; (void)bucket_bytes;
    return comm_error(err, errlen, "comm_grads_register_device: no CUDA in this build");
}

int comm_gpu_grads_ready(comm *c, int64_t offset, char *err, size_t errlen) {
    (void)c; (void)offset;
    return comm_error(err, errlen, "comm_grads_ready: no CUDA in this build");
}

int comm_gpu_grads_wait(comm *c, char *err, size_t errlen) {
    (void)c;
    return comm_error(err, errlen, "comm_grads_wait: no CUDA in this build");
}

double comm_gpu_grads_wait_seconds(comm *c) { (void)c; return 0.0; }
int comm_gpu_shards_allgather_start(comm *c, float *dev_buf, char *err, size_t errlen) {
    (void)c; (void)dev_buf;
    return comm_error(err, errlen, "comm_shards_allgather: no CUDA in this build");
}
int comm_gpu_shards_allgather_need(comm *c, int64_t offset, int64_t count, char *err,
                                   size_t errlen) {
    (void)c; (void)offset; (void)count;
    return comm_error(err, errlen, "comm_shards_allgather_need: no CUDA in this build");
}
int comm_gpu_shards_allgather_finish(comm *c, char *err, size_t errlen) {
    (void)c;
    return comm_error(err, errlen, "comm_shards_allgather_finish: no CUDA in this build");
}
void comm_gpu_forget_grads(comm *c) { c->grads_on_device = 0; }
void comm_gpu_destroy(comm *c) { (void)c; }

int comm_gpu_watch(comm *c, int64_t now_ns, int64_t timeout_ns, comm_gpu_watch_report *out) {
    (void)c; (void)now_ns; (void)timeout_ns; (void)out;
    return 0;
}

void comm_gpu_exit_abort(comm *c) { (void)c; }

int comm_allreduce_sum_f64_device(comm *c, double *x, int n, char *err, size_t errlen) {
    if (n < 0) return comm_error(err, errlen, "comm_allreduce_sum_f64_device: negative count %d", n);
    if (c->world_size == 1) return 0;
    return comm_allreduce_sum_f64(c, x, n, err, errlen);   /* no GPU backend: host memory */
}

#else   /* HARNESS_HAVE_CUDA */

#define CUDA_TRY(call, what)                                                     \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        if (e_ != cudaSuccess) return comm_cuda_error(e_, (what), err, errlen);  \
    } while (0)

int comm_cuda_error(cudaError_t e, const char *what, char *err, size_t errlen) {
    (void)cudaGetLastError();   /* not sticky ones; those stay whatever we do */
    return comm_error(err, errlen, "%s failed: %s (%s)", what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

void comm_cuda_forget_not_ready(void) {
    if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();
}

#ifdef HARNESS_HAVE_NCCL
int comm_nccl_error(ncclResult_t r, const char *what, ncclComm_t nccl, char *err, size_t errlen) {
    const char *last = ncclGetLastError(nccl);
    return comm_error(err, errlen, "%s failed: %s%s%s", what, ncclGetErrorString(r),
                      last && last[0] ? ": " : "", last ? last : "");
}
#endif

comm_gpu_backend comm_gpu_backend_in_use(const comm *c) {
    return c && c->gpu ? c->gpu->backend : COMM_GPU_NONE;
}

/* What comm_grads_register_device allocated: the mirror, the per-bucket copy events and the
 * queue's events.  The comm stream must be idle. */
static void free_registration(struct comm_gpu *g) {
    if (g->copied) {
        for (int64_t i = 0; i < g->registered_buckets; i++)
            if (g->copied[i]) (void)cudaEventDestroy(g->copied[i]);
        free(g->copied);
        g->copied = NULL;
    }
    if (g->mirror) (void)cudaFreeHost(g->mirror);
    g->mirror = NULL;
    if (g->dev_shard) (void)cudaFree(g->dev_shard);
    g->dev_shard = NULL;
    if (g->dev_wire16) (void)cudaFree(g->dev_wire16);
    if (g->dev_shard16) (void)cudaFree(g->dev_shard16);
    g->dev_wire16 = g->dev_shard16 = NULL;
    if (g->gathered) {
        for (int64_t i = 0; i < g->registered_buckets; i++)
            if (g->gathered[i]) (void)cudaEventDestroy(g->gathered[i]);
        free(g->gathered);
        g->gathered = NULL;
    }
    pthread_mutex_lock(&g->lock);
    comm_gpu_pending *ring = g->ring;
    int64_t cap = g->ring_cap;
    g->ring = NULL;
    g->ring_cap = g->head = g->tail = 0;
    g->registered_buckets = 0;
    pthread_mutex_unlock(&g->lock);
    for (int64_t i = 0; ring && i < cap; i++)
        if (ring[i].done) (void)cudaEventDestroy(ring[i].done);
    free(ring);
    g->dev_grads = NULL;
    g->launched = g->returned = 0;
}

/* Everything but the NCCL communicator and grads_world. */
static void free_gpu(struct comm_gpu *g) {
    if (!g) return;
    free_registration(g);
    if (g->f64_host) (void)cudaFreeHost(g->f64_host);
    if (g->produced) (void)cudaEventDestroy(g->produced);
    if (g->reduced) (void)cudaEventDestroy(g->reduced);
    for (int i = 0; i < 2; i++) {
        if (g->timing[i].begin) (void)cudaEventDestroy(g->timing[i].begin);
        if (g->timing[i].end) (void)cudaEventDestroy(g->timing[i].end);
    }
    if (g->stream) (void)cudaStreamDestroy(g->stream);
    (void)cudaGetLastError();
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* This rank's half of comm_gpu_init: arguments, the device, the stream and events.  0, or 1
 * with err (and *out NULL). */
static int open_local(comm *c, int device, void *compute_stream, comm_gpu_backend backend,
                      struct comm_gpu **out, unsigned char uuid[16], char *err, size_t errlen) {
    *out = NULL;
    if (c->gpu)
        return comm_error(err, errlen, "already initialised (backend %s)",
                          comm_gpu_backend_name(c->gpu->backend));
    if (backend != COMM_GPU_AUTO && backend != COMM_GPU_NCCL && backend != COMM_GPU_MPI_STAGED)
        return comm_error(err, errlen, "unknown backend %d", (int)backend);
    if (device < 0) return comm_error(err, errlen, "device %d is not a device number", device);
    if (backend == COMM_GPU_NCCL && !comm_gpu_built(COMM_GPU_NCCL))
        return comm_error(err, errlen, "this build has no NCCL (nccl.h and libnccl were not found "
                          "when harness was configured); use the MPI-staged backend");
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return comm_error(err, errlen, "no usable CUDA device: cudaGetDeviceCount failed: %s (%s)",
                          cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (count < 1) return comm_error(err, errlen, "no usable CUDA device: none is visible");
    if (device < 0 || device >= count)
        return comm_error(err, errlen, "device %d does not exist (%d visible)", device, count);
    CUDA_TRY(cudaSetDevice(device), "cudaSetDevice");
    struct cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    memcpy(uuid, prop.uuid.bytes, 16);

    struct comm_gpu *g = calloc(1, sizeof *g);
    if (!g) return comm_error(err, errlen, "out of memory");
    pthread_mutex_init(&g->lock, NULL);
    g->device = device;
    g->compute = (cudaStream_t)compute_stream;
    int status = 0;
    /* Highest priority: a bucket's all-reduce should start as soon as its gradients are there,
     * not behind backward kernels queued later. */
    int least = 0, greatest = 0;
    e = cudaDeviceGetStreamPriorityRange(&least, &greatest);
    if (e == cudaSuccess) e = cudaStreamCreateWithPriority(&g->stream, cudaStreamNonBlocking, greatest);
    if (e != cudaSuccess) status = comm_cuda_error(e, "creating comm's stream", err, errlen);
    const unsigned sync_only = cudaEventDisableTiming;
    if (!status && (e = cudaEventCreateWithFlags(&g->produced, sync_only)) != cudaSuccess)
        status = comm_cuda_error(e, "cudaEventCreate", err, errlen);
    if (!status && (e = cudaEventCreateWithFlags(&g->reduced, sync_only)) != cudaSuccess)
        status = comm_cuda_error(e, "cudaEventCreate", err, errlen);
    for (int i = 0; i < 2 && !status; i++) {
        if ((e = cudaEventCreate(&g->timing[i].begin)) != cudaSuccess ||
            (e = cudaEventCreate(&g->timing[i].end)) != cudaSuccess)
            status = comm_cuda_error(e, "cudaEventCreate", err, errlen);
    }
    if (status) {
        free_gpu(g);
        return 1;
    }
    *out = g;
    return 0;
}

/* comm_agree with this rank's message prefixed by its rank and device; on failure err holds
 * the first failing rank's message on every rank. */
static int agree(comm *c, int status, int device, const char *local, char *msg) {
    if (status) {
        if (c->world_size > 1)
            snprintf(msg, MESSAGE_BYTES, "comm_gpu_init on rank %d (device %d): %s", c->rank,
                     device, local);
        else
            snprintf(msg, MESSAGE_BYTES, "comm_gpu_init (device %d): %s", device, local);
    } else {
        msg[0] = '\0';
    }
    return comm_agree(c, status, msg, MESSAGE_BYTES) != 0;
}

/* Collective: every rank's GPU UUID, and the backend comm_gpu_choose picks from them (the
 * same verdict on every rank); the first pair of ranks that share a GPU (*a < *b), or
 * *a = -1.  0 or 1 with err. */
static int find_shared_gpu(comm *c, const unsigned char uuid[16], comm_gpu_backend asked,
                           comm_gpu_backend *use, int *a, int *b, unsigned char shared[16],
                           char *err, size_t errlen) {
    *a = *b = -1;
    *use = COMM_GPU_NONE;
    unsigned char *all = malloc((size_t)c->world_size * 16);
    int status = comm_collective_begin(c, COMM_OP_GPU_INIT, COMM_TYPE_BYTE, 16, 0, err, errlen);
    if (status == 0 && !all) status = comm_error(err, errlen, "out of memory");
    if (status == 0) {
        int rc = MPI_Allgather(uuid, 16, MPI_BYTE, all, 16, MPI_BYTE, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "comm_gpu_init (MPI_Allgather)", err, errlen);
    }
    comm_collective_end(c);
    if (status == 0) {
        *use = comm_gpu_choose(asked, comm_gpu_built(COMM_GPU_NCCL), all, c->world_size, a, b);
        if (*a >= 0) memcpy(shared, all + 16 * *a, 16);
    }
    free(all);
    return status;
}

#ifdef HARNESS_HAVE_NCCL
/* Rank 0's unique id to every rank, then ncclCommInitRank everywhere (it blocks until all ranks
 * have joined: one collective record covers both, so the watchdog sees a hang there). */
static int nccl_open(comm *c, struct comm_gpu *g, int device, char *msg) {
    char local[MESSAGE_BYTES] = "";
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int st = 0;
    if (c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) st = comm_nccl_error(r, "ncclGetUniqueId", NULL, local, sizeof local);
    }
    if (agree(c, st, device, local, msg)) return 1;

    st = comm_collective_begin(c, COMM_OP_NCCL_INIT, COMM_TYPE_BYTE, (int64_t)sizeof id, 0,
                               local, sizeof local);
    if (st == 0) {
        int rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->world);
        if (rc != MPI_SUCCESS) st = comm_mpi_error(c, rc, "broadcasting the NCCL id", local, sizeof local);
    }
    if (st == 0) {
        ncclResult_t r = ncclCommInitRank(&g->nccl, c->world_size, id, c->rank);
        if (r != ncclSuccess) {
            st = comm_nccl_error(r, "ncclCommInitRank", NULL, local, sizeof local);
            g->nccl = NULL;
        }
    }
    comm_collective_end(c);
    g->nccl_live = st == 0;
    if (agree(c, st, device, local, msg)) {
        if (g->nccl_live) (void)ncclCommAbort(g->nccl);   /* others failed: do not wait on them */
        g->nccl_live = 0;
        return 1;
    }
    return 0;
}
#endif

int comm_gpu_init(comm *c, int device, void *compute_stream, comm_gpu_backend backend,
                  char *err, size_t errlen) {
    char msg[MESSAGE_BYTES], local[MESSAGE_BYTES] = "";
    unsigned char uuid[16] = {0};
    struct comm_gpu *g = NULL;
    MPI_Comm dup = MPI_COMM_NULL;
    int st = open_local(c, device, compute_stream, backend, &g, uuid, local, sizeof local);
    if (agree(c, st, device, local, msg)) goto fail;

    int a = -1, b = -1;
    unsigned char shared[16];
    comm_gpu_backend use = COMM_GPU_NONE;
    if (find_shared_gpu(c, uuid, backend, &use, &a, &b, shared, msg, sizeof msg)) goto fail;
    if (use == COMM_GPU_NONE) {   /* NCCL asked for, GPUs shared: the same verdict everywhere */
        snprintf(msg, sizeof msg, "comm_gpu_init: ranks %d and %d use the same GPU (UUID "
                 "%02x%02x%02x%02x-%02x%02x-...); NCCL needs one GPU per rank: use the MPI-staged "
                 "backend (or auto) when ranks share GPUs", a, b, shared[0], shared[1], shared[2],
                 shared[3], shared[4], shared[5]);
        goto fail;
    }
    g->backend = use;
    if (use == COMM_GPU_NCCL) {
#ifdef HARNESS_HAVE_NCCL
        if (nccl_open(c, g, device, msg)) goto fail;
#endif
    } else {
        /* The buckets' own communicator: a bucket's MPI all-reduce starts when its copy to the
         * host is done, which differs between ranks, so its order relative to the other
         * collectives must not matter. */
        st = comm_collective_begin(c, COMM_OP_GPU_INIT, COMM_TYPE_NONE, 0, 0, local, sizeof local);
        if (st == 0) {
            int rc = MPI_Comm_dup(c->world, &dup);
            if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
            if (rc != MPI_SUCCESS) st = comm_mpi_error(c, rc, "MPI_Comm_dup", local, sizeof local);
        }
        comm_collective_end(c);
        if (agree(c, st, device, local, msg)) goto fail;
    }
    c->gpu = g;
    c->grads_world = dup;
    atomic_store(&c->self->device, (int32_t)use);
    atomic_store_explicit(&c->gpu_watch, use == COMM_GPU_NCCL, memory_order_release);
    return 0;

fail:
    if (dup != MPI_COMM_NULL) MPI_Comm_free(&dup);
    free_gpu(g);
    if (err && errlen > 0) snprintf(err, errlen, "%s", msg);
    return 1;
}

int comm_grads_register_device(comm *c, float *dev_grads, int64_t n, size_t bucket_bytes,
                               char *err, size_t errlen) {
    const char *who = "comm_grads_register_device";
    struct comm_gpu *g = c->gpu;
    if (!g) return comm_error(err, errlen, "%s: call comm_gpu_init first", who);
    if (n < 0) return comm_error(err, errlen, "%s: negative size %lld", who, (long long)n);
    if (n > 0 && !dev_grads) return comm_error(err, errlen, "%s: buffer is NULL", who);
    if (bucket_bytes == 0) return comm_error(err, errlen, "%s: bucket_bytes is 0", who);
    if (c->started > c->completed || (c->grads_on_device && c->started > 0))
        return comm_error(err, errlen, "%s: buckets of the previous buffer are still in flight "
                          "(call comm_grads_wait first)", who);
    if (n > 0) {
        struct cudaPointerAttributes attr;
        cudaError_t e = cudaPointerGetAttributes(&attr, dev_grads);
        if (e != cudaSuccess) return comm_cuda_error(e, "cudaPointerGetAttributes (gradient buffer)", err, errlen);
        if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
            return comm_error(err, errlen, "%s: the buffer is not device memory (host memory "
                              "goes to comm_grads_register)", who);
        if (attr.device != g->device)
            return comm_error(err, errlen, "%s: the buffer is on device %d, comm_gpu_init bound "
                              "comm to device %d", who, attr.device, g->device);
    }
    /* The previous buffer's work is finished before its resources go. */
    CUDA_TRY(cudaStreamSynchronize(g->stream), "cudaStreamSynchronize (comm stream)");
    if (comm_gpu_queue_poll(c, err, errlen)) return 1;
    if (comm_grads_plan(c, n, bucket_bytes, who, err, errlen)) return 1;
    free_registration(g);
    c->grads_on_device = 0;
    c->grads = NULL;

    int64_t nb = c->num_buckets;
    int status = 0;
    cudaError_t e = cudaSuccess;
    if (g->backend == COMM_GPU_MPI_STAGED && c->world_size > 1 && nb > 0) {
        e = cudaMallocHost((void **)&g->mirror, (size_t)n * sizeof(float));
        if (e != cudaSuccess) {
            g->mirror = NULL;
            status = comm_cuda_error(e, "cudaMallocHost (pinned host mirror of the gradients)", err, errlen);
        }
        if (!status && !(g->copied = calloc((size_t)nb, sizeof *g->copied)))
            status = comm_error(err, errlen, "%s: out of memory for %lld buckets", who, (long long)nb);
        g->registered_buckets = nb;
        for (int64_t i = 0; !status && i < nb; i++)
            if ((e = cudaEventCreateWithFlags(&g->copied[i], cudaEventDisableTiming)) != cudaSuccess)
                status = comm_cuda_error(e, "cudaEventCreate", err, errlen);
    }
    if (g->backend == COMM_GPU_NCCL) {
        /* One entry per launch; two steps' worth at most are in flight (the host reads the loss
         * every step).  Beyond 4096 the host waits for the oldest instead. */
        int64_t cap = 2 * nb + 2;
        if (cap > 4096) cap = 4096;
        comm_gpu_pending *ring = calloc((size_t)cap, sizeof *ring);
        if (!ring) status = comm_error(err, errlen, "%s: out of memory", who);
        for (int64_t i = 0; !status && i < cap; i++)
            if ((e = cudaEventCreateWithFlags(&ring[i].done, cudaEventDisableTiming)) != cudaSuccess)
                status = comm_cuda_error(e, "cudaEventCreate", err, errlen);
        pthread_mutex_lock(&g->lock);
        g->ring = ring;
        g->ring_cap = ring ? cap : 0;
        g->head = g->tail = 0;
        g->registered_buckets = nb;
        pthread_mutex_unlock(&g->lock);
    }
    if (status) {
        free_registration(g);
        char ignore[8];
        comm_grads_plan(c, 0, 1, who, ignore, sizeof ignore);   /* an empty plan: nothing dangles */
        return 1;
    }
    g->dev_grads = dev_grads;
    g->launched = g->returned = 0;
    c->grads = g->backend == COMM_GPU_MPI_STAGED ? g->mirror : dev_grads;
    c->grads_on_device = 1;
    /* The shard layout and per-bucket counts (comm_zero.c), then the shard itself on the
     * device: NCCL reduces into its own buffer; MPI_STAGED (and one rank) all-reduce the whole
     * buffer, so the shard is the registered buffer's slice [lo, hi). */
    if (comm_zero_plan(c, err, errlen)) status = 1;
    if (!status && c->shard) {
        if (c->owns_shard_grads) free(c->shard_grads);
        c->owns_shard_grads = 0;
        c->shard_grads = dev_grads + c->shard_lo;
        int64_t mine = c->shard_hi - c->shard_lo;
        if (g->backend == COMM_GPU_NCCL && c->world_size > 1) {
            e = cudaMalloc((void **)&g->dev_shard, (size_t)(mine > 0 ? mine : 1) * sizeof(float));
            if (e != cudaSuccess) {
                g->dev_shard = NULL;
                status = comm_cuda_error(e, "cudaMalloc (gradient shard)", err, errlen);
            } else {
                c->shard_grads = g->dev_shard;
            }
            if (!status && !(g->gathered = calloc((size_t)(nb > 0 ? nb : 1), sizeof *g->gathered)))
                status = comm_error(err, errlen, "%s: out of memory for %lld buckets", who,
                                    (long long)nb);
            for (int64_t i = 0; !status && i < nb; i++)
                if ((e = cudaEventCreateWithFlags(&g->gathered[i], cudaEventDisableTiming)) !=
                    cudaSuccess)
                    status = comm_cuda_error(e, "cudaEventCreate (parameter all-gather)", err, errlen);
        }
    }
    /* bf16 over NCCL: the wire copies live on the device (the host ones go) */
    if (!status && g->backend == COMM_GPU_NCCL && c->grad_dtype == COMM_GRAD_BF16 &&
        c->world_size > 1) {
        free(c->wire16);
        free(c->shard16);
        c->wire16 = c->shard16 = NULL;
        int64_t mine = c->shard_hi - c->shard_lo;
        e = cudaMalloc((void **)&g->dev_wire16, (size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
        if (e == cudaSuccess && c->shard)
            e = cudaMalloc((void **)&g->dev_shard16, (size_t)(mine > 0 ? mine : 1) * sizeof(uint16_t));
        if (e != cudaSuccess) status = comm_cuda_error(e, "cudaMalloc (bf16 gradient buckets)", err, errlen);
    }
    if (status) {
        c->grads_on_device = 0;
        c->shard_grads = NULL;
        free_registration(g);
        char ignore[8];
        comm_grads_plan(c, 0, 1, who, ignore, sizeof ignore);
        return 1;
    }
    return 0;
}

void comm_gpu_forget_grads(comm *c) {
    struct comm_gpu *g = c->gpu;
    c->grads_on_device = 0;
    if (!g) return;
    (void)cudaStreamSynchronize(g->stream);
    char ignore[8];
    (void)comm_gpu_queue_poll(c, ignore, sizeof ignore);
    free_registration(g);
    (void)cudaGetLastError();
}

int comm_allreduce_sum_f64_device(comm *c, double *x, int n, char *err, size_t errlen) {
    const char *who = "comm_allreduce_sum_f64_device";
    struct comm_gpu *g = c->gpu;
    if (n < 0) return comm_error(err, errlen, "%s: negative count %d", who, n);
    if (c->world_size == 1 || n == 0) return 0;
    if (!g) return comm_allreduce_sum_f64(c, x, n, err, errlen);   /* host memory */
#ifdef HARNESS_HAVE_NCCL
    if (g->backend == COMM_GPU_NCCL) {
        /* comm's stream, behind the compute stream's work and any bucket in flight; the
         * compute stream waits for the sum.  A record for the sequence and fingerprint. */
        int st = comm_collective_begin(c, COMM_OP_ALLREDUCE_SUM_F64, COMM_TYPE_F64, n, 0, err,
                                       errlen);
        if (st == 0) {
            cudaError_t e = cudaEventRecord(g->produced, g->compute);
            if (e == cudaSuccess) e = cudaStreamWaitEvent(g->stream, g->produced, 0);
            if (e != cudaSuccess) st = comm_cuda_error(e, who, err, errlen);
        }
        if (st == 0) {
            ncclResult_t r = ncclAllReduce(x, x, (size_t)n, ncclDouble, ncclSum, g->nccl,
                                           g->stream);
            if (r != ncclSuccess)
                st = comm_nccl_error(r, "ncclAllReduce (doubles)", g->nccl, err, errlen);
        }
        /* in the watchdog's queue like the buckets: a hang here is reported as this sum, not
         * blamed on the next collective (the host has already left it) */
        if (st == 0 && g->ring)
            st = comm_gpu_queue_push(c, c->sequence, c->sequence, COMM_OP_ALLREDUCE_SUM_F64,
                                     COMM_TYPE_F64, -1, n, err, errlen);
        if (st == 0) {
            cudaError_t e = cudaEventRecord(g->reduced, g->stream);
            if (e == cudaSuccess) e = cudaStreamWaitEvent(g->compute, g->reduced, 0);
            if (e != cudaSuccess) st = comm_cuda_error(e, who, err, errlen);
        }
        comm_collective_end(c);
        return st;
    }
#endif
    /* MPI_STAGED: through pinned memory, grown on the first calls (start-up sizes) */
    if (n > g->f64_cap) {
        if (g->f64_host) {
            CUDA_TRY(cudaStreamSynchronize(g->compute), "cudaStreamSynchronize (compute)");
            (void)cudaFreeHost(g->f64_host);
            g->f64_host = NULL;
            g->f64_cap = 0;
        }
        CUDA_TRY(cudaMallocHost((void **)&g->f64_host, (size_t)n * sizeof(double)),
                 "cudaMallocHost (staging of a device all-reduce)");
        g->f64_cap = n;
    }
    CUDA_TRY(cudaMemcpyAsync(g->f64_host, x, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost,
                             g->compute), "cudaMemcpyAsync (device all-reduce, to the host)");
    CUDA_TRY(cudaStreamSynchronize(g->compute), "cudaStreamSynchronize (device all-reduce)");
    if (comm_allreduce_sum_f64(c, g->f64_host, n, err, errlen) != 0) return 1;
    CUDA_TRY(cudaMemcpyAsync(x, g->f64_host, (size_t)n * sizeof(double), cudaMemcpyHostToDevice,
                             g->compute), "cudaMemcpyAsync (device all-reduce, back)");
    return 0;
}

void comm_gpu_destroy(comm *c) {
    struct comm_gpu *g = c->gpu;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (c->grads_world != MPI_COMM_NULL && !finalized) MPI_Comm_free(&c->grads_world);
    if (!g) return;
    atomic_store(&c->gpu_watch, 0);   /* the watchdog has stopped already; be sure */
    (void)cudaSetDevice(g->device);
#ifdef HARNESS_HAVE_NCCL
    if (g->nccl_live) {
        /* After an error the peers may be gone: abort rather than wait for them. */
        ncclResult_t async = ncclSuccess;
        int healthy = ncclCommGetAsyncError(g->nccl, &async) == ncclSuccess && async == ncclSuccess;
        if (healthy && ncclCommFinalize(g->nccl) == ncclSuccess) (void)ncclCommDestroy(g->nccl);
        else (void)ncclCommAbort(g->nccl);
        g->nccl_live = 0;
    }
#endif
    (void)cudaStreamSynchronize(g->stream);
    free_gpu(g);
    c->gpu = NULL;
    c->grads_on_device = 0;
    atomic_store(&c->self->device, 0);
}

#endif   /* HARNESS_HAVE_CUDA */
