/* A small training-like loop for the watchdog tests, run by test_comm_watchdog.sh under mpirun.
 *
 *   test_comm_watchdog MODE TIMEOUT_S [VICTIM [TAG]]
 *
 * (TAG is ignored: the test script uses it to find this run's processes.)
 * Every rank starts the watchdog with TIMEOUT_S, then runs steps 1, 2, ...: comm_set_step, a
 * little "compute", a bucketed gradient all-reduce and a 4-value metrics all-reduce.  In step 5
 * rank VICTIM (default 1) misbehaves according to MODE:
 *   stall  sleeps for an hour inside the step (a hung data read, a deadlock)
 *   stop   stops itself with SIGSTOP
 *   kill   kills itself with SIGKILL (a crash, the OOM killer)
 *   exit   returns from main without comm_finalize (exit status 3)
 *   mismatch  with fingerprint checking on, VICTIM reduces 3 metrics instead of 4: every rank
 *          gets the error naming the mismatch and ends through comm_abort
 *   skip   VICTIM skips the metrics all-reduce (no checking): the ranks fall out of step
 *   allow  every rank calls comm_watchdog_allow(3 x TIMEOUT_S) and VICTIM then computes for
 *          2 x TIMEOUT_S: the job must not be ended; it finishes after step 8 and rank 0
 *          prints "watchdog test: 8 steps done"
 *   none   nothing; finishes after step 8
 * Faulty modes run "forever" (1000 steps): only the watchdog can end the others.
 * SIGTERM only sets a flag, as in the trainer (preemption): mpirun's SIGTERM to the survivors
 * of a lost rank then does not end them before their watchdog has reported. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

#define N_GRADS 1000

static volatile sig_atomic_t got_sigterm = 0;
static void on_sigterm(int sig) { got_sigterm = sig; }

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s stall|stop|kill|exit|mismatch|skip|allow|none TIMEOUT_S [VICTIM [TAG]]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    double timeout = atof(argv[2]);
    int victim = argc > 3 ? atoi(argv[3]) : 1;
    comm *c = NULL;
    char err[512];
    if (comm_init(&argc, &argv, &c, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 2;
    }
    int rank = comm_rank(c);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    if (comm_watchdog_start(c, timeout, err, sizeof err) != 0) comm_abort(c, 2, err);
    if (!strcmp(mode, "mismatch") && comm_check_fingerprints(c, 1, err, sizeof err) != 0)
        comm_abort(c, 2, err);

    static float grads[N_GRADS];
    if (comm_grads_register(c, grads, N_GRADS, 1024, err, sizeof err) != 0) comm_abort(c, 2, err);
    int finite = !strcmp(mode, "allow") || !strcmp(mode, "none");
    int64_t steps = finite ? 8 : 1000;
    for (int64_t step = 1; step <= steps; step++) {
        comm_set_step(c, step);
        if (step == 5 && !strcmp(mode, "allow")) comm_watchdog_allow(c, 3 * timeout);
        if (step == 5 && rank == victim) {
            if (!strcmp(mode, "stall")) sleep_s(3600);
            if (!strcmp(mode, "stop")) raise(SIGSTOP);
            if (!strcmp(mode, "kill")) raise(SIGKILL);
            if (!strcmp(mode, "exit")) return 3;
            if (!strcmp(mode, "allow")) sleep_s(2 * timeout);
        }
        sleep_s(0.01);
        for (int i = 0; i < N_GRADS; i++) grads[i] = (float)(rank + i);
        if (comm_grads_ready(c, N_GRADS / 2, err, sizeof err) != 0 ||
            comm_grads_wait(c, err, sizeof err) != 0)
            comm_abort(c, 2, err);
        double metrics[4] = {1, 2, 3, (double)step};
        int n = 4, fault = step == 5 && rank == victim;
        if (fault && !strcmp(mode, "mismatch")) n = 3;
        if (fault && !strcmp(mode, "skip")) continue;
        if (comm_allreduce_sum_f64(c, metrics, n, err, sizeof err) != 0) comm_abort(c, 2, err);
    }
    if (rank == 0) printf("watchdog test: %lld steps done\n", (long long)steps);
    comm_finalize(c);
    return 0;
}
