/* test_gpu_kernels.c: every kernels.h op on the CUDA backend against the CPU reference.
 *
 * Each op runs on fresh random inputs of odd sizes (tails, more elements than one grid covers)
 * in a CPU and a CUDA context.  Device outputs are poisoned with NaN (mask bytes with 0xAB)
 * before each op, so an element the GPU forgot to write shows up as a NaN the CPU does not
 * have.  Results agree to a normwise relative error of 1e-5 (fp32; order of sums, expf),
 * initialisation and dropout masks exactly.  Each check also says whether the two results are
 * bit-identical, which the element-wise ops are expected to be (shared KERN_HD math, no FMA
 * contraction on either side), as information for whoever runs this on a GPU.
 *
 * Without a CUDA device (or in a build without the CUDA backend) it prints
 * "SKIP: no CUDA device" and exits 77, which ctest reports as skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_compare.h"
#include "gpu_gate.h"
#include "kernels.h"

#define TOL 1e-5
/* linear+gelu's output when cuBLASLt fuses the GELU: cuBLASLt does not say how it evaluates
 * tanh; if with the hardware's tanh.approx.f32 (relative error about 2^-11, PTX ISA), the
 * error of 0.5 x (1 + tanh u) is at most 0.5 |x| |tanh u| 2^-11 <= |x| 2^-12, and relative to
 * max |gelu(x)| ~ max |x| that is 2^-12 = 2.4e-4.  The measured error is printed ("max rel
 * err"); the pre-activation (GEMM + bias) keeps TOL. */
#define GELU_EPILOGUE_TOL 2.5e-4

static kern_ctx *cpu, *gpu;

/* Odd element counts: a single element, tails of Philox blocks of 4, and more than one full
 * grid of the element-wise kernels (132 SMs * 2048 threads on an H100), so the grid-stride
 * loops go round. */
static const int64_t sizes[] = {1, 3, 5, 4099, 1000003};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))

/* ---- a small deterministic host RNG (splitmix64) ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_u64() >> 40) / 16777216.0);
}

/* ---- a float array in both backends ---- */

typedef struct {
    int64_t n;
    float *cpu;    /* CPU backend memory (host) */
    float *gpu;    /* CUDA backend memory (device) */
    float *host;   /* staging for the GPU's result */
} pair;

static pair pair_new(int64_t n) {
    pair p = {n, NULL, NULL, NULL};
    size_t bytes = (size_t)n * sizeof(float);
    p.cpu = kern_alloc(cpu, bytes);
    p.gpu = kern_alloc(gpu, bytes);
    p.host = malloc(bytes ? bytes : 1);
    assert_non_null(p.cpu);
    assert_non_null(p.gpu);
    assert_non_null(p.host);
    return p;
}

static void pair_free(pair *p) {
    kern_free(cpu, p->cpu);
    kern_free(gpu, p->gpu);
    free(p->host);
}

/* Both sides get the same values, from p->host. */
static void pair_upload(pair *p) {
    size_t bytes = (size_t)p->n * sizeof(float);
    kern_to_device(cpu, p->cpu, p->host, bytes);
    kern_to_device(gpu, p->gpu, p->host, bytes);
}

static void pair_random(pair *p, float lo, float hi) {
    for (int64_t i = 0; i < p->n; i++) p->host[i] = rng_uniform(lo, hi);
    pair_upload(p);
}

static void pair_poison(pair *p) { kern_fill(gpu, p->gpu, NAN, p->n); }

/* Copies the GPU's values into p->host. */
static void pair_fetch(pair *p) {
    kern_to_host(gpu, p->host, p->gpu, (size_t)p->n * sizeof(float));
}

/* ---- checks ---- */

static void expect_no_gpu_error(void) {
    char err[512];
    if (kern_sync(gpu, err, sizeof err) != 0) fail_msg("CUDA error: %s", err);
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* GPU result (fetched) against the CPU's: NaN exactly where the CPU has NaN, infinities equal,
 * and max|gpu - cpu| <= tol * max|cpu| (tol 0: every bit equal); gpu_compare.h, NaN fails. */
static void expect_close_values(const char *what, const float *want, const float *got, int64_t n,
                                double tol) {
    gc_diff d = gc_diff_f(want, got, n);
    double rel = gc_rel(&d);
    if (isnan(d.max_diff))
        fail_msg("%s (n=%lld): element %lld is %g on the CPU but %g on the GPU", what,
                 (long long)n, (long long)d.worst, (double)want[d.worst], (double)got[d.worst]);
    if (d.differ == 0)
        printf("  %-40s n=%-8lld bit-identical\n", what, (long long)n);
    else
        printf("  %-40s n=%-8lld max rel err %.3g, %lld elements differ in bits\n", what,
               (long long)n, rel, (long long)d.differ);
    if (!gc_within(&d, tol))
        fail_msg("%s (n=%lld): normwise relative error %.3g > %.3g; worst element %lld: CPU %.9g "
                 "GPU %.9g",
                 what, (long long)n, rel, tol, (long long)d.worst,
                 d.worst >= 0 ? (double)want[d.worst] : 0.0, d.worst >= 0 ? (double)got[d.worst] : 0.0);
}

static void expect_close(const char *what, pair *p, double tol) {
    expect_no_gpu_error();
    pair_fetch(p);
    expect_close_values(what, p->cpu, p->host, p->n, tol);
}

static void expect_identical(const char *what, pair *p) { expect_close(what, p, 0.0); }

/* ---- byte buffers (uint8 inputs, dropout masks) ---- */

typedef struct {
    int64_t n;
    uint8_t *cpu, *gpu, *host;
} bytes_pair;

static bytes_pair bytes_new(int64_t n) {
    bytes_pair b = {n, kern_alloc(cpu, (size_t)n), kern_alloc(gpu, (size_t)n),
                    malloc(n ? (size_t)n : 1)};
    assert_non_null(b.cpu);
    assert_non_null(b.gpu);
    assert_non_null(b.host);
    return b;
}

static void bytes_free(bytes_pair *b) {
    kern_free(cpu, b->cpu);
    kern_free(gpu, b->gpu);
    free(b->host);
}

static void bytes_poison(bytes_pair *b) {
    memset(b->host, 0xAB, (size_t)b->n);
    kern_to_device(gpu, b->gpu, b->host, (size_t)b->n);
}

static void expect_bytes_identical(const char *what, bytes_pair *b) {
    expect_no_gpu_error();
    kern_to_host(gpu, b->host, b->gpu, (size_t)b->n);
    for (int64_t i = 0; i < b->n; i++)
        if (b->host[i] != b->cpu[i])
            fail_msg("%s (n=%lld): byte %lld is %d on the CPU but %d on the GPU", what,
                     (long long)b->n, (long long)i, b->cpu[i], b->host[i]);
    printf("  %-40s n=%-8lld identical\n", what, (long long)b->n);
}

/* ---- context and memory ---- */

static void test_alloc_is_zeroed(void **state) {
    const int64_t n = 100003;
    float *d = kern_alloc(gpu, (size_t)n * sizeof(float));
    float *h = malloc((size_t)n * sizeof(float));
    assert_non_null(d);
    assert_non_null(h);
    memset(h, 0xFF, (size_t)n * sizeof(float));
    kern_to_host(gpu, h, d, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        if (!same_bits(h[i], 0.0f)) fail_msg("kern_alloc: element %lld is not zero", (long long)i);
    kern_free(gpu, d);
    free(h);
    void *empty = kern_alloc(gpu, 0);
    assert_non_null(empty);
    kern_free(gpu, empty);
    expect_no_gpu_error();
}

/* A failed call is recorded, reported once by kern_check with the call and place, then
 * cleared.  (An impossible allocation: a clean, non-sticky error.) */
static void test_errors_are_reported_once(void **state) {
    char err[512];
    expect_no_gpu_error();
    void *huge = kern_alloc(gpu, (size_t)1 << 60);
    assert_null(huge);
    if (kern_check(gpu, err, sizeof err) == 0) fail_msg("a failed cudaMalloc was not reported");
    printf("  reported: %s\n", err);
    assert_non_null(strstr(err, "cudaMalloc"));
    assert_non_null(strstr(err, "cuda_context.cu:"));
    assert_int_equal(kern_check(gpu, err, sizeof err), 0);
    expect_no_gpu_error();
}

/* ---- element-wise ---- */

static void test_fill_copy_scale_axpy(void **state) {
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair x = pair_new(n), y = pair_new(n);
        pair_random(&x, -2.0f, 2.0f);

        pair_poison(&y);
        kern_fill(cpu, y.cpu, 2.5f, n);
        kern_fill(gpu, y.gpu, 2.5f, n);
        expect_identical("fill", &y);

        pair_poison(&y);
        kern_copy(cpu, y.cpu, x.cpu, n);
        kern_copy(gpu, y.gpu, x.gpu, n);
        expect_identical("copy", &y);

        kern_scale(cpu, y.cpu, -0.37f, n);
        kern_scale(gpu, y.gpu, -0.37f, n);
        expect_close("scale", &y, TOL);

        pair_random(&y, -1.0f, 1.0f);
        kern_axpy(cpu, y.cpu, 0.61f, x.cpu, n);
        kern_axpy(gpu, y.gpu, 0.61f, x.gpu, n);
        expect_close("axpy", &y, TOL);

        kern_axpy(cpu, y.cpu, -0.3f, y.cpu, n);
        kern_axpy(gpu, y.gpu, -0.3f, y.gpu, n);
        expect_close("axpy y == x", &y, TOL);
        pair_free(&x);
        pair_free(&y);
    }
}

static void test_conversions(void **state) {
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        bytes_pair src = bytes_new(n);
        pair out = pair_new(n), x = pair_new(n);
        for (int64_t i = 0; i < n; i++) src.host[i] = (uint8_t)(rng_u64() >> 56);
        kern_to_device(cpu, src.cpu, src.host, (size_t)n);
        kern_to_device(gpu, src.gpu, src.host, (size_t)n);

        pair_poison(&out);
        kern_u8_to_f32(cpu, out.cpu, src.cpu, n, 1.0f / 255.0f, 0.1307f, 0.3081f);
        kern_u8_to_f32(gpu, out.gpu, src.gpu, n, 1.0f / 255.0f, 0.1307f, 0.3081f);
        expect_close("u8_to_f32", &out, TOL);

        pair_random(&x, -50.0f, 200.0f);
        pair_poison(&out);
        kern_f32_normalize(cpu, out.cpu, x.cpu, n, 33.3f, 78.5f);
        kern_f32_normalize(gpu, out.gpu, x.gpu, n, 33.3f, 78.5f);
        expect_close("f32_normalize", &out, TOL);

        kern_f32_normalize(cpu, x.cpu, x.cpu, n, -0.5f, 2.0f);
        kern_f32_normalize(gpu, x.gpu, x.gpu, n, -0.5f, 2.0f);
        expect_close("f32_normalize in place", &x, TOL);
        bytes_free(&src);
        pair_free(&out);
        pair_free(&x);
    }
}

/* Inputs in [-4, 4] with every 7th element exactly 0 (ReLU's boundary). */
static void random_activations(pair *p) {
    for (int64_t i = 0; i < p->n; i++) p->host[i] = i % 7 == 3 ? 0.0f : rng_uniform(-4.0f, 4.0f);
    pair_upload(p);
}

static void test_activations(void **state) {
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair in = pair_new(n), out = pair_new(n), dout = pair_new(n), din = pair_new(n);
        random_activations(&in);

        pair_poison(&out);
        kern_relu_forward(cpu, out.cpu, in.cpu, n);
        kern_relu_forward(gpu, out.gpu, in.gpu, n);
        expect_close("relu_forward", &out, TOL);

        pair_random(&dout, -1.0f, 1.0f);
        pair_poison(&din);
        kern_relu_backward(cpu, din.cpu, dout.cpu, in.cpu, n);
        kern_relu_backward(gpu, din.gpu, dout.gpu, in.gpu, n);
        expect_close("relu_backward", &din, TOL);
        kern_relu_backward(cpu, dout.cpu, dout.cpu, in.cpu, n);
        kern_relu_backward(gpu, dout.gpu, dout.gpu, in.gpu, n);
        expect_close("relu_backward in place", &dout, TOL);

        pair_poison(&out);
        kern_gelu_forward(cpu, out.cpu, in.cpu, n);
        kern_gelu_forward(gpu, out.gpu, in.gpu, n);
        expect_close("gelu_forward", &out, TOL);

        pair_random(&dout, -1.0f, 1.0f);
        pair_poison(&din);
        kern_gelu_backward(cpu, din.cpu, dout.cpu, in.cpu, n);
        kern_gelu_backward(gpu, din.gpu, dout.gpu, in.gpu, n);
        expect_close("gelu_backward", &din, TOL);
        kern_gelu_backward(cpu, dout.cpu, dout.cpu, in.cpu, n);
        kern_gelu_backward(gpu, dout.gpu, dout.gpu, in.gpu, n);
        expect_close("gelu_backward in place", &dout, TOL);

        /* in-place forwards last: they overwrite the input */
        pair_random(&out, -4.0f, 4.0f);
        kern_gelu_forward(cpu, out.cpu, out.cpu, n);
        kern_gelu_forward(gpu, out.gpu, out.gpu, n);
        expect_close("gelu_forward in place", &out, TOL);
        kern_relu_forward(cpu, in.cpu, in.cpu, n);
        kern_relu_forward(gpu, in.gpu, in.gpu, n);
        expect_close("relu_forward in place", &in, TOL);
        pair_free(&in);
        pair_free(&out);
        pair_free(&dout);
        pair_free(&din);
    }
}

/* ---- random numbers ---- */

static void test_init_is_bit_identical(void **state) {
    const uint64_t seeds[][2] = {{0, 0},
                                 {42, 7},
                                 {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull}};
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair x = pair_new(n);
        for (int k = 0; k < 3; k++) {
            uint64_t seed = seeds[k][0], stream = seeds[k][1];
            pair_poison(&x);
            kern_init_uniform(cpu, x.cpu, n, -0.1f, 0.3f, seed, stream);
            kern_init_uniform(gpu, x.gpu, n, -0.1f, 0.3f, seed, stream);
            expect_identical("init_uniform", &x);

            pair_poison(&x);
            kern_init_normal(cpu, x.cpu, n, 0.5f, 0.02f, seed, stream);
            kern_init_normal(gpu, x.gpu, n, 0.5f, 0.02f, seed, stream);
            expect_identical("init_normal", &x);

            pair_poison(&x);
            kern_init_normal(cpu, x.cpu, n, 0.0f, 1.0f, seed, stream);
            kern_init_normal(gpu, x.gpu, n, 0.0f, 1.0f, seed, stream);
            expect_identical("init_normal standard", &x);
        }
        pair_free(&x);
    }
}

static void test_dropout(void **state) {
    const float ps[] = {0.0f, 0.3f, 0.9f, 1.0f};
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair in = pair_new(n), out = pair_new(n), dout = pair_new(n), din = pair_new(n);
        bytes_pair mask = bytes_new(n);
        for (int k = 0; k < 4; k++) {
            float p = ps[k];
            uint64_t seed = 1234 + (uint64_t)k, stream = 0x100000000ull + (uint64_t)s;
            char what[64];
            pair_random(&in, -3.0f, 3.0f);
            pair_poison(&out);
            bytes_poison(&mask);
            kern_dropout_forward(cpu, out.cpu, mask.cpu, in.cpu, n, p, seed, stream);
            kern_dropout_forward(gpu, out.gpu, mask.gpu, in.gpu, n, p, seed, stream);
            snprintf(what, sizeof what, "dropout_forward p=%.1f mask", (double)p);
            expect_bytes_identical(what, &mask);
            snprintf(what, sizeof what, "dropout_forward p=%.1f", (double)p);
            expect_close(what, &out, TOL);

            pair_random(&dout, -1.0f, 1.0f);
            pair_poison(&din);
            kern_dropout_backward(cpu, din.cpu, dout.cpu, mask.cpu, n, p);
            kern_dropout_backward(gpu, din.gpu, dout.gpu, mask.gpu, n, p);
            snprintf(what, sizeof what, "dropout_backward p=%.1f", (double)p);
            expect_close(what, &din, TOL);
            kern_dropout_backward(cpu, dout.cpu, dout.cpu, mask.cpu, n, p);
            kern_dropout_backward(gpu, dout.gpu, dout.gpu, mask.gpu, n, p);
            snprintf(what, sizeof what, "dropout_backward p=%.1f in place", (double)p);
            expect_close(what, &dout, TOL);

            bytes_poison(&mask);
            kern_dropout_forward(cpu, in.cpu, mask.cpu, in.cpu, n, p, seed, stream + 1);
            kern_dropout_forward(gpu, in.gpu, mask.gpu, in.gpu, n, p, seed, stream + 1);
            snprintf(what, sizeof what, "dropout_forward p=%.1f in place mask", (double)p);
            expect_bytes_identical(what, &mask);
            snprintf(what, sizeof what, "dropout_forward p=%.1f in place", (double)p);
            expect_close(what, &in, TOL);
        }
        pair_free(&in);
        pair_free(&out);
        pair_free(&dout);
        pair_free(&din);
        bytes_free(&mask);
    }
}

/* ---- linear ---- */

typedef struct {
    int B, I, O;
} linear_shape;

static void check_linear(linear_shape sh, int with_bias, int with_din, int with_db) {
    int B = sh.B, I = sh.I, O = sh.O;
    char what[96];
    pair in = pair_new((int64_t)B * I), w = pair_new((int64_t)O * I), b = pair_new(O);
    pair out = pair_new((int64_t)B * O), dout = pair_new((int64_t)B * O);
    pair din = pair_new((int64_t)B * I), dw = pair_new((int64_t)O * I), db = pair_new(O);
    pair_random(&in, -1.0f, 1.0f);
    pair_random(&w, -0.5f, 0.5f);
    pair_random(&b, -0.5f, 0.5f);

    pair_poison(&out);
    kern_linear_forward(cpu, out.cpu, in.cpu, w.cpu, with_bias ? b.cpu : NULL, B, I, O);
    kern_linear_forward(gpu, out.gpu, in.gpu, w.gpu, with_bias ? b.gpu : NULL, B, I, O);
    snprintf(what, sizeof what, "linear_forward %dx%dx%d%s", B, I, O, with_bias ? " +b" : "");
    expect_close(what, &out, TOL);

    if (I > 0) {
        /* dw and db start non-zero: the backward pass must add to them */
        pair_random(&dout, -1.0f, 1.0f);
        pair_random(&dw, -0.1f, 0.1f);
        pair_random(&db, -0.1f, 0.1f);
        pair_poison(&din);
        kern_linear_backward(cpu, with_din ? din.cpu : NULL, dw.cpu, with_db ? db.cpu : NULL,
                             dout.cpu, in.cpu, w.cpu, B, I, O);
        kern_linear_backward(gpu, with_din ? din.gpu : NULL, dw.gpu, with_db ? db.gpu : NULL,
                             dout.gpu, in.gpu, w.gpu, B, I, O);
        if (with_din) {
            snprintf(what, sizeof what, "linear_backward din %dx%dx%d", B, I, O);
            expect_close(what, &din, TOL);
        }
        snprintf(what, sizeof what, "linear_backward dw %dx%dx%d", B, I, O);
        expect_close(what, &dw, TOL);
        snprintf(what, sizeof what, "linear_backward db %dx%dx%d%s", B, I, O,
                 with_db ? "" : " (NULL)");
        expect_close(what, &db, TOL);   /* unchanged when NULL: both still hold the seed */
    }
    pair_free(&in);
    pair_free(&w);
    pair_free(&b);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&dw);
    pair_free(&db);
}

/* ---- linear with fused epilogues (cuBLASLt) ---- */

/* kern_linear_act_forward (bias + relu / gelu in the GEMM's epilogue) and
 * kern_linear_backward_ex with overwrite (bias gradient from the dW GEMM's BGRADB epilogue)
 * against the CPU, which runs the same ops one after the other.  Shapes with O a multiple
 * of 8 (GELU's aux needs it) and without, pointers 16-byte aligned and not (a bias at an odd
 * float offset, as in the flat parameter buffer), and a NaN input row, which must come out
 * NaN (PyTorch's relu propagates NaN; an epilogue computing max(x, 0) would hide it). */
static void check_linear_act(linear_shape sh, kern_act act, int with_bias, int misalign) {
    int B = sh.B, I = sh.I, O = sh.O;
    char what[128];
    const char *name = act == KERN_ACT_RELU ? "relu" : act == KERN_ACT_GELU ? "gelu" : "none";
    pair in = pair_new((int64_t)B * I), w = pair_new((int64_t)O * I), b = pair_new(O + 1);
    pair pre = pair_new((int64_t)B * O), out = pair_new((int64_t)B * O);
    pair dout = pair_new((int64_t)B * O), dw = pair_new((int64_t)O * I), db = pair_new(O + 1);
    pair_random(&in, -1.0f, 1.0f);
    pair_random(&w, -0.5f, 0.5f);
    pair_random(&b, -0.5f, 0.5f);
    if (B > 1) {
        /* row 1 of the input is NaN: its outputs must be NaN on both backends */
        for (int i = 0; i < I; i++) in.cpu[I + i] = NAN;
        kern_to_device(gpu, in.gpu + I, in.cpu + I, (size_t)I * sizeof(float));
    }
    float *bc = with_bias ? b.cpu + misalign : NULL, *bg = with_bias ? b.gpu + misalign : NULL;
    pair_poison(&pre);
    pair_poison(&out);
    float *pc = act == KERN_ACT_GELU ? pre.cpu : NULL, *pg = act == KERN_ACT_GELU ? pre.gpu : NULL;
    kern_linear_act_forward(cpu, pc, out.cpu, in.cpu, w.cpu, bc, B, I, O, act);
    kern_linear_act_forward(gpu, pg, out.gpu, in.gpu, w.gpu, bg, B, I, O, act);
    snprintf(what, sizeof what, "linear+%s %dx%dx%d%s%s", name, B, I, O, with_bias ? " +b" : "",
             misalign ? " (bias 4-byte aligned)" : "");
    if (B > 1 && act == KERN_ACT_RELU) {
        /* issue 22: whether cuBLASLt's ReLU epilogue keeps a NaN (undocumented) - measured and
         * printed here; expect_close then fails if it does not, naming the element */
        float got = 0.0f;
        kern_to_host(gpu, &got, out.gpu + O, sizeof got);
        kern_counters kc;
        kern_get_counters(gpu, &kc);
        printf("  %-40s NaN input row -> %g on the GPU (%s); cuBLASLt's ReLU epilogue %s\n",
               what, (double)got, isnan(got) ? "the NaN survives" : "HIDDEN",
               kc.relu_epilogue_keeps_nan == 1 ? "keeps NaN (measured): fused"
               : kc.relu_epilogue_keeps_nan == 0 ? "hides NaN (measured): ReLU runs separately"
                                                  : "not measured");
    }
    expect_close(what, &out, act == KERN_ACT_GELU ? GELU_EPILOGUE_TOL : TOL);
    if (act == KERN_ACT_GELU) {
        snprintf(what, sizeof what, "linear+gelu pre-activation %dx%dx%d", B, I, O);
        expect_close(what, &pre, TOL);
    }

    /* overwrite: dw and db hold garbage that must not survive */
    pair_random(&in, -1.0f, 1.0f);
    pair_random(&dout, -1.0f, 1.0f);
    for (int pass = 0; pass < 2; pass++) {
        int overwrite = pass == 0;
        if (overwrite) {
            pair_random(&dw, 1e3f, 2e3f);
            pair_random(&db, 1e3f, 2e3f);
        }
        kern_linear_backward_ex(cpu, NULL, dw.cpu, with_bias ? db.cpu + misalign : NULL,
                                dout.cpu, in.cpu, w.cpu, B, I, O, overwrite);
        kern_linear_backward_ex(gpu, NULL, dw.gpu, with_bias ? db.gpu + misalign : NULL,
                                dout.gpu, in.gpu, w.gpu, B, I, O, overwrite);
        snprintf(what, sizeof what, "linear_backward_ex dw %dx%dx%d %s", B, I, O,
                 overwrite ? "overwrite" : "then accumulate");
        expect_close(what, &dw, TOL);
        if (with_bias) {
            snprintf(what, sizeof what, "linear_backward_ex db %dx%dx%d %s", B, I, O,
                     overwrite ? "overwrite" : "then accumulate");
            expect_close(what, &db, TOL);
        }
    }
    pair_free(&in);
    pair_free(&w);
    pair_free(&b);
    pair_free(&pre);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&dw);
    pair_free(&db);
}

static void test_linear_epilogues(void **state) {
    (void)state;
    kern_counters before, after;
    kern_get_counters(gpu, &before);
    const linear_shape shapes[] = {{37, 129, 64}, {37, 129, 67}, {256, 768, 3072}, {2, 5, 8},
                                   {1, 16, 1}};
    const kern_act acts[] = {KERN_ACT_RELU, KERN_ACT_GELU, KERN_ACT_NONE};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int a = 0; a < 3; a++) {
            check_linear_act(shapes[i], acts[a], 1, 0);
            check_linear_act(shapes[i], acts[a], 0, 0);
            check_linear_act(shapes[i], acts[a], 1, 1);
        }
    kern_get_counters(gpu, &after);
    long long fused = (long long)(after.fused_gemms - before.fused_gemms);
    long long fallback = (long long)(after.epilogue_fallbacks - before.epilogue_fallbacks);
    printf("  cuBLASLt: %lld GEMMs with fused epilogues, %lld fell back to separate kernels\n",
           fused, fallback);
    /* the aligned fp32 shapes with O % 8 == 0 must find an algorithm on any recent GPU */
    if (fused == 0) fail_msg("cuBLASLt fused no epilogue at all (%lld fallbacks)", fallback);
}

/* run.gemm_epilogues=separate: nothing is fused, results as the CPU's */
/* The cuBLASLt plan cache past its first 256 shapes (issue 22: it used to rebuild a plan on
 * every call from then on): 300 batch sizes of a linear layer with a bias, twice, in a fresh
 * context - every shape keeps its plan (gemm_plans 300 after both passes), the second pass
 * fuses as many GEMMs as the first, and the largest agrees with the CPU. */
static void test_lt_plan_cache_grows(void **state) {
    (void)state;
    enum { SHAPES = 300, I = 16, O = 16 };
    char err[512];
    kern_options o = {.backend = KERN_CUDA, .threads = 1, .device = 0};
    kern_ctx *saved = gpu, *fresh = NULL;
    if (kern_create(&o, &fresh, err, sizeof err) != 0) fail_msg("CUDA context: %s", err);
    gpu = fresh;
    pair in = pair_new((int64_t)SHAPES * I), w = pair_new((int64_t)O * I), b = pair_new(O);
    pair out = pair_new((int64_t)SHAPES * O);
    pair_random(&in, -1.0f, 1.0f);
    pair_random(&w, -0.5f, 0.5f);
    pair_random(&b, -0.5f, 0.5f);
    long long plans[2], fused[2];
    kern_counters kc0, kc;
    for (int pass = 0; pass < 2; pass++) {
        kern_get_counters(gpu, &kc0);
        for (int B = 1; B <= SHAPES; B++) kern_linear_forward(gpu, out.gpu, in.gpu, w.gpu, b.gpu, B, I, O);
        kern_get_counters(gpu, &kc);
        plans[pass] = (long long)kc.gemm_plans;
        fused[pass] = (long long)(kc.fused_gemms - kc0.fused_gemms);
    }
    printf("  plan cache: %lld plans after pass 1, %lld after pass 2; fused %lld then %lld\n",
           plans[0], plans[1], fused[0], fused[1]);
    kern_linear_forward(cpu, out.cpu, in.cpu, w.cpu, b.cpu, SHAPES, I, O);
    expect_close("linear 300x16x16 after 600 cached GEMMs", &out, TOL);
    pair_free(&in); pair_free(&w); pair_free(&b); pair_free(&out);
    gpu = saved;
    kern_destroy(fresh);
    if (plans[0] != SHAPES || plans[1] != SHAPES)
        fail_msg("the plan cache holds %lld / %lld plans, not one per shape (%d)", plans[0],
                 plans[1], SHAPES);
    if (fused[1] != fused[0]) fail_msg("pass 2 fused %lld GEMMs, pass 1 %lld", fused[1], fused[0]);
}

static void test_linear_epilogues_separate(void **state) {
    (void)state;
    char err[512];
    kern_options o = {.backend = KERN_CUDA, .threads = 1, .device = 0, .separate_epilogues = 1};
    kern_ctx *fused_ctx = gpu, *sep = NULL;
    if (kern_create(&o, &sep, err, sizeof err) != 0) fail_msg("CUDA context: %s", err);
    gpu = sep;
    check_linear_act((linear_shape){37, 129, 64}, KERN_ACT_GELU, 1, 0);
    check_linear_act((linear_shape){37, 129, 64}, KERN_ACT_RELU, 1, 0);
    kern_counters c;
    kern_get_counters(sep, &c);
    gpu = fused_ctx;
    kern_destroy(sep);
    if (c.fused_gemms != 0) fail_msg("separate epilogues: %lld GEMMs fused", (long long)c.fused_gemms);
    if (c.launches <= 0) fail_msg("separate epilogues: no launches counted");
}

static void test_linear(void **state) {
    const linear_shape shapes[] = {{37, 129, 67}, {1, 1, 1},   {5, 3, 1},  {1, 77, 3},
                                   {64, 33, 130}, {300, 17, 9}, {3, 0, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_linear(shapes[i], 1, 1, 1);
        check_linear(shapes[i], 0, 0, 0);
        check_linear(shapes[i], 1, 0, 1);
    }
}

/* ---- softmax cross-entropy ---- */

typedef struct {
    int B, C;
    int ties;          /* integer logits in [0,4): many argmax ties */
    int bad_label;     /* row 1 gets label C (invalid) */
} xent_case;

/* mode 0: separate dlogits; 1: dlogits NULL; 2: dlogits == logits; 3: losses NULL */
static void check_xent(xent_case xc, int mode) {
    int B = xc.B, C = xc.C;
    float scale = 1.0f / (float)B;
    char what[96];
    pair logits = pair_new((int64_t)B * C), dlogits = pair_new((int64_t)B * C), losses = pair_new(B);
    int32_t *labels_host = malloc((size_t)B * sizeof(int32_t));
    int32_t *labels_cpu = kern_alloc(cpu, (size_t)B * sizeof(int32_t));
    int32_t *labels_gpu = kern_alloc(gpu, (size_t)B * sizeof(int32_t));
    assert_non_null(labels_host);
    assert_non_null(labels_cpu);
    assert_non_null(labels_gpu);

    for (int64_t i = 0; i < logits.n; i++)
        logits.host[i] = xc.ties ? (float)(rng_u64() >> 62) : rng_uniform(-6.0f, 6.0f);
    pair_upload(&logits);
    for (int r = 0; r < B; r++) labels_host[r] = (int32_t)(rng_u64() % (uint64_t)C);
    if (xc.bad_label && B > 1) labels_host[1] = C;
    kern_to_device(cpu, labels_cpu, labels_host, (size_t)B * sizeof(int32_t));
    kern_to_device(gpu, labels_gpu, labels_host, (size_t)B * sizeof(int32_t));

    pair_poison(&losses);
    pair_poison(&dlogits);
    float *d_cpu = mode == 1 ? NULL : mode == 2 ? logits.cpu : dlogits.cpu;
    float *d_gpu = mode == 1 ? NULL : mode == 2 ? logits.gpu : dlogits.gpu;
    int64_t right_cpu = -1, right_gpu = -1;
    double sum_cpu = kern_softmax_xent(cpu, mode == 3 ? NULL : losses.cpu, d_cpu, &right_cpu,
                                       logits.cpu, labels_cpu, B, C, scale);
    double sum_gpu = kern_softmax_xent(gpu, mode == 3 ? NULL : losses.gpu, d_gpu, &right_gpu,
                                       logits.gpu, labels_gpu, B, C, scale);
    const char *mode_name[] = {"", " dlogits NULL", " in place", " losses NULL"};
    snprintf(what, sizeof what, "softmax_xent %dx%d%s%s%s", B, C, xc.ties ? " ties" : "",
             xc.bad_label ? " bad label" : "", mode_name[mode]);
    expect_no_gpu_error();
    printf("  %-40s loss sum CPU %.17g GPU %.17g, correct CPU %lld GPU %lld\n", what, sum_cpu,
           sum_gpu, (long long)right_cpu, (long long)right_gpu);
    if (!isnan(sum_cpu) != !isnan(sum_gpu) ||
        (!isnan(sum_cpu) && sum_gpu != sum_cpu && !(fabs(sum_gpu - sum_cpu) <= TOL * fabs(sum_cpu))))
        fail_msg("%s: loss sum CPU %.17g GPU %.17g", what, sum_cpu, sum_gpu);
    assert_int_equal(right_cpu, right_gpu);
    if (mode != 3) expect_close(what, &losses, TOL);
    if (mode == 0) expect_close(what, &dlogits, TOL);
    if (mode == 2) expect_close(what, &logits, TOL);

    if (mode == 1) {
        /* no outputs but the sum, no count: the same sum, bit for bit (fixed reduction order) */
        double again = kern_softmax_xent(gpu, NULL, NULL, NULL, logits.gpu, labels_gpu, B, C,
                                         scale);
        expect_no_gpu_error();
        if (memcmp(&again, &sum_gpu, sizeof again) != 0)
            fail_msg("%s: repeated loss sum %.17g != %.17g", what, again, sum_gpu);
    }
    free(labels_host);
    kern_free(cpu, labels_cpu);
    kern_free(gpu, labels_gpu);
    pair_free(&logits);
    pair_free(&dlogits);
    pair_free(&losses);
}

static void test_softmax_xent(void **state) {
    const xent_case cases[] = {{37, 1001, 0, 0}, {37, 10, 0, 0},   {5, 1, 0, 0},
                               {64, 33, 1, 0},   {1000, 7, 1, 0},  {9000, 50, 0, 0},
                               {13, 64, 0, 1},   {3, 50257, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int mode = 0; mode < 4; mode++) check_xent(cases[i], mode);
}

/* ---- reductions ---- */

static void test_reductions(void **state) {
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair x = pair_new(n);
        pair_random(&x, -3.0f, 3.0f);
        double want = kern_sumsq(cpu, x.cpu, n), got = kern_sumsq(gpu, x.gpu, n);
        expect_no_gpu_error();
        printf("  %-40s n=%-8lld CPU %.17g GPU %.17g\n", "sumsq", (long long)n, want, got);
        if (!(fabs(got - want) <= 1e-12 * want))
            fail_msg("sumsq (n=%lld): CPU %.17g GPU %.17g", (long long)n, want, got);

        assert_int_equal(kern_has_nonfinite(gpu, x.gpu, n), 0);
        assert_int_equal(kern_has_nonfinite(cpu, x.cpu, n), 0);
        const float specials[] = {NAN, INFINITY, -INFINITY, FLT_MAX};
        const int64_t where[] = {n - 1, 0, n / 2, n / 3};
        for (int k = 0; k < 4; k++) {
            float saved = x.host[where[k]];
            x.host[where[k]] = specials[k];
            pair_upload(&x);
            int want_bad = kern_has_nonfinite(cpu, x.cpu, n);
            int got_bad = kern_has_nonfinite(gpu, x.gpu, n);
            expect_no_gpu_error();
            assert_int_equal(want_bad, k < 3);
            assert_int_equal(got_bad != 0, want_bad != 0);
            x.host[where[k]] = saved;
        }
        pair_upload(&x);
        pair_free(&x);
    }
    assert_true(kern_sumsq(gpu, NULL, 0) == 0.0);
    assert_int_equal(kern_has_nonfinite(gpu, NULL, 0), 0);
    expect_no_gpu_error();
}

/* ---- optimizers (several steps, so state carries over) ---- */

static void test_sgd(void **state) {
    const int64_t n = 100003;
    const struct {
        float momentum, wd;
        int nesterov;
    } variants[] = {{0.0f, 0.0f, 0}, {0.0f, 1e-2f, 0}, {0.9f, 1e-4f, 0}, {0.9f, 5e-4f, 1}};
    for (int k = 0; k < 4; k++) {
        pair param = pair_new(n), buf = pair_new(n), grad = pair_new(n);
        pair_random(&param, -1.0f, 1.0f);
        int with_buf = variants[k].momentum != 0.0f;
        char what[96];
        for (int step = 0; step < 3; step++) {
            pair_random(&grad, -0.1f, 0.1f);
            if (step == 0 && with_buf) pair_poison(&buf);   /* first step must not read it */
            kern_sgd_update(cpu, param.cpu, with_buf ? buf.cpu : NULL, grad.cpu, n, 0.05f,
                            variants[k].momentum, variants[k].wd, variants[k].nesterov, step == 0);
            kern_sgd_update(gpu, param.gpu, with_buf ? buf.gpu : NULL, grad.gpu, n, 0.05f,
                            variants[k].momentum, variants[k].wd, variants[k].nesterov, step == 0);
            snprintf(what, sizeof what, "sgd m=%.1f wd=%g%s step %d param",
                     (double)variants[k].momentum, (double)variants[k].wd,
                     variants[k].nesterov ? " nesterov" : "", step);
            expect_close(what, &param, TOL);
            if (with_buf) {
                snprintf(what, sizeof what, "sgd m=%.1f%s step %d buf",
                         (double)variants[k].momentum, variants[k].nesterov ? " nesterov" : "",
                         step);
                expect_close(what, &buf, TOL);
            }
        }
        pair_free(&param);
        pair_free(&buf);
        pair_free(&grad);
    }
}

static void test_adamw(void **state) {
    const int64_t n = 1000003;
    pair param = pair_new(n), m = pair_new(n), v = pair_new(n), grad = pair_new(n);
    pair_random(&param, -1.0f, 1.0f);
    char what[64];
    for (int64_t t = 1; t <= 4; t++) {
        pair_random(&grad, -0.01f, 0.01f);
        kern_adamw_update(cpu, param.cpu, m.cpu, v.cpu, grad.cpu, n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                          0.01f, t);
        kern_adamw_update(gpu, param.gpu, m.gpu, v.gpu, grad.gpu, n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                          0.01f, t);
        snprintf(what, sizeof what, "adamw t=%lld param", (long long)t);
        expect_close(what, &param, TOL);
        snprintf(what, sizeof what, "adamw t=%lld m", (long long)t);
        expect_close(what, &m, TOL);
        snprintf(what, sizeof what, "adamw t=%lld v", (long long)t);
        expect_close(what, &v, TOL);
    }
    pair_free(&param);
    pair_free(&m);
    pair_free(&v);
    pair_free(&grad);
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
        cmocka_unit_test(test_alloc_is_zeroed),
        cmocka_unit_test(test_errors_are_reported_once),
        cmocka_unit_test(test_fill_copy_scale_axpy),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_init_is_bit_identical),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_epilogues),
        cmocka_unit_test(test_linear_epilogues_separate),
        cmocka_unit_test(test_lt_plan_cache_grows),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, create_contexts, destroy_contexts);
}
