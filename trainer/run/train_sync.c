/* train_sync.c: the collectives every part of a run uses (see train_run.h): agreeing on a
 * start-up error, broadcasting rank 0's floats, synchronising buffers. */
#include "train_run.h"

/* Agreement point: returns 0 when every rank is fine; otherwise rank 0 prints the first
 * failing rank's message and every rank gets -1. */
int run_agree(run *r, int status, char *err) {
    int who = comm_agree(r->c, status, err, ERRLEN);
    if (who == 0) return 0;
    if (r->rank == 0) {
        if (who - 1 == 0 || r->world == 1) fprintf(stderr, "harness: error: %s\n", err);
        else fprintf(stderr, "harness: error on rank %d: %s\n", who - 1, err);
    }
    return -1;
}

/* Broadcast of backend memory from rank 0 (staged through the host on GPUs). */
int run_broadcast_floats(run *r, float *buf, int64_t n, char *err) {
    size_t bytes = (size_t)n * sizeof(float);
    if (r->world == 1 || !buf) return 0;
    if (kern_get_backend(r->k) == KERN_CPU) return comm_broadcast(r->c, buf, bytes, 0, err, ERRLEN);
    float *host = malloc(bytes);
    if (!host) return snprintf(err, ERRLEN, "out of memory staging a broadcast"), -1;
    kern_to_host(r->k, host, buf, bytes);
    int st = comm_broadcast(r->c, host, bytes, 0, err, ERRLEN);
    if (st == 0) kern_to_device(r->k, buf, host, bytes);
    free(host);
    return st;
}

/* Batch-norm running statistics are per rank unless synchronised; like DDP, rank 0's are
 * the model's: broadcast before they are used for evaluation or saved. */
void run_sync_buffers(run *r) {
    char err[ERRLEN];
    if (r->m.n_buffers && run_broadcast_floats(r, r->m.buffers, r->m.n_buffers, err) != 0)
        comm_abort(r->c, 1, err);
}

/* comm_shards_allgather_finish returns at once when nothing is in flight (stage 0, one
 * rank, or already finished). */
void run_settle_params(run *r) {
    char err[ERRLEN];
    if (comm_shards_allgather_finish(r->c, err, sizeof err) != 0)
        comm_abort(r->c, 1, err);
}
