/* test_kernels_ops.c: the float32 kern_* ops (CPU backend) against the float64 reference, plus
 * the API's semantics: accumulation into dw/db, overwritten din, NULL din/db, in-place
 * activations, fills and conversions, reductions, SGD and AdamW over several steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "kernels.h"
#include "reference.h"
#include "test_util.h"

/* float32 against float64: a few float ulps of the result's natural scale */
#define F32_RTOL 1e-5

static kern_ctx *K;

static int setup(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 2, .device = 0};
    char err[256];
    if (kern_create(&opt, &K, err, sizeof(err)) != 0) {
        fprintf(stderr, "kern_create: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    kern_destroy(K);
    return 0;
}

static float *falloc(int64_t n) {
    float *p = kern_alloc(K, (size_t)n * sizeof(float));
    assert_non_null(p);
    return p;
}

static double *dalloc(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    assert_non_null(p);
    return p;
}

/* ---- context and memory ---- */

static void test_create_errors(void **state) {
    char err[256] = "";
    kern_ctx *k = (kern_ctx *)1;
    kern_options bad_threads = {.backend = KERN_CPU, .threads = 0};
    assert_int_not_equal(kern_create(&bad_threads, &k, err, sizeof(err)), 0);
    assert_null(k);
    assert_non_null(strstr(err, "threads"));

    assert_int_equal(kern_get_backend(K), KERN_CPU);
    if (kern_cuda_device_count() == 0) {
        err[0] = '\0';
        kern_options cuda = {.backend = KERN_CUDA, .threads = 1, .device = 0};
        k = (kern_ctx *)1;
        assert_int_not_equal(kern_create(&cuda, &k, err, sizeof(err)), 0);
        assert_null(k);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(kern_sync(K, err, sizeof(err)), 0);
    assert_int_equal(kern_check(K, err, sizeof(err)), 0);
}

static void test_alloc_aligned_zeroed(void **state) {
    size_t sizes[] = {1, 3, 64, 1000, 1 << 20};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        unsigned char *p = kern_alloc(K, sizes[s]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < sizes[s]; i++) assert_int_equal(p[i], 0);
        kern_free(K, p);
    }
    float host[5] = {1, 2, 3, 4, 5}, back[5] = {0};
    float *dev = falloc(5);
    kern_to_device(K, dev, host, sizeof(host));
    kern_to_host(K, back, dev, sizeof(back));
    assert_memory_equal(host, back, sizeof(host));
    kern_free(K, dev);
}

/* ---- fills and element-wise arithmetic ---- */

static void test_fill_copy_scale_axpy(void **state) {
    enum { n = 1001 };
    float *x = falloc(n), *y = falloc(n);
    double xd[n], yd[n], want[n];
    uint64_t seed = 11;
    tu_fill_uniform(xd, n, &seed, -3, 3);
    tu_fill_uniform(yd, n, &seed, -3, 3);

    kern_fill(K, y, 2.5f, n);
    for (int i = 0; i < n; i++) want[i] = 2.5;
    assert_int_equal(tu_close_f("fill", y, want, n, 0, 0), 0);
    kern_fill(K, y, -1.0f, n - 1);   /* must not touch the last element */
    assert_true(y[n - 1] == 2.5f && y[n - 2] == -1.0f);

    tu_to_float(x, xd, n);
    kern_copy(K, y, x, n);
    assert_memory_equal(x, y, n * sizeof(float));

    tu_to_double(xd, x, n);   /* exact float values from here on */
    kern_scale(K, y, -0.75f, n);
    for (int i = 0; i < n; i++) want[i] = xd[i] * -0.75;
    assert_int_equal(tu_close_f("scale", y, want, n, 1e-7, 0), 0);

    tu_to_float(y, yd, n);
    tu_to_double(yd, y, n);
    kern_axpy(K, y, 0.3f, x, n);
    for (int i = 0; i < n; i++) want[i] = yd[i] + (double)0.3f * xd[i];
    assert_int_equal(tu_close_f("axpy", y, want, n, 1e-6, 1e-7), 0);

    /* y == x: x += a*x */
    kern_axpy(K, x, 0.5f, x, n);
    for (int i = 0; i < n; i++) want[i] = 1.5 * xd[i];
    assert_int_equal(tu_close_f("axpy aliased", x, want, n, 1e-6, 0), 0);
    kern_free(K, x);
    kern_free(K, y);
}

static void test_u8_to_f32_and_normalize(void **state) {
    enum { n = 256 + 7 };
    uint8_t src[n];
    for (int i = 0; i < n; i++) src[i] = (uint8_t)(i < 256 ? i : 255 - i);
    float *dst = falloc(n);
    double want[n];
    const float in_scale = 1.0f / 255.0f, mean = 0.1307f, std = 0.3081f;
    kern_u8_to_f32(K, dst, src, n, in_scale, mean, std);
    for (int i = 0; i < n; i++) want[i] = (src[i] / 255.0 - (double)mean) / (double)std;
    assert_int_equal(tu_close_f("u8_to_f32", dst, want, n, 1e-6, 1e-6), 0);

    float *x = falloc(n), *y = falloc(n);
    double xd[n];
    uint64_t seed = 12;
    tu_fill_uniform(xd, n, &seed, -10, 10);
    tu_to_float(x, xd, n);
    tu_to_double(xd, x, n);
    for (int i = 0; i < n; i++) want[i] = (xd[i] - 2.0) / 4.0;
    kern_f32_normalize(K, y, x, n, 2.0f, 4.0f);
    assert_int_equal(tu_close_f("f32_normalize", y, want, n, 1e-6, 1e-7), 0);
    kern_f32_normalize(K, x, x, n, 2.0f, 4.0f);
    assert_int_equal(tu_close_f("f32_normalize in place", x, want, n, 1e-6, 1e-7), 0);
    kern_free(K, dst);
    kern_free(K, x);
    kern_free(K, y);
}

/* ---- linear ---- */

static void check_linear(int B, int I, int O, int with_bias, uint64_t seed) {
    double *in = dalloc((int64_t)B * I), *w = dalloc((int64_t)O * I), *b = dalloc(O);
    double *dout = dalloc((int64_t)B * O), *dw0 = dalloc((int64_t)O * I), *db0 = dalloc(O);
    tu_fill_uniform(in, (int64_t)B * I, &seed, -1, 1);
    tu_fill_uniform(w, (int64_t)O * I, &seed, -1, 1);
    tu_fill_uniform(b, O, &seed, -1, 1);
    tu_fill_uniform(dout, (int64_t)B * O, &seed, -1, 1);
    tu_fill_uniform(dw0, (int64_t)O * I, &seed, -1, 1);
    tu_fill_uniform(db0, O, &seed, -1, 1);
    float *fin = falloc((int64_t)B * I), *fw = falloc((int64_t)O * I), *fb = falloc(O);
    float *fdout = falloc((int64_t)B * O), *fout = falloc((int64_t)B * O);
    float *fdin = falloc((int64_t)B * I), *fdw = falloc((int64_t)O * I), *fdb = falloc(O);
    /* round the inputs to float first, so the reference sees exactly what the kernel sees */
    tu_to_float(fin, in, (int64_t)B * I), tu_to_double(in, fin, (int64_t)B * I);
    tu_to_float(fw, w, (int64_t)O * I), tu_to_double(w, fw, (int64_t)O * I);
    tu_to_float(fb, b, O), tu_to_double(b, fb, O);
    tu_to_float(fdout, dout, (int64_t)B * O), tu_to_double(dout, fdout, (int64_t)B * O);
    tu_to_float(fdw, dw0, (int64_t)O * I), tu_to_double(dw0, fdw, (int64_t)O * I);
    tu_to_float(fdb, db0, O), tu_to_double(db0, fdb, O);
    const double *bias = with_bias ? b : NULL;

    /* forward */
    double *out = dalloc((int64_t)B * O), *scale = dalloc((int64_t)B * O);
    kern_fill(K, fout, 1e3f, (int64_t)B * O);   /* garbage: out is overwritten */
    kern_linear_forward(K, fout, fin, fw, with_bias ? fb : NULL, B, I, O);
    ref_linear_forward(out, in, w, bias, B, I, O);
    tu_gemm_abt_scale(scale, in, w, bias, B, I, O);
    assert_int_equal(tu_close_scaled_f("linear out", fout, out, scale, (int64_t)B * O, F32_RTOL),
                     0);

    /* backward: din overwritten, dw and db accumulated onto dw0, db0 */
    double *din = dalloc((int64_t)B * I), *dw = dalloc((int64_t)O * I), *db = dalloc(O);
    memcpy(dw, dw0, sizeof(double) * O * I);
    memcpy(db, db0, sizeof(double) * O);
    ref_linear_backward(din, dw, db, dout, in, w, B, I, O);
    kern_fill(K, fdin, 1e3f, (int64_t)B * I);
    kern_linear_backward(K, fdin, fdw, fdb, fdout, fin, fw, B, I, O);

    /* error scales: din ~ sum_o |dout||w|; dw ~ |dw0| + sum_b |dout||in|; db likewise */
    double *sdin = dalloc((int64_t)B * I), *sdw = dalloc((int64_t)O * I), *sdb = dalloc(O);
    for (int r = 0; r < B; r++)
        for (int i = 0; i < I; i++) {
            double s = 0;
            for (int o = 0; o < O; o++) s += fabs(dout[r * O + o] * w[o * I + i]);
            sdin[r * I + i] = s;
        }
    for (int o = 0; o < O; o++) {
        for (int i = 0; i < I; i++) {
            double s = fabs(dw0[o * I + i]);
            for (int r = 0; r < B; r++) s += fabs(dout[r * O + o] * in[r * I + i]);
            sdw[o * I + i] = s;
        }
        double s = fabs(db0[o]);
        for (int r = 0; r < B; r++) s += fabs(dout[r * O + o]);
        sdb[o] = s;
    }
    assert_int_equal(tu_close_scaled_f("linear din", fdin, din, sdin, (int64_t)B * I, F32_RTOL),
                     0);
    assert_int_equal(tu_close_scaled_f("linear dw", fdw, dw, sdw, (int64_t)O * I, F32_RTOL), 0);
    assert_int_equal(tu_close_scaled_f("linear db", fdb, db, sdb, O, F32_RTOL), 0);

    /* NULL din and db: dw accumulates a second time, db is left alone */
    float *fdb_before = falloc(O);
    kern_copy(K, fdb_before, fdb, O);
    ref_linear_backward(NULL, dw, NULL, dout, in, w, B, I, O);
    kern_linear_backward(K, NULL, fdw, NULL, fdout, fin, fw, B, I, O);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) sdw[o * I + i] *= 2;
    assert_int_equal(tu_close_scaled_f("linear dw (2nd)", fdw, dw, sdw, (int64_t)O * I, F32_RTOL),
                     0);
    assert_memory_equal(fdb, fdb_before, O * sizeof(float));

    free(in), free(w), free(b), free(dout), free(dw0), free(db0), free(out), free(scale);
    free(din), free(dw), free(db), free(sdin), free(sdw), free(sdb);
    kern_free(K, fin), kern_free(K, fw), kern_free(K, fb), kern_free(K, fdout);
    kern_free(K, fout), kern_free(K, fdin), kern_free(K, fdw), kern_free(K, fdb);
    kern_free(K, fdb_before);
}

static void test_linear(void **state) {
    check_linear(3, 7, 5, 1, 21);
    check_linear(3, 7, 5, 0, 22);
    check_linear(1, 1, 1, 1, 23);
    check_linear(17, 33, 9, 1, 24);
    check_linear(64, 129, 70, 1, 25);
    check_linear(5, 300, 2, 0, 26);
    check_linear(2, 0, 3, 1, 27);   /* empty shapes: out = bias, db still accumulates */
    check_linear(0, 4, 3, 1, 28);
}

/* ---- activations ---- */

static void test_relu(void **state) {
    enum { n = 1003 };
    double xd[n], gd[n], want[n];
    uint64_t seed = 31;
    tu_fill_uniform(xd, n, &seed, -2, 2);
    tu_fill_uniform(gd, n, &seed, -1, 1);
    xd[0] = 0.0, xd[1] = -0.0, xd[n - 1] = 1e-30;
    float *x = falloc(n), *g = falloc(n), *y = falloc(n), *dx = falloc(n);
    tu_to_float(x, xd, n), tu_to_double(xd, x, n);
    tu_to_float(g, gd, n), tu_to_double(gd, g, n);

    kern_relu_forward(K, y, x, n);
    ref_relu_forward(want, xd, n);
    assert_int_equal(tu_close_f("relu out", y, want, n, 0, 0), 0);
    kern_relu_backward(K, dx, g, x, n);
    ref_relu_backward(want, gd, xd, n);
    assert_int_equal(tu_close_f("relu din", dx, want, n, 0, 0), 0);
    assert_true(dx[0] == 0.0f && dx[n - 1] == g[n - 1]);

    /* in place: din == dout, then out == in */
    kern_copy(K, dx, g, n);
    kern_relu_backward(K, dx, dx, x, n);
    assert_int_equal(tu_close_f("relu din in place", dx, want, n, 0, 0), 0);
    kern_relu_forward(K, x, x, n);
    ref_relu_forward(want, xd, n);
    assert_int_equal(tu_close_f("relu out in place", x, want, n, 0, 0), 0);
    kern_free(K, x), kern_free(K, g), kern_free(K, y), kern_free(K, dx);
}

/* kern_exp_nonpos (elementwise.h), under GELU and softmax: a few float ulps everywhere */
static void test_exp_nonpos(void **state) {
    double worst = 0;
    for (float a = -87.0f; a <= 0.0f; a += 1e-3f) {
        double want = exp((double)a);
        worst = tu_max_keep_nan(worst, fabs(kern_exp_nonpos(a) - want) / want);
    }
    assert_true(worst < 2e-7);   /* measured 1e-7; libm's expf: 6e-8 */
    assert_true(kern_exp_nonpos(0.0f) == 1.0f);
    assert_true(kern_exp_nonpos(-1000.0f) > 0.0f);   /* clamped, never denormal or 0 */
    assert_true(kern_exp_nonpos(-1000.0f) >= 1e-38f);
}

/* GELU in float loses absolute accuracy ~ulp(|x|) where 0.5x(1+tanh) cancels (x << 0), as
 * PyTorch's float GELU does, so the tolerance has an absolute part proportional to |x|. */
static int check_gelu_close(const char *what, const float *got, const double *want,
                            const double *x, int64_t n) {
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double tol = 2e-6 * fabs(want[i]) + 4e-7 * fmax(1.0, fabs(x[i]));
        double ratio = fabs(got[i] - want[i]) / tol;
        if (!(ratio <= worst_ratio)) worst = i, worst_ratio = ratio;
    }
    if (worst < 0) return 0;
    fprintf(stderr, "%s: x = %.9g gives %.9g, expected %.9g (%.3g x tolerance)\n", what, x[worst],
            got[worst], want[worst], worst_ratio);
    return 1;
}

static void test_gelu(void **state) {
    enum { n = 48001 + 6 };
    double *xd = dalloc(n), *gd = dalloc(n), *want = dalloc(n);
    for (int i = 0; i < 48001; i++) xd[i] = -12.0 + 24.0 * i / 48000.0;
    double special[6] = {0.0, 1e-6, -1e-6, 3e-4, -5e-4, 40.0};
    memcpy(xd + 48001, special, sizeof(special));
    uint64_t seed = 41;
    tu_fill_uniform(gd, n, &seed, -1, 1);
    float *x = falloc(n), *g = falloc(n), *y = falloc(n), *dx = falloc(n);
    tu_to_float(x, xd, n), tu_to_double(xd, x, n);
    tu_to_float(g, gd, n), tu_to_double(gd, g, n);

    kern_gelu_forward(K, y, x, n);
    ref_gelu_forward(want, xd, n);
    assert_int_equal(check_gelu_close("gelu out", y, want, xd, n), 0);
    kern_gelu_backward(K, dx, g, x, n);
    ref_gelu_backward(want, gd, xd, n);
    assert_int_equal(check_gelu_close("gelu din", dx, want, xd, n), 0);

    kern_gelu_backward(K, g, g, x, n);   /* in place */
    assert_memory_equal(g, dx, n * sizeof(float));
    kern_gelu_forward(K, x, x, n);
    assert_memory_equal(x, y, n * sizeof(float));
    free(xd), free(gd), free(want);
    kern_free(K, x), kern_free(K, g), kern_free(K, y), kern_free(K, dx);
}

/* dropout against the reference given the kernel's own mask (statistics: test_kernels_random) */
static void test_dropout_matches_reference(void **state) {
    enum { n = 4099 };
    const float p = 0.25f;
    double xd[n], gd[n], want[n];
    uint64_t seed = 51;
    tu_fill_uniform(xd, n, &seed, -2, 2);
    tu_fill_uniform(gd, n, &seed, -1, 1);
    float *x = falloc(n), *g = falloc(n), *y = falloc(n), *dx = falloc(n);
    uint8_t *mask = kern_alloc(K, n), *mask2 = kern_alloc(K, n);
    tu_to_float(x, xd, n), tu_to_double(xd, x, n);
    tu_to_float(g, gd, n), tu_to_double(gd, g, n);

    kern_dropout_forward(K, y, mask, x, n, p, 7, 3);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        assert_true(mask[i] == 0 || mask[i] == 1);
        kept += mask[i];
    }
    assert_true(kept > 0 && kept < n);
    ref_dropout_forward(want, mask, xd, n, p);
    assert_int_equal(tu_close_f("dropout out", y, want, n, 1e-6, 0), 0);
    kern_dropout_backward(K, dx, g, mask, n, p);
    ref_dropout_backward(want, gd, mask, n, p);
    assert_int_equal(tu_close_f("dropout din", dx, want, n, 1e-6, 0), 0);

    /* in place gives the same bits and the same mask */
    kern_dropout_forward(K, x, mask2, x, n, p, 7, 3);
    assert_memory_equal(x, y, n * sizeof(float));
    assert_memory_equal(mask, mask2, n);
    kern_dropout_backward(K, g, g, mask, n, p);
    assert_memory_equal(g, dx, n * sizeof(float));

    /* p = 0 is the identity, p = 1 drops everything */
    tu_to_float(x, xd, n);
    kern_dropout_forward(K, y, mask, x, n, 0.0f, 7, 3);
    assert_memory_equal(x, y, n * sizeof(float));
    for (int i = 0; i < n; i++) assert_int_equal(mask[i], 1);
    kern_dropout_forward(K, y, mask, x, n, 1.0f, 7, 3);
    for (int i = 0; i < n; i++) assert_true(y[i] == 0.0f && mask[i] == 0);
    kern_free(K, x), kern_free(K, g), kern_free(K, y), kern_free(K, dx);
    kern_free(K, mask), kern_free(K, mask2);
}

/* NaN and Inf must reach the loss and the gradients, where the trainer's non-finite check
 * looks for them, rather than be absorbed by a clamp. */
static void test_nonfinite_propagates(void **state) {
    float *x = falloc(4), *y = falloc(4), *d = falloc(4);
    x[0] = NAN, x[1] = 1.0f, x[2] = -2.0f, x[3] = INFINITY;
    kern_gelu_forward(K, y, x, 4);
    assert_true(isnan(y[0]) && isfinite(y[1]) && isfinite(y[2]) && y[3] == INFINITY);
    kern_fill(K, d, 1.0f, 4);
    kern_gelu_backward(K, d, d, x, 3);
    assert_true(isnan(d[0]) && isfinite(d[1]) && isfinite(d[2]));

    enum { C = 5 };
    float *logits = falloc(2 * C), *dl = falloc(2 * C), *losses = falloc(2);
    int32_t labels[2] = {1, 3};
    for (int j = 0; j < 2 * C; j++) logits[j] = 0.1f * j;
    logits[2] = NAN;            /* row 0: a NaN that is neither the max nor the label */
    logits[C + 4] = INFINITY;   /* row 1: an Inf */
    double total = kern_softmax_xent(K, losses, dl, NULL, logits, labels, 2, C, 1.0f);
    assert_true(isnan(total) && isnan(losses[0]) && isnan(losses[1]));
    assert_int_not_equal(kern_has_nonfinite(K, dl, C), 0);
    assert_int_not_equal(kern_has_nonfinite(K, dl + C, C), 0);
    kern_free(K, x), kern_free(K, y), kern_free(K, d);
    kern_free(K, logits), kern_free(K, dl), kern_free(K, losses);
}

/* ---- softmax cross-entropy ---- */

static void test_softmax_xent(void **state) {
    enum { B = 9, C = 11 };
    double ld[B * C], want_losses[B], want_d[B * C];
    int32_t labels[B];
    uint64_t seed = 61;
    tu_fill_uniform(ld, B * C, &seed, -5, 5);
    for (int r = 0; r < B; r++) labels[r] = (int32_t)(tu_next_u64(&seed) % C);
    for (int j = 0; j < C; j++) {
        ld[1 * C + j] += 1000.0;   /* stability: huge logits */
        ld[2 * C + j] -= 1000.0;
        ld[3 * C + j] = 0.5;       /* all tied: argmax is index 0 */
        ld[4 * C + j] = j == 3 || j == 7 ? 2.0 : -1.0;   /* tie between 3 and 7 */
    }
    labels[3] = 0;   /* tie resolved to index 0: correct */
    labels[4] = 7;   /* tie resolved to index 3: not correct */
    labels[5] = C - 1;
    float *logits = falloc(B * C), *losses = falloc(B), *d = falloc(B * C);
    tu_to_float(logits, ld, B * C), tu_to_double(ld, logits, B * C);
    const float gs = 1.0f / B;
    int64_t correct = -1, want_correct = -2;
    double total = kern_softmax_xent(K, losses, d, &correct, logits, labels, B, C, gs);
    double want_total =
        ref_softmax_xent(want_losses, want_d, &want_correct, ld, labels, B, C, (double)gs);
    assert_int_equal(tu_close_f("xent losses", losses, want_losses, B, F32_RTOL, 1e-6), 0);
    assert_int_equal(tu_close_f("xent dlogits", d, want_d, B * C, F32_RTOL, 1e-7 * gs), 0);
    assert_int_equal(correct, want_correct);
    assert_true(fabs(total - want_total) <= F32_RTOL * want_total);
    double sum_losses = 0;
    for (int r = 0; r < B; r++) sum_losses += losses[r];
    assert_true(fabs(total - sum_losses) <= 1e-9 * sum_losses);

    /* the tie rows, by hand */
    int64_t c3 = -1, c4 = -1;
    kern_softmax_xent(K, NULL, NULL, &c3, logits + 3 * C, labels + 3, 1, C, 1.0f);
    kern_softmax_xent(K, NULL, NULL, &c4, logits + 4 * C, labels + 4, 1, C, 1.0f);
    assert_int_equal(c3, 1);
    assert_int_equal(c4, 0);

    /* optional outputs may be NULL; dlogits may overwrite logits */
    double t2 = kern_softmax_xent(K, NULL, NULL, NULL, logits, labels, B, C, gs);
    assert_true(t2 == total);
    kern_softmax_xent(K, NULL, logits, NULL, logits, labels, B, C, gs);
    assert_memory_equal(logits, d, B * C * sizeof(float));
    kern_free(K, logits), kern_free(K, losses), kern_free(K, d);
}

/* ---- reductions ---- */

static void test_sumsq(void **state) {
    enum { n = 10007 };
    double xd[n];
    uint64_t seed = 71;
    tu_fill_uniform(xd, n, &seed, -3, 3);
    float *x = falloc(n);
    tu_to_float(x, xd, n), tu_to_double(xd, x, n);
    int64_t lens[] = {0, 1, 7, 8, 9, 1000, n};
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        double got = kern_sumsq(K, x, lens[l]), want = ref_sumsq(xd, lens[l]);
        /* products of floats are exact in double: only the additions round */
        assert_true(fabs(got - want) <= 1e-13 * want);
    }
    kern_free(K, x);
}

static void test_has_nonfinite(void **state) {
    enum { n = 37 };
    float *x = falloc(n);
    for (int i = 0; i < n; i++) x[i] = (float)(i - 18) * 1e3f;
    x[5] = FLT_MAX, x[6] = -FLT_MAX, x[7] = FLT_MIN / 4, x[8] = -0.0f;
    assert_int_equal(kern_has_nonfinite(K, x, n), 0);
    assert_int_equal(kern_has_nonfinite(K, x, 0), 0);
    float bad[] = {NAN, INFINITY, -INFINITY, -NAN};
    int where[] = {0, 17, n - 1};
    for (int b = 0; b < 4; b++)
        for (int w = 0; w < 3; w++) {
            float keep = x[where[w]];
            x[where[w]] = bad[b];
            assert_int_not_equal(kern_has_nonfinite(K, x, n), 0);
            if (where[w] == n - 1) assert_int_equal(kern_has_nonfinite(K, x, n - 1), 0);
            x[where[w]] = keep;
        }
    kern_free(K, x);
}

/* ---- optimizers: several steps against the double reference ---- */

enum { OPT_N = 333, OPT_STEPS = 5 };

static void make_grads(double *grads, double *param0, uint64_t seed) {
    tu_fill_uniform(param0, OPT_N, &seed, -1, 1);
    tu_fill_uniform(grads, (int64_t)OPT_STEPS * OPT_N, &seed, -1, 1);
    for (int i = 0; i < OPT_N; i++) param0[i] = (float)param0[i];
    for (int i = 0; i < OPT_STEPS * OPT_N; i++) grads[i] = (float)grads[i];
    grads[3] = 0.0;   /* exactly zero gradient on step 1 */
}

static void check_sgd(float lr, float momentum, float wd, int nesterov, uint64_t seed) {
    double *grads = dalloc((int64_t)OPT_STEPS * OPT_N), *p = dalloc(OPT_N), *buf = dalloc(OPT_N);
    make_grads(grads, p, seed);
    float *fp = falloc(OPT_N), *fg = falloc(OPT_N);
    float *fbuf = momentum != 0.0f ? falloc(OPT_N) : NULL;
    tu_to_float(fp, p, OPT_N);
    if (fbuf) kern_fill(K, fbuf, 1e3f, OPT_N);   /* garbage: the first step must ignore it */
    for (int t = 0; t < OPT_STEPS; t++) {
        tu_to_float(fg, grads + (int64_t)t * OPT_N, OPT_N);
        kern_sgd_update(K, fp, fbuf, fg, OPT_N, lr, momentum, wd, nesterov, t == 0);
        ref_sgd_update(p, buf, grads + (int64_t)t * OPT_N, OPT_N, lr, momentum, wd, nesterov,
                       t == 0);
        assert_int_equal(tu_close_f("sgd param", fp, p, OPT_N, F32_RTOL, 1e-6), 0);
        if (fbuf) assert_int_equal(tu_close_f("sgd momentum buffer", fbuf, buf, OPT_N, F32_RTOL,
                                              1e-6), 0);
    }
    free(grads), free(p), free(buf);
    kern_free(K, fp), kern_free(K, fg);
    if (fbuf) kern_free(K, fbuf);
}

static void test_sgd(void **state) {
    check_sgd(0.1f, 0.0f, 0.0f, 0, 81);     /* plain */
    check_sgd(0.1f, 0.0f, 0.05f, 0, 82);    /* plain + weight decay */
    check_sgd(0.1f, 0.9f, 0.0f, 0, 83);     /* momentum */
    check_sgd(0.05f, 0.9f, 0.01f, 1, 84);   /* nesterov + weight decay */
    check_sgd(0.2f, 0.5f, 0.001f, 0, 85);
}

static void check_adamw(float lr, float b1, float b2, float eps, float wd, uint64_t seed) {
    double *grads = dalloc((int64_t)OPT_STEPS * OPT_N), *p = dalloc(OPT_N);
    double *m = dalloc(OPT_N), *v = dalloc(OPT_N);
    make_grads(grads, p, seed);
    float *fp = falloc(OPT_N), *fg = falloc(OPT_N), *fm = falloc(OPT_N), *fv = falloc(OPT_N);
    tu_to_float(fp, p, OPT_N);
    for (int t = 1; t <= OPT_STEPS; t++) {
        const double *g = grads + (int64_t)(t - 1) * OPT_N;
        tu_to_float(fg, g, OPT_N);
        kern_adamw_update(K, fp, fm, fv, fg, OPT_N, lr, b1, b2, eps, wd, t);
        ref_adamw_update(p, m, v, g, OPT_N, lr, b1, b2, eps, wd, t);
        assert_int_equal(tu_close_f("adamw param", fp, p, OPT_N, F32_RTOL, 1e-6), 0);
        assert_int_equal(tu_close_f("adamw m", fm, m, OPT_N, F32_RTOL, 1e-7), 0);
        assert_int_equal(tu_close_f("adamw v", fv, v, OPT_N, F32_RTOL, 1e-9), 0);
    }
    free(grads), free(p), free(m), free(v);
    kern_free(K, fp), kern_free(K, fg), kern_free(K, fm), kern_free(K, fv);
}

static void test_adamw(void **state) {
    check_adamw(1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 91);
    check_adamw(3e-2f, 0.8f, 0.99f, 1e-3f, 0.1f, 92);
    check_adamw(1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 93);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_alloc_aligned_zeroed),
        cmocka_unit_test(test_fill_copy_scale_axpy),
        cmocka_unit_test(test_u8_to_f32_and_normalize),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_exp_nonpos),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_dropout_matches_reference),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_nonfinite_propagates),
        cmocka_unit_test(test_sumsq),
        cmocka_unit_test(test_has_nonfinite),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
