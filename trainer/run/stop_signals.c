/* stop_signals: SIGUSR1 and SIGTERM, taken by one thread that does nothing else.
 *
 * No signal handler may ever run on a thread that computes.  The JIT GEMM kernels of oneDNN
 * before 3.11.1 (Debian 12 ships 2.6.3) point the stack pointer into a heap buffer while they
 * run; a signal delivered then makes the kernel write its signal frame into the heap, and the
 * process aborts later in free() ("corrupted size vs. prev_size"), or writes a corrupt
 * checkpoint.  Measured here before this file: 1 stop in 6 under mpirun with the fp32 sgemm
 * path, 4 in 12 with oneDNN limited to AVX-512 (uxlfoundation/oneDNN issue 4845 describes
 * the kernels).  So the two signals are blocked before the first thread of the process
 * starts (MPI's, OpenMP's, oneDNN's, the loader's all inherit the mask) and this file's
 * thread takes them with sigwait: no signal frame is pushed on any other thread's stack.
 *
 * Armed (`harness train`, from before MPI starts to the process's exit), a signal sets the
 * stop flag the step loop reads at its step boundaries: one during start-up stops the run
 * after its first step (checkpointed, exit 75 - a preemption agent cannot know when a rank
 * is ready), and one after the loop changes nothing (a SIGTERM that follows a stop must not
 * turn exit status 75 into a kill).  Not armed (`harness eval`), the signal does what it
 * does by default: the process ends. */
#include "train.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static pthread_t waiter;
static int started;
static sigset_t stop_set;
static atomic_int armed;
static atomic_int got;         /* the signal number while armed, else 0 */
static atomic_int quitting;

static void die_by(int sig) {
    /* the default action of sig, on this thread: unblocked here, it ends the process */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    pthread_kill(pthread_self(), sig);
}

static void *waiter_main(void *arg) {
    (void)arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&stop_set, &sig) != 0) continue;
        if (atomic_load(&quitting)) return NULL;
        if (atomic_load(&armed)) atomic_store(&got, sig);
        else die_by(sig);
    }
}

int stop_signals_start(int arm) {
    if (started) return 0;
    atomic_store(&armed, arm ? 1 : 0);
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGUSR1);
    sigaddset(&stop_set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_set, NULL) != 0) return -1;
    /* the default stack: a small one must still hold every library's static TLS (EINVAL) */
    int rc = pthread_create(&waiter, NULL, waiter_main, NULL);
    if (rc != 0) {
        pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);
        errno = rc;
        return -1;
    }
    started = 1;
    return 0;
}

void stop_signals_arm(void) { atomic_store(&armed, 1); }

int stop_signals_received(void) { return atomic_load(&got); }

void stop_signals_end(void) {
    if (!started) return;
    atomic_store(&quitting, 1);
    pthread_kill(waiter, SIGUSR1);   /* wakes sigwait; the thread sees quitting and returns */
    pthread_join(waiter, NULL);
    started = 0;
    /* the signals stay blocked: the process is on its way out, and one that came after the
     * waiter's last sigwait is dropped with it (as a handler would have ignored it) */
}
