/* Blocking collectives on host memory: barrier, broadcast, metric reductions, error agreement.
 * Each public call is one collective and increments the sequence counter once, whatever
 * number of MPI calls it makes underneath. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "comm_internal.h"

/* comm_agree sends the failing rank's message as a fixed-size block, so every rank knows the
 * length without a second round. */
#define COMM_AGREE_MESSAGE_BYTES 1024

/* MPI counts are int: broadcast large buffers in chunks of 1 GiB. */
#define COMM_BROADCAST_CHUNK_BYTES ((size_t)1 << 30)

int comm_barrier(comm *c, char *err, size_t errlen) {
    int status = comm_collective_begin(c, COMM_OP_BARRIER, COMM_TYPE_NONE, 0, 0, err, errlen);
    if (status == 0) {
        int rc = MPI_Barrier(c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Barrier", err, errlen);
    }
    comm_collective_end(c);
    return status;
}

int comm_broadcast(comm *c, void *buf, size_t bytes, int root, char *err, size_t errlen) {
    return comm_broadcast_chunked(c, buf, bytes, root, COMM_BROADCAST_CHUNK_BYTES, err, errlen);
}

int comm_broadcast_chunked(comm *c, void *buf, size_t bytes, int root, size_t chunk_bytes,
                           char *err, size_t errlen) {
    if (root < 0 || root >= c->world_size)
        return comm_error(err, errlen, "comm_broadcast: root %d is not a rank (world %d)", root,
                          c->world_size);
    if (bytes > 0 && !buf) return comm_error(err, errlen, "comm_broadcast: buffer is NULL");
    if (chunk_bytes == 0 || chunk_bytes > INT_MAX) chunk_bytes = COMM_BROADCAST_CHUNK_BYTES;
    int status = comm_collective_begin(c, COMM_OP_BROADCAST, COMM_TYPE_BYTE, (int64_t)bytes, root,
                                       err, errlen);
    char *p = buf;
    for (size_t done = 0; status == 0 && done < bytes; done += chunk_bytes) {
        size_t left = bytes - done;
        int n = (int)(left < chunk_bytes ? left : chunk_bytes);
        int rc = MPI_Bcast(p + done, n, MPI_BYTE, root, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, "MPI_Bcast", err, errlen);
    }
    comm_collective_end(c);
    return status;
}

static int allreduce_in_place(comm *c, void *x, int n, MPI_Datatype type, MPI_Op op,
                              comm_op what, comm_type wtype, char *err, size_t errlen) {
    const char *name = comm_op_name(what);
    if (n < 0) return comm_error(err, errlen, "%s: negative count %d", name, n);
    if (n > 0 && !x) return comm_error(err, errlen, "%s: buffer is NULL", name);
    int status = comm_collective_begin(c, what, wtype, n, 0, err, errlen);
    if (status == 0) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, type, op, c->world);
        if (rc != MPI_SUCCESS) status = comm_mpi_error(c, rc, name, err, errlen);
    }
    comm_collective_end(c);
    return status;
}

int comm_allreduce_sum_f64(comm *c, double *x, int n, char *err, size_t errlen) {
    return allreduce_in_place(c, x, n, MPI_DOUBLE, MPI_SUM, COMM_OP_ALLREDUCE_SUM_F64,
                              COMM_TYPE_F64, err, errlen);
}

int comm_allreduce_sum_i64(comm *c, int64_t *x, int n, char *err, size_t errlen) {
    return allreduce_in_place(c, x, n, MPI_INT64_T, MPI_SUM, COMM_OP_ALLREDUCE_SUM_I64,
                              COMM_TYPE_I64, err, errlen);
}

int comm_allreduce_max_i32(comm *c, int32_t *x, int n, char *err, size_t errlen) {
    return allreduce_in_place(c, x, n, MPI_INT32_T, MPI_MAX, COMM_OP_ALLREDUCE_MAX_I32,
                              COMM_TYPE_I32, err, errlen);
}

/* Round 1: MIN over ranks of (failing ? rank : world) finds the lowest failing rank.
 * Round 2 (only when someone failed, so on every rank or none): that rank broadcasts its
 * message.  On a failing rank, err holds its message on entry.  If MPI itself fails here the
 * ranks can no longer agree; this rank then reports itself (rank + 1) with the MPI error. */
int comm_agree(comm *c, int local_status, char *err, size_t errlen) {
    char message[COMM_AGREE_MESSAGE_BYTES] = {0};
    if (local_status != 0) {
        if (err && errlen > 0 && err[0] != '\0') {
            size_t len = strnlen(err, errlen);
            if (len >= sizeof message) len = sizeof message - 1;
            memcpy(message, err, len);
        } else {
            snprintf(message, sizeof message, "rank %d failed with status %d", c->rank, local_status);
        }
    }

    /* A fingerprint mismatch (debug checking) is the same message on every rank: reported as
     * rank 0's, so that exactly one rank prints it. */
    if (comm_collective_begin(c, COMM_OP_AGREE, COMM_TYPE_INT, 1, 0, err, errlen) != 0) {
        comm_collective_end(c);
        return 1;
    }
    int mine = local_status != 0 ? c->rank : c->world_size, lowest = 0;
    int rc = MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS) {
        comm_collective_end(c);
        comm_mpi_error(c, rc, "comm_agree (MPI_Allreduce)", err, errlen);
        return c->rank + 1;
    }
    if (lowest >= c->world_size) {
        comm_collective_end(c);
        return 0;
    }

    rc = MPI_Bcast(message, sizeof message, MPI_CHAR, lowest, c->world);
    comm_collective_end(c);
    if (rc != MPI_SUCCESS) {
        comm_mpi_error(c, rc, "comm_agree (MPI_Bcast)", err, errlen);
        return c->rank + 1;
    }
    message[sizeof message - 1] = '\0';
    if (err && errlen > 0) snprintf(err, errlen, "%s", message);
    return lowest + 1;
}
