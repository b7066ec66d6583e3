/* SIGUSR1 / SIGTERM (trainer/run/stop_signals.c).
 *
 * The bug this guards against: oneDNN's JIT sgemm kernels (before 3.11.1; Debian 12 has
 * 2.6.3) move the stack pointer into a heap buffer while they run, so a signal handler that
 * runs on a computing thread writes its frame into the heap.  Under mpirun, 1 stop in 6
 * aborted in free() ("corrupted size vs. prev_size") or in the stop's checkpoint write.
 *
 *   gemm_under_signal_storm  a child process sends SIGUSR1 to this one every 20 us for 1.5 s
 *                            while it runs GEMMs on 2 threads and allocates: every result
 *                            must equal the one computed before, and the heap must survive.
 *                            STOP_SIGNALS_DEMO_PLAIN=1 installs a plain handler instead of the
 *                            signal thread (what harness did before): it crashes within
 *                            seconds with oneDNN's fp32 GEMM (ONEDNN_MAX_CPU_ISA=AVX512_CORE
 *                            makes it more likely).
 *   unarmed_signal_ends      before stop_signals_arm, SIGTERM ends the process (by signal)
 *   armed_signal_is_a_flag   after it, SIGUSR1 only sets the flag; after stop_signals_end a
 *                            SIGTERM no longer changes the exit status */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels.h"
#include "train.h"

enum { B = 192, I = 512, O = 512 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static volatile sig_atomic_t plain_flag;
static void plain_handler(int sig) { plain_flag = sig; }

/* A child that sends sig to parent every period_us for seconds, then exits. */
static pid_t storm(pid_t parent, int sig, long period_us, double seconds) {
    pid_t pid = fork();
    if (pid == 0) {
        double end = now_s() + seconds;
        struct timespec ts = {0, period_us * 1000};
        while (now_s() < end) {
            if (kill(parent, sig) != 0) _exit(1);
            nanosleep(&ts, NULL);
        }
        _exit(0);
    }
    return pid;
}

static void gemm_under_signal_storm(void **state) {
    (void)state;
    int plain = getenv("STOP_SIGNALS_DEMO_PLAIN") != NULL;
    if (plain) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = plain_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR1, &sa, NULL);
    } else {
        assert_int_equal(stop_signals_start(1), 0);
    }
    /* two GEMM threads, created after the signal thread: they inherit the blocked mask */
    kern_options ko = {.backend = KERN_CPU, .threads = 2, .device = 0};
    kern_ctx *k2;
    char err[256];
    assert_int_equal(kern_create(&ko, &k2, err, sizeof err), 0);
    float *in = malloc(sizeof(float) * B * I), *w = malloc(sizeof(float) * O * I);
    float *bias = malloc(sizeof(float) * O), *ref = malloc(sizeof(float) * B * O);
    float *out = malloc(sizeof(float) * B * O);
    assert_non_null(in && w && bias && ref && out);
    for (int i = 0; i < B * I; i++) in[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (int i = 0; i < O * I; i++) w[i] = (float)((i * 53) % 97) / 97.0f - 0.5f;
    for (int i = 0; i < O; i++) bias[i] = (float)i / O;
    kern_linear_forward(k2, ref, in, w, bias, B, I, O);

    pid_t child = storm(getpid(), SIGUSR1, 20, 1.5);
    assert_true(child > 0);
    long gemms = 0, mismatches = 0;
    int status = 0;
    for (;;) {
        /* the heap is checked as it is used: glibc aborts on a corrupted chunk */
        void *scratch[8];
        for (int j = 0; j < 8; j++) scratch[j] = malloc(4096u << j);
        kern_linear_forward(k2, out, in, w, bias, B, I, O);
        if (memcmp(out, ref, sizeof(float) * B * O) != 0) mismatches++;
        for (int j = 0; j < 8; j++) free(scratch[j]);
        gemms++;
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child) break;
        assert_true(done == 0);
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("%ld GEMMs of %dx%dx%d on 2 threads while SIGUSR1 arrived every 20 us: %ld differed\n",
           gemms, B, I, O, mismatches);
    assert_int_equal(mismatches, 0);
    assert_true(gemms > 10);
    if (plain) assert_int_equal(plain_flag, SIGUSR1);
    else assert_int_equal(stop_signals_received(), SIGUSR1);
    free(in), free(w), free(bias), free(ref), free(out);
    kern_destroy(k2);
    if (!plain) stop_signals_end();
}

/* A child that starts the signal thread (arm 0: not armed, 1: armed at start, 2: armed
 * after), optionally takes a stop signal and ends the thread (end_first), then says "ready"
 * and sleeps 1 s; the parent sends sig.  Returns the exit status, or -signal. */
static int child_exit(int arm, int end_first, int sig) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (stop_signals_start(arm == 1) != 0) _exit(3);
        if (arm == 2) stop_signals_arm();
        if (end_first) {
            /* a stop signal first: the flag, then the thread ended */
            kill(getpid(), SIGUSR1);   /* to the process: taken by the signal thread */
            double t0 = now_s();
            struct timespec ms = {0, 1000000};
            while (stop_signals_received() != SIGUSR1 && now_s() - t0 < 5) nanosleep(&ms, NULL);
            if (stop_signals_received() != SIGUSR1) _exit(4);
            stop_signals_end();
        }
        if (write(fds[1], "r", 1) != 1) _exit(5);
        sleep(1);   /* armed: the signal does not cut this short */
        _exit(0);
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    double t0 = now_s();
    assert_int_equal(kill(pid, sig), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    double took = now_s() - t0;
    if (WIFSIGNALED(status)) {
        assert_true(took < 0.9);   /* at once, not at the end of the sleep */
        return -WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

static void unarmed_signal_ends(void **state) {
    (void)state;
    assert_int_equal(child_exit(0, 0, SIGTERM), -SIGTERM);
    assert_int_equal(child_exit(0, 0, SIGUSR1), -SIGUSR1);
}

static void armed_signal_is_a_flag(void **state) {
    (void)state;
    /* armed (at start, or later): SIGTERM neither kills nor stops the sleep; after end:
     * still exit 0 */
    assert_int_equal(child_exit(1, 0, SIGTERM), 0);
    assert_int_equal(child_exit(2, 0, SIGTERM), 0);
    assert_int_equal(child_exit(1, 1, SIGTERM), 0);
}

int main(void) {
    /* the forking tests first: the storm test starts this process's signal thread */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unarmed_signal_ends),
        cmocka_unit_test(armed_signal_is_a_flag),
        cmocka_unit_test(gemm_under_signal_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
