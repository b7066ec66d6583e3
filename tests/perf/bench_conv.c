/* bench_conv.c: CPU convolution, im2col + GEMM against oneDNN's convolution primitives
 * (kernels/cpu/cpu_conv_dnnl.c), per pass, on one thread (or THREADS).  Two CPU contexts run the same
 * shape, one with kern_options.cpu_conv = KERN_CONV_IM2COL, one with KERN_CONV_DNNL (oneDNN
 * wherever it has a JIT kernel, whatever the rule says), and a third with the default rule
 * (KERN_CONV_AUTO) says which path the trainer would take.  Times are thread CPU time (a busy
 * machine's waiting does not count; oneDNN's OpenMP team is this thread alone), the best of
 * REPS runs, alternating the two paths; oneDNN's times include its reorders.
 * ratio = im2col / oneDNN: above 1 oneDNN is faster.
 *
 *   bench_conv REPS [THREADS]   (tests/perf/bench_conv.sh builds and runs it; with THREADS > 1
 *                               the times are wall-clock, so a busy machine skews them) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static int threads = 1;

/* thread CPU time on one thread; wall time with more (the OpenMP team's work) */
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(threads > 1 ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *random_buffer(kern_ctx *k, size_t n, unsigned *seed) {
    float *p = kern_alloc(k, n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f;
    return p;
}

static kern_ctx *context(kern_cpu_conv mode) {
    kern_options o = {.backend = KERN_CPU, .threads = threads, .cpu_conv = mode};
    kern_ctx *k = NULL;
    char err[256];
    if (kern_create(&o, &k, err, sizeof err) != 0) {
        fprintf(stderr, "bench_conv: %s\n", err);
        exit(1);
    }
    return k;
}

typedef struct {
    const char *name;
    kern_conv_shape s;
} bench_shape;

#define SHAPE(B, C, H, W, K, R, st, pad, G) \
    {B, C, H, W, K, R, R, st, st, pad, pad, 1, 1, G}

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 10;
    if (reps < 1) reps = 1;
    threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1) threads = 1;
    const bench_shape shapes[] = {
        {"cnn.yaml conv1 1->32 3x3 28x28 b64", SHAPE(64, 1, 28, 28, 32, 3, 1, 1, 1)},
        {"cnn.yaml conv2 32->64 3x3 14x14 b64", SHAPE(64, 32, 14, 14, 64, 3, 1, 1, 1)},
        {"3x3 64->64 28x28 b32", SHAPE(32, 64, 28, 28, 64, 3, 1, 1, 1)},
        {"3x3 s2 64->128 28x28 b32", SHAPE(32, 64, 28, 28, 128, 3, 2, 1, 1)},
        {"3x3 4->16 28x28 b32", SHAPE(32, 4, 28, 28, 16, 3, 1, 1, 1)},
        {"3x3 4->32 28x28 b32", SHAPE(32, 4, 28, 28, 32, 3, 1, 1, 1)},
        {"3x3 8->16 28x28 b32", SHAPE(32, 8, 28, 28, 16, 3, 1, 1, 1)},
        {"3x3 8->32 28x28 b32", SHAPE(32, 8, 28, 28, 32, 3, 1, 1, 1)},
        {"3x3 12->32 28x28 b32", SHAPE(32, 12, 28, 28, 32, 3, 1, 1, 1)},
        {"3x3 16->16 28x28 b32", SHAPE(32, 16, 28, 28, 16, 3, 1, 1, 1)},
        {"5x5 32->32 14x14 b32", SHAPE(32, 32, 14, 14, 32, 5, 1, 2, 1)},
        {"depthwise 3x3 64 28x28 b32", SHAPE(32, 64, 28, 28, 64, 3, 1, 1, 64)},
        {"depthwise 3x3 s2 128 28x28 b32", SHAPE(32, 128, 28, 28, 128, 3, 2, 1, 128)},
        {"grouped 3x3 64->64 g4 28x28 b32", SHAPE(32, 64, 28, 28, 64, 3, 1, 1, 4)},
        {"1x1 64->128 28x28 b32", SHAPE(32, 64, 28, 28, 128, 1, 1, 0, 1)},
        {"1x1 256->64 14x14 b32", SHAPE(32, 256, 14, 14, 64, 1, 1, 0, 1)},
        {"7x7 s2 3->64 112x112 b8", SHAPE(8, 3, 112, 112, 64, 7, 2, 3, 1)},
        {"7x7 s2 16->32 56x56 b8", SHAPE(8, 16, 56, 56, 32, 7, 2, 3, 1)},
    };
    kern_ctx *k_im2col = context(KERN_CONV_IM2COL), *k_dnnl = context(KERN_CONV_DNNL);
    kern_ctx *k_auto = context(KERN_CONV_AUTO);
    kern_ctx *ks[2] = {k_im2col, k_dnnl};
    const char *pass[3] = {"fwd", "bwd-data", "bwd-weights"};
    printf("%-36s %-11s %10s %10s %6s %9s  %s\n", "shape", "pass", "im2col ms", "oneDNN ms",
           "ratio", "rel.diff", "rule");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const kern_conv_shape *s = &shapes[si].s;
        const int P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
        const size_t nin = (size_t)s->B * s->C * s->H * s->W;
        const size_t nout = (size_t)s->B * s->K * P * Q;
        const size_t nw = (size_t)s->K * (s->C / s->groups) * s->R * s->S;
        unsigned seed = 7;
        float *in = random_buffer(k_im2col, nin, &seed), *w = random_buffer(k_im2col, nw, &seed);
        float *b = random_buffer(k_im2col, (size_t)s->K, &seed);
        float *dout = random_buffer(k_im2col, nout, &seed);
        float *out[2], *din[2], *dw[2], *db[2];
        void *ws[2];
        for (int p = 0; p < 2; p++) {
            out[p] = random_buffer(k_im2col, nout, &seed);
            din[p] = random_buffer(k_im2col, nin, &seed);
            dw[p] = kern_alloc(k_im2col, nw * sizeof(float));
            db[p] = kern_alloc(k_im2col, (size_t)s->K * sizeof(float));
            ws[p] = kern_alloc(k_im2col, kern_conv2d_workspace(ks[p], s) + 64);
        }
        /* which path the default rule takes; whether oneDNN has a JIT kernel at all */
        kern_conv2d_workspace(k_auto, s);
        const int rule_dnnl = kern_conv2d_library(k_auto, s);
        const int has_dnnl = kern_conv2d_library(k_dnnl, s);
        double best[3][2];
        for (int t = 0; t < 3; t++) best[t][0] = best[t][1] = 1e30;
        for (int r = 0; r < reps + 1; r++) {   /* the first run warms up (not counted) */
            for (int p = 0; p < 2; p++) {
                double t0 = cpu_seconds();
                kern_conv2d_forward(ks[p], out[p], in, w, b, s, ws[p]);
                double t1 = cpu_seconds();
                kern_conv2d_backward(ks[p], din[p], NULL, NULL, dout, in, w, s, ws[p]);
                double t2 = cpu_seconds();
                memset(dw[p], 0, nw * sizeof(float));
                memset(db[p], 0, (size_t)s->K * sizeof(float));
                double t3 = cpu_seconds();
                kern_conv2d_backward(ks[p], NULL, dw[p], db[p], dout, in, w, s, ws[p]);
                double t4 = cpu_seconds();
                double v[3] = {t1 - t0, t2 - t1, t4 - t3};
                if (r > 0)
                    for (int t = 0; t < 3; t++)
                        if (v[t] < best[t][p]) best[t][p] = v[t];
            }
        }
        double diff[3] = {rel_diff(out[1], out[0], nout), rel_diff(din[1], din[0], nin),
                          fmax(rel_diff(dw[1], dw[0], nw), rel_diff(db[1], db[0], s->K))};
        for (int t = 0; t < 3; t++)
            printf("%-36s %-11s %10.3f %10.3f %6.2f %9.1e  %s\n", t == 0 ? shapes[si].name : "",
                   pass[t], 1e3 * best[t][0], 1e3 * best[t][1], best[t][0] / best[t][1], diff[t],
                   !has_dnnl ? "im2col (oneDNN: no JIT kernel)"
                             : rule_dnnl ? "oneDNN" : "im2col");
        double tot0 = best[0][0] + best[1][0] + best[2][0];
        double tot1 = best[0][1] + best[1][1] + best[2][1];
        printf("%-36s %-11s %10.3f %10.3f %6.2f\n", "", "total", 1e3 * tot0, 1e3 * tot1,
               tot0 / tot1);
        fflush(stdout);
        kern_free(k_im2col, in);
        kern_free(k_im2col, w);
        kern_free(k_im2col, b);
        kern_free(k_im2col, dout);
        for (int p = 0; p < 2; p++) {
            kern_free(k_im2col, out[p]);
            kern_free(k_im2col, din[p]);
            kern_free(k_im2col, dw[p]);
            kern_free(k_im2col, db[p]);
            kern_free(k_im2col, ws[p]);
        }
    }
    kern_destroy(k_auto);
    kern_destroy(k_dnnl);
    kern_destroy(k_im2col);
    return 0;
}
