/* Gradient averaging through node shared memory, for jobs whose ranks all share one node.
 *
 * Why: MPI's nonblocking all-reduce on host memory (libnbc over shared-memory FIFOs, moving
 * the data in fragments, advanced only inside MPI calls) took 0.4-0.8 ms for the MLP's 0.9 MB
 * of gradients on two cores - a third of a step - and part of it ran inside backward, in the
 * MPI_Test that pokes the buckets.  With every rank on one node the reduction needs no
 * messages: each rank copies a finished bucket into its own segment of an MPI-3 shared window
 * (while backward goes on), and at the wait each rank sums one slice of the buffer across all
 * segments (reduce-scatter) and then copies the other slices' sums (all-gather): about 4 n
 * floats of memory traffic per rank, no fragments, no progress engine.
 *
 * Layout: the window holds two sets (used on alternate steps) of world segments of n floats;
 * rank r owns segment r of each set.  Step parity p: rank r writes set p segment r (its
 * gradients), barrier, sums slice r over set p's segments into its grads and into set p
 * segment r slice r, barrier, copies slice s from set p segment s for every s != r.  A rank
 * writes set p again only two steps later, after a barrier the others reach only once they
 * have finished reading set p: no third barrier.
 *
 * Results: every element is summed once, in rank order, by its owner, and copied: the same
 * bits on every rank, and for two ranks the same bits as MPI's a + b.  Then / world, as on
 * the MPI path. */
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

struct comm_shm_grads {
    MPI_Win win;
    float *set[2];          /* [world * n] each: set p, segment s at set[p] + s * n */
    int parity;
};

/* Slice s of n over world ranks: [lo, hi). */
static void slice(int64_t n, int world, int s, int64_t *lo, int64_t *hi) {
    *lo = n * s / world;
    *hi = n * (s + 1) / world;
}

void comm_shm_grads_close(comm *c) {
    if (!c->shm) return;
    MPI_Win_unlock_all(c->shm->win);
    MPI_Win_free(&c->shm->win);
    free(c->shm);
    c->shm = NULL;
}

int comm_grads_use_node_memory(comm *c, size_t max_bytes, char *err, size_t errlen) {
    if (c->grads_on_device || c->world_size < 2 || c->local_size != c->world_size || c->grads_n == 0)
        return 0;
    /* errors return -1 (comm_error and comm_mpi_error return 1), as comm.h says */
    if (c->started > c->completed)
        return -comm_error(err, errlen, "comm_grads_use_node_memory: buckets in flight");
    comm_shm_grads_close(c);
    comm_hier_grads_close(c);
    size_t bytes = 2 * (size_t)c->world_size * (size_t)c->grads_n * sizeof(float);
    if (bytes > max_bytes) return 0;
    struct comm_shm_grads *s = calloc(1, sizeof *s);
    if (!s) return -comm_error(err, errlen, "comm_grads_use_node_memory: out of memory");
    /* all of it from rank 0's allocation (contiguous); the others ask for none */
    float *base = NULL;
    int rc = MPI_Win_allocate_shared(c->rank == 0 ? (MPI_Aint)bytes : 0, sizeof(float),
                                     MPI_INFO_NULL, c->world, &base, &s->win);
    if (rc != MPI_SUCCESS) {
        free(s);
        return -comm_mpi_error(c, rc, "MPI_Win_allocate_shared (gradients)", err, errlen);
    }
    MPI_Aint size;
    int disp;
    rc = MPI_Win_shared_query(s->win, 0, &size, &disp, &base);
    if (rc != MPI_SUCCESS || !base) {
        MPI_Win_free(&s->win);
        free(s);
        return -comm_mpi_error(c, rc, "MPI_Win_shared_query (gradients)", err, errlen);
    }
    s->set[0] = base;
    s->set[1] = base + (size_t)c->world_size * (size_t)c->grads_n;
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    c->shm = s;
    return 1;
}

/* Backward has finished bucket b: into this rank's segment of this step's set. */
void comm_shm_grads_bucket(comm *c, int64_t start, int64_t count) {
    float *mine = c->shm->set[c->shm->parity] + (size_t)c->rank * (size_t)c->grads_n;
    memcpy(mine + start, c->grads + start, (size_t)count * sizeof(float));
}

/* Every rank's stores to the window are visible to every other rank after this. */
static int sync_all(comm *c, char *err, size_t errlen) {
    MPI_Win_sync(c->shm->win);
    int rc = MPI_Barrier(c->world);
    MPI_Win_sync(c->shm->win);
    return rc == MPI_SUCCESS ? 0 : comm_mpi_error(c, rc, "MPI_Barrier (gradients)", err, errlen);
}

/* All buckets are in the segments: reduce-scatter, all-gather, average.  0 or an error. */
int comm_shm_grads_finish(comm *c, char *err, size_t errlen) {
    const int W = c->world_size;
    const int64_t n = c->grads_n;
    float *set = c->shm->set[c->shm->parity];
    c->shm->parity ^= 1;
    if (sync_all(c, err, errlen)) return 1;
    int64_t lo, hi;
    slice(n, W, c->rank, &lo, &hi);
    const float world = (float)W;
    float *g = c->grads, *mine = set + (size_t)c->rank * (size_t)n;
    /* in blocks, so that each block of the W segments is read once while it is in cache */
    for (int64_t b = lo; b < hi; b += 4096) {
        int64_t e = b + 4096 < hi ? b + 4096 : hi;
        for (int64_t i = b; i < e; i++) g[i] = set[i];
        for (int s = 1; s < W; s++) {
            const float *seg = set + (size_t)s * (size_t)n;
            for (int64_t i = b; i < e; i++) g[i] += seg[i];
        }
        for (int64_t i = b; i < e; i++) mine[i] = g[i] = g[i] / world;
    }
    if (sync_all(c, err, errlen)) return 1;
    for (int s = 0; s < W; s++) {
        if (s == c->rank) continue;
        slice(n, W, s, &lo, &hi);
        memcpy(g + lo, set + (size_t)s * (size_t)n + lo, (size_t)(hi - lo) * sizeof(float));
    }
    return 0;
}
