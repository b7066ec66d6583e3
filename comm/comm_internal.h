/* comm internals shared by the comm_*.c files.  Not part of the public API. */
#ifndef HARNESS_COMM_INTERNAL_H
#define HARNESS_COMM_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "comm_buckets.h"

struct comm {
    MPI_Comm world;         /* our dup of MPI_COMM_WORLD, with MPI_ERRORS_RETURN */
    int rank, world_size;
    int local_rank, local_size;
    int owns_mpi;           /* we called MPI_Init_thread, so we call MPI_Finalize */
    uint64_t sequence;      /* collectives issued so far (one per call, one per bucket) */

    /* Gradient all-reduce state, sized once in comm_grads_register. */
    float *grads;           /* [grads_n], the caller's buffer */
    int64_t grads_n;
    comm_bucket *buckets;   /* [num_buckets], bucket 0 = the END of the buffer */
    MPI_Request *requests;  /* [num_buckets] */
    int64_t num_buckets;
    int64_t started;        /* buckets 0..started-1 have been started this step */
    int64_t completed;      /* buckets 0..completed-1 are known to be finished */
    double wait_seconds;    /* blocked in comm_grads_wait since last read */
};

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

#endif
