/* The gradient exchange alone, as nccl-tests times a collective: plain MPI against
 * hierarchical averaging (comm_grads_use_hierarchy) on the same ranks, the same buffer and
 * buckets, alternating in rounds so that a busy machine slows both alike.  Each step: a
 * barrier, then comm_grads_ready(0) + comm_grads_wait timed; the step's time is the slowest
 * rank's.  Prints, per mode, the median step time and its bus bandwidth 2 (W-1)/W x bytes / time.
 * Run across nodes (tests/cluster/bench_hier.sh), where the hierarchy applies:
 *   mpirun ... bench_exchange FLOATS [ROUNDS] [STEPS] [BUCKET_KB] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    char err[512];
    comm *c;
    if (comm_init(&argc, &argv, &c, err, sizeof err) != 0) comm_abort(NULL, 1, err);
    if (argc < 2) comm_abort(c, 1, "usage: bench_exchange FLOATS [ROUNDS] [STEPS] [BUCKET_KB]");
    long long n = atoll(argv[1]);
    int rounds = argc > 2 ? atoi(argv[2]) : 5, steps = argc > 3 ? atoi(argv[3]) : 20;
    size_t bucket = (size_t)(argc > 4 ? atoll(argv[4]) : 1024) * 1024;
    if (n < 1 || rounds < 1 || steps < 1) comm_abort(c, 1, "bench_exchange: bad arguments");
    int rank = comm_rank(c), world = comm_world(c);
    float *g = malloc((size_t)n * sizeof *g);
    double *t[2] = {malloc((size_t)rounds * steps * sizeof(double)),
                    malloc((size_t)rounds * steps * sizeof(double))};
    if (!g || !t[0] || !t[1]) comm_abort(c, 1, "bench_exchange: out of memory");
    for (int round = 0; round < rounds; round++) {
        for (int mode = 0; mode < 2; mode++) {   /* 0 plain MPI, 1 hierarchical */
            if (comm_grads_register(c, g, n, bucket, err, sizeof err) != 0) comm_abort(c, 1, err);
            char why[256] = "";
            if (mode == 1 && comm_grads_use_hierarchy(c, (size_t)1 << 31, why, sizeof why, err,
                                                      sizeof err) != 1)
                comm_abort(c, 1, why[0] ? why : err);
            for (int s = -2; s < steps; s++) {   /* two warm-up steps */
                for (long long i = 0; i < n; i++) g[i] = (float)((rank + 1) * (i % 7));
                if (comm_barrier(c, err, sizeof err) != 0) comm_abort(c, 1, err);
                double t0 = now();
                if (comm_grads_ready(c, 0, err, sizeof err) != 0 ||
                    comm_grads_wait(c, err, sizeof err) != 0)
                    comm_abort(c, 1, err);
                double dt = now() - t0;
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                if (s >= 0) t[mode][round * steps + s] = dt;
            }
        }
    }
    if (rank == 0) {
        double bytes = 4.0 * (double)n, bus = 2.0 * (world - 1) / world * bytes;
        for (int mode = 0; mode < 2; mode++) {
            qsort(t[mode], (size_t)rounds * steps, sizeof(double), cmp_double);
            double med = t[mode][rounds * steps / 2];
            printf("exchange of %.2f MB over %d ranks on %d nodes, %-12s: median %.3f ms "
                   "(%d steps), bus bandwidth %.3g GB/s\n", bytes / 1e6, world,
                   world / comm_local_size(c), mode ? "hierarchical" : "plain MPI", med * 1e3,
                   rounds * steps, bus / med * 1e-9);
        }
    }
    free(g), free(t[0]), free(t[1]);
    comm_finalize(c);
    return 0;
}
