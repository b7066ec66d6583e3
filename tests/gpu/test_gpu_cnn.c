/* test_gpu_cnn.c: the convolutional-network ops of kernels.h (conv2d, max/avg pooling, batch
 * norm) on the CUDA backend against the CPU reference.
 *
 * Every op runs on fresh random inputs of odd shapes (stride 2, padding, dilation, groups,
 * depthwise, 1x1, asymmetric windows) in a CPU and a CUDA context.  Outputs that an op
 * overwrites are poisoned with NaN on the GPU first (argmax with 0xAB bytes), so an element the
 * GPU forgot to write shows up; outputs that an op accumulates into (dw, db) start from the same
 * random values on both sides.  Results agree to a normwise relative error of 1e-5 (fp32: cuDNN
 * sums in another order than im2col + GEMM) and double sums to 1e-9; maxpool's argmax is equal
 * exactly, with and without ties (both backends take the first maximum in window order).
 * Each check also says whether the results are bit-identical, as information: pooling and the
 * element-wise batch-norm passes are expected to be.
 *
 * Without a CUDA device (or in a build without the CUDA backend) it prints
 * "SKIP: no CUDA device" and exits 77, which ctest reports as skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_compare.h"
#include "gpu_gate.h"
#include "kernels.h"

#define TOL 1e-5
#define TOL_DOUBLE 1e-9

static kern_ctx *cpu, *gpu;

/* ---- a small deterministic host RNG (splitmix64) ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_u64() >> 40) / 16777216.0);
}

/* ---- arrays in both backends: float, double and int32 ---- */

typedef struct {
    int64_t n;
    size_t elem;   /* bytes per element */
    void *cpu;     /* CPU backend memory (host) */
    void *gpu;     /* CUDA backend memory (device) */
    void *host;    /* the values both sides start from; then the GPU's result */
} pair;

static pair pair_new_elem(int64_t n, size_t elem) {
    pair p = {n, elem, NULL, NULL, NULL};
    size_t bytes = (size_t)n * elem;
    p.cpu = kern_alloc(cpu, bytes);
    p.gpu = kern_alloc(gpu, bytes);
    p.host = malloc(bytes ? bytes : 1);
    assert_non_null(p.cpu);
    assert_non_null(p.gpu);
    assert_non_null(p.host);
    return p;
}

static pair pair_new(int64_t n) { return pair_new_elem(n, sizeof(float)); }

static void pair_free(pair *p) {
    kern_free(cpu, p->cpu);
    kern_free(gpu, p->gpu);
    free(p->host);
}

static float *F(const pair *p) { return (float *)p->host; }

/* Both sides get p->host. */
static void pair_upload(pair *p) {
    size_t bytes = (size_t)p->n * p->elem;
    kern_to_device(cpu, p->cpu, p->host, bytes);
    kern_to_device(gpu, p->gpu, p->host, bytes);
}

static void pair_random(pair *p, float lo, float hi) {
    for (int64_t i = 0; i < p->n; i++) F(p)[i] = rng_uniform(lo, hi);
    pair_upload(p);
}

/* Distinct values in [-1, 1) in random order (no ties anywhere). */
static void pair_distinct(pair *p) {
    float *v = F(p);
    for (int64_t i = 0; i < p->n; i++) v[i] = -1.0f + 2.0f * ((float)i + 0.5f) / (float)p->n;
    for (int64_t i = p->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_u64() % (uint64_t)(i + 1));
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    pair_upload(p);
}

/* GPU side: floats to NaN, other element types to 0xAB bytes. */
static void pair_poison(pair *p) {
    if (p->elem == sizeof(float)) {
        kern_fill(gpu, (float *)p->gpu, NAN, p->n);
        return;
    }
    memset(p->host, 0xAB, (size_t)p->n * p->elem);
    kern_to_device(gpu, p->gpu, p->host, (size_t)p->n * p->elem);
}

static void pair_fetch(pair *p) {
    kern_to_host(gpu, p->host, p->gpu, (size_t)p->n * p->elem);
}

/* ---- checks ---- */

static void expect_no_gpu_error(void) {
    char err[512];
    if (kern_sync(gpu, err, sizeof err) != 0) fail_msg("CUDA error: %s", err);
}

/* GPU result (fetched) against the CPU's: NaN exactly where the CPU has NaN, infinities equal,
 * and max|gpu - cpu| <= tol * max|cpu| over the finite elements (gpu_compare.h: NaN fails). */
static void expect_close(const char *what, pair *p, double tol) {
    expect_no_gpu_error();
    pair_fetch(p);
    const int dbl = p->elem == sizeof(double);
    gc_diff d = dbl ? gc_diff_d((const double *)p->cpu, (const double *)p->host, p->n)
                    : gc_diff_f((const float *)p->cpu, (const float *)p->host, p->n);
    double rel = gc_rel(&d), want = 0, got = 0;
    if (d.worst >= 0) {
        want = dbl ? ((double *)p->cpu)[d.worst] : ((float *)p->cpu)[d.worst];
        got = dbl ? ((double *)p->host)[d.worst] : ((float *)p->host)[d.worst];
    }
    if (isnan(d.max_diff))
        fail_msg("%s (n=%lld): element %lld is %g on the CPU but %g on the GPU", what,
                 (long long)p->n, (long long)d.worst, want, got);
    if (d.differ == 0)
        printf("  %-52s n=%-8lld bit-identical\n", what, (long long)p->n);
    else
        printf("  %-52s n=%-8lld max rel err %.3g, %lld elements differ in bits\n", what,
               (long long)p->n, rel, (long long)d.differ);
    if (!(rel <= tol))
        fail_msg("%s (n=%lld): normwise relative error %.3g > %.3g; worst element %lld: CPU "
                 "%.17g GPU %.17g", what, (long long)p->n, rel, tol, (long long)d.worst, want, got);
}

static void expect_ints_equal(const char *what, pair *p) {
    expect_no_gpu_error();
    pair_fetch(p);
    const int32_t *want = p->cpu, *got = p->host;
    for (int64_t i = 0; i < p->n; i++)
        if (want[i] != got[i])
            fail_msg("%s (n=%lld): element %lld is %d on the CPU but %d on the GPU", what,
                     (long long)p->n, (long long)i, want[i], got[i]);
    printf("  %-52s n=%-8lld identical\n", what, (long long)p->n);
}

/* ---- conv2d ---- */

static kern_conv_shape conv(int B, int C, int H, int W, int K, int R, int S, int sh, int sw,
                            int ph, int pw, int dh, int dw, int groups) {
    kern_conv_shape s = {B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups};
    return s;
}

static void describe(char *buf, size_t len, const char *op, const kern_conv_shape *s) {
    snprintf(buf, len, "%s B%d C%d %dx%d K%d %dx%d s%d,%d p%d,%d d%d,%d g%d", op, s->B, s->C,
             s->H, s->W, s->K, s->R, s->S, s->stride_h, s->stride_w, s->pad_h, s->pad_w,
             s->dil_h, s->dil_w, s->groups);
}

/* Forward and backward of one shape on both backends.  The GPU's workspace is what
 * kern_conv2d_workspace promises for the shape with batch query_B (s->B: the usual case;
 * another: a shape the caller never asked about, as the trainer's evaluation batches), NULL
 * when that is 0, as the trainer passes it. */
static void conv_case(const kern_conv_shape *s, int with_bias, int query_B, double tol) {
    const int P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
    assert_true(P > 0 && Q > 0);
    const int64_t n_in = (int64_t)s->B * s->C * s->H * s->W;
    const int64_t n_w = (int64_t)s->K * (s->C / s->groups) * s->R * s->S;
    const int64_t n_out = (int64_t)s->B * s->K * P * Q;
    pair in = pair_new(n_in), w = pair_new(n_w), b = pair_new(s->K), out = pair_new(n_out);
    pair dout = pair_new(n_out), din = pair_new(n_in), dw = pair_new(n_w), db = pair_new(s->K);

    kern_conv_shape q = *s;
    q.B = query_B;
    size_t ws_cpu = kern_conv2d_workspace(cpu, s), ws_gpu = kern_conv2d_workspace(gpu, &q);
    void *work_cpu = ws_cpu ? kern_alloc(cpu, ws_cpu) : NULL;
    void *work_gpu = ws_gpu ? kern_alloc(gpu, ws_gpu) : NULL;
    if (ws_cpu) assert_non_null(work_cpu);
    if (ws_gpu) assert_non_null(work_gpu);
    char what[160], shape[128];
    describe(shape, sizeof shape, "", s);
    printf("  conv%s%s: GPU workspace %zu bytes (asked for batch %d)\n", shape,
           with_bias ? "" : " no bias", ws_gpu, query_B);

    pair_random(&in, -1.0f, 1.0f);
    pair_random(&w, -0.5f, 0.5f);
    pair_random(&b, -0.5f, 0.5f);
    pair_poison(&out);
    kern_conv2d_forward(cpu, out.cpu, in.cpu, w.cpu, with_bias ? b.cpu : NULL, s, work_cpu);
    kern_conv2d_forward(gpu, out.gpu, in.gpu, w.gpu, with_bias ? b.gpu : NULL, s, work_gpu);
    describe(what, sizeof what, "conv forward", s);
    expect_close(what, &out, tol);

    /* backward: din overwritten, dw and db accumulated onto random values */
    pair_random(&dout, -1.0f, 1.0f);
    pair_random(&dw, -0.1f, 0.1f);
    pair_random(&db, -0.1f, 0.1f);
    pair_poison(&din);
    kern_conv2d_backward(cpu, din.cpu, dw.cpu, with_bias ? db.cpu : NULL, dout.cpu, in.cpu, w.cpu,
                         s, work_cpu);
    kern_conv2d_backward(gpu, din.gpu, dw.gpu, with_bias ? db.gpu : NULL, dout.gpu, in.gpu, w.gpu,
                         s, work_gpu);
    describe(what, sizeof what, "conv backward din", s);
    expect_close(what, &din, tol);
    describe(what, sizeof what, "conv backward dw", s);
    expect_close(what, &dw, tol);
    if (with_bias) {
        describe(what, sizeof what, "conv backward db", s);
        expect_close(what, &db, tol);
    }

    /* the first layer's backward: no input gradient; a second accumulation into dw */
    kern_conv2d_backward(cpu, NULL, dw.cpu, NULL, dout.cpu, in.cpu, w.cpu, s, work_cpu);
    kern_conv2d_backward(gpu, NULL, dw.gpu, NULL, dout.gpu, in.gpu, w.gpu, s, work_gpu);
    describe(what, sizeof what, "conv backward dw (din NULL, again)", s);
    expect_close(what, &dw, tol);

    if (work_cpu) kern_free(cpu, work_cpu);
    if (work_gpu) kern_free(gpu, work_gpu);
    pair_free(&in);
    pair_free(&w);
    pair_free(&b);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&dw);
    pair_free(&db);
}

static void test_conv2d(void **state) {
    const kern_conv_shape shapes[] = {
        /*   B  C   H   W   K  R  S sh sw ph pw dh dw g */
        conv(2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1),      /* 3x3 "same" */
        conv(3, 4, 17, 15, 6, 7, 7, 2, 2, 3, 3, 1, 1, 1),      /* 7x7 stride 2 (a stem) */
        conv(2, 6, 13, 12, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1),      /* dilation 2 */
        conv(2, 6, 9, 10, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2),       /* 2 groups */
        conv(2, 8, 12, 11, 8, 3, 3, 2, 2, 1, 1, 1, 1, 8),      /* depthwise, stride 2 */
        conv(2, 4, 10, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4),       /* grouped, 2 outputs a group */
        conv(4, 16, 7, 9, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1),      /* 1x1 */
        conv(3, 8, 10, 10, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1),     /* 1x1 stride 2 (projection) */
        conv(2, 5, 12, 14, 7, 3, 5, 2, 1, 0, 2, 1, 2, 1),      /* asymmetric everything */
        conv(1, 3, 5, 5, 2, 5, 5, 1, 1, 0, 0, 1, 1, 1),        /* window = image: 1x1 output */
        conv(8, 32, 28, 28, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1),    /* big enough for workspace */
        conv(16, 64, 14, 14, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1),   /* strided, many channels */
        /* the bias gradient over several blocks per channel (8192 values a block): 8 even
         * splits of 65,536 values, and 3 uneven ones of 17,995 */
        conv(16, 3, 64, 64, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        conv(5, 2, 61, 59, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    };
    const int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n; i++) {
        conv_case(&shapes[i], 1, shapes[i].B, TOL);
        conv_case(&shapes[i], 0, shapes[i].B, TOL);
    }
}

/* Shapes whose batch size was never passed to kern_conv2d_workspace: the workspace promised
 * for another batch size of the same layer must be enough (smaller: the last evaluation
 * batch; larger: a caller that asked with batch 1). */
static void test_conv2d_other_batch(void **state) {
    kern_conv_shape s = conv(8, 16, 20, 18, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    conv_case(&s, 1, 32, TOL);   /* asked for 32, runs 8 */
    conv_case(&s, 1, 1, TOL);    /* asked for 1, runs 8 */
    kern_conv_shape d = conv(12, 24, 15, 15, 24, 3, 3, 2, 2, 1, 1, 1, 1, 24);
    conv_case(&d, 1, 1, TOL);
}

/* More distinct shapes than the CUDA backend keeps plans for: old plans are replaced and must
 * be rebuilt correctly when their shape comes back. */
static void test_conv2d_many_shapes(void **state) {
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 150; i += round ? 7 : 1) {
            kern_conv_shape s = conv(1 + i % 3, 2, 5 + i % 11, 4 + i / 11, 3, 3, 3, 1 + i % 2,
                                     1, 1, 1, 1, 1, 1);
            if (i % 10 == 0) conv_case(&s, 1, s.B, TOL);
            else {
                /* forward only: quick */
                const int P = kern_conv_out_h(&s), Q = kern_conv_out_w(&s);
                pair in = pair_new((int64_t)s.B * s.C * s.H * s.W), w = pair_new(3 * 2 * 9);
                pair out = pair_new((int64_t)s.B * s.K * P * Q);
                size_t ws_cpu = kern_conv2d_workspace(cpu, &s), ws = kern_conv2d_workspace(gpu, &s);
                void *wc = ws_cpu ? kern_alloc(cpu, ws_cpu) : NULL;
                void *wg = ws ? kern_alloc(gpu, ws) : NULL;
                pair_random(&in, -1.0f, 1.0f);
                pair_random(&w, -1.0f, 1.0f);
                pair_poison(&out);
                kern_conv2d_forward(cpu, out.cpu, in.cpu, w.cpu, NULL, &s, wc);
                kern_conv2d_forward(gpu, out.gpu, in.gpu, w.gpu, NULL, &s, wg);
                char what[160];
                describe(what, sizeof what, "conv forward", &s);
                expect_close(what, &out, TOL);
                if (wc) kern_free(cpu, wc);
                if (wg) kern_free(gpu, wg);
                pair_free(&in);
                pair_free(&w);
                pair_free(&out);
            }
        }
}

/* TF32 tensor cores (run.precision tf32): inputs rounded to 10 mantissa bits, so only ~1e-3
 * agreement; this checks that the tensor-op path runs and computes the same convolution. */
static void test_conv2d_tf32(void **state) {
    char err[512];
    kern_ctx *tf32 = NULL;
    kern_options o = {.backend = KERN_CUDA, .threads = 1, .device = 0, .precision = KERN_TF32};
    if (kern_create(&o, &tf32, err, sizeof err) != 0) fail_msg("TF32 context: %s", err);
    kern_ctx *fp32 = gpu;
    gpu = tf32;   /* the pairs and the ops of conv_case use the TF32 context */
    kern_conv_shape s = conv(8, 32, 28, 28, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    conv_case(&s, 1, s.B, 1e-2);
    gpu = fp32;
    kern_destroy(tf32);
}

/* ---- pooling ---- */

/* value sets of the pooling inputs */
enum { DISTINCT, TIES, TIES_AND_NAN };

static void pool_case(const kern_conv_shape *s, int values) {
    kern_conv_shape d = *s;
    d.dil_h = d.dil_w = 1;   /* pooling ignores dilation; the output size is a dilation-1 one */
    const int P = kern_conv_out_h(&d), Q = kern_conv_out_w(&d);
    assert_true(P > 0 && Q > 0);
    const int64_t n_in = (int64_t)s->B * s->C * s->H * s->W;
    const int64_t n_out = (int64_t)s->B * s->C * P * Q;
    pair in = pair_new(n_in), out = pair_new(n_out), dout = pair_new(n_out), din = pair_new(n_in);
    pair argmax = pair_new_elem(n_out, sizeof(int32_t));
    char what[160];
    const char *kind = values == DISTINCT ? "" : values == TIES ? " ties" : " ties+NaN";

    if (values == DISTINCT) {
        pair_distinct(&in);
    } else {
        for (int64_t i = 0; i < n_in; i++) F(&in)[i] = (float)(rng_u64() % 3);
        if (values == TIES_AND_NAN)
            for (int64_t i = 0; i < n_in; i += 37) F(&in)[i] = NAN;
        pair_upload(&in);
    }
    pair_random(&dout, -1.0f, 1.0f);

    pair_poison(&out);
    pair_poison(&argmax);
    kern_maxpool2d_forward(cpu, out.cpu, argmax.cpu, in.cpu, s);
    kern_maxpool2d_forward(gpu, out.gpu, argmax.gpu, in.gpu, s);
    describe(what, sizeof what, "maxpool forward", s);
    strcat(what, kind);
    expect_close(what, &out, TOL);
    describe(what, sizeof what, "maxpool argmax", s);
    strcat(what, kind);
    expect_ints_equal(what, &argmax);

    pair_poison(&din);
    kern_maxpool2d_backward(cpu, din.cpu, dout.cpu, argmax.cpu, s);
    kern_maxpool2d_backward(gpu, din.gpu, dout.gpu, argmax.gpu, s);
    describe(what, sizeof what, "maxpool backward", s);
    strcat(what, kind);
    expect_close(what, &din, TOL);

    if (values == DISTINCT) {
        pair_random(&in, -1.0f, 1.0f);
        pair_poison(&out);
        kern_avgpool2d_forward(cpu, out.cpu, in.cpu, s);
        kern_avgpool2d_forward(gpu, out.gpu, in.gpu, s);
        describe(what, sizeof what, "avgpool forward", s);
        expect_close(what, &out, TOL);

        pair_poison(&din);
        kern_avgpool2d_backward(cpu, din.cpu, dout.cpu, s);
        kern_avgpool2d_backward(gpu, din.gpu, dout.gpu, s);
        describe(what, sizeof what, "avgpool backward", s);
        expect_close(what, &din, TOL);
    }
    pair_free(&in);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&argmax);
}

static void test_pooling(void **state) {
    const kern_conv_shape shapes[] = {
        /*   B  C   H   W   K  R  S sh sw ph pw dh dw g */
        conv(2, 3, 13, 11, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1),      /* ResNet's 3x3/2 pad 1 */
        conv(3, 4, 8, 8, 4, 2, 2, 2, 2, 0, 0, 1, 1, 1),        /* 2x2/2 */
        conv(2, 5, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1),        /* 3x3/1: heavy overlap */
        conv(2, 3, 10, 12, 3, 3, 2, 2, 3, 1, 0, 0, 0, 0),      /* asymmetric, zeroed dil/groups */
        conv(1, 2, 5, 6, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1),        /* windows wholly in padding */
        conv(4, 6, 7, 7, 6, 7, 7, 1, 1, 0, 0, 1, 1, 1),        /* global 7x7 */
        conv(2, 3, 33, 30, 3, 33, 30, 1, 1, 0, 0, 1, 1, 1),    /* global, long rows (> 8) */
        conv(8, 64, 56, 56, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1),    /* large: grid-stride loops */
    };
    const int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n; i++) {
        pool_case(&shapes[i], DISTINCT);
        pool_case(&shapes[i], TIES);
        pool_case(&shapes[i], TIES_AND_NAN);
    }
}

/* ---- batch norm ---- */

/* One training step of batch norm on both backends, each with its own statistics:
 * stats -> forward (running update) -> backward_reduce -> backward, then eval. */
static void batchnorm_case(int B, int C, int HW, float offset) {
    const int64_t n = (int64_t)B * C * HW;
    const double count = (double)B * HW;
    pair x = pair_new(n), out = pair_new(n), dout = pair_new(n), din = pair_new(n);
    pair gamma = pair_new(C), beta = pair_new(C), rm = pair_new(C), rv = pair_new(C);
    pair mean_invstd = pair_new(2 * C);
    pair sums = pair_new_elem(2 * C, sizeof(double)), red = pair_new_elem(2 * C, sizeof(double));
    char what[160];
    char shape[64];
    snprintf(shape, sizeof shape, "B%d C%d HW%d", B, C, HW);

    /* a per-channel offset (E[x^2] - E[x]^2 cancels) and scale */
    for (int64_t i = 0; i < n; i++) {
        int c = (int)((i / HW) % C);
        F(&x)[i] = offset * (float)(c % 5) + (0.5f + (float)(c % 3)) * rng_uniform(-1.0f, 1.0f);
    }
    pair_upload(&x);
    pair_random(&gamma, 0.5f, 1.5f);
    pair_random(&beta, -0.5f, 0.5f);
    pair_random(&rm, -0.2f, 0.2f);
    pair_random(&rv, 0.5f, 2.0f);
    pair_random(&dout, -1.0f, 1.0f);

    pair_poison(&sums);
    kern_batchnorm_stats(cpu, sums.cpu, x.cpu, B, C, HW);
    kern_batchnorm_stats(gpu, sums.gpu, x.gpu, B, C, HW);
    snprintf(what, sizeof what, "batchnorm stats %s", shape);
    expect_close(what, &sums, TOL_DOUBLE);

    /* forward from each side's own sums, then once more from the CPU's (as the all-reduced
     * sums are the same on every rank): then out and mean_invstd should be bit-identical */
    for (int from_cpu = 0; from_cpu < 2; from_cpu++) {
        if (from_cpu) {
            memcpy(sums.host, sums.cpu, (size_t)(2 * C) * sizeof(double));
            kern_to_device(gpu, sums.gpu, sums.host, (size_t)(2 * C) * sizeof(double));
        }
        pair_poison(&out);
        pair_poison(&mean_invstd);
        kern_batchnorm_forward(cpu, out.cpu, mean_invstd.cpu, x.cpu, gamma.cpu, beta.cpu,
                               sums.cpu, count, 1e-5f, rm.cpu, rv.cpu, 0.1f, B, C, HW);
        kern_batchnorm_forward(gpu, out.gpu, mean_invstd.gpu, x.gpu, gamma.gpu, beta.gpu,
                               sums.gpu, count, 1e-5f, rm.gpu, rv.gpu, 0.1f, B, C, HW);
        const char *src = from_cpu ? " (CPU sums)" : "";
        snprintf(what, sizeof what, "batchnorm forward %s%s", shape, src);
        expect_close(what, &out, TOL);
        snprintf(what, sizeof what, "batchnorm mean_invstd %s%s", shape, src);
        expect_close(what, &mean_invstd, TOL);
        snprintf(what, sizeof what, "batchnorm running_mean %s%s", shape, src);
        expect_close(what, &rm, TOL);
        snprintf(what, sizeof what, "batchnorm running_var %s%s", shape, src);
        expect_close(what, &rv, TOL);
    }

    /* without running statistics (they must stay untouched) */
    pair_poison(&out);
    kern_batchnorm_forward(cpu, out.cpu, mean_invstd.cpu, x.cpu, gamma.cpu, beta.cpu, sums.cpu,
                           count, 1e-3f, NULL, NULL, 0.1f, B, C, HW);
    kern_batchnorm_forward(gpu, out.gpu, mean_invstd.gpu, x.gpu, gamma.gpu, beta.gpu, sums.gpu,
                           count, 1e-3f, NULL, NULL, 0.1f, B, C, HW);
    snprintf(what, sizeof what, "batchnorm forward no running %s", shape);
    expect_close(what, &out, TOL);
    snprintf(what, sizeof what, "batchnorm running_var untouched %s", shape);
    expect_close(what, &rv, TOL);

    pair_poison(&red);
    kern_batchnorm_backward_reduce(cpu, red.cpu, dout.cpu, x.cpu, mean_invstd.cpu, B, C, HW);
    kern_batchnorm_backward_reduce(gpu, red.gpu, dout.gpu, x.gpu, mean_invstd.gpu, B, C, HW);
    snprintf(what, sizeof what, "batchnorm backward_reduce %s", shape);
    expect_close(what, &red, TOL_DOUBLE);

    pair_poison(&din);
    kern_batchnorm_backward(cpu, din.cpu, dout.cpu, x.cpu, mean_invstd.cpu, gamma.cpu, red.cpu,
                            count, B, C, HW);
    kern_batchnorm_backward(gpu, din.gpu, dout.gpu, x.gpu, mean_invstd.gpu, gamma.gpu, red.gpu,
                            count, B, C, HW);
    snprintf(what, sizeof what, "batchnorm backward %s", shape);
    expect_close(what, &din, TOL);

    pair_poison(&out);
    kern_batchnorm_forward_eval(cpu, out.cpu, x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu, 1e-5f,
                                B, C, HW);
    kern_batchnorm_forward_eval(gpu, out.gpu, x.gpu, gamma.gpu, beta.gpu, rm.gpu, rv.gpu, 1e-5f,
                                B, C, HW);
    snprintf(what, sizeof what, "batchnorm eval %s", shape);
    expect_close(what, &out, TOL);

    pair_free(&x);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&gamma);
    pair_free(&beta);
    pair_free(&rm);
    pair_free(&rv);
    pair_free(&mean_invstd);
    pair_free(&sums);
    pair_free(&red);
}

static void test_batchnorm(void **state) {
    batchnorm_case(4, 3, 143, 0.0f);       /* odd plane */
    batchnorm_case(5, 7, 1, 1.0f);         /* after a global pool: [B,C,1,1] */
    batchnorm_case(8, 16, 49, 3.0f);       /* 7x7 maps, offset means */
    batchnorm_case(16, 8, 1024, 10.0f);    /* several blocks per channel */
    batchnorm_case(128, 3, 4500, 2.0f);    /* the most blocks per channel */
    batchnorm_case(3, 3000, 5, 1.0f);      /* many channels */
    batchnorm_case(2, 70000, 1, 0.5f);     /* more channels than one grid row covers */
}

/* ---- setup ---- */

static int create_contexts(void **state) {
    char err[512];
    kern_options copt = {.backend = KERN_CPU, .threads = 1, .device = 0};
    kern_options gopt = {.backend = KERN_CUDA, .threads = 1, .device = 0};
    if (kern_create(&copt, &cpu, err, sizeof err) != 0) {
        fprintf(stderr, "CPU context: %s\n", err);
        return -1;
    }
    if (kern_create(&gopt, &gpu, err, sizeof err) != 0) {
        fprintf(stderr, "CUDA context: %s\n", err);
        return -1;
    }
    return 0;
}

static int destroy_contexts(void **state) {
    kern_destroy(gpu);
    kern_destroy(cpu);
    return 0;
}

int main(void) {
    int gate = gpu_gate();
    if (gate != 0) return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_other_batch),
        cmocka_unit_test(test_conv2d_many_shapes),
        cmocka_unit_test(test_conv2d_tf32),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_batchnorm),
    };
    return cmocka_run_group_tests(tests, create_contexts, destroy_contexts);
}
