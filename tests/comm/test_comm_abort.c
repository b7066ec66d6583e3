/* The abort path: rank 1 calls comm_abort after a barrier while the other ranks block in a
 * barrier and then an allreduce that can never complete.  Run by test_comm_abort.sh, which
 * checks that the whole job ends quickly, non-zero, with rank 1's message. */
#include <stdio.h>

#include "comm.h"

int main(int argc, char **argv) {
    comm *c = NULL;
    char err[256];
    if (comm_init(&argc, &argv, &c, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 2;
    }
    if (comm_barrier(c, err, sizeof err) != 0) comm_abort(c, 2, err);
    if (comm_rank(c) == 1) comm_abort(c, 3, "simulated failure");

    if (comm_barrier(c, err, sizeof err) != 0) comm_abort(c, 2, err);
    double x = 1.0;
    if (comm_allreduce_sum_f64(c, &x, 1, err, sizeof err) != 0) comm_abort(c, 2, err);
    fprintf(stderr, "rank %d: got past a collective that rank 1 never joined\n", comm_rank(c));
    comm_finalize(c);
    return 0;
}
