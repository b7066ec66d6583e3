/* comm bootstrap: MPI_Init_thread, our own communicator, ranks, the node's shared state,
 * finalize and abort. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm_internal.h"

int comm_error(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return 1;
}

int comm_mpi_error(const comm *c, int rc, const char *what, char *err, size_t errlen) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", rc);
    if (c) return comm_error(err, errlen, "%s failed (collective #%llu): %s", what,
                             (unsigned long long)c->sequence, text);
    return comm_error(err, errlen, "%s failed: %s", what, text);
}

/* Works whether or not MPI is already initialised: if the program called MPI_Init(_thread)
 * itself, we only check the thread level and leave MPI_Finalize to it. */
int comm_init(int *argc, char ***argv, comm **out, char *err, size_t errlen) {
    if (!out) return comm_error(err, errlen, "comm_init: out is NULL");
    *out = NULL;

    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) return comm_error(err, errlen, "comm_init: MPI has already been finalized");

    int owns_mpi = 0, provided = 0, rc;
    if (!initialized) {
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return comm_mpi_error(NULL, rc, "MPI_Init_thread", err, errlen);
        owns_mpi = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_FUNNELED)
        return comm_error(err, errlen, "comm_init: MPI provides thread level %d, need "
                          "MPI_THREAD_FUNNELED (%d)", provided, MPI_THREAD_FUNNELED);

    comm *c = calloc(1, sizeof *c);
    if (!c) return comm_error(err, errlen, "comm_init: out of memory");
    c->owns_mpi = owns_mpi;
    c->world = MPI_COMM_NULL;
    c->check = MPI_COMM_NULL;
    c->grads_world = MPI_COMM_NULL;
    comm_watchdog_init(c);

    /* A private communicator: our collectives never match someone else's, and MPI errors on it
     * come back as return codes instead of killing the job. */
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
    if (rc != MPI_SUCCESS) { comm_mpi_error(NULL, rc, "MPI_Comm_dup", err, errlen); goto fail; }
    rc = MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) { comm_mpi_error(NULL, rc, "MPI_Comm_set_errhandler", err, errlen); goto fail; }
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->world_size);

    MPI_Comm local = MPI_COMM_NULL;
    rc = MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) { comm_mpi_error(NULL, rc, "MPI_Comm_split_type", err, errlen); goto fail; }
    MPI_Comm_rank(local, &c->local_rank);
    MPI_Comm_size(local, &c->local_size);
    comm_state_open(c, local);
    MPI_Comm_free(&local);

    *out = c;
    return 0;

fail:
    /* MPI stays initialised: the caller reports the error and ends with comm_abort(NULL, ...). */
    if (c->world != MPI_COMM_NULL) MPI_Comm_free(&c->world);
    comm_watchdog_destroy(c);
    free(c);
    return 1;
}

/* Buckets still in flight after a comm_grads_* error are not waited for (ranks may be out of
 * step and waiting could hang); after such an error the caller should use comm_abort.
 * The slot says FINALIZED first, so that local watchdogs take this rank's exit for what it is. */
void comm_finalize(comm *c) {
    if (!c) return;
    comm_state_set(c, COMM_SLOT_FINALIZED);
    comm_heartbeat_shutdown(c); /* before the watchdog: it may end this node through it */
    comm_watchdog_shutdown(c);
    comm_gpu_destroy(c);        /* NCCL, stream, events, mirror, grads_world; no-op without */
    comm_zero_free(c);          /* shard buffers and the bf16 MPI op (before MPI_Finalize) */
    int finalized = 0;
    MPI_Finalized(&finalized);  /* a program that owns MPI may have finalised it already */
    if (!finalized) comm_shm_grads_close(c);   /* the gradient window(s), communicators */
    if (!finalized && c->check != MPI_COMM_NULL) MPI_Comm_free(&c->check);
    if (!finalized && c->world != MPI_COMM_NULL) MPI_Comm_free(&c->world);
    if (!finalized && c->owns_mpi) MPI_Finalize();
    comm_state_close(c);
    comm_watchdog_destroy(c);
    free(c->buckets);
    free(c->requests);
    free(c->gather_done);
    free(c->bucket_t0);
    free(c->bucket_t1);
    free(c);
}

int comm_rank(const comm *c) { return c->rank; }
int comm_world(const comm *c) { return c->world_size; }
int comm_local_rank(const comm *c) { return c->local_rank; }
int comm_local_size(const comm *c) { return c->local_size; }
uint64_t comm_sequence(const comm *c) { return c->sequence; }

/* c may be NULL (e.g. comm_init failed): the rank then comes from MPI_COMM_WORLD if MPI is up. */
void comm_abort(comm *c, int code, const char *message) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    int mpi_up = initialized && !finalized;

    int rank = -1;
    if (c) rank = c->rank;
    else if (mpi_up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    comm_state_set(c, COMM_SLOT_ABORTING);   /* local watchdogs: this exit is not a lost rank */

    fflush(stdout);
    if (rank >= 0) fprintf(stderr, "harness: rank %d: %s\n", rank, message ? message : "aborting");
    else fprintf(stderr, "harness: %s\n", message ? message : "aborting");
    fflush(stderr);

    if (mpi_up) MPI_Abort(MPI_COMM_WORLD, code);
    _Exit(code != 0 ? code : 1);  /* MPI_Abort does not return; this is for MPI being down */
}
