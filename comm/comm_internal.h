/* comm internals shared by the comm_*.c files.  Not part of the public API. */
#ifndef HARNESS_COMM_INTERNAL_H
#define HARNESS_COMM_INTERNAL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "comm.h"
#include "comm_buckets.h"

/* What a collective is, for sequence records, fingerprints and reports (comm_state.c names
 * them).  Append only: the values are hashed into fingerprints. */
typedef enum {
    COMM_OP_NONE = 0,
    COMM_OP_BARRIER,
    COMM_OP_BROADCAST,
    COMM_OP_ALLREDUCE_SUM_F64,
    COMM_OP_ALLREDUCE_SUM_I64,
    COMM_OP_ALLREDUCE_MAX_I32,
    COMM_OP_AGREE,
    COMM_OP_GRADS_BUCKET,
    COMM_OP_CHECK_FINGERPRINTS,
    COMM_OP_GPU_INIT,
    COMM_OP_NCCL_INIT,
    COMM_OP_GRADS_SHARD,        /* a bucket's reduce-scatter (train.zero_stage=1) */
    COMM_OP_PARAMS_ALLGATHER,   /* comm_shards_allgather */
    COMM_OP_SHARD_GATHER,       /* comm_shard_gather */
    COMM_OP_SHARD_SCATTER,      /* comm_shard_scatter */
    COMM_OP_COUNT
} comm_op;

typedef enum {
    COMM_TYPE_NONE = 0,
    COMM_TYPE_BYTE,
    COMM_TYPE_INT,
    COMM_TYPE_I32,
    COMM_TYPE_I64,
    COMM_TYPE_F32,
    COMM_TYPE_F64,
    COMM_TYPE_BF16,
    COMM_TYPE_COUNT
} comm_type;

/* A collective as every rank must issue it: same seq, op, type, count and root everywhere. */
typedef struct {
    uint64_t seq;
    int32_t op, type;   /* comm_op, comm_type */
    int64_t count;      /* elements (bytes for broadcast) */
    int32_t root;       /* broadcast root; 0 otherwise */
} comm_fingerprint;

/* Slot states. */
enum { COMM_SLOT_EMPTY = 0, COMM_SLOT_RUNNING, COMM_SLOT_FINALIZED, COMM_SLOT_ABORTING,
       COMM_SLOT_FIRED };

/* What one rank publishes about itself, in memory shared by the ranks of its node (or private
 * memory when shared memory is unavailable).  Only the owning rank's main thread writes it;
 * watchdog threads of every local rank read it.  The collective fields are written under a
 * sequence lock (version odd while a write is in progress) so readers see a consistent record;
 * state, pid and step are single atomics read on their own.  All accesses are relaxed atomics
 * plus the lock's fences: plain loads and stores on x86-64 and arm64, no system calls. */
typedef struct {
    _Atomic uint32_t version;
    _Atomic int32_t state;          /* COMM_SLOT_* */
    _Atomic int32_t pid;
    _Atomic int32_t world_rank;
    _Atomic uint64_t proc_start;    /* start time of pid (/proc/PID/stat field 22); guards pid reuse */
    _Atomic int64_t step;           /* comm_set_step */
    /* the newest collective this rank has joined (started) */
    _Atomic uint64_t seq;
    _Atomic int32_t op, type, root;
    _Atomic int64_t count;
    /* the collective this rank is blocked in, while waiting != 0 */
    _Atomic int32_t waiting;
    _Atomic uint64_t wait_seq;
    _Atomic int32_t wait_op, wait_type;
    _Atomic int64_t wait_count;
    _Atomic int64_t wait_since_ns;  /* CLOCK_MONOTONIC, comparable across the node's processes */
    _Atomic int64_t wait_allow_ns;  /* extra time granted by comm_watchdog_allow */
    _Atomic uint64_t done_seq;      /* every collective up to this one has completed here */
    /* GPU collectives (NCCL buckets), outside the sequence lock: written under the rank's GPU
     * queue lock by its main thread or its watchdog, whichever learns of a completion first. */
    _Atomic int32_t device;         /* comm_gpu_backend in use, 0 none */
    _Atomic int32_t pad0;
    _Atomic uint64_t device_open_seq;       /* oldest queued GPU collective not known done, 0 none */
    _Atomic int64_t device_open_since_ns;   /* when it was queued */
    _Atomic uint64_t device_done_seq;       /* newest GPU collective known done */
    char pad[40];
} comm_slot;

/* A consistent copy of a slot, as a reader sees it. */
typedef struct {
    int consistent;                 /* 0: the owner stopped in the middle of a write */
    int32_t state, pid, world_rank;
    uint64_t proc_start;
    int64_t step;
    comm_fingerprint joined;
    int waiting;
    comm_fingerprint wait;
    int64_t wait_since_ns, wait_allow_ns;
    uint64_t done_seq;              /* host and GPU collectives together */
    int32_t device;                 /* comm_gpu_backend */
    uint64_t device_open_seq;       /* 0: no GPU collective in flight */
    int64_t device_open_since_ns;
} comm_slot_view;

/* Head of the node's shared segment, followed by local_size slots. */
typedef struct {
    uint64_t magic;
    int32_t local_size;
    _Atomic int32_t fired_by;       /* world rank of the first local watchdog that fired, or -1 */
    _Atomic int32_t report_done;    /* that watchdog has written its report */
    _Atomic int32_t exit_code;      /* what every local rank exits with once it fired; 0: 1 */
    char pad[40];
    /* One line the other local ranks print as they follow (a lost node: which one), set
     * before report_done; empty when they end silently. */
    char follow_line[192];
} comm_shared_header;

struct comm {
    MPI_Comm world;         /* our dup of MPI_COMM_WORLD, with MPI_ERRORS_RETURN */
    MPI_Comm check;         /* a second dup for fingerprint checks (MPI_COMM_NULL until enabled) */
    int rank, world_size;
    int local_rank, local_size;
    int owns_mpi;           /* we called MPI_Init_thread, so we call MPI_Finalize */
    uint64_t sequence;      /* collectives issued so far (one per call, one per bucket) */
    int check_fingerprints; /* compare fingerprints across ranks before each collective */

    /* Gradient all-reduce state, sized once in comm_grads_register. */
    float *grads;           /* [grads_n], the caller's buffer */
    int64_t grads_n;
    comm_bucket *buckets;   /* [num_buckets], bucket 0 = the END of the buffer */
    MPI_Request *requests;  /* [num_buckets] */
    int64_t num_buckets;
    int64_t started;        /* buckets 0..started-1 have been started this step */
    int64_t completed;      /* buckets 0..completed-1 are known to be finished */
    uint64_t bucket_seq0;   /* sequence number of bucket 0 of this step */
    double wait_seconds;    /* blocked in comm_grads_wait since last read */
    int64_t bucket_timed;   /* buckets the last comm_grads_wait finished */
    double *bucket_t0, *bucket_t1;   /* [num_buckets] when timing buckets (traces), else NULL */
    struct comm_shm_grads *shm;      /* averaging through node shared memory (comm_grads_shm.c),
                                      * across nodes with MPI between them (comm_grads_hier.c) */
    /* Bus bandwidth (comm_grads_bus_stats): when this step's exchange began, and the bus bytes
     * and in-flight seconds of the exchanges finished since the last read. */
    double xchg_t0, xchg_bus_bytes, xchg_seconds;

    /* How gradients travel (comm_grads_set_exchange; comm_zero.c), applied at register. */
    int shard;                  /* 1: reduce-scatter into shard_grads (ZeRO-1), 0: all-reduce */
    comm_grad_dtype grad_dtype; /* COMM_GRAD_BF16: buckets travel as bf16 (wire16) */
    int64_t shard_lo, shard_hi; /* this rank's shard of [0, grads_n) (comm_shard_bounds) */
    float *shard_grads;         /* [shard_hi - shard_lo]: averaged shard; into grads at world 1 */
    int owns_shard_grads;
    uint16_t *wire16;           /* bf16: [grads_n], the buckets as sent (and, stage 0, summed) */
    uint16_t *shard16;          /* bf16 and shard: [shard_hi - shard_lo], the summed shard */
    int *shard_counts;          /* shard: [num_buckets * world] elements of bucket b for rank r */
    int *shard_displs;          /* shard: [num_buckets * world] where they start in bucket b */
    MPI_Op bf16_sum;            /* user op: bf16 + bf16 in fp32, rounded to bf16 */
    /* The parameters' all-gather in flight (comm_shards_allgather_start .. _finish): posted
     * bucket by bucket from the START of the buffer (bucket num_buckets - 1 first), so the
     * first layers' parameters arrive first; host memory uses requests[] (free again before
     * the next gradient bucket starts), device memory one event per bucket. */
    float *gather_buf;          /* the buffer being gathered; NULL: nothing in flight */
    unsigned char *gather_done; /* [num_buckets]: complete (host) / waited for (device) */
    int64_t gather_left;        /* buckets not yet marked done */
    uint64_t gather_seq0;       /* sequence number of the first posted bucket */
    int gather_lazy;            /* comm_shards_allgather_lazy: post each bucket when needed */

    /* Published state (comm_state.c): header + slots [shared_slots], this rank's is self. */
    comm_shared_header *header;
    comm_slot *slots;
    int shared_slots;       /* local_size when the node segment is mapped, else 1 (private) */
    int shared;             /* 1: slots are the node's shared segment */
    void *mapping;          /* what to munmap (or free when private) */
    size_t mapping_bytes;
    comm_slot *self;
    int64_t pending_allow_ns;   /* comm_watchdog_allow, applied at the next wait */
    char host[64];
    int node_leader;        /* world rank of this node's local rank 0 */

    /* Cross-node heartbeat (comm_heartbeat.c), NULL when off or on one node. */
    struct comm_heartbeat *hb;

    /* Watchdog thread (comm_watchdog.c). */
    pthread_t watchdog;
    int watchdog_running;
    pthread_mutex_t watchdog_lock;
    pthread_cond_t watchdog_wake;
    int watchdog_stop;              /* under watchdog_lock */
    _Atomic int64_t timeout_ns;

    /* GPU backends (comm_gpu*.c); NULL / 0 on the host path. */
    struct comm_gpu *gpu;           /* set by comm_gpu_init */
    int grads_on_device;            /* the registered buffer is device memory */
    _Atomic int gpu_watch;          /* 1: the watchdog polls the GPU queue (set after gpu) */
    MPI_Comm grads_world;           /* MPI_STAGED: the buckets' own dup of world, else NULL */
};

/* bf16 (the upper 16 bits of an IEEE float), round to nearest even; comm_gpu_wire.cu rounds
 * the same way on the device. */
static inline uint16_t f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);   /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* snprintf into err (if err and errlen allow); returns 1 so callers can `return comm_error(...)`. */
int comm_error(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "WHAT failed (collective #SEQ): <MPI_Error_string(rc)>"; returns 1. */
int comm_mpi_error(const comm *c, int rc, const char *what, char *err, size_t errlen);

/* comm_broadcast in MPI_Bcast pieces of chunk_bytes (<= INT_MAX; comm_broadcast uses 1 GiB).
 * Separate so tests can exercise the chunking on small buffers. */
int comm_broadcast_chunked(comm *c, void *buf, size_t bytes, int root, size_t chunk_bytes,
                           char *err, size_t errlen);

/* ---- comm_state.c: the published per-rank state ----------------------------------------- */

/* Maps the node's shared segment (collective over world and the node communicator `local`)
 * or falls back to a private slot; never fails the job.  Fills this rank's slot. */
void comm_state_open(comm *c, MPI_Comm local);
void comm_state_close(comm *c);
void comm_state_set(comm *c, int32_t state);

/* A blocking collective starts: increments the sequence, publishes the fingerprint and that
 * this rank now waits in it, and (when enabled) compares fingerprints across ranks.  Returns 0,
 * or 1 with err on a fingerprint mismatch or MPI error: then the caller must skip the collective
 * (every rank gets the same verdict) and still call comm_collective_end. */
int comm_collective_begin(comm *c, comm_op op, comm_type type, int64_t count, int32_t root,
                          char *err, size_t errlen);
/* The collective has completed (or failed) here: not waiting, done up to the sequence number. */
void comm_collective_end(comm *c);
/* comm_grads_shm.c: the gradient window of a node - `segs` segments of `seg` floats, segment
 * `me` this rank's - and, across nodes, `cross` (MPI_COMM_NULL on one node): the ranks with
 * this local rank, one per node.  chunk 0: a segment holds a whole gradient buffer (seg =
 * grads_n), one set of segments and the sums; chunk C > 0: the window is too small for that,
 * a segment holds `segs` pieces of C floats (seg = segs * C), there are two sets, and the
 * exchange goes in rounds. */
struct comm_shm_grads {
    MPI_Comm node, cross;   /* node: c->world on one node (not owned), else owned */
    int me, segs, nodes;
    MPI_Win win;
    int64_t chunk, seg;
    float *set[2];          /* [segs * seg] each: set p, segment s at set[p] + s * seg; whole
                             * buffers use set 0 alone (set[1] NULL) */
    float *sums;            /* whole buffers: [seg], the averaged slices (ZeRO-1: parameters) */
    int parity;             /* in rounds: the set of the next round */
    int adopted;            /* whole buffers: c->grads is this rank's segment, and unsharded
                             * the averages stay in the sums (comm_grads_averaged) */
    double *slots;          /* [segs], after the floats: each rank's slice's sum of squares */
    double sumsq;           /* the last finish's, when have_sumsq (comm_grads_sumsq) */
    int have_sumsq;
};
/* Collective over the world: the room for the node's shared windows - half the free space of
 * the directory that backs them (Open MPI's osc_sm_backing_directory: /dev/shm unless
 * OMPI_MCA_osc_sm_backing_directory names another), the smallest over the ranks so that all
 * take the same decision.  A tmpfs smaller than the window would end the job with SIGBUS when
 * a page is first touched (a container's 64 MB /dev/shm).  0, or 1 with err. */
int comm_shm_window_room(comm *c, size_t *room, char *err, size_t errlen);
/* The chunk for n floats over L segments: 0 (whole buffers: the window of (L + 1) n floats
 * and the slots fits room, and what it takes beyond the gradients, which move into it, n
 * floats, fits max_bytes), C > 0 (in rounds: pieces of C floats, a window of 2 L L C floats
 * within both max_bytes and room, plus the slots' 64 + 8 L bytes), or -1 (not even pieces of
 * 1024 floats fit). */
int64_t comm_shm_chunk(int64_t n, int L, size_t max_bytes, size_t room);
/* Collective: the window on node, owning node (unless c->world) and cross, with the chunk
 * comm_shm_chunk gave; 0, or 1 with err (both communicators freed). */
int comm_shm_grads_open(comm *c, MPI_Comm node, MPI_Comm cross, int64_t chunk, char *err,
                        size_t errlen);
/* a finished bucket into this rank's segment; the reduction at the wait (0 or 1 with err) */
void comm_shm_grads_bucket(comm *c, int64_t start, int64_t count);
int comm_shm_grads_finish(comm *c, char *err, size_t errlen);
/* 1: this exchange runs through the node's window (comm_grads.c) */
int comm_grads_node_memory(const comm *c);
/* ZeRO-1 on one node: buf's slice [shard_lo, shard_hi) to every rank's buf (0 or 1 with err) */
int comm_shm_params_gather(comm *c, float *buf, char *err, size_t errlen);
void comm_shm_grads_close(comm *c);
/* A non-blocking collective (gradient bucket) starts: as above, but this rank does not wait. */
int comm_collective_join(comm *c, comm_op op, comm_type type, int64_t count, int32_t root,
                         char *err, size_t errlen);
/* This rank blocks in collective `fp` (joined earlier) / has stopped blocking (nothing more is
 * known complete; gradient buckets end their wait with comm_collective_end). */
void comm_wait_begin(comm *c, const comm_fingerprint *fp);
void comm_wait_end(comm *c);

void comm_slot_read(const comm_slot *s, comm_slot_view *out);
int64_t comm_now_ns(void);
const char *comm_op_name(int32_t op);
const char *comm_type_name(int32_t type);
/* "#SEQ comm_allreduce_sum_f64(4 x f64)" (", root R" for broadcasts). */
void comm_fingerprint_text(const comm_fingerprint *fp, char *out, size_t len);

/* /proc/PID/stat: state letter and start time.  0, or -1 when the process does not exist (or
 * /proc is unavailable). */
int comm_proc_stat(int pid, char *state, uint64_t *start);

/* ---- comm_fingerprint.c ------------------------------------------------------------------ */

/* The debug check behind comm_check_fingerprints: one small all-reduce on c->check; on a
 * mismatch an all-gather names the first rank that disagrees with rank 0.  0 or 1 with err. */
int comm_fingerprint_compare(comm *c, const comm_fingerprint *fp, char *err, size_t errlen);

/* ---- comm_grads.c ------------------------------------------------------------------------ */

/* ---- comm_zero.c: sharded exchange and bf16 on the wire (host memory) ---- */
/* After comm_grads_plan: the shard layout, per-bucket counts and the bf16 buffers.  0 or 1. */
int comm_zero_plan(comm *c, char *err, size_t errlen);
/* Frees what comm_zero_plan allocated (and the MPI op; before MPI_Finalize). */
void comm_zero_free(comm *c);
/* Finishes a parameter all-gather still in flight (comm_shards_allgather_finish); 0 when
 * none is.  Everything that reuses the bucket requests or the buffer calls it first. */
int comm_gather_settle(comm *c, char *err, size_t errlen);
/* Starts bucket i (a reduce-scatter, or an all-reduce of bf16): non-blocking, MPI only. */
int comm_zero_start_bucket(comm *c, int64_t i, char *err, size_t errlen);
/* After every bucket has completed: averages (sum / world) into grads or shard_grads. */
void comm_zero_finish(comm *c);

/* Cuts n elements into buckets (comm_bucket_plan, at most INT_MAX elements each) and allocates
 * one MPI request per bucket; replaces the previous plan.  `who` names the caller in errors. */
int comm_grads_plan(comm *c, int64_t n, size_t bucket_bytes, const char *who, char *err,
                    size_t errlen);

/* ---- comm_gpu*.c: the GPU backends --------------------------------------------------------- */

/* comm_grads_ready / _wait / _wait_seconds for a buffer registered with
 * comm_grads_register_device. */
int comm_gpu_grads_ready(comm *c, int64_t offset, char *err, size_t errlen);
int comm_gpu_grads_wait(comm *c, char *err, size_t errlen);
double comm_gpu_grads_wait_seconds(comm *c);
/* comm_shards_allgather_start / _need / _finish of a device buffer laid out as the
 * registered one (c->gather_buf set by the caller when something is left in flight). */
int comm_gpu_shards_allgather_start(comm *c, float *dev_buf, char *err, size_t errlen);
int comm_gpu_shards_allgather_need(comm *c, int64_t offset, int64_t count, char *err,
                                   size_t errlen);
int comm_gpu_shards_allgather_finish(comm *c, char *err, size_t errlen);
/* Drops what comm_grads_register_device allocated (comm_grads_register calls it). */
void comm_gpu_forget_grads(comm *c);
/* comm_finalize: the NCCL communicator, stream, events, mirror and grads_world. */
void comm_gpu_destroy(comm *c);

/* What the watchdog learns from the GPU queue at one tick. */
enum { COMM_GPU_WATCH_OK = 0, COMM_GPU_WATCH_STALL, COMM_GPU_WATCH_NCCL_ERROR };
typedef struct {
    int kind;                   /* COMM_GPU_WATCH_* */
    comm_fingerprint fp;        /* the oldest GPU collective not known complete */
    int64_t since_ns;           /* when it was queued */
    int64_t bucket, buckets;    /* its bucket index in the plan, buckets in the plan */
    int64_t start, count;       /* its elements */
    char detail[320];           /* the NCCL error; for a stall, a CUDA error the queue saw */
} comm_gpu_watch_report;
/* Watchdog thread, every tick while c->gpu_watch: retires completed GPU collectives, checks
 * ncclCommGetAsyncError.  Returns 1 and fills *out on an error, or when the oldest GPU
 * collective has been queued longer than timeout_ns; else 0. */
int comm_gpu_watch(comm *c, int64_t now_ns, int64_t timeout_ns, comm_gpu_watch_report *out);
/* Watchdog thread, just before it ends the process: ncclCommAbort, given 10 s. */
void comm_gpu_exit_abort(comm *c);

/* ---- comm_watchdog.c --------------------------------------------------------------------- */
void comm_watchdog_init(comm *c);       /* lock and condition; no thread yet */
void comm_watchdog_shutdown(comm *c);   /* stops and joins the thread if it runs */
void comm_watchdog_destroy(comm *c);
/* For a fault found outside the watchdog (the heartbeat thread's lost node): claims this
 * node's report (or follows one already claimed), writes text[len] to stderr, leaves
 * follow_line for the other local ranks, whose watchdogs then end them with exit_code, and
 * ends this process with exit_code.  Does not return. */
void comm_watchdog_fire_external(comm *c, const char *text, size_t len, const char *follow_line,
                                 int exit_code);

/* ---- comm_heartbeat.c -------------------------------------------------------------------- */
void comm_heartbeat_shutdown(comm *c);   /* says goodbye to the other nodes, stops the thread */

#endif
