/* comm_fingerprint: the debug check that every rank issues the same collective.
 *
 * Ranks that disagree on a collective (one reduces 3 values, the others 4; one skips a
 * broadcast; two roots) usually hang silently or corrupt data.  With checking on, before each
 * collective every rank hashes its fingerprint (seq, op, type, count, root) and one all-reduce
 * MAX of (h, ~h) on a private communicator gives max and min of the hashes everywhere.  Equal:
 * go ahead.  Otherwise an all-gather of the fingerprints lets every rank name the first rank
 * that disagrees with rank 0, identically, and every rank skips the real collective, so the job
 * stays consistent and can report the error and end cleanly.  The check has the same shape on
 * every rank whatever the collectives are, so it always matches up: its k-th call on one rank
 * meets the k-th call on every other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

static uint64_t fingerprint_hash(const comm_fingerprint *fp) {
    uint64_t h = 0x6861726e657373ull;
    h = mix(h, fp->seq);
    h = mix(h, (uint64_t)(uint32_t)fp->op);
    h = mix(h, (uint64_t)(uint32_t)fp->type);
    h = mix(h, (uint64_t)fp->count);
    return mix(h, (uint64_t)(uint32_t)fp->root);
}

int comm_fingerprint_compare(comm *c, const comm_fingerprint *fp, char *err, size_t errlen) {
    uint64_t h = fingerprint_hash(fp);
    uint64_t v[2] = {h, ~h};
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, c->check);
    if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "fingerprint check (MPI_Allreduce)", err, errlen);
    if (v[0] == ~v[1]) return 0;   /* max == min: every rank issues the same collective */

    int64_t mine[5] = {(int64_t)fp->seq, fp->op, fp->type, fp->count, fp->root};
    int64_t *all = malloc((size_t)c->world_size * sizeof mine);
    if (!all) return comm_error(err, errlen, "collective fingerprints differ across ranks at "
                                "collective #%llu (out of memory to say how)",
                                (unsigned long long)fp->seq);
    rc = MPI_Allgather(mine, 5, MPI_INT64_T, all, 5, MPI_INT64_T, c->check);
    if (rc != MPI_SUCCESS) {
        free(all);
        return comm_mpi_error(c, rc, "fingerprint check (MPI_Allgather)", err, errlen);
    }
    int first = 1;
    while (first < c->world_size && memcmp(all + 5 * first, all, sizeof mine) == 0) first++;
    if (first == c->world_size) first = 1;   /* unreachable unless the hash lies */
    comm_fingerprint a = {(uint64_t)all[0], (int32_t)all[1], (int32_t)all[2], all[3], (int32_t)all[4]};
    comm_fingerprint b = {(uint64_t)all[5 * first], (int32_t)all[5 * first + 1],
                          (int32_t)all[5 * first + 2], all[5 * first + 3], (int32_t)all[5 * first + 4]};
    free(all);
    char ta[160], tb[160];
    comm_fingerprint_text(&a, ta, sizeof ta);
    comm_fingerprint_text(&b, tb, sizeof tb);
    return comm_error(err, errlen, "collective mismatch: rank 0 calls %s but rank %d calls %s "
                      "(ranks must issue the same collectives in the same order; the collective "
                      "was skipped on every rank)", ta, first, tb);
}

int comm_check_fingerprints(comm *c, int on, char *err, size_t errlen) {
    on = on != 0;
    /* Agree first: a rank that checks while another does not would wait forever. */
    int rc = comm_collective_begin(c, COMM_OP_CHECK_FINGERPRINTS, COMM_TYPE_INT, 1, 0, err, errlen);
    int v[2] = {on, !on};
    if (rc == 0) {
        int mpi = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, c->world);
        if (mpi != MPI_SUCCESS) rc = comm_mpi_error(c, mpi, "comm_check_fingerprints", err, errlen);
        else if (v[0] && v[1])
            rc = comm_error(err, errlen, "comm_check_fingerprints: ranks disagree (some turn "
                            "checking on, others off); left %s", c->check_fingerprints ? "on" : "off");
    }
    if (rc == 0 && on && c->check == MPI_COMM_NULL) {
        int mpi = MPI_Comm_dup(c->world, &c->check);
        if (mpi == MPI_SUCCESS) mpi = MPI_Comm_set_errhandler(c->check, MPI_ERRORS_RETURN);
        if (mpi != MPI_SUCCESS) rc = comm_mpi_error(c, mpi, "comm_check_fingerprints (MPI_Comm_dup)", err, errlen);
    }
    if (rc == 0) c->check_fingerprints = on;
    comm_collective_end(c);
    return rc;
}
