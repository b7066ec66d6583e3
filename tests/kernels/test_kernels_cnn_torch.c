/* test_kernels_cnn_torch.c: the convolutional kern_* ops against PyTorch on the same inputs.
 *
 * torch_cnn_reference.py (a ctest fixture) writes inputs, weights, outputs and gradients of
 * nn.Conv2d (stride, padding, dilation, groups, 1x1), F.max_pool2d (with indices),
 * F.avg_pool2d, F.adaptive_avg_pool2d(1) and nn.BatchNorm2d (train step with running stats,
 * then eval) to a file; this test reads it (path in argv[1]), recomputes everything with the
 * kernels and compares.  Exits 77 (skipped) when the file is missing, i.e. when the fixture was
 * skipped for lack of torch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "reference_cnn.h"
#include "torch_file.h"

/* Both sides round in float32 (different summation orders): sums of products agree to a few
 * 1e-7 of their natural scale sum|terms| (conv), element-wise results to a few 1e-7 relative,
 * with an absolute floor of ABS_FLOOR * max|reference| for values that cancel (pool
 * gradients summed over overlapping windows, batch norm's din). */
#define SCALED_TOL 2e-5
#define RTOL 2e-5
#define ABS_FLOOR 1e-6

static kern_ctx *K;

/* A backend buffer holding a copy of host data (n floats). */
static float *upload(const float *host, int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    kern_to_device(K, p, host, (size_t)n * sizeof(float));
    return p;
}

static float *zeros(int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

/* |got - want| <= RTOL*|want| + floor_rel*max|want|  (scale == NULL), or
 * |got - want| <= SCALED_TOL*scale[i] */
static void expect_close(const char *what, const float *dev, const float *want, int64_t n,
                         const double *scale, double floor_rel) {
    torch_expect_close(K, what, dev, want, n, scale, scale ? SCALED_TOL : RTOL, floor_rel);
}

static double *abs_copy(const float *x, int64_t n) {
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = fabs(x[i]);
    return d;
}

/* ---- conv2d ---- */

static void check_conv(const char *name) {
    const int32_t *d = torch_ints(name, "dims", 15);
    kern_conv_shape s = {.B = d[0], .C = d[1], .H = d[2], .W = d[3], .K = d[4], .R = d[5],
                         .S = d[6], .stride_h = d[7], .stride_w = d[8], .pad_h = d[9],
                         .pad_w = d[10], .dil_h = d[11], .dil_w = d[12], .groups = d[13]};
    int has_bias = d[14];
    int P = kern_conv_out_h(&s), Q = kern_conv_out_w(&s);
    int64_t ni = (int64_t)s.B * s.C * s.H * s.W, nw = (int64_t)s.K * (s.C / s.groups) * s.R * s.S;
    int64_t no = (int64_t)s.B * s.K * P * Q;
    const float *hx = torch_floats(name, "x", ni), *hw = torch_floats(name, "w", nw);
    const float *hdy = torch_floats(name, "dy", no);
    const float *hb = has_bias ? torch_floats(name, "b", s.K) : NULL;
    float *x = upload(hx, ni), *w = upload(hw, nw), *dy = upload(hdy, no);
    float *b = hb ? upload(hb, s.K) : NULL;
    float *y = zeros(no), *dx = zeros(ni), *dw = zeros(nw), *db = zeros(s.K);
    void *ws = kern_alloc(K, kern_conv2d_workspace(K, &s) + 1);
    assert_non_null(ws);
    kern_conv2d_forward(K, y, x, w, b, &s, ws);
    kern_conv2d_backward(K, dx, dw, hb ? db : NULL, dy, x, w, &s, ws);

    /* error scales: the float64 reference run on absolute values (sum of |terms|) */
    double *ax = abs_copy(hx, ni), *aw = abs_copy(hw, nw), *ady = abs_copy(hdy, no);
    double *ab = hb ? abs_copy(hb, s.K) : NULL;
    double *sy = calloc(no, sizeof(double)), *sdx = calloc(ni, sizeof(double));
    double *sdw = calloc(nw, sizeof(double)), *sdb = calloc(s.K, sizeof(double));
    ref_conv2d_forward(sy, ax, aw, ab, &s);
    ref_conv2d_backward(sdx, sdw, sdb, ady, ax, aw, &s);
    char what[64];
    snprintf(what, sizeof what, "%s y", name);
    expect_close(what, y, torch_floats(name, "y", no), no, sy, 0);
    snprintf(what, sizeof what, "%s dx", name);
    expect_close(what, dx, torch_floats(name, "dx", ni), ni, sdx, 0);
    snprintf(what, sizeof what, "%s dw", name);
    expect_close(what, dw, torch_floats(name, "dw", nw), nw, sdw, 0);
    if (hb) {
        snprintf(what, sizeof what, "%s db", name);
        expect_close(what, db, torch_floats(name, "db", s.K), s.K, sdb, 0);
    }
    free(ax), free(aw), free(ady), free(ab), free(sy), free(sdx), free(sdw), free(sdb);
    kern_free(K, x), kern_free(K, w), kern_free(K, dy), kern_free(K, b), kern_free(K, y);
    kern_free(K, dx), kern_free(K, dw), kern_free(K, db), kern_free(K, ws);
}

static const char *conv_names[] = {"conv0", "conv1", "conv2", "conv3",
                                   "conv4", "conv5", "conv6", "conv7"};

static void test_conv2d(void **state) {
    for (size_t i = 0; i < sizeof conv_names / sizeof conv_names[0]; i++)
        check_conv(conv_names[i]);
}

/* The same cases with every shape that oneDNN has a JIT kernel for sent to its convolution
 * primitives (kern_options.cpu_conv = KERN_CONV_DNNL; the default rule takes conv3 and the
 * depthwise conv6 there anyway), at the same tolerances. */
static void test_conv2d_dnnl(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 1, .cpu_conv = KERN_CONV_DNNL};
    kern_ctx *saved = K;
    char err[256];
    if (kern_create(&opt, &K, err, sizeof err) != 0) fail_msg("kern_create: %s", err);
    for (size_t i = 0; i < sizeof conv_names / sizeof conv_names[0]; i++)
        check_conv(conv_names[i]);
    kern_destroy(K);
    K = saved;
}

/* ---- pooling ---- */

static void check_pool(const char *name) {
    const int32_t *d = torch_ints(name, "dims", 10);
    kern_conv_shape s = {.B = d[0], .C = d[1], .H = d[2], .W = d[3], .K = d[1], .R = d[4],
                         .S = d[5], .stride_h = d[6], .stride_w = d[7], .pad_h = d[8],
                         .pad_w = d[9], .dil_h = 1, .dil_w = 1, .groups = 1};
    int P = kern_conv_out_h(&s), Q = kern_conv_out_w(&s);
    int64_t ni = (int64_t)s.B * s.C * s.H * s.W, no = (int64_t)s.B * s.C * P * Q;
    float *x = upload(torch_floats(name, "x", ni), ni);
    float *dy = upload(torch_floats(name, "dy", no), no);
    float *y = zeros(no), *dx = zeros(ni);
    int32_t *idx = kern_alloc(K, (size_t)no * sizeof(int32_t));
    char what[64];

    kern_maxpool2d_forward(K, y, idx, x, &s);
    kern_maxpool2d_backward(K, dx, dy, idx, &s);
    snprintf(what, sizeof what, "%s max y", name);
    expect_close(what, y, torch_floats(name, "max_y", no), no, NULL, 0);   /* a selection: exact */
    const int32_t *want_idx = torch_ints(name, "max_idx", no);
    int32_t *got_idx = malloc((size_t)no * sizeof(int32_t));
    kern_to_host(K, got_idx, idx, (size_t)no * sizeof(int32_t));
    for (int64_t i = 0; i < no; i++)
        if (got_idx[i] != want_idx[i])
            fail_msg("%s max indices[%lld]: %d, torch has %d", name, (long long)i, got_idx[i],
                     want_idx[i]);
    free(got_idx);
    snprintf(what, sizeof what, "%s max dx", name);
    expect_close(what, dx, torch_floats(name, "max_dx", ni), ni, NULL, ABS_FLOOR);

    kern_avgpool2d_forward(K, y, x, &s);
    kern_avgpool2d_backward(K, dx, dy, &s);
    snprintf(what, sizeof what, "%s avg y", name);
    expect_close(what, y, torch_floats(name, "avg_y", no), no, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s avg dx", name);
    expect_close(what, dx, torch_floats(name, "avg_dx", ni), ni, NULL, ABS_FLOOR);
    kern_free(K, x), kern_free(K, dy), kern_free(K, y), kern_free(K, dx), kern_free(K, idx);
}

static void test_pools(void **state) {
    check_pool("pool0");
    check_pool("pool1");
    check_pool("pool2");
}

/* adaptive_avg_pool2d(x, 1) is an average pool with the whole plane as its window */
static void test_global_avg_pool(void **state) {
    const int32_t *d = torch_ints("gap", "dims", 4);
    kern_conv_shape s = {.B = d[0], .C = d[1], .H = d[2], .W = d[3], .K = d[1], .R = d[2],
                         .S = d[3], .stride_h = 1, .stride_w = 1, .groups = 1};
    assert_int_equal(kern_conv_out_h(&s), 1);
    assert_int_equal(kern_conv_out_w(&s), 1);
    int64_t ni = (int64_t)s.B * s.C * s.H * s.W, no = (int64_t)s.B * s.C;
    float *x = upload(torch_floats("gap", "x", ni), ni);
    float *dy = upload(torch_floats("gap", "dy", no), no);
    float *y = zeros(no), *dx = zeros(ni);
    kern_avgpool2d_forward(K, y, x, &s);
    kern_avgpool2d_backward(K, dx, dy, &s);
    expect_close("global avg pool y", y, torch_floats("gap", "y", no), no, NULL, ABS_FLOOR);
    expect_close("global avg pool dx", dx, torch_floats("gap", "dx", ni), ni, NULL, ABS_FLOOR);
    kern_free(K, x), kern_free(K, dy), kern_free(K, y), kern_free(K, dx);
}

/* ---- batch norm ---- */

static void check_batchnorm(const char *name) {
    const int32_t *d = torch_ints(name, "dims", 4);
    int B = d[0], C = d[1], HW = d[2] * d[3];
    int64_t n = (int64_t)B * C * HW;
    double count = (double)B * HW;
    float *x = upload(torch_floats(name, "x", n), n), *dy = upload(torch_floats(name, "dy", n), n);
    float *gamma = upload(torch_floats(name, "gamma", C), C);
    float *beta = upload(torch_floats(name, "beta", C), C);
    float *rm = upload(torch_floats(name, "running_mean0", C), C);
    float *rv = upload(torch_floats(name, "running_var0", C), C);
    float *y = zeros(n), *dx = zeros(n), *mi = zeros(2 * C);
    double *sums = calloc(2 * C, sizeof(double)), *red = calloc(2 * C, sizeof(double));
    kern_batchnorm_stats(K, sums, x, B, C, HW);
    kern_batchnorm_forward(K, y, mi, x, gamma, beta, sums, count, 1e-5f, rm, rv, 0.1f, B, C,
                           HW);
    kern_batchnorm_backward_reduce(K, red, dy, x, mi, B, C, HW);
    kern_batchnorm_backward(K, dx, dy, x, mi, gamma, red, count, B, C, HW);
    /* the caller's accumulation of the parameter gradients, as kernels.h describes it */
    float *dgamma = zeros(C), *dbeta = zeros(C);
    for (int c = 0; c < C; c++) dbeta[c] += (float)red[c], dgamma[c] += (float)red[C + c];

    char what[64];
    snprintf(what, sizeof what, "%s train y", name);
    expect_close(what, y, torch_floats(name, "y", n), n, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s running_mean", name);
    expect_close(what, rm, torch_floats(name, "running_mean", C), C, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s running_var", name);
    expect_close(what, rv, torch_floats(name, "running_var", C), C, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s dx", name);
    expect_close(what, dx, torch_floats(name, "dx", n), n, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s dgamma", name);
    expect_close(what, dgamma, torch_floats(name, "dgamma", C), C, NULL, ABS_FLOOR);
    snprintf(what, sizeof what, "%s dbeta", name);
    expect_close(what, dbeta, torch_floats(name, "dbeta", C), C, NULL, ABS_FLOOR);

    /* eval mode with the updated running statistics */
    float *x2 = upload(torch_floats(name, "eval_x", n), n);
    kern_batchnorm_forward_eval(K, y, x2, gamma, beta, rm, rv, 1e-5f, B, C, HW);
    snprintf(what, sizeof what, "%s eval y", name);
    expect_close(what, y, torch_floats(name, "eval_y", n), n, NULL, ABS_FLOOR);

    free(sums), free(red);
    float *fs[] = {x, dy, gamma, beta, rm, rv, y, dx, mi, dgamma, dbeta, x2};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) kern_free(K, fs[i]);
}

static void test_batchnorm(void **state) {
    check_batchnorm("bn0");
    check_batchnorm("bn1");
}

int main(int argc, char **argv) {
    int rc = torch_test_start(argc, argv, "torch_cnn_reference.py", 1, &K);
    if (rc != 0) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_dnnl),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_global_avg_pool),
        cmocka_unit_test(test_batchnorm),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    torch_test_finish(K);
    return rc;
}
