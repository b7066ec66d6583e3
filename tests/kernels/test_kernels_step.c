/* test_kernels_step.c: the ops that take the host out of the GPU step give, on the CPU backend,
 * the same bits as the sequences they replace - which is what keeps the CPU resume and
 * data-parallel tests (bit for bit) valid:
 *   - kern_dropout_forward_rows == one kern_dropout_forward per sample with the stream id the
 *     model used, (step << 24) ^ (sample << 6) ^ layer;
 *   - kern_grad_stats + kern_*_update_guarded == sqrt(kern_sumsq), kern_scale (clip) and the
 *     plain update, over steps with clipping, without, and non-finite ones (skipped: no
 *     change, not counted in AdamW's t / SGD's first step; past the limit: stop, nothing more);
 *   - kern_batchnorm_param_grads == the host round trip (double sums -> float -> kern_axpy);
 *   - kern_upload copies every part;
 *   - the CUDA graph's contract (kernels.h), emulated on the CPU: values set with
 *     kern_graph_set_values BEFORE kern_graph_begin reach the first launch (the trainer's
 *     order; issue 22: on CUDA they were dropped and AdamW's t = 0 made every parameter NaN),
 *     the recorded ops take them rather than their arguments, and a launch with no values
 *     ever set gives NaN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static kern_ctx *K;

static int setup(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 1, .device = 0};
    char err[256];
    return kern_create(&opt, &K, err, sizeof(err));
}

static int teardown(void **state) {
    kern_destroy(K);
    return 0;
}

static void fill_random(float *x, int64_t n, uint64_t seed, float scale) {
    kern_init_normal(K, x, n, 0.0f, scale, seed, 1);
}

static void dropout_rows_equal_per_sample_calls(void **state) {
    const int64_t B = 7, F = 45;   /* F not a multiple of 4: rows straddle Philox blocks */
    float *in = malloc(B * F * 4), *a = malloc(B * F * 4), *b = malloc(B * F * 4);
    uint8_t *ma = malloc(B * F), *mb = malloc(B * F);
    fill_random(in, B * F, 3, 1.0f);
    const uint64_t seed = 42 ^ 0x64726f706f7574ULL, step_id = 1234;
    const int64_t base = 96;   /* this rank's first sample */
    const int layer = 3;
    for (int64_t s = 0; s < B; s++) {
        uint64_t stream = (step_id << 24) ^ ((uint64_t)(base + s) << 6) ^ (uint64_t)layer;
        assert_true(stream == kern_dropout_stream(step_id, base + s, layer));
        kern_dropout_forward(K, a + s * F, ma + s * F, in + s * F, F, 0.3f, seed, stream);
    }
    kern_dropout_forward_rows(K, b, mb, in, B, F, 0.3f, seed, step_id, base, layer);
    assert_memory_equal(a, b, B * F * 4);
    assert_memory_equal(ma, mb, B * F);
    /* a different split of the same samples (another rank) gives the same masks */
    kern_dropout_forward_rows(K, b + 3 * F, mb + 3 * F, in + 3 * F, B - 3, F, 0.3f, seed, step_id,
                              base + 3, layer);
    assert_memory_equal(ma, mb, B * F);
    /* in place, and p = 0 */
    memcpy(b, in, B * F * 4);
    kern_dropout_forward_rows(K, b, mb, b, B, F, 0.3f, seed, step_id, base, layer);
    assert_memory_equal(a, b, B * F * 4);
    kern_dropout_forward_rows(K, b, mb, in, B, F, 0.0f, seed, step_id, base, layer);
    assert_memory_equal(in, b, B * F * 4);
    for (int64_t i = 0; i < B * F; i++) assert_int_equal(mb[i], 1);
    free(in); free(a); free(b); free(ma); free(mb);
}

typedef struct {
    int adamw;
    float momentum;
    int nesterov;
} optim_case;

/* The old trainer step on (params_a, state_a) and the new one on (params_b, state_b), for a
 * sequence of gradient sets; kind[s]: 0 normal, 1 large (clipped), 2 non-finite. */
static void run_optim_case(const optim_case *oc, float clip, int max_run, const int *kind,
                           int steps, int expect_stop_at) {
    const int64_t n = 1000;
    float *pa = malloc(n * 4), *pb = malloc(n * 4), *g = malloc(n * 4), *ga = malloc(n * 4);
    float *ma = calloc(n, 4), *va = calloc(n, 4), *mb = calloc(n, 4), *vb = calloc(n, 4);
    double gs[KERN_GS_LEN] = {0};
    fill_random(pa, n, 11, 0.5f);
    memcpy(pb, pa, n * 4);
    int64_t t_old = 0, t_plus_new = 0, run = 0;
    int stopped = 0;
    for (int s = 0; s < steps; s++) {
        fill_random(g, n, 100 + (uint64_t)s, kind[s] == 1 ? 50.0f : 0.1f);
        if (kind[s] == 2) g[17] = s % 2 ? NAN : INFINITY;
        memcpy(ga, g, n * 4);
        /* old: norm, clip, update - or skip / stop on the host */
        double norm = sqrt(kern_sumsq(K, ga, n));
        int old_update = 0;
        if (!stopped && isfinite(norm)) {
            if (clip > 0.0f && norm > clip) kern_scale(K, ga, (float)(clip / (norm + 1e-6)), n);
            old_update = 1;
            run = 0;
        } else if (!stopped && run < max_run) {
            run++;
        } else if (!stopped) {
            stopped = 1;
            assert_int_equal(s, expect_stop_at);
        }
        if (old_update) {
            t_old++;
            if (oc->adamw)
                kern_adamw_update(K, pa, ma, va, ga, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t_old);
            else
                kern_sgd_update(K, pa, oc->momentum > 0 ? ma : NULL, ga, n, 0.05f, oc->momentum,
                                0.01f, oc->nesterov, t_old == 1);
        }
        /* new: the verdict in backend memory, the guarded update */
        kern_grad_stats(K, gs, g, n, clip, max_run, s);
        t_plus_new++;
        if (oc->adamw)
            kern_adamw_update_guarded(K, pb, mb, vb, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, gs,
                                      t_plus_new);
        else
            kern_sgd_update_guarded(K, pb, oc->momentum > 0 ? mb : NULL, g, n, 0.05f,
                                    oc->momentum, 0.01f, oc->nesterov, gs, t_plus_new);
        assert_true(gs[KERN_GS_NORM] == norm || (isnan(norm) && isnan(gs[KERN_GS_NORM])));
        assert_int_equal(gs[KERN_GS_SKIP] != 0.0, !old_update);
        assert_int_equal(gs[KERN_GS_STOP] != 0.0, stopped);
        assert_memory_equal(pa, pb, n * 4);
        assert_memory_equal(ma, mb, n * 4);
        assert_memory_equal(va, vb, n * 4);
    }
    if (expect_stop_at >= 0) {
        assert_true(stopped);
        assert_int_equal((int64_t)gs[KERN_GS_STOP_STEP], expect_stop_at);
    } else {
        assert_false(stopped);
    }
    free(pa); free(pb); free(g); free(ga); free(ma); free(va); free(mb); free(vb);
}

static void guarded_updates_equal_old_sequence(void **state) {
    const optim_case cases[] = {{1, 0, 0}, {0, 0, 0}, {0, 0.9f, 0}, {0, 0.9f, 1}};
    /* clipping on and off, a non-finite step skipped, clipped steps after it */
    const int kinds[8] = {0, 1, 2, 0, 1, 2, 2, 0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_optim_case(&cases[i], 1.0f, 20, kinds, 8, -1);
        run_optim_case(&cases[i], 0.0f, 20, kinds, 8, -1);
        /* train.nonfinite=error: the first non-finite step stops everything */
        run_optim_case(&cases[i], 1.0f, 0, kinds, 8, 2);
        /* skip with a limit of one in a row: the second of two in a row stops */
        run_optim_case(&cases[i], 1.0f, 1, kinds, 8, 6);
    }
    /* the first step non-finite: SGD's "first" step is the first one taken */
    const int first_bad[4] = {2, 0, 0, 1};
    run_optim_case(&cases[2], 1.0f, 20, first_bad, 4, -1);
    run_optim_case(&cases[0], 1.0f, 20, first_bad, 4, -1);
}

static void batchnorm_param_grads_equal_host_round_trip(void **state) {
    const int C = 13;
    double red[2 * C];
    float dg_a[C], db_a[C], dg_b[C], db_b[C], tmp[2 * C];
    for (int j = 0; j < 2 * C; j++) red[j] = (j - 7.3) * 1.000000123456789 / 3.0;
    for (int j = 0; j < C; j++) dg_a[j] = dg_b[j] = 0.1f * (float)j, db_a[j] = db_b[j] = -0.2f * j;
    for (int j = 0; j < 2 * C; j++) tmp[j] = (float)red[j];
    kern_axpy(K, db_a, 1.0f, tmp, C);
    kern_axpy(K, dg_a, 1.0f, tmp + C, C);
    kern_batchnorm_param_grads(K, dg_b, db_b, red, C);
    assert_memory_equal(dg_a, dg_b, sizeof dg_a);
    assert_memory_equal(db_a, db_b, sizeof db_a);
}

static void upload_copies_every_part(void **state) {
    uint8_t x[301], xd[301];
    int32_t y[17], yd[17];
    for (int i = 0; i < 301; i++) x[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 17; i++) y[i] = i * 3 - 5;
    char err[128];
    assert_int_equal(kern_upload_reserve(K, 1024, err, sizeof err), 0);
    void *dst[2] = {xd, yd};
    const void *src[2] = {x, y};
    size_t bytes[2] = {sizeof x, sizeof y};
    kern_upload(K, 2, dst, src, bytes);
    assert_memory_equal(x, xd, sizeof x);
    assert_memory_equal(y, yd, sizeof y);
}

/* The sharded form (train.zero_stage 1): kern_sumsq_to then kern_grad_verdict_from gives
 * kern_grad_stats's verdict bit for bit, over finite, clipped and non-finite steps up to a
 * stop; and sumsq_to writes exactly kern_sumsq. */
static void sharded_verdict_equals_grad_stats(void **state) {
    (void)state;
    enum { N = 1001 };
    float g[N];
    double a[KERN_GS_LEN] = {0}, b[KERN_GS_LEN] = {0}, ss = -1.0;
    const float scale[7] = {0.01f, 10.0f, 0.01f, NAN, NAN, 0.01f, NAN};
    for (int s = 0; s < 7; s++) {
        for (int i = 0; i < N; i++) g[i] = scale[s] * (float)((i * 37 + s * 11) % 101 - 50) / 50.0f;
        if (isnan(scale[s])) g[N / 3] = NAN;
        else g[N / 3] = scale[s];
        kern_grad_stats(K, a, g, N, 1.0f, 1, s);
        kern_sumsq_to(K, &ss, g, N);
        if (!isnan(scale[s])) assert_true(ss == kern_sumsq(K, g, N));
        kern_grad_verdict_from(K, b, &ss, 1.0f, 1, s);
        assert_memory_equal(a, b, sizeof a);
    }
    assert_true(b[KERN_GS_STOP] == 1.0);   /* two non-finite steps in a row with limit 1 */
    assert_true(b[KERN_GS_STOP_STEP] == 4.0);
}

/* AdamW + verdict + dropout rows recorded with wrong arguments (lr 99, t_plus 0, step and
 * step id 12345) after the step's values were set: the launch must equal the eager ops with
 * those values, bit for bit (on the CPU the recorded ops run as queued). */
static void graph_values_set_before_recording_reach_first_launch(void **state) {
    const int64_t n = 777, rows = 5, row_elems = 41;
    float *pa = malloc(n * 4), *pb = malloc(n * 4), *g = malloc(n * 4);
    float *ma = calloc(n, 4), *va = calloc(n, 4), *mb = calloc(n, 4), *vb = calloc(n, 4);
    float *x = malloc(rows * row_elems * 4), *ya = malloc(rows * row_elems * 4);
    float *yb = malloc(rows * row_elems * 4);
    uint8_t *ka = malloc(rows * row_elems), *kb = malloc(rows * row_elems);
    double gsa[KERN_GS_LEN] = {0}, gsb[KERN_GS_LEN] = {0};
    char err[256];
    fill_random(pa, n, 3, 0.5f);
    memcpy(pb, pa, n * 4);
    fill_random(x, rows * row_elems, 4, 1.0f);
    for (int64_t s = 0; s < 3; s++) {
        float lr = 1e-3f * (float)(s + 1);
        fill_random(g, n, 40 + (uint64_t)s, 0.1f);
        /* eager, with the step's values as arguments */
        kern_grad_stats(K, gsa, g, n, 1.0f, 0, s);
        kern_adamw_update_guarded(K, pa, ma, va, g, n, lr, 0.9f, 0.999f, 1e-8f, 0.01f, gsa, s + 1);
        kern_dropout_forward_rows(K, ya, ka, x, rows, row_elems, 0.3f, 5, (uint64_t)s, 11, 2);
        /* the trainer's order: values, then the recording, then the launch */
        kern_step_values sv = {lr, s + 1, s, (uint64_t)s};
        kern_graph_set_values(K, &sv);
        assert_int_equal(kern_graph_begin(K, err, sizeof err), 0);
        kern_grad_stats(K, gsb, g, n, 1.0f, 0, 12345);
        kern_adamw_update_guarded(K, pb, mb, vb, g, n, 99.0f, 0.9f, 0.999f, 1e-8f, 0.01f, gsb, 0);
        kern_dropout_forward_rows(K, yb, kb, x, rows, row_elems, 0.3f, 5, 12345, 11, 2);
        assert_int_equal(kern_graph_end(K, err, sizeof err), 0);
        kern_graph_launch(K);
        assert_int_equal(kern_check(K, err, sizeof err), 0);
        for (int64_t i = 0; i < n; i++) assert_true(isfinite(pb[i]));
        assert_memory_equal(pa, pb, n * 4);
        assert_memory_equal(ma, mb, n * 4);
        assert_memory_equal(gsa, gsb, sizeof gsa);
        assert_memory_equal(ya, yb, rows * row_elems * 4);
        assert_memory_equal(ka, kb, rows * row_elems);
    }
    /* outside a recording the arguments count again */
    kern_adamw_update_guarded(K, pa, ma, va, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, gsa, 4);
    for (int64_t i = 0; i < n; i++) assert_true(isfinite(pa[i]));
    /* a second launch of one recording is a replay the CPU cannot do: reported, not ignored */
    kern_graph_launch(K);
    assert_int_equal(kern_check(K, err, sizeof err), -1);
    free(pa); free(pb); free(g); free(ma); free(va); free(mb); free(vb);
    free(x); free(ya); free(yb); free(ka); free(kb);
}

/* A context whose values were never set: the launch gives NaN parameters, not a result. */
static void graph_launch_without_values_is_nonfinite(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 1, .device = 0};
    kern_ctx *k;
    char err[256];
    assert_int_equal(kern_create(&opt, &k, err, sizeof err), 0);
    const int64_t n = 64;
    float p[64], m[64] = {0}, v[64] = {0}, g[64];
    double gs[KERN_GS_LEN] = {0};
    for (int i = 0; i < n; i++) p[i] = g[i] = 0.01f * (float)i;
    assert_int_equal(kern_graph_begin(k, err, sizeof err), 0);
    kern_grad_stats(k, gs, g, n, 1.0f, 0, 0);
    kern_adamw_update_guarded(k, p, m, v, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, gs, 1);
    assert_int_equal(kern_graph_end(k, err, sizeof err), 0);
    kern_graph_launch(k);
    assert_true(isnan(p[1]));
    kern_destroy(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sharded_verdict_equals_grad_stats),
        cmocka_unit_test(dropout_rows_equal_per_sample_calls),
        cmocka_unit_test(guarded_updates_equal_old_sequence),
        cmocka_unit_test(batchnorm_param_grads_equal_host_round_trip),
        cmocka_unit_test(upload_copies_every_part),
        cmocka_unit_test(graph_values_set_before_recording_reach_first_launch),
        cmocka_unit_test(graph_launch_without_values_is_nonfinite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
