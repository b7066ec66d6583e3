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
 * This file decides and builds the two communicators; the exchange itself is comm_grads_shm.c's
 * (the one-node scheme run on each node's window, with the all-reduce across nodes between
 * the node's reduce-scatter and its all-gather):
 *   backward: each finished bucket is copied into local rank l's segment of the node window;
 *   wait:     node barrier; l sums its slice [n l / L, n (l+1) / L) over the L segments in
 *             local-rank order, MPI_Allreduce of the slice over `cross` (n / L floats per rank
 *             cross the network, n per node, each way), / W; node barrier; copies the other
 *             L - 1 slices from their owners' segments.
 *
 * Results: each element is summed once per node by one owner, in local-rank order, then by one
 * MPI_Allreduce whose result is the same on every member of `cross` (2 nodes: a + b == b + a;
 * Open MPI's algorithms reduce each piece once and distribute it), then copied: the same bits
 * on every rank.  Not the same bits as the plain path (another order of the sums): within
 * rounding. */
#include "comm_internal.h"

int comm_grads_hier_nodes(const comm *c) {
    return c->shm && c->shm->cross != MPI_COMM_NULL ? c->shm->nodes : 0;
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
    if (c->shm && c->shm->adopted) {
        comm_error(err, errlen, "comm_grads_use_hierarchy: the gradients are in the window "
                   "(comm_grads_node_buffer); register a buffer again first");
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
    size_t room;
    if (comm_shm_window_room(c, &room, err, errlen)) return -1;
    int64_t chunk = comm_shm_chunk(c->grads_n, c->local_size, max_bytes, room);
    if (chunk < 0) {
        comm_error(why, whylen, "a window of %zu KiB per node (comm.window_mb, or half the free "
                   "space of /dev/shm) is too small for %d ranks",
                   (max_bytes < room ? max_bytes : room) >> 10, c->local_size);
        return 0;
    }
    comm_shm_grads_close(c);
    /* the node (its ranks in rank order) and the ranks of this local rank, one per node */
    MPI_Comm node = MPI_COMM_NULL, cross = MPI_COMM_NULL;
    rc = MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split(c->world, c->local_rank, c->rank, &cross);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(cross, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        if (cross != MPI_COMM_NULL) MPI_Comm_free(&cross);
        if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
        comm_mpi_error(c, rc, "MPI_Comm_split (hierarchical gradients)", err, errlen);
        return -1;
    }
    return comm_shm_grads_open(c, node, cross, chunk, err, errlen) ? -1 : 1;
}
