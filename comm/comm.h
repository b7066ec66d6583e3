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
 * comm_abort() ends the whole job with a message naming this rank. */
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

#endif
