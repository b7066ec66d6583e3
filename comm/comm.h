/* comm: the process group.  MPI bootstrap, ranks, broadcast, metric reductions, the bucketed
 * gradient all-reduce (host memory over MPI; device memory over NCCL or MPI through pinned host
 * memory, see "GPU backends" below), and the abort path.
 *
 * Ranks come from MPI only (the local rank from MPI_Comm_split_type, never from launcher
 * environment variables).  Gradients live in one flat float buffer registered once; it is cut
 * into buckets of about bucket_bytes.  As backward finishes a range of the buffer the trainer
 * calls comm_grads_ready(); every bucket that range completes starts its averaging all-reduce
 * at once (non-blocking), so communication overlaps the rest of backward.  comm_grads_wait()
 * finishes them all.  Backward produces gradients from the END of the buffer towards the
 * start (last layer first), so buckets are cut from the end.
 *
 * Every collective carries a sequence number; errors are returned with a message, and
 * comm_abort() ends the whole job with a message naming this rank.
 *
 * Faults.  Each collective also publishes its fingerprint (sequence number, operation, count,
 * type, root) and, while the rank waits in it, since when.  The ranks of a node publish into
 * one small shared-memory segment, so a watchdog thread (comm_watchdog_start) can see every
 * local rank, even one that is stopped or dead.  It ends the job with a report when this rank
 * waits in one collective longer than the timeout (naming the collective and the ranks that
 * have not joined it) or when a rank of this node vanishes without comm_finalize (naming it,
 * its last step and collective).  Ranks on other nodes are not visible: a stall report says
 * which ranks of this node joined; the launcher, or the other node's own watchdog, ends them.
 * comm_check_fingerprints turns on a debug check that names the first rank whose collective
 * differs from rank 0's, instead of hanging. */
#ifndef HARNESS_COMM_H
#define HARNESS_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct comm comm;

/* MPI_Init_thread (MPI_THREAD_FUNNELED is enough: only the main thread calls MPI).
 * Returns 0 or an error. */
int comm_init(int *argc, char ***argv, comm **out, char *err, size_t errlen);
/* MPI_Finalize and free.  Safe after errors on every rank (all ranks must call it).  With a GPU
 * backend it first destroys the NCCL communicator (ncclCommFinalize + ncclCommDestroy, or
 * ncclCommAbort after an NCCL error), comm's stream and events and the pinned mirror; it never
 * touches the caller's compute stream, which may already be gone. */
void comm_finalize(comm *c);

int comm_rank(const comm *c);
int comm_world(const comm *c);
int comm_local_rank(const comm *c);   /* rank among the processes on this node */
int comm_local_size(const comm *c);
/* Number of collectives issued so far (each one increments it). */
uint64_t comm_sequence(const comm *c);

int comm_barrier(comm *c, char *err, size_t errlen);
int comm_broadcast(comm *c, void *buf, size_t bytes, int root, char *err, size_t errlen);
/* In-place sums / maxima across ranks (metrics, flags); host memory. */
int comm_allreduce_sum_f64(comm *c, double *x, int n, char *err, size_t errlen);
int comm_allreduce_sum_i64(comm *c, int64_t *x, int n, char *err, size_t errlen);
int comm_allreduce_max_i32(comm *c, int32_t *x, int n, char *err, size_t errlen);

/* Collective error agreement for start-up checks: every rank passes its local status
 * (0 = ok) and message; returns 0 when all ranks are ok.  Otherwise returns the lowest failing
 * rank + 1 on every rank, and copies that rank's message into err on every rank, so exactly
 * one rank needs to print it and all ranks can exit cleanly with status 1. */
int comm_agree(comm *c, int local_status, char *err, size_t errlen);

/* Gradient buffer: grads[n] floats in host memory.  bucket_bytes > 0.  (Device memory:
 * comm_grads_register_device below.) */
int comm_grads_register(comm *c, float *grads, int64_t n, size_t bucket_bytes,
                        char *err, size_t errlen);
/* Backward has produced final gradients for grads[offset, n): start every bucket that lies
 * entirely inside [offset, n) and has not started yet.  Call with decreasing offsets;
 * offset 0 starts all remaining buckets. */
int comm_grads_ready(comm *c, int64_t offset, char *err, size_t errlen);
/* Waits for every bucket, leaves grads averaged over ranks (sum / world) - or, kept in the
 * node's window (comm_grads_averaged), the averages there.  Resets for the next step.
 * Returns 0 or an error. */
int comm_grads_wait(comm *c, char *err, size_t errlen);
/* Collective, after register: when every rank is on this node, average the host buffer
 * through an MPI-3 shared-memory window of (world + 1) x n floats instead of MPI all-reduces:
 * each finished bucket is copied into this rank's segment (unless comm_grads_node_buffer
 * below moved the gradients there), and the wait sums one slice per rank and copies the
 * others' (comm_grads_shm.c).  Where what it takes beyond the gradients (n floats, the sums)
 * would exceed max_bytes, or the whole window half the free space of /dev/shm (which backs
 * it), a window within both takes the buffer in rounds at the wait.  Same results on every rank, and the same bits either way;
 * buckets keep their sequence numbers and the watchdog.  Returns 1 (in use), 0 (not
 * applicable: one rank, several nodes, device buffer, bf16, max_bytes too small for pieces
 * of 1024 floats) or -1 (also when the gradients are in the window already: register them
 * again first).  Registering again goes back to MPI until this is called again. */
int comm_grads_use_node_memory(comm *c, size_t max_bytes, char *err, size_t errlen);
/* The node's window in use (either call here): its bytes, and the rounds one exchange takes
 * (1: whole buffers); 0 and 0 when none. */
size_t comm_grads_node_window(const comm *c, int64_t *rounds);
/* With the node's window in use for whole buffers (rounds 1, not sharded across nodes): this
 * rank's segment of it, n floats, now holding a copy of the registered buffer and registered
 * in its place.  A caller that moves its gradients there (backward writes them into the
 * window) saves copying every bucket during backward; unsharded, the averages then stay in the
 * window (comm_grads_averaged below).  Valid until the next
 * comm_grads_register, which the caller must make (with a buffer of its own) before it calls
 * comm_grads_use_node_memory or comm_grads_use_hierarchy again, or until comm_free.  NULL
 * when not applicable (no window, in rounds, sharded across nodes). */
float *comm_grads_node_buffer(comm *c);
/* After comm_grads_wait: 1 and *sumsq = the sum of squares (in double) of the averaged
 * gradients - of all of them, the same bits on every rank, or of this rank's shard when the
 * exchange is sharded - where the exchange computed it on the way (the node's shared-memory
 * window: each rank sums its slice's squares while it averages the slice, and the node adds
 * the slices'); 0 otherwise (the caller computes it). */
int comm_grads_sumsq(const comm *c, double *sumsq);
/* After comm_grads_wait: where the averaged gradients are, when the gradients are in the
 * window (comm_grads_node_buffer) and the exchange is not sharded - the window's sums
 * (read-only), where every rank's slice already is: nothing is copied back, and the
 * registered buffer keeps this rank's own (unaveraged) gradients, which saves writing n floats
 * and copying (world - 1) n / world per step.  Else NULL: they are in the registered buffer.
 * The sums stay valid until this rank's next comm_grads_wait: no rank writes them before every
 * rank has entered its next wait. */
const float *comm_grads_averaged(const comm *c);
/* Collective, after register, for jobs across nodes: average the host buffer hierarchically
 * (comm_grads_hier.c) - the ranks of each node sum through an MPI-3 shared window of
 * (local_size + 1) x n floats (as comm_grads_use_node_memory's: max_bytes bounds the part
 * beyond the gradients, else rounds), each local rank all-reduces its 1/local_size slice of
 * the node's sum with the same local rank of the other nodes over MPI, and the node gathers
 * the slices back.  Same results on every rank; buckets keep their sequence numbers and the
 * watchdog.  Returns 1 (in use), 0 (not applicable: one rank or one node, device buffer, a
 * sharded or bf16 exchange, nodes with different numbers of ranks or a single rank, too big:
 * why says which when there is a reason worth telling) or -1 (err, also with the gradients
 * in the window already).  Registering again goes back to MPI until this is called again.
 * comm_grads_hier_nodes: the nodes it spans while in use, else 0. */
int comm_grads_use_hierarchy(comm *c, size_t max_bytes, char *why, size_t whylen, char *err,
                             size_t errlen);
int comm_grads_hier_nodes(const comm *c);
/* The gradient exchanges finished since the last call (host buffers; 0 and 0 on devices and
 * with one rank): their bus bytes, nccl-tests' convention - an all-reduce of S bytes over W
 * ranks counts 2 (W-1)/W x S, a reduce-scatter (ZeRO-1) (W-1)/W x S, S in the wire's type -
 * and the seconds they were in flight: from the first bucket's start to the end of the wait
 * (on the shared-memory paths from the start of the wait, where their exchange begins; the
 * buckets are only copied during backward).  Bus bandwidth = bus_bytes / seconds.  Resets. */
void comm_grads_bus_stats(comm *c, double *bus_bytes, double *seconds);
/* Seconds spent blocked in comm_grads_wait since the last call (step time breakdown). */
double comm_grads_wait_seconds(comm *c);
/* Traces: from now on stamp each host-memory bucket's start (MPI_Iallreduce) and completion
 * (the MPI_Test or MPI_Wait that saw it done; the wait then waits bucket by bucket) on the
 * monotonic clock.  Call after register; allocates once; not for device buffers (returns 0
 * and stamps nothing).  comm_grads_bucket_times: the stamps of the buckets the last
 * comm_grads_wait finished (their count; 0 when not timing). */
int comm_grads_time_buckets(comm *c, char *err, size_t errlen);

/* The network check at start (comm_netcheck.c): the gradient all-reduce at `bytes` timed across
 * all ranks (median of reps rounds, each the slowest rank's time) as bus bandwidth
 * 2 (n-1)/n x bytes / time, and each node's exchange with rank 0's node (fastest of 2 x reps;
 * node 0: NAN).  slowest: a node under a tenth of the others' median, else -1 (3 nodes or
 * more).  Collective; every rank gets the same results.  Free with comm_netcheck_free. */
typedef struct {
    size_t bytes;
    double allreduce_s, bus_gbps;   /* GB/s = 1e9 bytes/s */
    int nodes, slowest;
    double *node_gbps;              /* [nodes] */
    char (*node_host)[64];          /* [nodes] */
} comm_netcheck;
int comm_netcheck_run(comm *c, size_t bytes, int reps, comm_netcheck *nc, char *err, size_t errlen);
void comm_netcheck_free(comm_netcheck *nc);
int64_t comm_grads_buckets(const comm *c);   /* buckets of the registered buffer */
int64_t comm_grads_bucket_times(const comm *c, const double **start, const double **end);

/* ---- sharded optimizer state (ZeRO-1) and bf16 gradients on the wire ----------------------
 *
 * comm_grads_set_exchange(shard, dtype), called before comm_grads_register, changes what the
 * bucketed exchange above does (same buckets, same ready/wait calls, same overlap):
 *   shard 0:  each bucket is all-reduced in place (the default).
 *   shard 1:  each bucket is REDUCE-SCATTERED: rank r receives the sum of the part of the bucket
 *             that lies in its shard [lo_r, hi_r) of the flat buffer (comm_shard_bounds: the
 *             buffer is cut into `world` contiguous pieces, lo_r = floor(n r / world), so shards
 *             differ by at most one element and no padding is needed).  MPI_Ireduce_scatter
 *             with per-rank counts (zero for ranks whose shard misses the bucket) into a
 *             separate shard buffer; comm_grads_wait leaves the average (sum / world) there
 *             (comm_grads_shard) and the registered buffer holds this rank's own, unreduced
 *             gradients.
 *   dtype COMM_GRAD_BF16: a bucket is rounded to bf16 (nearest even) when it starts and
 *             travels as bf16 (half the bytes); MPI has no bf16 type, so a user-defined sum
 *             adds two bf16 values in fp32 and rounds the partial sum to bf16 at every hop; the
 *             result is widened to fp32 and divided by world.  COMM_GRAD_FP32: floats.
 * Device memory (comm_grads_register_device), shard 1 - the same shard layout, so checkpoint
 * gather / scatter and the tests do not change:
 *   NCCL:        per bucket, inside one ncclGroupStart/End, one ncclReduce(ncclAvg) per rank
 *                whose shard meets the bucket (root = that rank, count = the intersection),
 *                into a device shard buffer (cudaMalloc'd at register, hi - lo floats).  No
 *                padding and no extra copies; the cost against one ncclReduceScatter on
 *                padded buffers is a launch per intersecting shard (a bucket meets one or
 *                two shards unless buckets are larger than n / world: then up to world
 *                launches) and ring reduces instead of NCCL's reduce-scatter kernel.  The
 *                bytes on the wire are the same: (world - 1) / world of the bucket per rank.
 *                The average is NCCL's (ncclAvg), not the host path's sum / world, so it may
 *                differ from it in the last bit.  World 1: the all-reduce as at shard 0 and
 *                the shard is the registered buffer.
 *   MPI_STAGED:  the whole buffer is all-reduced through the pinned mirror exactly as at
 *                shard 0, and the shard is the registered buffer's slice [lo, hi): simplest
 *                correct; it saves the optimizer state's memory, not communication.
 * comm_shards_allgather on device memory: NCCL, per bucket one grouped ncclBroadcast (in
 * place) per rank whose shard meets it, on comm's stream after the compute stream's work,
 * the compute stream waiting for each bucket's event as the forward needs it (no host wait;
 * a sequence number per bucket and one watchdog queue entry); MPI_STAGED, the shard to the pinned mirror (one host wait),
 * MPI_Allgatherv there, the whole buffer back.  comm_shard_gather / comm_shard_scatter stay
 * host memory: the caller stages device shards through the host (checkpoints only).
 * bf16 on device memory (world > 1): NCCL rounds each ready's buckets into a device bf16 copy
 * on comm's stream, sums them as ncclBfloat16 (ncclSum: NCCL adds in fp32 and rounds each
 * partial sum to bf16, like the host op) - ncclAllReduce, or at shard 1 the grouped
 * ncclReduce into a bf16 shard -, then widens the sums divided by world into the gradients or
 * the shard; 2 extra bytes per gradient on the device (plus 2 per shard element).  MPI_STAGED
 * rounds in the pinned mirror on the host and all-reduces bf16 with the host path's op. */
typedef enum { COMM_GRAD_FP32 = 0, COMM_GRAD_BF16 } comm_grad_dtype;
int comm_grads_set_exchange(comm *c, int shard, comm_grad_dtype dtype, char *err, size_t errlen);
/* Whether anything is actually sharded: shard 1 with more than one rank.  0 at shard 0 and on
 * one rank (the shard is then the whole buffer and the all-gather has nothing to move), so
 * the caller need not ask about the rank count itself. */
int comm_zero_active(const comm *c);
/* This rank's shard [*lo, *hi) of the registered n-element buffer. */
void comm_grads_shard_range(const comm *c, int64_t *lo, int64_t *hi);
/* Sharded exchange: the averaged gradients of this rank's shard, [hi - lo] floats, valid
 * after comm_grads_wait until the next step's first comm_grads_ready.  NULL unless shard 1.
 * Device memory when the buffer was registered with comm_grads_register_device (read it
 * through the compute stream, as the averaged gradients). */
float *comm_grads_shard(comm *c);
/* Collective: buf[n] (n as registered, in the registered buffer's memory) holds, on every
 * rank, up-to-date values in its own shard only; afterwards every rank holds all of them (the
 * updated parameters).  In place.  comm_shards_allgather = _start + _finish.
 *
 * Overlapped with the next forward: _start posts one all-gather per bucket of the gradient
 * plan, from the START of the buffer (the first layers' parameters) to its end, and returns
 * at once; _need(offset, count) before a layer reads its parameters makes sure those elements
 * have arrived; _finish completes the rest.  Host memory: MPI_Iallgatherv per bucket; _need
 * waits (MPI_Wait) for the buckets that meet the range and pokes the next one (MPI_Test) so it
 * moves while the layer computes; the time blocked counts in comm_grads_wait_seconds.  Device
 * memory: NCCL's broadcasts per bucket on comm's stream, an event after each; _need makes the
 * compute stream wait for the events of the buckets that meet the range (no host wait) and
 * _finish for the last; MPI_STAGED gathers in _start (blocking) and leaves nothing in flight.
 * Until _finish (or until every bucket has been needed), no rank may write buf outside the
 * ranges it has needed, nor its own shard at all.  comm_grads_ready, comm_grads_wait,
 * comm_grads_register, comm_shard_gather / _scatter finish a gather still in flight first;
 * other collectives may be issued meanwhile (every rank issues them in the same order).
 * _need and _finish with nothing in flight return 0 at once. */
int comm_shards_allgather(comm *c, float *buf, char *err, size_t errlen);
int comm_shards_allgather_start(comm *c, float *buf, char *err, size_t errlen);
int comm_shards_allgather_need(comm *c, int64_t offset, int64_t count, char *err, size_t errlen);
int comm_shards_allgather_finish(comm *c, char *err, size_t errlen);
/* Debug and tests, host memory: on = each bucket's all-gather is posted only when _need (or
 * _finish) first meets it, so nothing arrives early and a read of parameters before _need
 * sees what the buffer held at _start (no overlap; every rank must need the same ranges in
 * the same order, as the identical forward does).  Device memory ignores it.  Not while a
 * gather is in flight (returns 1). */
int comm_shards_allgather_lazy(comm *c, int on);
/* Collective: elements [offset, offset + count) of a sharded buffer (each rank passes its
 * shard, shard[i] = element lo + i) gathered into out[count] on rank 0 (out unused elsewhere).
 * For checkpoints: one tensor at a time, so rank 0 never holds more than one extra tensor. */
int comm_shard_gather(comm *c, const float *shard, int64_t offset, int64_t count, float *out,
                      char *err, size_t errlen);
/* Collective: rank 0's full[n] cut into the shards; each rank receives its own in shard. */
int comm_shard_scatter(comm *c, const float *full, float *shard, char *err, size_t errlen);

/* ---- GPU backends ------------------------------------------------------------------------
 *
 * On GPUs the gradient buffer lives in device memory and is averaged there, overlapped with
 * backward, by one of two backends:
 *   COMM_GPU_NCCL        ncclAllReduce(in place, ncclAvg) per bucket on comm's own stream.
 *                        One GPU per rank (NCCL refuses two ranks on one GPU).
 *   COMM_GPU_MPI_STAGED  per bucket: copy to a pinned host mirror on comm's stream, MPI
 *                        all-reduce there (the host path above), divide by world, copy back.
 *                        Works when several ranks share one GPU.
 *   COMM_GPU_AUTO        NCCL when this build has it and no two ranks use the same GPU (their
 *                        UUIDs are compared), else MPI_STAGED.
 * The caller hands comm its compute stream (a cudaStream_t as void *; comm never sees the
 * kernels library).  Ordering is by CUDA events, never by blocking the host:
 *   comm_grads_ready(offset)  records an event on the compute stream ("the gradients of
 *                             [offset, n) are queued") and makes comm's stream wait for it, then
 *                             queues every bucket it completes on comm's stream.  It returns at
 *                             once: the host goes on queueing backward.  (MPI_STAGED starts a
 *                             bucket's MPI all-reduce when its copy to the host has finished,
 *                             checked without blocking at each later ready, and at the latest
 *                             in comm_grads_wait; its buckets use their own MPI communicator, so
 *                             when each one starts does not matter to the other collectives.)
 *   comm_grads_wait()         queues the remaining buckets and makes the compute stream wait for
 *                             comm's stream.  NCCL: no host wait at all - work queued on the
 *                             compute stream afterwards (clipping, the optimizer) sees averaged
 *                             gradients; read them on the host only through that stream.
 *                             MPI_STAGED: the host waits for the MPI all-reduces (as on the CPU),
 *                             then the copies back are queued on comm's stream.
 *   comm_grads_wait_seconds() NCCL: GPU time the compute stream stood still waiting for the
 *                             all-reduces after the last backward kernel (the communication that
 *                             backward did not hide), timed with CUDA events and counted once
 *                             those events have completed - usually at the next step's wait, so
 *                             it runs one step behind.  MPI_STAGED: host seconds blocked in
 *                             comm_grads_wait, as on the CPU.
 * Every bucket still carries a sequence number and fingerprint.  With NCCL a bucket counts as
 * complete when an event recorded after it on comm's stream has completed; the watchdog
 * thread polls those events and ncclCommGetAsyncError at every tick, and on an NCCL error or a
 * bucket not done after the timeout it reports (collective, bucket, step, ranks) like any
 * stall, aborts the NCCL communicator (ncclCommAbort, given 10 s) and ends the job.
 * All calls come from the thread that calls MPI, with the compute stream's device current. */
typedef enum {
    COMM_GPU_NONE = 0,      /* comm_gpu_backend_in_use before comm_gpu_init */
    COMM_GPU_AUTO,
    COMM_GPU_NCCL,
    COMM_GPU_MPI_STAGED,
} comm_gpu_backend;

/* Collective.  Binds comm to `device` (cudaSetDevice), creates its stream (non-blocking,
 * highest priority) and events; NCCL: rank 0's ncclGetUniqueId is broadcast over MPI and every
 * rank calls ncclCommInitRank; MPI_STAGED: a private communicator for the buckets.  The ranks
 * agree on the outcome: on failure every rank returns 1 with the same message naming the rank
 * and the cause ("no CUDA in this build", "this build has no NCCL", "no usable CUDA device:
 * ...", "ranks 0 and 1 share GPU ...: NCCL needs one GPU per rank", an NCCL error), and comm
 * stays usable on the host.  Once per comm. */
int comm_gpu_init(comm *c, int device, void *compute_stream, comm_gpu_backend backend,
                  char *err, size_t errlen);
/* The backend comm_gpu_init chose (NCCL or MPI_STAGED), COMM_GPU_NONE before. */
comm_gpu_backend comm_gpu_backend_in_use(const comm *c);
/* Whether this build contains the backend (NCCL: CUDA and NCCL found at configure time;
 * MPI_STAGED, AUTO: CUDA found).  Says nothing about a device being there. */
int comm_gpu_built(comm_gpu_backend backend);
const char *comm_gpu_backend_name(comm_gpu_backend backend);   /* "nccl", "mpi-staged", ... */

/* comm_grads_register for a device buffer: dev_grads[n] floats on comm_gpu_init's device, cut
 * into the same buckets (comm_buckets.h).  MPI_STAGED allocates its pinned host mirror (n floats,
 * cudaMallocHost) here.  comm_grads_ready / comm_grads_wait / comm_grads_wait_seconds then work
 * on it as described above; comm_grads_register goes back to a host buffer.  Not collective. */
int comm_grads_register_device(comm *c, float *dev_grads, int64_t n, size_t bucket_bytes,
                               char *err, size_t errlen);

/* In-place sum of x[n] doubles over all ranks where x lives in the gradients' memory: device
 * memory once comm_gpu_init has run, host memory otherwise (the CPU backend).  For statistics
 * that a step needs on every rank - synchronised batch norm's {sum, sum of squares} - without
 * a trip through the host:
 *   NCCL:        ncclAllReduce(ncclDouble, ncclSum) on comm's stream, ordered after the
 *                compute stream's work so far (event) and before its later work (event); the
 *                host does not wait.  One stream for all of comm's NCCL work keeps every
 *                rank's NCCL calls in one order (gradient buckets in flight included).
 *   MPI_STAGED:  copy to a pinned host buffer, wait for it, MPI all-reduce, copy back (queued
 *                on the compute stream): one host wait, no pageable memory.
 *   host memory: comm_allreduce_sum_f64.
 * World 1: nothing to do.  Collective (every rank, same n, same order); 0 or an error. */
int comm_allreduce_sum_f64_device(comm *c, double *x, int n, char *err, size_t errlen);

/* Ends every rank of the job now: prints "harness: rank R: MESSAGE" to stderr and calls
 * MPI_Abort with the given code.  Does not return. */
void comm_abort(comm *c, int code, const char *message);

/* Starts the watchdog thread of this rank (or, when it runs, sets a new timeout).  It never
 * calls MPI and costs nothing per collective; it wakes every 100 ms (timeout/10 when shorter).
 * It fires when
 *   - this rank has waited in one collective more than timeout_s seconds (plus any
 *     comm_watchdog_allow), or
 *   - a rank on this node has ended without comm_finalize or comm_abort (killed, crashed, out
 *     of memory),
 * and then writes a report to stderr ("harness: rank R: ..." lines: the collective and step,
 * the ranks that have not joined it and what each local rank is doing; or the lost rank, its
 * last step and collective), SIGKILLs the local ranks that have not joined a stalled
 * collective, and ends this process with _exit(1): no atexit handlers, buffered stdio is lost.
 * One watchdog per node reports; the other local ranks end silently right after.  Under
 * mpirun the exit makes mpirun end the other nodes too; under srun use --kill-on-bad-exit=1.
 * Start it on every rank once the start-up's long one-rank phases are over.  timeout_s > 0;
 * returns 0 or an error. */
int comm_watchdog_start(comm *c, double timeout_s, char *err, size_t errlen);
/* Stops the thread (comm_finalize does it too).  Safe when it does not run. */
void comm_watchdog_stop(comm *c);
/* Collective.  Across nodes, a liveness signal that does not depend on MPI (a rank blocked in
 * a collective with a node that lost power would wait for hours): each node's local rank 0
 * keeps a heartbeat with rank 0 over UDP, on a thread of its own (comm_heartbeat.c).  When
 * rank 0 has heard nothing from a node for silence_s seconds, or a node has heard nothing from
 * rank 0 for that long, every rank of the surviving nodes ends within about one more second:
 * its node leader writes a report naming the lost node (host name), its ranks and the step it
 * was last heard in, the other local ranks print one line naming it, and all exit with
 * exit_code (the caller's "a node was lost" status).  A network partition ends both sides.
 * Ranks of one node only: nothing to do.  Also starts the watchdog (with no stall timeout) on
 * ranks where it does not run, since the local ranks end through it.  The node leaders need an
 * IPv4 address on a network rank 0's node shares (UDP, ephemeral ports: a firewall between the
 * nodes must let them through).  comm_finalize stops it, with a goodbye so that a node that
 * finishes first is not taken for lost.  silence_s in (0, 1e6]; returns 0 or an error (the
 * same on every rank). */
int comm_heartbeat_start(comm *c, double silence_s, int exit_code, char *err, size_t errlen);
/* The step this rank is working on, for reports (e.g. the 1-based step of the logs).  One
 * relaxed store. */
void comm_set_step(comm *c, int64_t step);
/* The next time this rank waits in a collective it may wait timeout + seconds: for a wait
 * that is long for a good reason, e.g. while rank 0 writes a checkpoint and the others wait in
 * the collective after it.  Call it on the ranks that will wait (every rank is simplest) just
 * before; it applies to that one wait only. */
void comm_watchdog_allow(comm *c, double seconds);
/* Debug check, collective (every rank, same `on`): when on, before each collective the ranks
 * compare fingerprints (sequence number, operation, count, type, root) with one small extra
 * all-reduce.  On a mismatch every rank skips that collective and it returns an error on every
 * rank naming rank 0's collective and the first rank whose collective differs, e.g.
 * "collective mismatch: rank 0 calls #12 comm_allreduce_sum_f64(4 x f64) but rank 1 calls
 * #12 comm_allreduce_sum_f64(3 x f64) ...".  For gradient buckets the extra all-reduce blocks
 * once per bucket, which defeats the overlap: a debug setting.  Returns 0, or an error when the
 * ranks disagree on `on` (then nothing changes). */
int comm_check_fingerprints(comm *c, int on, char *err, size_t errlen);

#endif
