/* comm: the process group.  MPI bootstrap, ranks, broadcast, metric reductions, the bucketed
 * gradient all-reduce, and the abort path.
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
/* MPI_Finalize and free.  Safe after errors on every rank (all ranks must call it). */
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

/* Gradient buffer: grads[n] floats (host memory on the MPI backend).  bucket_bytes > 0. */
int comm_grads_register(comm *c, float *grads, int64_t n, size_t bucket_bytes,
                        char *err, size_t errlen);
/* Backward has produced final gradients for grads[offset, n): start every bucket that lies
 * entirely inside [offset, n) and has not started yet.  Call with decreasing offsets;
 * offset 0 starts all remaining buckets. */
int comm_grads_ready(comm *c, int64_t offset, char *err, size_t errlen);
/* Waits for every bucket, leaves grads averaged over ranks (sum / world).  Resets for the
 * next step.  Returns 0 or an error. */
int comm_grads_wait(comm *c, char *err, size_t errlen);
/* Seconds spent blocked in comm_grads_wait since the last call (step time breakdown). */
double comm_grads_wait_seconds(comm *c);

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
