/* test_kernels_cnn.c: conv2d, max/avg pooling and batch norm.
 *
 *   gradcheck  the float64 reference backward passes (reference_cnn.c) against central finite
 *              differences of the reference forward passes, on odd shapes with stride,
 *              padding, dilation and groups; batch norm as the whole train-mode composite
 *              stats -> forward -> backward_reduce -> backward.
 *   ops        the float32 kern_* ops (CPU backend) against the float64 reference, with the
 *              API's semantics: dw/db accumulated, din and out overwritten (prefilled with
 *              NaN), NULL din/db/bias, the 1x1 fast path against the generic path; the
 *              shapes routed to oneDNN's convolution primitives (cpu_conv_dnnl.c) the same
 *              way, and their results repeating bit for bit (1 and 2 threads).
 *   sync       synchronised batch norm: a batch of 8 split into 2 or 4 "ranks" whose sums are
 *              added between the steps gives what the whole batch gives.
 * Each loss is L = sum(G * forward(x)) for a fixed random G, so dL/dout = G. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "reference_cnn.h"
#include "test_util.h"

/* Finite differences: with these h the truncation and rounding errors are ~1e-10, while any
 * wrong term in a gradient is of order 1e-2 or more. */
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8
/* float32 against float64, relative to the natural scale of each value (sum of |terms|) */
#define F32_TOL 1e-5

static kern_ctx *K;

static int setup(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 1, .device = 0};
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

static double *dalloc(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    assert_non_null(p);
    return p;
}

static float *falloc(int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static float *fnan(int64_t n) {
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void absv(double *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fabs(src[i]);
}

typedef double (*loss_fn)(void *ctx);

/* g[i] = (L(x + h e_i) - L(x - h e_i)) / 2h, perturbing x in place */
static void numgrad(double *x, int64_t n, loss_fn loss, void *ctx, double h, double *g) {
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = loss(ctx);
        x[i] = keep - h;
        double lm = loss(ctx);
        x[i] = keep;
        g[i] = (lp - lm) / (2.0 * h);
    }
}

/* ---- shapes ---- */

static kern_conv_shape conv(int B, int C, int H, int W, int Kc, int R, int S, int sh, int sw,
                            int ph, int pw, int dh, int dw, int groups) {
    kern_conv_shape s = {.B = B, .C = C, .H = H, .W = W, .K = Kc, .R = R, .S = S,
                         .stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw,
                         .dil_h = dh, .dil_w = dw, .groups = groups};
    return s;
}

static int64_t in_n(const kern_conv_shape *s) { return (int64_t)s->B * s->C * s->H * s->W; }
static int64_t w_n(const kern_conv_shape *s) {
    return (int64_t)s->K * (s->C / s->groups) * s->R * s->S;
}
static int64_t out_n(const kern_conv_shape *s) {
    return (int64_t)s->B * s->K * kern_conv_out_h(s) * kern_conv_out_w(s);
}
/* pools: K = C, output of a dilation-1 window */
static kern_conv_shape pool(int B, int C, int H, int W, int R, int S, int sh, int sw, int ph,
                            int pw) {
    return conv(B, C, H, W, C, R, S, sh, sw, ph, pw, 1, 1, 1);
}

/* "conv C4 H7x5 K6 R3x2 stride 1,1 pad 1,1 dil 1,1 groups 1 din": names a failing case */
static void describe(char *buf, size_t len, const char *op, const kern_conv_shape *s,
                     const char *what) {
    snprintf(buf, len, "%s C%d H%dx%d K%d R%dx%d stride %d,%d pad %d,%d dil %d,%d groups %d %s",
             op, s->C, s->H, s->W, s->K, s->R, s->S, s->stride_h, s->stride_w, s->pad_h,
             s->pad_w, s->dil_h, s->dil_w, s->groups, what);
}

static void test_out_size(void **state) {
    kern_conv_shape s = conv(1, 1, 7, 5, 1, 3, 2, 1, 1, 1, 1, 1, 1, 1);
    assert_int_equal(kern_conv_out_h(&s), 7);
    assert_int_equal(kern_conv_out_w(&s), 6);
    s = conv(1, 1, 7, 5, 1, 3, 2, 2, 2, 1, 0, 2, 1, 1);
    assert_int_equal(kern_conv_out_h(&s), 3);   /* (7 + 2 - 4 - 1) / 2 + 1 */
    assert_int_equal(kern_conv_out_w(&s), 2);   /* (5 - 1 - 1) / 2 + 1 */
    s = conv(1, 1, 224, 224, 1, 7, 7, 2, 2, 3, 3, 1, 1, 1);
    assert_int_equal(kern_conv_out_h(&s), 112);
    s = conv(1, 1, 3, 3, 1, 5, 3, 1, 1, 0, 0, 1, 1, 1);   /* window taller than the image */
    assert_true(kern_conv_out_h(&s) <= 0);
    assert_int_equal(kern_conv_out_w(&s), 1);
    s = conv(1, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 3, 1, 1);   /* dilated window does not fit */
    assert_true(kern_conv_out_h(&s) <= 0);
    s.dil_h = 0;   /* pooling shapes may leave dilation 0: counts as 1 */
    assert_int_equal(kern_conv_out_h(&s), 1);
    s = conv(2, 3, 7, 5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1);
    assert_int_equal(kern_conv2d_workspace(K, &s), (size_t)3 * 3 * 2 * 7 * 6 * sizeof(float));
}

/* ---- gradcheck: conv2d ---- */

typedef struct {
    kern_conv_shape s;
    double *in, *w, *b, *G, *out;
} conv_case;

static double conv_loss(void *p) {
    conv_case *c = p;
    ref_conv2d_forward(c->out, c->in, c->w, c->b, &c->s);
    return dot(c->out, c->G, out_n(&c->s));
}

static void conv_case_make(conv_case *c, kern_conv_shape s, uint64_t seed) {
    c->s = s;
    c->in = dalloc(in_n(&s));
    c->w = dalloc(w_n(&s));
    c->b = dalloc(s.K);
    c->G = dalloc(out_n(&s));
    c->out = dalloc(out_n(&s));
    tu_fill_uniform(c->in, in_n(&s), &seed, -1, 1);
    tu_fill_uniform(c->w, w_n(&s), &seed, -1, 1);
    tu_fill_uniform(c->b, s.K, &seed, -1, 1);
    tu_fill_uniform(c->G, out_n(&s), &seed, -1, 1);
}

static void conv_case_free(conv_case *c) {
    free(c->in), free(c->w), free(c->b), free(c->G), free(c->out);
}

static const kern_conv_shape *gradcheck_conv_shapes(int *n) {
    static kern_conv_shape shapes[5];
    shapes[0] = conv(2, 4, 7, 5, 6, 3, 2, 1, 1, 1, 1, 1, 1, 1);   /* odd sizes, padding */
    shapes[1] = conv(2, 4, 7, 5, 6, 3, 2, 2, 2, 1, 0, 2, 1, 2);   /* stride 2, dilation, groups */
    shapes[2] = conv(1, 6, 6, 7, 3, 2, 3, 2, 1, 2, 1, 1, 2, 3);   /* groups 3, Kg 1 */
    shapes[3] = conv(2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4);   /* depthwise */
    shapes[4] = conv(2, 3, 4, 4, 5, 3, 3, 1, 1, 3, 3, 1, 1, 1);   /* windows all padding */
    *n = 5;
    return shapes;
}

static void test_conv_gradcheck(void **state) {
    int nshapes;
    const kern_conv_shape *shapes = gradcheck_conv_shapes(&nshapes);
    for (int i = 0; i < nshapes; i++) {
        conv_case c;
        conv_case_make(&c, shapes[i], 100 + i);
        int64_t ni = in_n(&c.s), nw = w_n(&c.s);
        double *din = dalloc(ni), *dw = dalloc(nw), *db = dalloc(c.s.K);
        double *nin = dalloc(ni), *nwt = dalloc(nw), *nb = dalloc(c.s.K);
        ref_conv2d_backward(din, dw, db, c.G, c.in, c.w, &c.s);
        numgrad(c.in, ni, conv_loss, &c, 1e-3, nin);
        numgrad(c.w, nw, conv_loss, &c, 1e-3, nwt);
        numgrad(c.b, c.s.K, conv_loss, &c, 1e-3, nb);
        char what[64];
        snprintf(what, sizeof what, "conv shape %d din", i);
        assert_int_equal(tu_close(what, din, nin, ni, FD_RTOL, FD_ATOL), 0);
        snprintf(what, sizeof what, "conv shape %d dw", i);
        assert_int_equal(tu_close(what, dw, nwt, nw, FD_RTOL, FD_ATOL), 0);
        snprintf(what, sizeof what, "conv shape %d db", i);
        assert_int_equal(tu_close(what, db, nb, c.s.K, FD_RTOL, FD_ATOL), 0);
        /* the same check rejects a gradient wrong by a little in one element */
        if (i == 0) {
            dw[nw / 2] *= 1.0 + 1e-4;
            assert_int_equal(tu_close("(expected mismatch) conv dw", dw, nwt, nw, FD_RTOL,
                                      FD_ATOL), 1);
        }
        free(din), free(dw), free(db), free(nin), free(nwt), free(nb);
        conv_case_free(&c);
    }
}

/* ---- gradcheck: pools ---- */

typedef struct {
    kern_conv_shape s;
    int max;
    double *in, *G, *out;
    int32_t *argmax;
} pool_case;

static int64_t pool_out_n(const kern_conv_shape *s) {
    return (int64_t)s->B * s->C * ref_conv_out(s->H, s->pad_h, 1, s->R, s->stride_h) *
           ref_conv_out(s->W, s->pad_w, 1, s->S, s->stride_w);
}

static double pool_loss(void *p) {
    pool_case *c = p;
    if (c->max)
        ref_maxpool2d_forward(c->out, c->argmax, c->in, &c->s);
    else
        ref_avgpool2d_forward(c->out, c->in, &c->s);
    return dot(c->out, c->G, pool_out_n(&c->s));
}

/* x = a shuffled ramp of distinct values 0.01 apart: max pooling is smooth within 1e-5 */
static void fill_distinct(double *x, int64_t n, uint64_t *seed) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.01 * (double)(i - n / 2);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tu_next_u64(seed) % (uint64_t)(i + 1));
        double t = x[i];
        x[i] = x[j], x[j] = t;
    }
}

static void test_pool_gradcheck(void **state) {
    kern_conv_shape shapes[] = {
        pool(2, 3, 7, 5, 3, 3, 2, 2, 1, 1),   /* 3x3 stride 2 pad 1 */
        pool(2, 3, 7, 5, 2, 2, 2, 2, 0, 0),   /* 2x2 stride 2, odd sizes drop a row/col */
        pool(2, 3, 6, 5, 3, 2, 1, 2, 1, 0),   /* overlapping, stride 1 x 2 */
        pool(2, 3, 7, 5, 7, 5, 1, 1, 0, 0),   /* global */
    };
    for (int max = 0; max <= 1; max++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            pool_case c = {.s = shapes[i], .max = max};
            int64_t ni = in_n(&c.s), no = pool_out_n(&c.s);
            uint64_t seed = 200 + i;
            c.in = dalloc(ni), c.G = dalloc(no), c.out = dalloc(no);
            c.argmax = calloc((size_t)no, sizeof(int32_t));
            fill_distinct(c.in, ni, &seed);
            tu_fill_uniform(c.G, no, &seed, -1, 1);
            double *din = dalloc(ni), *nin = dalloc(ni);
            pool_loss(&c);   /* argmax for the backward */
            if (max)
                ref_maxpool2d_backward(din, c.G, c.argmax, &c.s);
            else
                ref_avgpool2d_backward(din, c.G, &c.s);
            numgrad(c.in, ni, pool_loss, &c, 1e-5, nin);
            char what[64];
            snprintf(what, sizeof what, "%spool shape %zu din", max ? "max" : "avg", i);
            assert_int_equal(tu_close(what, din, nin, ni, FD_RTOL, FD_ATOL), 0);
            free(din), free(nin), free(c.in), free(c.G), free(c.out), free(c.argmax);
        }
}

/* ---- gradcheck: batch norm, train mode, the whole composite ---- */

enum { BN_B = 3, BN_C = 4, BN_HW = 5, BN_N = BN_B * BN_C * BN_HW };

typedef struct {
    double x[BN_N], gamma[BN_C], beta[BN_C], G[BN_N];
    double eps;
} bn_case;

static double bn_loss(void *p) {
    bn_case *c = p;
    double sums[2 * BN_C], mi[2 * BN_C], out[BN_N];
    ref_batchnorm_stats(sums, c->x, BN_B, BN_C, BN_HW);
    ref_batchnorm_forward(out, mi, c->x, c->gamma, c->beta, sums, BN_B * BN_HW, c->eps, NULL,
                          NULL, 0.1, BN_B, BN_C, BN_HW);
    return dot(out, c->G, BN_N);
}

static void test_batchnorm_gradcheck(void **state) {
    bn_case c = {.eps = 1e-5};
    uint64_t seed = 300;
    tu_fill_uniform(c.x, BN_N, &seed, -1, 3);
    tu_fill_uniform(c.gamma, BN_C, &seed, 0.5, 2);
    tu_fill_uniform(c.beta, BN_C, &seed, -1, 1);
    tu_fill_uniform(c.G, BN_N, &seed, -1, 1);
    double sums[2 * BN_C], mi[2 * BN_C], out[BN_N], red[2 * BN_C], din[BN_N];
    ref_batchnorm_stats(sums, c.x, BN_B, BN_C, BN_HW);
    ref_batchnorm_forward(out, mi, c.x, c.gamma, c.beta, sums, BN_B * BN_HW, c.eps, NULL, NULL,
                          0.1, BN_B, BN_C, BN_HW);
    ref_batchnorm_backward_reduce(red, c.G, c.x, mi, BN_B, BN_C, BN_HW);
    ref_batchnorm_backward(din, c.G, c.x, mi, c.gamma, red, BN_B * BN_HW, BN_B, BN_C, BN_HW);
    double nx[BN_N], ngamma[BN_C], nbeta[BN_C];
    numgrad(c.x, BN_N, bn_loss, &c, 1e-5, nx);
    numgrad(c.gamma, BN_C, bn_loss, &c, 1e-5, ngamma);
    numgrad(c.beta, BN_C, bn_loss, &c, 1e-5, nbeta);
    assert_int_equal(tu_close("batchnorm din", din, nx, BN_N, FD_RTOL, FD_ATOL), 0);
    assert_int_equal(tu_close("batchnorm dgamma", red + BN_C, ngamma, BN_C, FD_RTOL, FD_ATOL),
                     0);
    assert_int_equal(tu_close("batchnorm dbeta", red, nbeta, BN_C, FD_RTOL, FD_ATOL), 0);
}

/* ---- float32 conv2d against the reference ---- */

static void check_conv(const kern_conv_shape *s, int with_bias, int with_din, int with_db,
                       uint64_t seed) {
    int64_t ni = in_n(s), nw = w_n(s), no = out_n(s);
    char what[128];
    double *in = dalloc(ni), *w = dalloc(nw), *b = dalloc(s->K), *dy = dalloc(no);
    tu_fill_uniform(in, ni, &seed, -1, 1);
    tu_fill_uniform(w, nw, &seed, -1, 1);
    tu_fill_uniform(b, s->K, &seed, -1, 1);
    tu_fill_uniform(dy, no, &seed, -1, 1);
    double *dw0 = dalloc(nw), *db0 = dalloc(s->K);   /* gradients already there: accumulate */
    tu_fill_uniform(dw0, nw, &seed, -1, 1);
    tu_fill_uniform(db0, s->K, &seed, -1, 1);

    /* reference values and their error scales: the same sums over |terms| */
    double *out = dalloc(no), *din = dalloc(ni), *dw = dalloc(nw), *db = dalloc(s->K);
    double *aout = dalloc(no), *adin = dalloc(ni), *adw = dalloc(nw), *adb = dalloc(s->K);
    double *ain = dalloc(ni), *aw = dalloc(nw), *ab = dalloc(s->K), *ady = dalloc(no);
    absv(ain, in, ni), absv(aw, w, nw), absv(ab, b, s->K), absv(ady, dy, no);
    memcpy(dw, dw0, nw * sizeof(double));
    memcpy(db, db0, s->K * sizeof(double));
    absv(adw, dw0, nw), absv(adb, db0, s->K);
    ref_conv2d_forward(out, in, w, with_bias ? b : NULL, s);
    ref_conv2d_forward(aout, ain, aw, with_bias ? ab : NULL, s);
    ref_conv2d_backward(din, dw, db, dy, in, w, s);
    ref_conv2d_backward(adin, adw, adb, ady, ain, aw, s);

    float *fin = falloc(ni), *fw = falloc(nw), *fb = falloc(s->K), *fdy = falloc(no);
    tu_to_float(fin, in, ni), tu_to_float(fw, w, nw), tu_to_float(fb, b, s->K);
    tu_to_float(fdy, dy, no);
    float *fout = fnan(no), *fdin = fnan(ni), *fdw = falloc(nw), *fdb = falloc(s->K);
    tu_to_float(fdw, dw0, nw), tu_to_float(fdb, db0, s->K);
    double *fdb0 = dalloc(s->K);
    tu_to_double(fdb0, fdb, s->K);
    size_t ws_bytes = kern_conv2d_workspace(K, s);
    /* the workspace is prefilled with NaN too: nothing may read it before writing it */
    float *ws = fnan((int64_t)(ws_bytes / sizeof(float)) + 1);

    kern_conv2d_forward(K, fout, fin, fw, with_bias ? fb : NULL, s, ws);
    kern_conv2d_backward(K, with_din ? fdin : NULL, fdw, with_db ? fdb : NULL, fdy, fin, fw, s,
                         ws);

    describe(what, sizeof what, "conv", s, "out");
    assert_int_equal(tu_close_scaled_f(what, fout, out, aout, no, F32_TOL), 0);
    describe(what, sizeof what, "conv", s, "dw (accumulated)");
    assert_int_equal(tu_close_scaled_f(what, fdw, dw, adw, nw, F32_TOL), 0);
    if (with_din) {
        describe(what, sizeof what, "conv", s, "din");
        assert_int_equal(tu_close_scaled_f(what, fdin, din, adin, ni, F32_TOL), 0);
    } else {
        for (int64_t i = 0; i < ni; i++) assert_true(isnan(fdin[i]));   /* untouched */
    }
    describe(what, sizeof what, "conv", s, "db (accumulated)");
    if (with_db)
        assert_int_equal(tu_close_scaled_f(what, fdb, db, adb, s->K, F32_TOL), 0);
    else
        assert_int_equal(tu_close_f(what, fdb, fdb0, s->K, 0, 0), 0);   /* untouched */

    free(in), free(w), free(b), free(dy), free(dw0), free(db0), free(out), free(din), free(dw);
    free(db), free(aout), free(adin), free(adw), free(adb), free(ain), free(aw), free(ab);
    free(ady), free(fdb0);
    kern_free(K, fin), kern_free(K, fw), kern_free(K, fb), kern_free(K, fdy), kern_free(K, fout);
    kern_free(K, fdin), kern_free(K, fdw), kern_free(K, fdb), kern_free(K, ws);
}

static void test_conv_vs_reference(void **state) {
    kern_conv_shape shapes[] = {
        conv(2, 4, 7, 5, 6, 3, 2, 1, 1, 1, 1, 1, 1, 1),      /* odd sizes */
        conv(2, 4, 7, 5, 6, 3, 2, 2, 2, 1, 0, 2, 1, 2),      /* stride 2, dilation, groups 2 */
        conv(3, 6, 9, 8, 6, 3, 3, 1, 2, 2, 1, 1, 2, 3),      /* groups 3 */
        conv(2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8),      /* depthwise */
        conv(2, 16, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1),  /* a typical layer */
        conv(2, 3, 17, 17, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1),    /* ResNet stem, small */
        conv(3, 8, 5, 7, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1),     /* 1x1: fast path */
        conv(3, 8, 5, 7, 12, 1, 1, 1, 1, 0, 0, 1, 1, 2),     /* 1x1 grouped: fast path */
        conv(2, 8, 9, 9, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1),     /* 1x1 stride 2: generic */
        conv(1, 2, 4, 4, 3, 3, 3, 1, 1, 3, 3, 1, 1, 1),      /* windows all in the padding */
        conv(2, 3, 3, 4, 2, 5, 3, 1, 1, 1, 0, 1, 1, 1),      /* kernel taller than the image */
    };
    int n = sizeof shapes / sizeof shapes[0];
    for (int i = 0; i < n; i++) {
        check_conv(&shapes[i], 1, 1, 1, 400 + i);
        /* no bias, no din, no db: everything else unchanged */
        check_conv(&shapes[i], 0, i % 2, (i + 1) % 2, 500 + i);
    }
}

/* A CPU context of its own (threads, convolution path); the thread count is process-wide,
 * so the last context created sets it (kernels.h). */
static kern_ctx *cpu_context(int threads, kern_cpu_conv mode) {
    kern_options opt = {.backend = KERN_CPU, .threads = threads, .cpu_conv = mode};
    kern_ctx *k = NULL;
    char err[256];
    if (kern_create(&opt, &k, err, sizeof(err)) != 0) fail_msg("kern_create: %s", err);
    return k;
}

/* Shapes that the default rule sends to oneDNN's convolution primitives (cpu_conv_dnnl.c):
 * 16-channel groups or depthwise, kernels larger than 1x1; batches of more than one chunk
 * (8 images) with a remainder; stride, uneven padding, groups.  (Dilated convolutions stay
 * with im2col: oneDNN 2.6 has no JIT kernel for all three of their passes.) */
static const kern_conv_shape *dnnl_shapes(int *n) {
    static kern_conv_shape shapes[7];
    shapes[0] = conv(19, 16, 9, 9, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1);     /* chunks 8 + 8 + 3 */
    shapes[1] = conv(3, 32, 11, 10, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1);    /* stride 2, odd */
    shapes[2] = conv(8, 16, 6, 6, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1);     /* one whole chunk */
    shapes[3] = conv(2, 32, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 2);      /* groups of 16 */
    shapes[4] = conv(3, 24, 9, 7, 24, 3, 3, 2, 2, 1, 1, 1, 1, 24);     /* depthwise, stride 2 */
    shapes[5] = conv(2, 16, 10, 10, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1);    /* 5x5, no padding */
    shapes[6] = conv(2, 16, 9, 8, 32, 3, 3, 1, 1, 0, 2, 1, 1, 1);      /* pad 0 x 2 */
    *n = 7;
    return shapes;
}

/* The oneDNN path against the float64 reference at the same tolerance as im2col (forward,
 * din, dw and db accumulated, NULL din/db/bias); each shape must take that path. */
static void test_conv_dnnl_vs_reference(void **state) {
    int n;
    const kern_conv_shape *shapes = dnnl_shapes(&n);
    for (int i = 0; i < n; i++) {
        kern_conv2d_workspace(K, &shapes[i]);
        if (!kern_conv2d_library(K, &shapes[i])) {
            char what[128];
            describe(what, sizeof what, "conv", &shapes[i], "");
            fail_msg("%s: not routed to oneDNN", what);
        }
        check_conv(&shapes[i], 1, 1, 1, 700 + i);
        check_conv(&shapes[i], 0, i % 2, (i + 1) % 2, 800 + i);
    }
}

/* One forward and backward pass (with din, bias and db) of s on context k; results in
 * out[4] = {out, din, dw, db} (dw, db accumulated onto the same start values). */
static void conv_pass(kern_ctx *k, const kern_conv_shape *s, float *res[4], uint64_t seed) {
    int64_t ni = in_n(s), nw = w_n(s), no = out_n(s);
    double *x = dalloc(ni + nw + s->K + no);
    tu_fill_uniform(x, ni + nw + s->K + no, &seed, -1, 1);
    float *f = kern_alloc(k, (size_t)(ni + nw + s->K + no) * sizeof(float));
    tu_to_float(f, x, ni + nw + s->K + no);
    float *in = f, *w = f + ni, *b = w + nw, *dy = b + s->K;
    void *ws = kern_alloc(k, kern_conv2d_workspace(k, s) + 1);
    res[0] = kern_alloc(k, (size_t)no * sizeof(float));
    res[1] = kern_alloc(k, (size_t)ni * sizeof(float));
    res[2] = kern_alloc(k, (size_t)nw * sizeof(float));
    res[3] = kern_alloc(k, (size_t)s->K * sizeof(float));
    for (int64_t i = 0; i < nw; i++) res[2][i] = 0.25f;
    for (int i = 0; i < s->K; i++) res[3][i] = -0.5f;
    for (int step = 0; step < 2; step++) {   /* dw, db accumulate over two steps */
        kern_conv2d_forward(k, res[0], in, w, b, s, ws);
        kern_conv2d_backward(k, res[1], res[2], res[3], dy, in, w, s, ws);
    }
    free(x);
    kern_free(k, f);
    kern_free(k, ws);
}

/* Determinism: the oneDNN path gives the same bits on two runs of the same shape, with 1
 * thread and with 2 (backward-weights sums over a chunk's images across threads); each run
 * has contexts of its own (kept primitives created afresh). */
static void test_conv_dnnl_repeats(void **state) {
    kern_conv_shape shapes[] = {
        conv(37, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1),    /* cnn.yaml's conv2, 5 chunks */
        conv(8, 64, 10, 10, 64, 3, 3, 1, 1, 1, 1, 1, 1, 64),    /* depthwise */
    };
    for (int threads = 1; threads <= 2; threads++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const kern_conv_shape *s = &shapes[si];
            int64_t len[4] = {out_n(s), in_n(s), w_n(s), s->K};
            float *a[4], *b[4];
            kern_ctx *k1 = cpu_context(threads, KERN_CONV_AUTO);
            conv_pass(k1, s, a, 900 + si);
            kern_ctx *k2 = cpu_context(threads, KERN_CONV_AUTO);
            conv_pass(k2, s, b, 900 + si);
            const char *names[4] = {"out", "din", "dw", "db"};
            for (int t = 0; t < 4; t++) {
                if (memcmp(a[t], b[t], (size_t)len[t] * sizeof(float)) != 0)
                    fail_msg("oneDNN conv %s differs between two runs (%d threads, shape %zu)",
                             names[t], threads, si);
                kern_free(k1, a[t]);
                kern_free(k2, b[t]);
            }
            kern_destroy(k1);
            kern_destroy(k2);
        }
    /* the later tests run on one thread again (the thread count is process-wide) */
    kern_destroy(cpu_context(1, KERN_CONV_AUTO));
}

/* The 1x1 fast path (no im2col) and the generic path agree: a 1x1 convolution with padding 1
 * is the same convolution with a ring of bias-only outputs around it, the same dw and db, and
 * the same din. */
static void test_conv_pointwise_vs_generic(void **state) {
    kern_conv_shape fast = conv(3, 8, 5, 7, 12, 1, 1, 1, 1, 0, 0, 1, 1, 2);
    kern_conv_shape gen = fast;
    gen.pad_h = gen.pad_w = 1;
    int P = 5, Q = 7, P2 = 7, Q2 = 9;
    assert_int_equal(kern_conv_out_h(&gen), P2);
    int64_t ni = in_n(&fast), nw = w_n(&fast), no = out_n(&fast), no2 = out_n(&gen);
    double *in = dalloc(ni), *w = dalloc(nw), *b = dalloc(fast.K), *dy = dalloc(no);
    uint64_t seed = 600;
    tu_fill_uniform(in, ni, &seed, -1, 1);
    tu_fill_uniform(w, nw, &seed, -1, 1);
    tu_fill_uniform(b, fast.K, &seed, -1, 1);
    tu_fill_uniform(dy, no, &seed, -1, 1);
    float *fin = falloc(ni), *fw = falloc(nw), *fb = falloc(fast.K), *fdy = falloc(no);
    tu_to_float(fin, in, ni), tu_to_float(fw, w, nw), tu_to_float(fb, b, fast.K);
    tu_to_float(fdy, dy, no);
    /* dy of the padded conv: dy inside, 0 on the ring (so the ring adds nothing to dw, db) */
    float *fdy2 = falloc(no2);
    for (int nk = 0; nk < fast.B * fast.K; nk++)
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++)
                fdy2[(nk * P2 + p + 1) * Q2 + q + 1] = fdy[(nk * P + p) * Q + q];

    float *out = fnan(no), *out2 = fnan(no2), *din = fnan(ni), *din2 = fnan(ni);
    float *dw = falloc(nw), *dw2 = falloc(nw), *db = falloc(fast.K), *db2 = falloc(fast.K);
    float *ws = fnan((int64_t)(kern_conv2d_workspace(K, &gen) / sizeof(float)));
    kern_conv2d_forward(K, out, fin, fw, fb, &fast, ws);
    kern_conv2d_forward(K, out2, fin, fw, fb, &gen, ws);
    kern_conv2d_backward(K, din, dw, db, fdy, fin, fw, &fast, ws);
    kern_conv2d_backward(K, din2, dw2, db2, fdy2, fin, fw, &gen, ws);

    /* both against each other, within float rounding of a 4-term dot product */
    int64_t most = no > ni ? no : ni;
    double *interior = dalloc(no), *d = dalloc(most), *g = dalloc(most);
    for (int nk = 0; nk < fast.B * fast.K; nk++) {
        for (int p = 0; p < P2; p++)
            for (int q = 0; q < Q2; q++) {
                float v = out2[(nk * P2 + p) * Q2 + q];
                if (p == 0 || q == 0 || p == P2 - 1 || q == Q2 - 1)
                    assert_float_equal(v, fb[nk % fast.K], 0);   /* bias only */
                else
                    interior[(nk * P + p - 1) * Q + q - 1] = v;
            }
    }
    tu_to_double(d, out, no);
    assert_int_equal(tu_close("1x1 fast vs generic out", d, interior, no, 1e-6, 1e-6), 0);
    tu_to_double(d, din, ni), tu_to_double(g, din2, ni);
    assert_int_equal(tu_close("1x1 fast vs generic din", d, g, ni, 1e-6, 1e-6), 0);
    tu_to_double(d, dw, nw), tu_to_double(g, dw2, nw);
    assert_int_equal(tu_close("1x1 fast vs generic dw", d, g, nw, 1e-6, 1e-6), 0);
    tu_to_double(d, db, fast.K), tu_to_double(g, db2, fast.K);
    assert_int_equal(tu_close("1x1 fast vs generic db", d, g, fast.K, 1e-6, 1e-6), 0);

    free(in), free(w), free(b), free(dy), free(interior), free(d), free(g);
    float *fs[] = {fin, fw, fb, fdy, fdy2, out, out2, din, din2, dw, dw2, db, db2, ws};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) kern_free(K, fs[i]);
}

/* ---- float32 pools against the reference ---- */

static void check_pool(const kern_conv_shape *s, int ties, uint64_t seed) {
    int64_t ni = in_n(s), no = pool_out_n(s);
    double *in = dalloc(ni), *dy = dalloc(no);
    if (ties) {   /* few distinct values: many ties, the first in row-major order must win */
        for (int64_t i = 0; i < ni; i++) in[i] = (double)(tu_next_u64(&seed) % 3) - 1.0;
    } else {
        tu_fill_uniform(in, ni, &seed, -2, 2);
    }
    tu_fill_uniform(dy, no, &seed, -1, 1);
    double *out = dalloc(no), *din = dalloc(ni), *aout = dalloc(no), *adin = dalloc(ni);
    double *ain = dalloc(ni), *ady = dalloc(no);
    int32_t *am = calloc((size_t)no, sizeof(int32_t));
    int32_t *fam = kern_alloc(K, (size_t)no * sizeof(int32_t));
    absv(ain, in, ni), absv(ady, dy, no);
    float *fin = falloc(ni), *fdy = falloc(no), *fout = fnan(no), *fdin = fnan(ni);
    tu_to_float(fin, in, ni), tu_to_float(fdy, dy, no);
    tu_to_double(in, fin, ni);   /* max pooling selects: compare on exactly the float inputs */
    absv(ain, in, ni);
    char what[128];

    /* max: exact (a selection), argmax identical */
    ref_maxpool2d_forward(out, am, in, s);
    ref_maxpool2d_backward(din, dy, am, s);
    ref_maxpool2d_backward(adin, ady, am, s);
    for (int64_t i = 0; i < no; i++) fam[i] = -7;
    kern_maxpool2d_forward(K, fout, fam, fin, s);
    kern_maxpool2d_backward(K, fdin, fdy, fam, s);
    describe(what, sizeof what, "maxpool", s, "out");
    assert_int_equal(tu_close_f(what, fout, out, no, 0, 0), 0);
    for (int64_t i = 0; i < no; i++)
        if (fam[i] != am[i]) fail_msg("maxpool argmax %lld: %d, expected %d", (long long)i,
                                      fam[i], am[i]);
    describe(what, sizeof what, "maxpool", s, "din");
    assert_int_equal(tu_close_scaled_f(what, fdin, din, adin, ni, F32_TOL), 0);

    /* avg */
    for (int64_t i = 0; i < no; i++) fout[i] = NAN;
    for (int64_t i = 0; i < ni; i++) fdin[i] = NAN;
    ref_avgpool2d_forward(out, in, s);
    ref_avgpool2d_forward(aout, ain, s);
    ref_avgpool2d_backward(din, dy, s);
    ref_avgpool2d_backward(adin, ady, s);
    kern_avgpool2d_forward(K, fout, fin, s);
    kern_avgpool2d_backward(K, fdin, fdy, s);
    describe(what, sizeof what, "avgpool", s, "out");
    assert_int_equal(tu_close_scaled_f(what, fout, out, aout, no, F32_TOL), 0);
    describe(what, sizeof what, "avgpool", s, "din");
    assert_int_equal(tu_close_scaled_f(what, fdin, din, adin, ni, F32_TOL), 0);
    free(in), free(dy), free(out), free(din), free(aout), free(adin), free(ain), free(ady);
    free(am);
    kern_free(K, fam), kern_free(K, fin), kern_free(K, fdy), kern_free(K, fout);
    kern_free(K, fdin);
}

static void test_pool_vs_reference(void **state) {
    kern_conv_shape shapes[] = {
        pool(2, 3, 7, 5, 3, 3, 2, 2, 1, 1),      /* ResNet's 3x3 stride 2 pad 1, odd sizes */
        pool(2, 3, 8, 8, 2, 2, 2, 2, 0, 0),      /* 2x2 stride 2 */
        pool(2, 3, 7, 5, 2, 2, 2, 2, 0, 0),      /* odd sizes drop the last row/column */
        pool(2, 3, 6, 5, 3, 2, 1, 2, 1, 1),      /* overlapping, padded */
        pool(2, 5, 7, 7, 7, 7, 1, 1, 0, 0),      /* global average pool */
        pool(2, 4, 9, 11, 9, 11, 1, 1, 0, 0),    /* global, rows longer than 8 */
        pool(1, 2, 1, 1, 1, 1, 1, 1, 0, 0),      /* identity */
    };
    int n = sizeof shapes / sizeof shapes[0];
    for (int i = 0; i < n; i++) {
        check_pool(&shapes[i], 0, 700 + i);
        check_pool(&shapes[i], 1, 800 + i);
    }
}

/* ---- float32 batch norm against the reference ---- */

static void check_batchnorm(int B, int C, int HW, double offset, uint64_t seed) {
    int64_t n = (int64_t)B * C * HW;
    double count = (double)B * HW;
    const double eps = 1e-5, momentum = 0.1;
    double *x = dalloc(n), *dy = dalloc(n), *gamma = dalloc(C), *beta = dalloc(C);
    double *rm = dalloc(C), *rv = dalloc(C);
    tu_fill_uniform(x, n, &seed, -2, 2);
    for (int64_t i = 0; i < n; i++) x[i] += offset;   /* a mean far from 0 */
    tu_fill_uniform(dy, n, &seed, -1, 1);
    tu_fill_uniform(gamma, C, &seed, 0.5, 2);
    tu_fill_uniform(beta, C, &seed, -1, 1);
    tu_fill_uniform(rm, C, &seed, -1, 1);
    tu_fill_uniform(rv, C, &seed, 0.5, 2);
    float *fx = falloc(n), *fdy = falloc(n), *fg = falloc(C), *fb = falloc(C);
    float *frm = falloc(C), *frv = falloc(C);
    tu_to_float(fx, x, n), tu_to_float(fdy, dy, n), tu_to_float(fg, gamma, C);
    tu_to_float(fb, beta, C), tu_to_float(frm, rm, C), tu_to_float(frv, rv, C);
    /* the reference sees exactly the float inputs */
    tu_to_double(x, fx, n), tu_to_double(dy, fdy, n), tu_to_double(gamma, fg, C);
    tu_to_double(beta, fb, C), tu_to_double(rm, frm, C), tu_to_double(rv, frv, C);

    double *sums = dalloc(2 * C), *mi = dalloc(2 * C), *out = dalloc(n), *red = dalloc(2 * C);
    double *din = dalloc(n), *eval = dalloc(n), *se = dalloc(n);
    /* eval uses the running stats from before the train-mode update below */
    ref_batchnorm_forward_eval(eval, x, gamma, beta, rm, rv, eps, B, C, HW);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                int64_t j = ((int64_t)b * C + c) * HW + i;
                se[j] = (fabs(x[j]) + fabs(rm[c])) / sqrt(rv[c] + eps) * fabs(gamma[c]) +
                        fabs(beta[c]);
            }
    ref_batchnorm_stats(sums, x, B, C, HW);
    ref_batchnorm_forward(out, mi, x, gamma, beta, sums, count, eps, rm, rv, momentum, B, C,
                          HW);
    ref_batchnorm_backward_reduce(red, dy, x, mi, B, C, HW);
    ref_batchnorm_backward(din, dy, x, mi, gamma, red, count, B, C, HW);

    double *fsums = dalloc(2 * C), *fred = dalloc(2 * C);
    float *fmi = fnan(2 * C), *fout = fnan(n), *fdin = fnan(n), *feval = fnan(n);
    for (int c = 0; c < 2 * C; c++) fsums[c] = fred[c] = NAN;
    kern_batchnorm_forward_eval(K, feval, fx, fg, fb, frm, frv, (float)eps, B, C, HW);
    kern_batchnorm_stats(K, fsums, fx, B, C, HW);
    kern_batchnorm_forward(K, fout, fmi, fx, fg, fb, fsums, count, (float)eps, frm, frv,
                           (float)momentum, B, C, HW);
    kern_batchnorm_backward_reduce(K, fred, fdy, fx, fmi, B, C, HW);
    kern_batchnorm_backward(K, fdin, fdy, fx, fmi, fg, fred, count, B, C, HW);

    /* error scales: (|x| + |mean|) * invstd * |gamma| + |beta| for the outputs; the three
     * terms of din; sum |dy| and sum |dy * xhat| for red; the sums themselves in double */
    double *sc = dalloc(n), *sd = dalloc(n), *sr = dalloc(2 * C);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                int64_t j = ((int64_t)b * C + c) * HW + i;
                double invstd = mi[C + c], a = fabs(gamma[c]) * invstd;
                sc[j] = (fabs(x[j]) + fabs(mi[c])) * a + fabs(beta[c]);
                sd[j] = a * (fabs(dy[j]) + (fabs(red[c]) +
                                            (fabs(x[j]) + fabs(mi[c])) * invstd *
                                                fabs(red[C + c])) / count);
                sr[c] += fabs(dy[j]);
                sr[C + c] += fabs(dy[j]) * (fabs(x[j]) + fabs(mi[c])) * invstd;
            }
    char what[64];
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d sums", B, C, HW);
    assert_int_equal(tu_close(what, fsums, sums, 2 * C, 1e-12, 0), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d out", B, C, HW);
    assert_int_equal(tu_close_scaled_f(what, fout, out, sc, n, F32_TOL), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d mean/invstd", B, C, HW);
    assert_int_equal(tu_close_f(what, fmi, mi, 2 * C, 1e-6, 0), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d running_mean", B, C, HW);
    assert_int_equal(tu_close_f(what, frm, rm, C, 1e-6, 1e-7), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d running_var", B, C, HW);
    assert_int_equal(tu_close_f(what, frv, rv, C, 1e-6, 0), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d red", B, C, HW);
    {
        double *dred = dalloc(2 * C);
        for (int c = 0; c < 2 * C; c++) dred[c] = fabs(fred[c] - red[c]) / (sr[c] + 1e-300);
        for (int c = 0; c < 2 * C; c++)
            if (!(dred[c] <= 1e-6)) fail_msg("%s[%d]: %.9g, expected %.9g", what, c, fred[c],
                                              red[c]);
        free(dred);
    }
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d din", B, C, HW);
    assert_int_equal(tu_close_scaled_f(what, fdin, din, sd, n, F32_TOL), 0);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d eval", B, C, HW);
    assert_int_equal(tu_close_scaled_f(what, feval, eval, se, n, F32_TOL), 0);

    free(x), free(dy), free(gamma), free(beta), free(rm), free(rv), free(sums), free(mi);
    free(out), free(red), free(din), free(eval), free(fsums), free(fred), free(sc), free(sd);
    free(sr), free(se);
    float *fs[] = {fx, fdy, fg, fb, frm, frv, fmi, fout, fdin, feval};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) kern_free(K, fs[i]);
}

static void test_batchnorm_vs_reference(void **state) {
    check_batchnorm(3, 4, 5, 0.0, 900);
    check_batchnorm(4, 8, 49, 0.5, 901);     /* 7x7: row sums with a tail */
    check_batchnorm(2, 3, 256, 10.0, 902);   /* mean 10 sigma from 0 */
    check_batchnorm(8, 5, 1, 0.0, 903);      /* after a global pool: HW = 1 */
}

/* ---- synchronised batch norm: 8 images on 1, 2 or 4 "ranks" ---- */

enum { SY_B = 8, SY_C = 5, SY_HW = 12, SY_N = SY_B * SY_C * SY_HW };

static void run_synced(int ranks, const float *x, const float *dy, const float *gamma,
                       const float *beta, float *out, float *din, double *dgamma,
                       double *dbeta, float *rm, float *rv) {
    int b = SY_B / ranks, per = b * SY_C * SY_HW;
    double count = (double)SY_B * SY_HW;   /* the global count */
    double sums[2 * SY_C] = {0}, red[2 * SY_C] = {0}, part[2 * SY_C];
    float mi[4][2 * SY_C];
    for (int r = 0; r < ranks; r++) {   /* stats per rank, then the "all-reduce" */
        kern_batchnorm_stats(K, part, x + r * per, b, SY_C, SY_HW);
        for (int c = 0; c < 2 * SY_C; c++) sums[c] += part[c];
    }
    for (int r = 0; r < ranks; r++)   /* every rank updates its own copy of the running stats */
        kern_batchnorm_forward(K, out + r * per, mi[r], x + r * per, gamma, beta, sums, count,
                               1e-5f, r == 0 ? rm : NULL, r == 0 ? rv : NULL, 0.1f, b, SY_C,
                               SY_HW);
    for (int c = 0; c < SY_C; c++) dgamma[c] = dbeta[c] = 0.0;
    for (int r = 0; r < ranks; r++) {
        kern_batchnorm_backward_reduce(K, part, dy + r * per, x + r * per, mi[r], b, SY_C,
                                       SY_HW);
        for (int c = 0; c < SY_C; c++) {   /* each rank accumulates its LOCAL sums */
            dbeta[c] += part[c];
            dgamma[c] += part[SY_C + c];
        }
        for (int c = 0; c < 2 * SY_C; c++) red[c] += part[c];
    }
    for (int r = 0; r < ranks; r++)
        kern_batchnorm_backward(K, din + r * per, dy + r * per, x + r * per, mi[r], gamma, red,
                                count, b, SY_C, SY_HW);
}

static void test_batchnorm_synced(void **state) {
    double xd[SY_N], dyd[SY_N], gd[SY_C], bd[SY_C];
    uint64_t seed = 1000;
    tu_fill_uniform(xd, SY_N, &seed, -1, 3);
    tu_fill_uniform(dyd, SY_N, &seed, -1, 1);
    tu_fill_uniform(gd, SY_C, &seed, 0.5, 2);
    tu_fill_uniform(bd, SY_C, &seed, -1, 1);
    static float x[SY_N], dy[SY_N], g[SY_C], bt[SY_C];
    tu_to_float(x, xd, SY_N), tu_to_float(dy, dyd, SY_N), tu_to_float(g, gd, SY_C);
    tu_to_float(bt, bd, SY_C);
    static float out1[SY_N], din1[SY_N], outr[SY_N], dinr[SY_N];
    float rm1[SY_C] = {0}, rv1[SY_C], rmr[SY_C] = {0}, rvr[SY_C];
    double dg1[SY_C], db1[SY_C], dgr[SY_C], dbr[SY_C];
    for (int c = 0; c < SY_C; c++) rv1[c] = 1.0f;
    run_synced(1, x, dy, g, bt, out1, din1, dg1, db1, rm1, rv1);
    double o1[SY_N], i1[SY_N], a[SY_N];
    tu_to_double(o1, out1, SY_N), tu_to_double(i1, din1, SY_N);
    double maxdin = 0;
    for (int i = 0; i < SY_N; i++) maxdin = fmax(maxdin, fabs(i1[i]));
    for (int ranks = 2; ranks <= 4; ranks *= 2) {
        for (int c = 0; c < SY_C; c++) rmr[c] = 0.0f, rvr[c] = 1.0f;
        run_synced(ranks, x, dy, g, bt, outr, dinr, dgr, dbr, rmr, rvr);
        char what[64];
        /* only the order of the double sums differs: float rounding of the outputs */
        snprintf(what, sizeof what, "synced batchnorm %d ranks out", ranks);
        tu_to_double(a, outr, SY_N);
        assert_int_equal(tu_close(what, a, o1, SY_N, 1e-6, 1e-6), 0);
        snprintf(what, sizeof what, "synced batchnorm %d ranks din", ranks);
        tu_to_double(a, dinr, SY_N);
        assert_int_equal(tu_close(what, a, i1, SY_N, 1e-6, 1e-6 * maxdin), 0);
        snprintf(what, sizeof what, "synced batchnorm %d ranks dgamma", ranks);
        assert_int_equal(tu_close(what, dgr, dg1, SY_C, 1e-12, 1e-12), 0);
        snprintf(what, sizeof what, "synced batchnorm %d ranks dbeta", ranks);
        assert_int_equal(tu_close(what, dbr, db1, SY_C, 1e-12, 1e-12), 0);
        double want[SY_C];
        snprintf(what, sizeof what, "synced batchnorm %d ranks running_mean", ranks);
        tu_to_double(want, rm1, SY_C);
        assert_int_equal(tu_close_f(what, rmr, want, SY_C, 1e-6, 1e-7), 0);
        snprintf(what, sizeof what, "synced batchnorm %d ranks running_var", ranks);
        tu_to_double(want, rv1, SY_C);
        assert_int_equal(tu_close_f(what, rvr, want, SY_C, 1e-6, 0), 0);
    }
    /* and a split that forgets to sum the statistics is caught: per-rank stats differ */
    static float outbad[SY_N];
    double part[2 * SY_C];
    float mi[2 * SY_C];
    kern_batchnorm_stats(K, part, x, SY_B / 2, SY_C, SY_HW);
    kern_batchnorm_forward(K, outbad, mi, x, g, bt, part, SY_B / 2 * SY_HW, 1e-5f, NULL, NULL,
                           0.1f, SY_B / 2, SY_C, SY_HW);
    tu_to_double(a, outbad, SY_N / 2);
    assert_int_equal(tu_close("(expected mismatch) unsynced batchnorm", a, o1, SY_N / 2, 1e-6,
                              1e-6), 1);
}

/* 2x2 / stride 2 max pooling (the fast path): NaN wins and the first NaN is kept, a later
 * larger value wins, ties keep the first in row-major order. */
static void test_maxpool_2x2_nan_and_ties(void **state) {
    (void)state;
    const float x[16] = {
        1.0f, NAN,  5.0f, 2.0f,
        NAN,  3.0f, 2.0f, 9.0f,
        7.0f, 7.0f, -1.0f, -2.0f,
        7.0f, 6.0f, -3.0f, -1.0f};
    kern_conv_shape s = {1, 1, 4, 4, 1, 2, 2, 2, 2, 0, 0, 1, 1, 1};
    float *in = kern_alloc(K, sizeof x), *out = kern_alloc(K, 4 * sizeof(float));
    int32_t *am = kern_alloc(K, 4 * sizeof(int32_t));
    memcpy(in, x, sizeof x);
    kern_maxpool2d_forward(K, out, am, in, &s);
    assert_true(isnan(out[0]));
    assert_int_equal(am[0], 1);          /* the first NaN, at (0,1) */
    assert_true(out[1] == 9.0f);
    assert_int_equal(am[1], 7);          /* (1,3) */
    assert_true(out[2] == 7.0f);
    assert_int_equal(am[2], 8);          /* ties: (2,0) before (2,1) and (3,0) */
    assert_true(out[3] == -1.0f);
    assert_int_equal(am[3], 10);         /* (2,2) before (3,3) */
    kern_free(K, in);
    kern_free(K, out);
    kern_free(K, am);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_2x2_nan_and_ties),
        cmocka_unit_test(test_out_size),
        cmocka_unit_test(test_conv_gradcheck),
        cmocka_unit_test(test_pool_gradcheck),
        cmocka_unit_test(test_batchnorm_gradcheck),
        cmocka_unit_test(test_conv_vs_reference),
        cmocka_unit_test(test_conv_pointwise_vs_generic),
        cmocka_unit_test(test_conv_dnnl_vs_reference),
        cmocka_unit_test(test_conv_dnnl_repeats),
        cmocka_unit_test(test_pool_vs_reference),
        cmocka_unit_test(test_batchnorm_vs_reference),
        cmocka_unit_test(test_batchnorm_synced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
