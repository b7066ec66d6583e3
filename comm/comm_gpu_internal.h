/* comm's GPU backends, shared by comm_gpu.c, comm_gpu_grads.c and comm_gpu_watch.c.  Only
 * compiled with HARNESS_HAVE_CUDA; the rest of comm sees struct comm_gpu as opaque.
 *
 * Streams and events of one step (NCCL), bucket b in [0, B):
 *   compute stream:  ... backward kernels ... [produced] ... [t_begin] wait(reduced) [t_end] optim
 *   comm stream:     wait(produced) allreduce(b) [ring done] ... allreduce(B-1) [ring done] [reduced]
 * MPI_STAGED replaces each allreduce(b) by a copy to the mirror [copied b]; the host starts the
 * MPI all-reduce once [copied b] has completed, and queues the copy back to the device on the
 * comm stream when it is done; [reduced] follows the last copy back. */
#ifndef HARNESS_COMM_GPU_INTERNAL_H
#define HARNESS_COMM_GPU_INTERNAL_H

#include <cuda_runtime.h>
#ifdef HARNESS_HAVE_NCCL
#include <nccl.h>
#endif

#include "comm_internal.h"

/* One launch on the comm stream (one bucket, or several in one NCCL group) that is not yet
 * known to be complete.  The watchdog reads these, so they carry everything a report needs. */
typedef struct {
    uint64_t seq_first, seq_last;   /* sequence numbers of its first and last bucket */
    int32_t op, type;               /* what it is (COMM_OP_*, COMM_TYPE_*): the report names it */
    int64_t bucket;                 /* its first bucket's index in the plan; -1: not a bucket */
    int64_t start, count;           /* that bucket's elements */
    int64_t since_ns;               /* when it was queued (CLOCK_MONOTONIC) */
    cudaEvent_t done;               /* recorded on the comm stream right after it */
} comm_gpu_pending;

/* Exposed communication time of one step: t_begin before, t_end after the compute stream's
 * wait for the comm stream. */
typedef struct {
    cudaEvent_t begin, end;
    int pending;                    /* recorded, not yet added to wait_seconds */
} comm_gpu_timing;

struct comm_gpu {
    comm_gpu_backend backend;       /* NCCL or MPI_STAGED */
    int device;
    cudaStream_t compute;           /* the caller's stream (may be NULL: the legacy stream) */
    cudaStream_t stream;            /* comm's own: every copy and all-reduce */
    cudaEvent_t produced;           /* compute stream: the buckets being started are queued */
    cudaEvent_t reduced;            /* comm stream: every bucket of the step is done */
    comm_gpu_timing timing[2];      /* two steps in flight at most; see comm_gpu_grads.c */
    int timing_next;
#ifdef HARNESS_HAVE_NCCL
    ncclComm_t nccl;
#endif
    int nccl_live;                  /* nccl is a communicator (not aborted) */

    /* the registered buffer */
    float *dev_grads;
    float *dev_shard;               /* NCCL, shard 1, world > 1: [shard_hi - shard_lo] averaged */
    uint16_t *dev_wire16;           /* NCCL, bf16, world > 1: [grads_n] the buckets as sent, summed */
    uint16_t *dev_shard16;          /* ... and shard 1: [shard_hi - shard_lo] the summed shard */
    cudaEvent_t *gathered;          /* NCCL, shard 1: [buckets] bucket's all-gather queued before */
    int64_t registered_buckets;     /* what the per-bucket arrays below were sized for */

    /* MPI_STAGED */
    float *mirror;                  /* [grads_n] pinned; NULL when world == 1 */
    cudaEvent_t *copied;            /* [buckets]: bucket's copy to the mirror has completed */
    int64_t launched;               /* buckets whose MPI all-reduce has started this step */
    int64_t returned;               /* buckets whose copy back has been queued this step */

    /* NCCL: launches not known complete, oldest at tail; under lock (main thread, watchdog) */
    pthread_mutex_t lock;
    comm_gpu_pending *ring;         /* [ring_cap] */
    int64_t ring_cap, head, tail;   /* head - tail in flight */
    /* comm_allreduce_sum_f64_device, MPI_STAGED: pinned staging of the doubles */
    double *f64_host;
    int f64_cap;
    int watch_device_set;           /* watchdog thread only: it has called cudaSetDevice */
    _Atomic int abort_started, abort_done;
};

/* "WHAT failed: <cudaGetErrorString> (<name>)"; clears the runtime's last error.  Returns 1. */
int comm_cuda_error(cudaError_t e, const char *what, char *err, size_t errlen);
/* cudaEventQuery's cudaErrorNotReady is not a failure: keep it out of the runtime's last error,
 * which the kernels library checks after its launches on the same thread. */
void comm_cuda_forget_not_ready(void);
#ifdef HARNESS_HAVE_NCCL
/* "WHAT failed: <ncclGetErrorString>: <ncclGetLastError>"; returns 1. */
int comm_nccl_error(ncclResult_t r, const char *what, ncclComm_t nccl, char *err, size_t errlen);
#endif

/* The GPU queue (comm_gpu_watch.c).  Main thread: push after queueing launches, poll to retire
 * without blocking, drain to wait for all.  Each returns 0 or 1 with err.  push: op and type
 * say what was queued; bucket >= 0 takes its elements from the bucket plan, else count. */
int comm_gpu_queue_push(comm *c, uint64_t seq_first, uint64_t seq_last, int32_t op,
                        int32_t type, int64_t bucket, int64_t count, char *err, size_t errlen);
int comm_gpu_queue_poll(comm *c, char *err, size_t errlen);
int comm_gpu_queue_drain(comm *c, char *err, size_t errlen);

#endif
