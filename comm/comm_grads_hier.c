/* Hierarchical gradient averaging for jobs across nodes: shared memory inside each node, MPI
 * between the nodes.
 *
 * Why: the plain path all-reduces every bucket over all W ranks with MPI; on N nodes of L ranks
 * each, the ranks of a node then send and receive their own copies over the node's one link,
 * and the local hops go through MPI's shared-memory FIFOs in fragments.  Here the L ranks of a
 * node first sum through memory (comm_grads_shm.c's scheme, per node), and each local rank
 * sends only its 1/L slice of the node's sum across the network, to the ranks with the same
 * local rank on the other nodes.
 *
 * Applies when every node holds the same number L >= 2 of ranks (N = W / L > 1 nodes), the
 * buffer is host fp32 and not sharded (ZeRO-1 and bf16 on the wire keep the plain path).
 * Communicators: `local`, the node (MPI_Comm_split_type SHARED), and `cross`, the N ranks that
 * have this rank's local rank, one per node (MPI_Comm_split by local rank).
 *
 * Layout: an MPI-3 shared window per node holds two sets (alternate steps) of L segments of n
 * floats; local rank l owns segment l of each.  Step parity p, local rank l:
 *   backward: each finished bucket is copied into set p segment l;
 *   wait:     node barrier; l sums its slice [n l / L, n (l+1) / L) over the L segments in
 *             local-rank order (the node's reduce-scatter), MPI_Allreduce of the slice over
 *             `cross` (n / L floats per rank cross the network, n per node, each way), / W into
 *             grads and into set p segment l; node barrier; copies the other L - 1 slices from
 *             their owners' segments (the node's all-gather).
 * A rank writes set p again two steps later, after the first barrier of the next step, which
 * its node's ranks reach only once they have read set p: no third barrier (as in
 * comm_grads_shm.c).
 *
 * Results: each element is summed once per node by one owner, in local-rank order, then by one
 * MPI_Allreduce whose result is the same on every member of `cross` (2 nodes: a + b == b + a;
 * Open MPI's algorithms reduce each piece once and distribute it), then copied: the same bits
 * on every rank.  Not the same bits as the plain path (another order of the sums): within
 * rounding. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

struct comm_hier_grads {
    MPI_Comm local, cross;
    MPI_Win win;
    float *set[2];          /* [L * n] each: set p, segment s at set[p] + s * n */
    int parity;
    int nodes;              /* N, the size of cross */
};

/* Slice s of n over L local ranks: [lo, hi). */
static void slice(int64_t n, int L, int s, int64_t *lo, int64_t *hi) {
    *lo = n * s / L;
    *hi = n * (s + 1) / L;
}

static void free_comms(struct comm_hier_grads *h) {
    if (h->cross != MPI_COMM_NULL) MPI_Comm_free(&h->cross);
    if (h->local != MPI_COMM_NULL) MPI_Comm_free(&h->local);
}

void comm_hier_grads_close(comm *c) {
    if (!c->hier) return;
    MPI_Win_unlock_all(c->hier->win);
    MPI_Win_free(&c->hier->win);
    free_comms(c->hier);
    free(c->hier);
    c->hier = NULL;
}

int comm_grads_hier_nodes(const comm *c) { return c->hier ? c->hier->nodes : 0; }

/* Collective: the node and cross communicators and the node's window of 2 L n floats. */
static int open_hier(comm *c, struct comm_hier_grads *h, size_t bytes, char *err, size_t errlen) {
    h->local = h->cross = MPI_COMM_NULL;
    int rc = MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &h->local);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split(c->world, c->local_rank, c->rank, &h->cross);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(h->cross, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(h->local, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(h->cross, &h->nodes);
    if (rc != MPI_SUCCESS) {
        free_comms(h);
        return comm_mpi_error(c, rc, "MPI_Comm_split (hierarchical gradients)", err, errlen);
    }
    /* all of it from the node leader's allocation (contiguous); the others ask for none */
    float *base = NULL;
    rc = MPI_Win_allocate_shared(c->local_rank == 0 ? (MPI_Aint)bytes : 0, sizeof(float),
                                 MPI_INFO_NULL, h->local, &base, &h->win);
    if (rc != MPI_SUCCESS) {
        free_comms(h);
        return comm_mpi_error(c, rc, "MPI_Win_allocate_shared (hierarchical gradients)", err, errlen);
    }
    MPI_Aint size;
    int disp;
    rc = MPI_Win_shared_query(h->win, 0, &size, &disp, &base);
    if (rc != MPI_SUCCESS || !base) {
        MPI_Win_free(&h->win);
        free_comms(h);
        return comm_mpi_error(c, rc, "MPI_Win_shared_query (hierarchical gradients)", err, errlen);
    }
    h->set[0] = base;
    h->set[1] = base + (size_t)c->local_size * (size_t)c->grads_n;
    MPI_Win_lock_all(MPI_MODE_NOCHECK, h->win);
    return 0;
}

int comm_grads_use_hierarchy(comm *c, size_t max_bytes, char *why, size_t whylen, char *err,
                             size_t errlen) {
    if (why && whylen) why[0] = '\0';
    if (c->grads_on_device || c->world_size < 2 || c->grads_n == 0) return 0;
    if (c->local_size == c->world_size) {
        comm_error(why, whylen, "every rank is on one node");
        return 0;
    }
    if (c->shard || c->grad_dtype != COMM_GRAD_FP32) {
        comm_error(why, whylen, "not with a sharded exchange (zero_stage 1) or bf16 gradients");
        return 0;
    }
    if (c->started > c->completed || c->gather_buf) {
        comm_error(err, errlen, "comm_grads_use_hierarchy: collectives in flight");
        return -1;
    }
    /* every rank takes the same decision: the smallest and largest node */
    int sizes[2] = {c->local_size, -c->local_size};
    int rc = MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS) {
        comm_mpi_error(c, rc, "MPI_Allreduce (ranks per node)", err, errlen);
        return -1;
    }
    if (sizes[0] != -sizes[1] || sizes[0] < 2) {
        comm_error(why, whylen, "needs the same number (2 or more) of ranks on every node; "
                   "they hold %d to %d", sizes[0], -sizes[1]);
        return 0;
    }
    size_t bytes = 2 * (size_t)c->local_size * (size_t)c->grads_n * sizeof(float);
    if (bytes > max_bytes) {
        comm_error(why, whylen, "its window (%zu MiB per node) is over the limit of %zu MiB",
                   bytes >> 20, max_bytes >> 20);
        return 0;
    }
    comm_hier_grads_close(c);
    comm_shm_grads_close(c);
    struct comm_hier_grads *h = calloc(1, sizeof *h);
    int ok = h != NULL;   /* agree before any collective, so that no rank waits alone */
    rc = MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS || !ok) {
        free(h);
        if (rc != MPI_SUCCESS) comm_mpi_error(c, rc, "MPI_Allreduce (hierarchical gradients)", err, errlen);
        else comm_error(err, errlen, "comm_grads_use_hierarchy: out of memory");
        return -1;
    }
    if (open_hier(c, h, bytes, err, errlen)) {
        free(h);
        return -1;
    }
    c->hier = h;
    return 1;
}

/* Backward has finished a bucket: into this rank's segment of this step's set. */
void comm_hier_grads_bucket(comm *c, int64_t start, int64_t count) {
    float *mine = c->hier->set[c->hier->parity] + (size_t)c->local_rank * (size_t)c->grads_n;
    memcpy(mine + start, c->grads + start, (size_t)count * sizeof(float));
}

/* Every local rank's stores to the window are visible to the others after this. */
static int sync_node(comm *c, char *err, size_t errlen) {
    MPI_Win_sync(c->hier->win);
    int rc = MPI_Barrier(c->hier->local);
    MPI_Win_sync(c->hier->win);
    return rc == MPI_SUCCESS ? 0 : comm_mpi_error(c, rc, "MPI_Barrier (node, gradients)", err, errlen);
}

/* All buckets are in the segments: node reduce-scatter, all-reduce across nodes, node
 * all-gather, average.  0 or 1 with err. */
int comm_hier_grads_finish(comm *c, char *err, size_t errlen) {
    struct comm_hier_grads *h = c->hier;
    const int L = c->local_size, l = c->local_rank;
    const int64_t n = c->grads_n;
    float *set = h->set[h->parity];
    h->parity ^= 1;
    if (sync_node(c, err, errlen)) return 1;
    int64_t lo, hi;
    slice(n, L, l, &lo, &hi);
    float *g = c->grads, *mine = set + (size_t)l * (size_t)n;
    /* in blocks, so that each block of the L segments is read once while it is in cache */
    for (int64_t b = lo; b < hi; b += 4096) {
        int64_t e = b + 4096 < hi ? b + 4096 : hi;
        for (int64_t i = b; i < e; i++) g[i] = set[i];
        for (int s = 1; s < L; s++) {
            const float *seg = set + (size_t)s * (size_t)n;
            for (int64_t i = b; i < e; i++) g[i] += seg[i];
        }
    }
    /* the node's sums of this slice, across the nodes; int counts, so in INT_MAX pieces */
    for (int64_t at = lo; at < hi;) {
        int count = hi - at < INT_MAX ? (int)(hi - at) : INT_MAX;
        int rc = MPI_Allreduce(MPI_IN_PLACE, g + at, count, MPI_FLOAT, MPI_SUM, h->cross);
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Allreduce (gradients across nodes)", err, errlen);
        at += count;
    }
    const float world = (float)c->world_size;   /* divide, as the other paths do */
    for (int64_t i = lo; i < hi; i++) mine[i] = g[i] = g[i] / world;
    if (sync_node(c, err, errlen)) return 1;
    for (int s = 0; s < L; s++) {
        if (s == l) continue;
        slice(n, L, s, &lo, &hi);
        memcpy(g + lo, set + (size_t)s * (size_t)n + lo, (size_t)(hi - lo) * sizeof(float));
    }
    return 0;
}
