/* test_gpu_step.c: the CUDA backend's GPU-step ops against the CPU backend (exit 77 without a
 * GPU or without the CUDA backend):
 *   - kern_upload with the copy held back (kern_options.upload_delay_ms): the host buffer is
 *     overwritten the moment kern_upload_settle returns, as the prefetch thread would; the
 *     device must still hold the old batch (it would not if settle returned before the
 *     transfer ended);
 *     and two batches in a row keep their own staging;
 *   - kern_download with the copy held back (kern_options.download_delay_ms): it returns at
 *     once; an op queued after kern_download_fence that overwrites the source does not reach
 *     the copy; kern_download_wait from another thread returns once the host holds the data;
 *   - kern_dropout_forward_rows: the CPU's masks and outputs bit for bit;
 *   - kern_grad_stats: the norm (as CPU within 1e-12 relative), clip factor, skip / stop flags;
 *   - kern_adamw/sgd_update_guarded: as the CPU within 1e-6, skipped steps change nothing;
 *   - kern_batchnorm_param_grads: bit for bit;
 *   - a CUDA graph (kern_graph_*) of the gradient verdict, an AdamW update and dropout rows,
 *     recorded once and replayed six times with other learning rates, step counts and step
 *     ids (kern_graph_set_values): every replay equals the CPU running the ops eagerly with
 *     that step's values (params within 1e-6, masks bit for bit, the stop step recorded); the
 *     values of the first replay are set BEFORE the recording, as the trainer does;
 *   - a recording begun after an unreported error keeps that error for kern_check. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_compare.h"
#include "gpu_gate.h"
#include "kernels.h"

static int failures = 0;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static kern_ctx *G, *C;

static void *dev_copy(const void *host, size_t bytes) {
    void *d = kern_alloc(G, bytes);
    kern_to_device(G, d, host, bytes);
    return d;
}

static void test_upload(void) {
    const size_t nx = 128 * 784, ny = 128 * 4;
    unsigned char *hx = kern_alloc_host(G, nx), *hy = kern_alloc_host(G, ny);
    unsigned char *want = malloc(nx), *got = malloc(nx);
    void *dx = kern_alloc(G, nx), *dy = kern_alloc(G, ny);
    char err[512];
    CHECK(kern_upload_reserve(G, nx + ny + 512, err, sizeof err) == 0, "reserve: %s", err);
    for (int batch = 0; batch < 3; batch++) {
        for (size_t i = 0; i < nx; i++) hx[i] = (unsigned char)(i * 13 + batch);
        for (size_t i = 0; i < ny; i++) hy[i] = (unsigned char)(i * 5 + batch);
        memcpy(want, hx, nx);
        void *dst[2] = {dx, dy};
        const void *src[2] = {hx, hy};
        size_t bytes[2] = {nx, ny};
        kern_upload(G, 2, dst, src, bytes);
        kern_upload_settle(G);   /* the trainer's call before the slot goes back */
        memset(hx, 0xAB, nx);   /* the loader refills the slot at once */
        memset(hy, 0xAB, ny);
        kern_to_host(G, got, dx, nx);
        CHECK(memcmp(got, want, nx) == 0, "batch %d: the device saw the refilled host buffer", batch);
        kern_to_host(G, got, dy, ny);
        int ok = 1;
        for (size_t i = 0; i < ny; i++) ok &= got[i] == (unsigned char)(i * 5 + batch);
        CHECK(ok, "batch %d: labels", batch);
    }
    CHECK(kern_check(G, err, sizeof err) == 0, "upload: %s", err);
    kern_free(G, dx); kern_free(G, dy);
    kern_free_host(G, hx); kern_free_host(G, hy);
    free(want); free(got);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int rc;
    char err[512];
    double done_s;
} wait_result;

static void *download_waiter(void *arg) {   /* the checkpoint writer's side */
    wait_result *w = arg;
    w->rc = kern_download_wait(G, w->err, sizeof w->err);
    w->done_s = now_s();
    return NULL;
}

static void test_download(void) {
    const int64_t n = 4 << 20;   /* 16 MiB */
    const size_t bytes = (size_t)n * sizeof(float);
    float *d = kern_alloc(G, bytes), *d2 = kern_alloc(G, 256 * sizeof(float));
    float *h = kern_alloc_host(G, bytes), *h2 = kern_alloc_host(G, 256 * sizeof(float));
    float *back = malloc(bytes);
    memset(h, 0, bytes);
    kern_fill(G, d, 1.0f, n);
    kern_fill(G, d2, 3.0f, 256);
    void *dst[2] = {h, h2};
    const void *src[2] = {d, d2};
    size_t nb[2] = {bytes, 256 * sizeof(float)};
    double t0 = now_s();
    kern_download(G, 2, dst, src, nb);
    double queued = now_s() - t0;
    CHECK(queued < 0.1, "kern_download waited %.3f s for a copy held back 200 ms", queued);
    kern_download_fence(G);
    kern_fill(G, d, 2.0f, n);   /* the optimizer's update, after the fence */
    wait_result w = {0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, download_waiter, &w) == 0, "thread");
    pthread_join(th, NULL);
    CHECK(w.rc == 0, "kern_download_wait: %s", w.err);
    CHECK(w.done_s - t0 >= 0.19, "kern_download_wait returned %.3f s after a copy held back 200 ms",
          w.done_s - t0);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += h[i] != 1.0f;
    for (int i = 0; i < 256; i++) bad += h2[i] != 3.0f;
    CHECK(bad == 0, "%lld snapshot values are not what the source held at kern_download",
          (long long)bad);
    kern_to_host(G, back, d, bytes);
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += back[i] != 2.0f;
    CHECK(bad == 0, "%lld source values lost the update queued after the fence", (long long)bad);
    char err[512];
    CHECK(kern_check(G, err, sizeof err) == 0, "download: %s", err);
    kern_free(G, d); kern_free(G, d2);
    kern_free_host(G, h); kern_free_host(G, h2);
    free(back);
}

static void test_dropout_rows(void) {
    const int64_t B = 33, F = 257;
    size_t n = (size_t)(B * F);
    float *in = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4);
    uint8_t *ma = malloc(n), *mb = malloc(n);
    kern_init_normal(C, in, (int64_t)n, 0, 1, 5, 1);
    float *din = dev_copy(in, n * 4), *dout = kern_alloc(G, n * 4);
    uint8_t *dmask = kern_alloc(G, n);
    kern_dropout_forward_rows(C, a, ma, in, B, F, 0.25f, 77, 9, 64, 2);
    kern_dropout_forward_rows(G, dout, dmask, din, B, F, 0.25f, 77, 9, 64, 2);
    kern_to_host(G, b, dout, n * 4);
    kern_to_host(G, mb, dmask, n);
    CHECK(memcmp(a, b, n * 4) == 0 && memcmp(ma, mb, n) == 0, "dropout rows differ from the CPU");
    kern_free(G, din); kern_free(G, dout); kern_free(G, dmask);
    free(in); free(a); free(b); free(ma); free(mb);
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-30 ? fabs(b) : 1.0); }

static void test_optimizer(int adamw) {
    const int64_t n = 100003;
    float *p = malloc(n * 4), *g = malloc(n * 4), *pc = malloc(n * 4), *pg = malloc(n * 4);
    float *m = calloc(n, 4), *v = calloc(n, 4);
    kern_init_normal(C, p, n, 0, 0.5f, 1, 2);
    memcpy(pc, p, n * 4);
    float *dp = dev_copy(p, n * 4), *dg = kern_alloc(G, n * 4);
    float *dm = kern_alloc(G, n * 4), *dv = kern_alloc(G, n * 4);
    double *dgs = kern_alloc(G, KERN_GS_LEN * sizeof(double)), gs_c[KERN_GS_LEN] = {0};
    double gs_g[KERN_GS_LEN];
    const int kinds[6] = {0, 1, 2, 0, 2, 2};   /* normal, clipped, non-finite; limit 1 -> stop */
    for (int s = 0; s < 6; s++) {
        kern_init_normal(C, g, n, 0, kinds[s] == 1 ? 10.0f : 0.01f, 50 + (uint64_t)s, 3);
        if (kinds[s] == 2) g[n / 2] = NAN;
        kern_to_device(G, dg, g, n * 4);
        kern_grad_stats(C, gs_c, g, n, 1.0f, 1, s);
        kern_grad_stats(G, dgs, dg, n, 1.0f, 1, s);
        if (adamw) {
            kern_adamw_update_guarded(C, pc, m, v, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, gs_c, s + 1);
            kern_adamw_update_guarded(G, dp, dm, dv, dg, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, dgs,
                                      s + 1);
        } else {
            kern_sgd_update_guarded(C, pc, m, g, n, 0.1f, 0.9f, 0.1f, 1, gs_c, s + 1);
            kern_sgd_update_guarded(G, dp, dm, dg, n, 0.1f, 0.9f, 0.1f, 1, dgs, s + 1);
        }
        kern_to_host(G, gs_g, dgs, sizeof gs_g);
        CHECK(isnan(gs_c[KERN_GS_NORM]) ? isnan(gs_g[KERN_GS_NORM])
                                        : rel(gs_g[KERN_GS_NORM], gs_c[KERN_GS_NORM]) <= 1e-12,
              "step %d: norm %.17g vs CPU %.17g", s, gs_g[KERN_GS_NORM], gs_c[KERN_GS_NORM]);
        for (int k = KERN_GS_SKIP; k < KERN_GS_LEN; k++)
            CHECK(gs_g[k] == gs_c[k], "step %d: verdict[%d] %g vs CPU %g", s, k, gs_g[k], gs_c[k]);
        CHECK(rel(gs_g[KERN_GS_SCALE], gs_c[KERN_GS_SCALE]) < 1e-6, "step %d: clip factor", s);
        kern_to_host(G, pg, dp, n * 4);
        gc_diff d = gc_diff_f(pc, pg, n);   /* NaN anywhere on one side: NaN */
        double worst = d.max_diff;
        CHECK(worst <= 1e-6, "%s step %d: params differ from the CPU by %g", adamw ? "adamw" : "sgd",
              s, worst);
    }
    CHECK(gs_c[KERN_GS_STOP] == 1.0 && gs_c[KERN_GS_STOP_STEP] == 5.0, "stop at step 5");
    kern_free(G, dp); kern_free(G, dg); kern_free(G, dm); kern_free(G, dv); kern_free(G, dgs);
    free(p); free(g); free(pc); free(pg); free(m); free(v);
}

static void test_graph_replay(void) {
    const int64_t n = 50021, rows = 7, row_elems = 333;
    char err[512];
    float *p = malloc(n * 4), *g = malloc(n * 4), *pc = malloc(n * 4), *pg = malloc(n * 4);
    float *m = calloc(n, 4), *v = calloc(n, 4);
    float *x = malloc(rows * row_elems * 4), *yc = malloc(rows * row_elems * 4);
    float *yg = malloc(rows * row_elems * 4);
    uint8_t *mc = malloc(rows * row_elems), *mg = malloc(rows * row_elems);
    kern_init_normal(C, p, n, 0, 0.5f, 1, 2);
    kern_init_normal(C, x, rows * row_elems, 0, 1.0f, 9, 9);
    memcpy(pc, p, n * 4);
    float *dp = dev_copy(p, n * 4), *dg = kern_alloc(G, n * 4);
    float *dm = kern_alloc(G, n * 4), *dv = kern_alloc(G, n * 4);
    float *dx = dev_copy(x, rows * row_elems * 4), *dy = kern_alloc(G, rows * row_elems * 4);
    uint8_t *dmask = kern_alloc(G, rows * row_elems);
    double *dgs = kern_alloc(G, KERN_GS_LEN * sizeof(double)), gs_c[KERN_GS_LEN] = {0};
    double gs_g[KERN_GS_LEN];
    int recorded = 0;
    for (int64_t s = 0; s < 6; s++) {
        float lr = 1e-3f * (float)(s + 1);
        kern_init_normal(C, g, n, 0, 0.01f, 70 + (uint64_t)s, 3);
        if (s == 4) g[17] = NAN;   /* max_run 0: the verdict says stop at step 4 */
        kern_to_device(G, dg, g, n * 4);
        kern_grad_stats(C, gs_c, g, n, 1.0f, 0, s);
        kern_adamw_update_guarded(C, pc, m, v, g, n, lr, 0.9f, 0.999f, 1e-8f, 0.1f, gs_c, s + 1);
        kern_dropout_forward_rows(C, yc, mc, x, rows, row_elems, 0.3f, 5, (uint64_t)s, 11, 2);
        kern_step_values sv = {lr, s + 1, s, (uint64_t)s};
        kern_graph_set_values(G, &sv);
        if (!recorded) {
            /* recorded with step 0's arguments; replays must use the values set above */
            CHECK(kern_graph_begin(G, err, sizeof err) == 0, "graph begin: %s", err);
            kern_grad_stats(G, dgs, dg, n, 1.0f, 0, 0);
            kern_adamw_update_guarded(G, dp, dm, dv, dg, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, dgs, 1);
            kern_dropout_forward_rows(G, dy, dmask, dx, rows, row_elems, 0.3f, 5, 0, 11, 2);
            CHECK(kern_graph_end(G, err, sizeof err) == 0, "graph end: %s", err);
            recorded = 1;
        }
        kern_graph_launch(G);
        kern_to_host(G, gs_g, dgs, sizeof gs_g);
        kern_to_host(G, pg, dp, n * 4);
        kern_to_host(G, yg, dy, rows * row_elems * 4);
        kern_to_host(G, mg, dmask, rows * row_elems);
        gc_diff d = gc_diff_f(pc, pg, n);   /* NaN anywhere on one side: NaN */
        double worst = d.max_diff;
        CHECK(worst <= 1e-6, "graph replay %lld: params differ from the CPU by %g", (long long)s, worst);
        CHECK(memcmp(mg, mc, rows * row_elems) == 0 && memcmp(yg, yc, rows * row_elems * 4) == 0,
              "graph replay %lld: dropout differs from the CPU (step id not replayed?)", (long long)s);
        for (int k = KERN_GS_SKIP; k < KERN_GS_LEN; k++)
            CHECK(gs_g[k] == gs_c[k], "graph replay %lld: verdict[%d] %g vs CPU %g", (long long)s,
                  k, gs_g[k], gs_c[k]);
    }
    CHECK(gs_g[KERN_GS_STOP] == 1.0 && gs_g[KERN_GS_STOP_STEP] == 4.0,
          "graph replay: stop at step 4 (got %g at %g)", gs_g[KERN_GS_STOP], gs_g[KERN_GS_STOP_STEP]);
    kern_counters kc;
    kern_get_counters(G, &kc);
    printf("graph replay: 6 steps; backend counted %lld launches, %lld host waits in all\n",
           (long long)kc.launches, (long long)kc.host_syncs);
    kern_free(G, dp); kern_free(G, dg); kern_free(G, dm); kern_free(G, dv); kern_free(G, dgs);
    kern_free(G, dx); kern_free(G, dy); kern_free(G, dmask);
    free(p); free(g); free(pc); free(pg); free(m); free(v); free(x); free(yc); free(yg);
    free(mc); free(mg);
}

/* A recording begun after an error that no kern_check has reported yet (issue 22): begin
 * refuses, and the error stays the step's - kern_check reports the original failure (here a
 * cudaMalloc too large to succeed), not "recording failed, training without a graph". */
static void test_graph_after_error(void) {
    char err[512], gerr[512] = "";
    void *huge = kern_alloc(G, (size_t)1 << 60);
    CHECK(huge == NULL, "a 2^60-byte allocation succeeded");
    CHECK(kern_graph_begin(G, gerr, sizeof gerr) != 0, "graph begin after an error succeeded");
    printf("graph after an error: begin says \"%s\"\n", gerr);
    CHECK(kern_check(G, err, sizeof err) != 0 && strstr(err, "cudaMalloc") != NULL,
          "the earlier error was not kept for kern_check (got \"%s\")", err);
    CHECK(kern_check(G, err, sizeof err) == 0, "the error was reported twice: %s", err);
}

static void test_bn_param_grads(void) {
    enum { CH = 300 };
    double red[2 * CH];
    float dg[CH], db[CH], got[CH];
    for (int j = 0; j < 2 * CH; j++) red[j] = sin(j * 0.37) * 123.456789;
    for (int j = 0; j < CH; j++) dg[j] = db[j] = 0.5f * j;
    double *dred = dev_copy(red, sizeof red);
    float *ddg = dev_copy(dg, sizeof dg), *ddb = dev_copy(db, sizeof db);
    kern_batchnorm_param_grads(C, dg, db, red, CH);
    kern_batchnorm_param_grads(G, ddg, ddb, dred, CH);
    kern_to_host(G, got, ddg, sizeof got);
    CHECK(memcmp(got, dg, sizeof got) == 0, "dgamma differs");
    kern_to_host(G, got, ddb, sizeof got);
    CHECK(memcmp(got, db, sizeof got) == 0, "dbeta differs");
    kern_free(G, dred); kern_free(G, ddg); kern_free(G, ddb);
}

/* The sharded verdict (train.zero_stage 1): kern_sumsq_to + kern_grad_verdict_from on the
 * device == kern_grad_stats on the device, bit for bit (the same reduction), and the sum of
 * squares as the CPU's within 1e-12; over normal, clipped and non-finite steps up to a stop. */
static void test_sharded_verdict(void) {
    const int64_t n = 100003;
    float *g = malloc(n * 4), *dg = kern_alloc(G, n * 4);
    double *da = kern_alloc(G, KERN_GS_LEN * sizeof(double));
    double *db = kern_alloc(G, KERN_GS_LEN * sizeof(double)), *dss = kern_alloc(G, sizeof(double));
    double a[KERN_GS_LEN], b[KERN_GS_LEN], ss;
    const int kinds[6] = {0, 1, 2, 0, 2, 2};
    for (int s = 0; s < 6; s++) {
        kern_init_normal(C, g, n, 0, kinds[s] == 1 ? 10.0f : 0.01f, 70 + (uint64_t)s, 3);
        if (kinds[s] == 2) g[n / 3] = INFINITY;
        kern_to_device(G, dg, g, n * 4);
        kern_grad_stats(G, da, dg, n, 1.0f, 1, s);
        kern_sumsq_to(G, dss, dg, n);
        kern_grad_verdict_from(G, db, dss, 1.0f, 1, s);
        kern_to_host(G, a, da, sizeof a);
        kern_to_host(G, b, db, sizeof b);
        kern_to_host(G, &ss, dss, sizeof ss);
        CHECK(memcmp(a, b, sizeof a) == 0, "step %d: sharded verdict differs from grad_stats", s);
        if (kinds[s] != 2)
            CHECK(rel(ss, kern_sumsq(C, g, n)) < 1e-12, "step %d: sum of squares %.17g vs CPU %.17g",
                  s, ss, kern_sumsq(C, g, n));
    }
    CHECK(b[KERN_GS_STOP] == 1.0 && b[KERN_GS_STOP_STEP] == 5.0, "sharded verdict: stop at step 5");
    kern_free(G, dg); kern_free(G, da); kern_free(G, db); kern_free(G, dss);
    free(g);
}

int main(void) {
    int gate = gpu_gate();
    if (gate != 0) return gate;
    char err[512];
    /* the copies held back 200 ms (kern_options.upload_delay_ms) */
    kern_options go = {.backend = KERN_CUDA, .threads = 1, .device = 0, .upload_delay_ms = 200,
                       .download_delay_ms = 200};
    kern_options co = {.backend = KERN_CPU, .threads = 1, .device = 0};
    if (kern_create(&go, &G, err, sizeof err) != 0 || kern_create(&co, &C, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    test_upload();
    test_download();
    test_dropout_rows();
    test_optimizer(1);
    test_optimizer(0);
    test_sharded_verdict();
    test_bn_param_grads();
    test_graph_replay();
    test_graph_after_error();
    if (kern_check(G, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        failures++;
    }
    kern_destroy(G);
    kern_destroy(C);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "PASS", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
