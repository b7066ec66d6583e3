/* comm_init when the program already initialised MPI itself.
 *   test_comm_preinit funneled : MPI_Init_thread(FUNNELED) first; comm must work, and
 *                                comm_finalize must leave MPI to its owner.
 *   test_comm_preinit single   : MPI_Init_thread(SINGLE) first; comm_init must refuse,
 *                                naming MPI_THREAD_FUNNELED (skipped, 77, if MPI gives more).
 * Plain checks, no cmocka: every rank exits non-zero on a failure. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
            failed = 1;                                                                   \
        }                                                                                 \
    } while (0)

int main(int argc, char **argv) {
    int single = argc > 1 && strcmp(argv[1], "single") == 0;
    int provided = 0, failed = 0;
    MPI_Init_thread(&argc, &argv, single ? MPI_THREAD_SINGLE : MPI_THREAD_FUNNELED, &provided);

    comm *c = NULL;
    char err[256] = "";
    int rc = comm_init(&argc, &argv, &c, err, sizeof err);
    if (single && provided >= MPI_THREAD_FUNNELED) {
        /* This MPI upgrades SINGLE; nothing to test. */
        if (rc == 0) comm_finalize(c);
        MPI_Finalize();
        return 77;
    }
    if (single) {
        CHECK(rc != 0);
        CHECK(c == NULL);
        CHECK(strstr(err, "MPI_THREAD_FUNNELED") != NULL);
    } else {
        CHECK(rc == 0);
        if (rc == 0) {
            int world = 0;
            MPI_Comm_size(MPI_COMM_WORLD, &world);
            CHECK(comm_world(c) == world);
            int32_t x = comm_rank(c);
            CHECK(comm_allreduce_max_i32(c, &x, 1, err, sizeof err) == 0);
            CHECK(x == world - 1);
            comm_finalize(c);
            int finalized = 1;
            MPI_Finalized(&finalized);
            CHECK(!finalized);  /* we initialised MPI, so we finalise it */
        }
    }
    /* Combine results so the job fails when any rank failed. */
    int any = failed;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
