/* test_kernels_bf16.c: the CPU backend's GEMM paths through oneDNN.
 *
 *   fp32 determinism  linear forward/backward and conv forward/backward run twice on the same
 *                     inputs give the same bits (resume and data-parallel tests rely on it)
 *   bf16 (AMX only)   run.precision=bf16 linear forward/backward-data/backward-weights equal a
 *                     float64 GEMM of the bf16-rounded inputs (round to nearest even) to fp32
 *                     accumulation error, differ from the fp32 result (bf16 really ran), and
 *                     repeat bit for bit; conv2d forward likewise.
 * Exits 77 (skipped) for the bf16 part where kern_cpu_bf16_fast() is 0 (no AMX); the fp32
 * part always runs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test_util.h"

static int failures;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fputc('\n', stderr);                           \
            failures++;                                    \
        }                                                  \
    } while (0)

static kern_ctx *open_ctx(kern_precision p) {
    kern_options o = {.backend = KERN_CPU, .threads = 1, .precision = p};
    kern_ctx *k;
    char err[256];
    if (kern_create(&o, &k, err, sizeof err) != 0) {
        fprintf(stderr, "kern_create: %s\n", err);
        exit(1);
    }
    return k;
}

/* bf16 of x, rounded to nearest even, as a float */
static double bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

static float *random_f(int64_t n, uint64_t *st) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)tu_uniform(st, -1.0, 1.0);
    return x;
}

/* out[B,O] = round(in)[B,I] @ round(w)[O,I]^T + b, and its scale sum |a||b| (float64) */
static void ref_forward(double *out, double *scale, const float *in, const float *w,
                        const float *b, int B, int I, int O, int round) {
    for (int r = 0; r < B; r++)
        for (int o = 0; o < O; o++) {
            double acc = b ? b[o] : 0.0, s = b ? fabs(b[o]) : 0.0;
            for (int i = 0; i < I; i++) {
                double x = round ? bf16_round(in[r * I + i]) : in[r * I + i];
                double y = round ? bf16_round(w[o * I + i]) : w[o * I + i];
                acc += x * y;
                s += fabs(x * y);
            }
            out[r * O + o] = acc;
            scale[r * O + o] = s;
        }
}

/* linear forward/backward in `k` on fixed inputs; outputs into out, din, dw */
static void run_linear(kern_ctx *k, float *out, float *din, float *dw, const float *in,
                       const float *w, const float *b, const float *dout, int B, int I, int O) {
    kern_linear_forward(k, out, in, w, b, B, I, O);
    memset(dw, 0, sizeof(float) * O * I);
    float *db = calloc(O, sizeof(float));
    kern_linear_backward(k, din, dw, db, dout, in, w, B, I, O);
    free(db);
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static void test_linear(kern_precision p, int B, int I, int O) {
    uint64_t st = 1234 + (uint64_t)B * 7 + I;
    float *in = random_f((int64_t)B * I, &st), *w = random_f((int64_t)O * I, &st);
    float *b = random_f(O, &st), *dout = random_f((int64_t)B * O, &st);
    float *out[2], *din[2], *dw[2];
    kern_ctx *k = open_ctx(p);
    for (int t = 0; t < 2; t++) {
        out[t] = malloc(sizeof(float) * B * O);
        din[t] = malloc(sizeof(float) * B * I);
        dw[t] = malloc(sizeof(float) * O * I);
        run_linear(k, out[t], din[t], dw[t], in, w, b, dout, B, I, O);
    }
    const char *name = p == KERN_BF16 ? "bf16" : "fp32";
    CHECK(same_bits(out[0], out[1], (int64_t)B * O), "%s linear forward repeats", name);
    CHECK(same_bits(din[0], din[1], (int64_t)B * I), "%s linear backward-data repeats", name);
    CHECK(same_bits(dw[0], dw[1], (int64_t)O * I), "%s linear backward-weights repeats", name);

    /* forward against float64 of the inputs as this precision sees them */
    int round = p == KERN_BF16;
    double *want = malloc(sizeof(double) * B * O), *scale = malloc(sizeof(double) * B * O);
    ref_forward(want, scale, in, w, b, B, I, O, round);
    /* fp32 accumulation over I products: a few ulps of the scale */
    if (tu_close_scaled_f(name, out[0], want, scale, (int64_t)B * O, 1e-5)) failures++;
    if (round) {
        /* the fp32 reference must be measurably different, else bf16 did not run */
        double *want32 = malloc(sizeof(double) * B * O);
        ref_forward(want32, scale, in, w, b, B, I, O, 0);
        double worst = 0;
        for (int64_t i = 0; i < (int64_t)B * O; i++) {
            double d = fabs(out[0][i] - want32[i]) / scale[i];
            if (d > worst) worst = d;
        }
        CHECK(worst > 1e-4, "bf16 linear forward is as close to fp32 as fp32 (%.3g): no bf16?",
              worst);
        free(want32);
    }
    /* backward-data din[B,I] = dout @ w: transpose roles of ref_forward (w^T as [I,O]) */
    double *want_din = malloc(sizeof(double) * B * I), *sc_din = malloc(sizeof(double) * B * I);
    for (int r = 0; r < B; r++)
        for (int i = 0; i < I; i++) {
            double acc = 0, s = 0;
            for (int o = 0; o < O; o++) {
                double x = round ? bf16_round(dout[r * O + o]) : dout[r * O + o];
                double y = round ? bf16_round(w[o * I + i]) : w[o * I + i];
                acc += x * y;
                s += fabs(x * y);
            }
            want_din[r * I + i] = acc;
            sc_din[r * I + i] = s;
        }
    if (tu_close_scaled_f("din", din[0], want_din, sc_din, (int64_t)B * I, 1e-5)) failures++;
    /* backward-weights dw[O,I] = dout^T @ in */
    double *want_dw = malloc(sizeof(double) * O * I), *sc_dw = malloc(sizeof(double) * O * I);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double acc = 0, s = 0;
            for (int r = 0; r < B; r++) {
                double x = round ? bf16_round(dout[r * O + o]) : dout[r * O + o];
                double y = round ? bf16_round(in[r * I + i]) : in[r * I + i];
                acc += x * y;
                s += fabs(x * y);
            }
            want_dw[o * I + i] = acc;
            sc_dw[o * I + i] = s;
        }
    if (tu_close_scaled_f("dw", dw[0], want_dw, sc_dw, (int64_t)O * I, 1e-5)) failures++;
    kern_destroy(k);
    for (int t = 0; t < 2; t++) { free(out[t]); free(din[t]); free(dw[t]); }
    free(in); free(w); free(b); free(dout); free(want); free(scale);
    free(want_din); free(sc_din); free(want_dw); free(sc_dw);
}

/* conv2d forward twice (bits) and against float64 of the rounded inputs */
static void test_conv(kern_precision p) {
    kern_conv_shape s = {.B = 2, .C = 3, .H = 9, .W = 7, .K = 5, .R = 3, .S = 3, .stride_h = 1,
                         .stride_w = 2, .pad_h = 1, .pad_w = 1, .dil_h = 1, .dil_w = 1,
                         .groups = 1};
    int P = kern_conv_out_h(&s), Q = kern_conv_out_w(&s);
    uint64_t st = 99;
    int64_t nin = (int64_t)s.B * s.C * s.H * s.W, nw = (int64_t)s.K * s.C * 9;
    int64_t nout = (int64_t)s.B * s.K * P * Q;
    float *in = random_f(nin, &st), *w = random_f(nw, &st), *b = random_f(s.K, &st);
    kern_ctx *k = open_ctx(p);
    void *ws = kern_alloc(k, kern_conv2d_workspace(k, &s));
    float *out[2] = {malloc(sizeof(float) * nout), malloc(sizeof(float) * nout)};
    for (int t = 0; t < 2; t++) kern_conv2d_forward(k, out[t], in, w, b, &s, ws);
    CHECK(same_bits(out[0], out[1], nout), "conv forward repeats bit for bit");
    int round = p == KERN_BF16;
    double *want = malloc(sizeof(double) * nout), *scale = malloc(sizeof(double) * nout);
    for (int n = 0; n < s.B; n++)
        for (int kk = 0; kk < s.K; kk++)
            for (int y = 0; y < P; y++)
                for (int x = 0; x < Q; x++) {
                    double acc = b[kk], sc = fabs(b[kk]);
                    for (int c = 0; c < s.C; c++)
                        for (int r = 0; r < 3; r++)
                            for (int t = 0; t < 3; t++) {
                                int h = y * s.stride_h - s.pad_h + r;
                                int ww = x * s.stride_w - s.pad_w + t;
                                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                                float a = in[((n * s.C + c) * s.H + h) * s.W + ww];
                                float v = w[((kk * s.C + c) * 3 + r) * 3 + t];
                                double pa = round ? bf16_round(a) : a;
                                double pv = round ? bf16_round(v) : v;
                                acc += pa * pv;
                                sc += fabs(pa * pv);
                            }
                    int64_t o = ((int64_t)(n * s.K + kk) * P + y) * Q + x;
                    want[o] = acc;
                    scale[o] = sc;
                }
    if (tu_close_scaled_f(round ? "bf16 conv" : "fp32 conv", out[0], want, scale, nout, 1e-5))
        failures++;
    kern_free(k, ws);
    kern_destroy(k);
    free(in); free(w); free(b); free(out[0]); free(out[1]); free(want); free(scale);
}

int main(void) {
    char cpu[160];
    kern_cpu_describe(cpu, sizeof cpu);
    printf("cpu: %s\n", cpu);
    /* the MLP's first layer and a GPT-like width; an odd shape for the edges */
    test_linear(KERN_FP32, 32, 784, 256);
    test_linear(KERN_FP32, 17, 33, 9);
    test_conv(KERN_FP32);
    if (!kern_cpu_bf16_fast()) {
        printf("no AMX: bf16 is not used on this CPU, its part is skipped\n");
        return failures ? 1 : 77;
    }
    test_linear(KERN_BF16, 32, 784, 256);
    test_linear(KERN_BF16, 17, 33, 9);
    test_linear(KERN_BF16, 64, 768, 2304 / 8);
    test_conv(KERN_BF16);
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("all passed\n");
    return failures ? 1 : 0;
}
