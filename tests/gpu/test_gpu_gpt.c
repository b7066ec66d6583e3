/* test_gpu_gpt.c: the GPT ops of kernels.h on the CUDA backend against the CPU backend.
 *
 * Random inputs of awkward sizes (T = 1, T not a multiple of 32, heads of 16 and 64 features,
 * a vocabulary padded from 1000 to 1024); GPU outputs are poisoned with NaN first, so an
 * element the GPU forgot to write shows up.  fp32: normwise relative error <= 1e-5; every
 * backward run twice must give the same bits (no atomics); the loss in place equals the loss
 * out of place; padding columns get exactly 0; decode equals the last row of the full
 * forward; labels outside [0,C) give NaN rows as on the CPU.  The fused attention is checked
 * on fp32, TF32 and BF16 contexts at several T up to 1024 and head sizes 4 to 128, with the
 * tolerances and their reasons in main.  Exits 77 without a CUDA device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_compare.h"
#include "gpu_gate.h"
#include "kernels.h"

static kern_ctx *cpu, *gpu;
static int failures;
static uint64_t rng = 0x243F6A8885A308D3ull;

static float uniform(float lo, float hi) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 40) / 16777216.0);
}

typedef struct { int64_t n; float *c, *g, *h; } buf;   /* CPU, GPU, host staging */

static buf make(int64_t n, float lo, float hi) {
    buf b = {n, kern_alloc(cpu, (size_t)n * 4 + 4), kern_alloc(gpu, (size_t)n * 4 + 4), malloc((size_t)n * 4 + 4)};
    if (!b.c || !b.g || !b.h) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t i = 0; i < n; i++) b.h[i] = uniform(lo, hi);
    kern_to_device(cpu, b.c, b.h, (size_t)n * 4);
    kern_to_device(gpu, b.g, b.h, (size_t)n * 4);
    return b;
}
static void poison(buf *b) { kern_fill(gpu, b->g, NAN, b->n); }
static void drop(buf *b) { kern_free(cpu, b->c); kern_free(gpu, b->g); free(b->h); }

static void sync_or_die(void) {
    char err[512];
    if (kern_sync(gpu, err, sizeof err) != 0) { fprintf(stderr, "CUDA error: %s\n", err); exit(1); }
}

/* GPU vs CPU, normwise: max|g - c| <= tol * max|c|; NaN must match. */
static void compare(const char *what, buf *b, double tol) {
    sync_or_die();
    kern_to_host(gpu, b->h, b->g, (size_t)b->n * 4);
    gc_diff d = gc_diff_f(b->c, b->h, b->n);
    if (isnan(d.max_diff)) {
        printf("FAIL %s: element %lld: cpu %g, gpu %g\n", what, (long long)d.worst,
               b->c[d.worst], b->h[d.worst]);
        failures++;
        return;
    }
    double ref = d.max_ref, diff = d.max_diff;
    int ok = diff <= tol * (ref > 0 ? ref : 1);
    printf("%s %s: max |gpu - cpu| = %.3g (max |cpu| %.3g, tolerance %.1g)\n", ok ? "ok  " : "FAIL",
           what, diff, ref, tol);
    failures += !ok;
}

/* The GPU buffer's current bits against a saved copy. */
static void same_bits(const char *what, buf *b, const float *saved) {
    sync_or_die();
    kern_to_host(gpu, b->h, b->g, (size_t)b->n * 4);
    int ok = memcmp(b->h, saved, (size_t)b->n * 4) == 0;
    printf("%s %s: two runs %s\n", ok ? "ok  " : "FAIL", what, ok ? "bit-identical" : "DIFFER");
    failures += !ok;
}

static float *snapshot(buf *b) {
    sync_or_die();
    float *s = malloc((size_t)b->n * 4 + 4);
    kern_to_host(gpu, s, b->g, (size_t)b->n * 4);
    return s;
}

static void *both_ws(size_t bytes, void **g) {
    *g = kern_alloc(gpu, bytes + 256);
    return kern_alloc(cpu, bytes + 256);
}

static void test_embedding(int B, int T, int C, int V) {
    char name[96];
    int32_t *tok = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(uniform(0, 1) * (i % 3 ? V : 4)) % V;  /* repeats */
    int32_t *tc = kern_alloc(cpu, (size_t)B * T * 4), *tg = kern_alloc(gpu, (size_t)B * T * 4);
    kern_to_device(cpu, tc, tok, (size_t)B * T * 4);
    kern_to_device(gpu, tg, tok, (size_t)B * T * 4);
    buf wte = make((int64_t)V * C, -1, 1), wpe = make((int64_t)T * C, -1, 1);
    buf out = make((int64_t)B * T * C, 0, 0), dout = make((int64_t)B * T * C, -1, 1);
    buf dwte = make((int64_t)V * C, -1, 1), dwpe = make((int64_t)T * C, -1, 1);
    void *wg, *wc = both_ws(kern_gpt_workspace(cpu, B, T, C, 1, V) > kern_gpt_workspace(gpu, B, T, C, 1, V)
                            ? kern_gpt_workspace(cpu, B, T, C, 1, V) : kern_gpt_workspace(gpu, B, T, C, 1, V), &wg);
    poison(&out);
    kern_embedding_forward(cpu, out.c, tc, wte.c, wpe.c, B, T, C);
    kern_embedding_forward(gpu, out.g, tg, wte.g, wpe.g, B, T, C);
    snprintf(name, sizeof name, "embedding forward B=%d T=%d C=%d V=%d", B, T, C, V);
    compare(name, &out, 1e-6);
    float *w0 = snapshot(&dwte), *p0 = snapshot(&dwpe);   /* accumulate onto these */
    kern_embedding_backward(cpu, dwte.c, dwpe.c, dout.c, tc, B, T, C, V, wc);
    kern_embedding_backward(gpu, dwte.g, dwpe.g, dout.g, tg, B, T, C, V, wg);
    snprintf(name, sizeof name, "embedding backward dwte B=%d T=%d", B, T);
    compare(name, &dwte, 1e-5);
    compare("embedding backward dwpe", &dwpe, 1e-5);
    float *w1 = snapshot(&dwte);
    kern_to_device(gpu, dwte.g, w0, (size_t)dwte.n * 4);
    kern_to_device(gpu, dwpe.g, p0, (size_t)dwpe.n * 4);
    kern_embedding_backward(gpu, dwte.g, dwpe.g, dout.g, tg, B, T, C, V, wg);
    same_bits("embedding backward", &dwte, w1);
    free(w0); free(p0); free(w1);
    drop(&wte); drop(&wpe); drop(&out); drop(&dout); drop(&dwte); drop(&dwpe);
    kern_free(cpu, tc); kern_free(gpu, tg); kern_free(cpu, wc); kern_free(gpu, wg);
    free(tok);
}

static void test_layernorm(int N, int C) {
    char name[96];
    buf x = make((int64_t)N * C, -2, 3), w = make(C, 0.5f, 1.5f), b = make(C, -1, 1);
    buf out = make((int64_t)N * C, 0, 0), mr = make(2 * (int64_t)N, 0, 0);
    buf dout = make((int64_t)N * C, -1, 1), din = make((int64_t)N * C, 0, 0);
    buf dw = make(C, -1, 1), db = make(C, -1, 1);
    size_t ws = kern_gpt_workspace(gpu, 1, N, C, 1, 0), wsc = kern_gpt_workspace(cpu, 1, N, C, 1, 0);
    void *wg, *wc = both_ws(ws > wsc ? ws : wsc, &wg);
    poison(&out); poison(&mr);
    kern_layernorm_forward(cpu, out.c, mr.c, x.c, w.c, b.c, N, C, 1e-5f);
    kern_layernorm_forward(gpu, out.g, mr.g, x.g, w.g, b.g, N, C, 1e-5f);
    snprintf(name, sizeof name, "layernorm forward N=%d C=%d", N, C);
    compare(name, &out, 1e-5);
    poison(&din);
    float *w0 = snapshot(&dw), *b0 = snapshot(&db);
    kern_layernorm_backward(cpu, din.c, dw.c, db.c, dout.c, x.c, mr.c, w.c, N, C, wc);
    kern_layernorm_backward(gpu, din.g, dw.g, db.g, dout.g, x.g, mr.g, w.g, N, C, wg);
    compare("layernorm backward din", &din, 1e-5);
    compare("layernorm backward dw", &dw, 1e-5);
    compare("layernorm backward db", &db, 1e-5);
    float *w1 = snapshot(&dw);
    kern_to_device(gpu, dw.g, w0, (size_t)C * 4);
    kern_to_device(gpu, db.g, b0, (size_t)C * 4);
    kern_layernorm_backward(gpu, din.g, dw.g, db.g, dout.g, x.g, mr.g, w.g, N, C, wg);
    same_bits("layernorm backward dw", &dw, w1);
    free(w0); free(b0); free(w1);
    drop(&x); drop(&w); drop(&b); drop(&out); drop(&mr); drop(&dout); drop(&din); drop(&dw); drop(&db);
    kern_free(cpu, wc); kern_free(gpu, wg);
}

/* Attention on GPU context p (fp32, TF32 or BF16 GEMM inputs) against the fp32 CPU:
 * out, lse and dqkv within the normwise tolerances the caller states; the GPU outputs start
 * as NaN, so an element not written fails; backward twice gives the same bits. */
static void test_attention_on(kern_ctx *p, const char *mode, int B, int T, int C, int NH,
                              double tol_fwd, double tol_bwd) {
    char name[128];
    buf qkv = make((int64_t)B * T * 3 * C, -1, 1), out = make((int64_t)B * T * C, 0, 0);
    buf lse = make((int64_t)B * NH * T, 0, 0), dout = make((int64_t)B * T * C, -1, 1);
    buf dqkv = make((int64_t)B * T * 3 * C, 0, 0);
    size_t ws = kern_gpt_workspace(p, B, T, C, NH, 0), wsc = kern_gpt_workspace(cpu, B, T, C, NH, 0);
    void *wg, *wc = both_ws(ws > wsc ? ws : wsc, &wg);
    poison(&out); poison(&lse); poison(&dqkv);
    sync_or_die();   /* the uploads and poison (gpu's stream) before p's stream reads them */
    kern_attention_forward(cpu, out.c, lse.c, qkv.c, B, T, C, NH, wc);
    kern_attention_backward(cpu, dqkv.c, dout.c, qkv.c, out.c, lse.c, B, T, C, NH, wc);
    kern_attention_forward(p, out.g, lse.g, qkv.g, B, T, C, NH, wg);
    kern_attention_backward(p, dqkv.g, dout.g, qkv.g, out.g, lse.g, B, T, C, NH, wg);
    char err[512];
    if (kern_sync(p, err, sizeof err) != 0) { fprintf(stderr, "CUDA error (%s): %s\n", mode, err); exit(1); }
    snprintf(name, sizeof name, "attention forward %s B=%d T=%d C=%d heads=%d", mode, B, T, C, NH);
    compare(name, &out, tol_fwd);
    snprintf(name, sizeof name, "attention logsumexp %s T=%d", mode, T);
    compare(name, &lse, tol_fwd);
    snprintf(name, sizeof name, "attention backward dqkv %s T=%d", mode, T);
    compare(name, &dqkv, tol_bwd);
    float *d1 = snapshot(&dqkv);
    poison(&dqkv);
    sync_or_die();
    kern_attention_backward(p, dqkv.g, dout.g, qkv.g, out.g, lse.g, B, T, C, NH, wg);
    if (kern_sync(p, err, sizeof err) != 0) { fprintf(stderr, "CUDA error (%s): %s\n", mode, err); exit(1); }
    snprintf(name, sizeof name, "attention backward %s T=%d", mode, T);
    same_bits(name, &dqkv, d1);
    free(d1);
    drop(&qkv); drop(&out); drop(&lse); drop(&dout); drop(&dqkv);
    kern_free(cpu, wc); kern_free(gpu, wg);
}

/* Prints (does not judge) the fused attention's time on context p: forward and forward +
 * backward at GPT-2 124M's shape, the best of 5 after a warm-up, and the TFLOP/s of the causal
 * half (forward 2 GEMMs of T^2/2 x HS per head; backward 5 with the recomputed scores). */
static void time_attention(kern_ctx *p, const char *mode, int B, int T, int C, int NH) {
    buf qkv = make((int64_t)B * T * 3 * C, -1, 1), out = make((int64_t)B * T * C, 0, 0);
    buf lse = make((int64_t)B * NH * T, 0, 0), dout = make((int64_t)B * T * C, -1, 1);
    buf dqkv = make((int64_t)B * T * 3 * C, 0, 0);
    void *wg = kern_alloc(gpu, kern_gpt_workspace(p, B, T, C, NH, 0) + 256);
    char err[512];
    sync_or_die();
    double best_f = 1e30, best_fb = 1e30;
    for (int r = 0; r < 6; r++) {
        struct timespec t0, t1, t2;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        kern_attention_forward(p, out.g, lse.g, qkv.g, B, T, C, NH, wg);
        if (kern_sync(p, err, sizeof err) != 0) { fprintf(stderr, "CUDA error: %s\n", err); exit(1); }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        kern_attention_backward(p, dqkv.g, dout.g, qkv.g, out.g, lse.g, B, T, C, NH, wg);
        if (kern_sync(p, err, sizeof err) != 0) { fprintf(stderr, "CUDA error: %s\n", err); exit(1); }
        clock_gettime(CLOCK_MONOTONIC, &t2);
        double f = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
        double fb = (t2.tv_sec - t0.tv_sec) + 1e-9 * (t2.tv_nsec - t0.tv_nsec);
        if (r > 0 && f < best_f) best_f = f;
        if (r > 0 && fb < best_fb) best_fb = fb;
    }
    double gemm = 2.0 * (double)B * NH * ((double)T * T / 2) * (C / NH);   /* one causal GEMM */
    printf("time attention %s B=%d T=%d heads=%d x %d: forward %.3f ms (%.1f TFLOP/s), forward + "
           "backward %.3f ms (%.1f TFLOP/s)\n", mode, B, T, NH, C / NH, best_f * 1e3,
           2 * gemm / best_f * 1e-12, best_fb * 1e3, 7 * gemm / best_fb * 1e-12);
    drop(&qkv); drop(&out); drop(&lse); drop(&dout); drop(&dqkv);
    kern_free(gpu, wg);
}

/* decode of the last position against caches filled from qkv == the CPU forward's last row */
static void test_attention_decode(int B, int T, int C, int NH) {
    buf qkv = make((int64_t)B * T * 3 * C, -1, 1), out = make((int64_t)B * T * C, 0, 0);
    buf lse = make((int64_t)B * NH * T, 0, 0);
    size_t ws = kern_gpt_workspace(gpu, B, T, C, NH, 0), wsc = kern_gpt_workspace(cpu, B, T, C, NH, 0);
    void *wg, *wc = both_ws(ws > wsc ? ws : wsc, &wg);
    kern_attention_forward(cpu, out.c, lse.c, qkv.c, B, T, C, NH, wc);
    buf kc = make((int64_t)B * T * C, 0, 0), vc = make((int64_t)B * T * C, 0, 0);
    buf q = make((int64_t)B * C, 0, 0), o1 = make((int64_t)B * C, 0, 0);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) {
                const float *row = qkv.h + ((size_t)b * T + t) * 3 * C;
                kc.h[((size_t)b * T + t) * C + i] = row[C + i];
                vc.h[((size_t)b * T + t) * C + i] = row[2 * C + i];
                if (t == T - 1) q.h[(size_t)b * C + i] = row[i];
            }
    kern_to_device(gpu, kc.g, kc.h, (size_t)kc.n * 4);
    kern_to_device(gpu, vc.g, vc.h, (size_t)vc.n * 4);
    kern_to_device(gpu, q.g, q.h, (size_t)q.n * 4);
    poison(&o1);
    kern_attention_decode(gpu, o1.g, q.g, kc.g, vc.g, B, T - 1, T, C, NH, wg);
    for (int b = 0; b < B; b++)   /* want: the CPU forward's last row */
        memcpy(o1.c + (size_t)b * C, out.c + ((size_t)b * T + T - 1) * C, (size_t)C * 4);
    compare("attention decode vs the forward's last row", &o1, 1e-5);
    drop(&kc); drop(&vc); drop(&q); drop(&o1);
    drop(&qkv); drop(&out); drop(&lse);
    kern_free(cpu, wc); kern_free(gpu, wg);
}

static void test_xent(int rows, int C, int ld) {
    char name[96];
    buf logits = make((int64_t)rows * ld, -4, 4), d = make((int64_t)rows * ld, 0, 0);
    buf loss = make(rows, 0, 0);
    int32_t *lab = malloc((size_t)rows * 4);
    for (int r = 0; r < rows; r++) lab[r] = (int32_t)(uniform(0, 1) * C) % C;
    int32_t *lc = kern_alloc(cpu, (size_t)rows * 4), *lg = kern_alloc(gpu, (size_t)rows * 4);
    kern_to_device(cpu, lc, lab, (size_t)rows * 4);
    kern_to_device(gpu, lg, lab, (size_t)rows * 4);
    double *ac = kern_alloc(cpu, 16), *ag = kern_alloc(gpu, 16), init[2] = {1.5, 2.0}, got[2];
    kern_to_device(cpu, ac, init, 16);
    kern_to_device(gpu, ag, init, 16);
    poison(&d); poison(&loss);
    kern_softmax_xent_acc(cpu, loss.c, d.c, ac, logits.c, lc, rows, C, ld, 0.25f);
    kern_softmax_xent_acc(gpu, loss.g, d.g, ag, logits.g, lg, rows, C, ld, 0.25f);
    snprintf(name, sizeof name, "softmax xent rows=%d C=%d ld=%d: dlogits", rows, C, ld);
    compare(name, &d, 1e-5);
    compare("softmax xent losses", &loss, 1e-5);
    sync_or_die();
    kern_to_host(gpu, got, ag, 16);
    int ok = fabs(got[0] - ac[0]) <= 1e-5 * fabs(ac[0]) && got[1] == ac[1];
    printf("%s softmax xent sums: gpu %.9g / %.0f, cpu %.9g / %.0f\n", ok ? "ok  " : "FAIL",
           got[0], got[1], ac[0], ac[1]);
    failures += !ok;
    int pad_ok = 1;
    kern_to_host(gpu, d.h, d.g, (size_t)d.n * 4);
    for (int r = 0; r < rows; r++)
        for (int j = C; j < ld; j++) pad_ok &= d.h[(size_t)r * ld + j] == 0.0f;
    printf("%s padding columns are 0\n", pad_ok ? "ok  " : "FAIL");
    failures += !pad_ok;
    /* in place: the gradient written over the logits equals the out-of-place result */
    float *want = snapshot(&d);
    kern_softmax_xent_acc(gpu, NULL, logits.g, ag, logits.g, lg, rows, C, ld, 0.25f);
    same_bits("softmax xent in place vs out of place", &logits, want);
    free(want);
    drop(&logits); drop(&d); drop(&loss);
    kern_free(cpu, lc); kern_free(gpu, lg); kern_free(cpu, ac); kern_free(gpu, ag);
    free(lab);
}

/* Labels outside [0, C): NaN loss and NaN dlogits[0:C) for those rows (padding still 0), as
 * on the CPU; the other rows and the correct count are unaffected. */
static void test_xent_bad_labels(void) {
    const int rows = 6, C = 10, ld = 16;
    buf logits = make((int64_t)rows * ld, -4, 4), d = make((int64_t)rows * ld, 0, 0);
    buf loss = make(rows, 0, 0);
    int32_t lab[6] = {3, -1, 9, 10, 0, 2147483647};
    int32_t *lc = kern_alloc(cpu, sizeof lab), *lg = kern_alloc(gpu, sizeof lab);
    kern_to_device(cpu, lc, lab, sizeof lab);
    kern_to_device(gpu, lg, lab, sizeof lab);
    double *ac = kern_alloc(cpu, 16), *ag = kern_alloc(gpu, 16), zero[2] = {0, 0}, got[2];
    kern_to_device(cpu, ac, zero, 16);
    kern_to_device(gpu, ag, zero, 16);
    poison(&d); poison(&loss);
    kern_softmax_xent_acc(cpu, loss.c, d.c, ac, logits.c, lc, rows, C, ld, 1.0f);
    kern_softmax_xent_acc(gpu, loss.g, d.g, ag, logits.g, lg, rows, C, ld, 1.0f);
    compare("softmax xent with labels outside [0,C): losses (NaN rows match)", &loss, 1e-5);
    compare("softmax xent with labels outside [0,C): dlogits (NaN rows match)", &d, 1e-5);
    int nan_rows = isnan(loss.c[1]) && isnan(loss.c[3]) && isnan(loss.c[5]) && !isnan(loss.c[0]);
    sync_or_die();
    kern_to_host(gpu, got, ag, 16);
    int ok = nan_rows && isnan(got[0]) && isnan(ac[0]) && got[1] == ac[1];
    printf("%s softmax xent with labels outside [0,C): sums gpu %g / %.0f, cpu %g / %.0f\n",
           ok ? "ok  " : "FAIL", got[0], got[1], ac[0], ac[1]);
    failures += !ok;
    drop(&logits); drop(&d); drop(&loss);
    kern_free(cpu, lc); kern_free(gpu, lg); kern_free(cpu, ac); kern_free(gpu, ag);
}

int main(void) {
    int gate = gpu_gate();
    if (gate != 0) return gate;
    char err[512];
    kern_options oc = {.backend = KERN_CPU, .threads = 1, .precision = KERN_FP32},
                 og = {.backend = KERN_CUDA, .threads = 1, .precision = KERN_FP32};
    if (kern_create(&oc, &cpu, err, sizeof err) || kern_create(&og, &gpu, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    test_embedding(3, 17, 48, 1000);
    test_embedding(4, 64, 64, 50);
    /* the radix sort's key bits follow V: 16 bits up to 65,536 tokens, 17 above */
    test_embedding(2, 96, 8, 65536);
    test_embedding(2, 96, 8, 70001);
    test_layernorm(1, 7);
    test_layernorm(1000, 768);
    test_attention_decode(2, 37, 48, 3);
    test_xent(5, 1000, 1024);
    test_xent(300, 50257, 50304);
    test_xent(64, 10, 10);
    test_xent_bad_labels();
    kern_options ot = {.backend = KERN_CUDA, .threads = 1, .precision = KERN_TF32},
                 ob = {.backend = KERN_CUDA, .threads = 1, .precision = KERN_BF16};
    kern_ctx *tf32, *bf16;
    if (kern_create(&ot, &tf32, err, sizeof err) || kern_create(&ob, &bf16, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    /* The fused attention (cuda_attention.cu) on every tile path: T = 1, T not a multiple of
     * the 32/64-row tiles, one row past a tile, GPT-2 124M's 12 heads x 64 at T = 1024, head
     * sizes padded to 32 (4, 16), 64 (48, 64) and 128 (128).
     * fp32 (and TF32 contexts, which run the same fp32 kernels): 1e-5 normwise forward, 2e-5
     * backward - fp32 sums of up to T terms in another order than the CPU's BLAS, about
     * sqrt(T) * 2^-24 relative (2e-6 at T = 1024), and dS = P (dP - D) cancels a little.
     * bf16: q, k, v, P, dO and dS keep 8 significant bits (relative rounding 2^-9 = 2e-3) and
     * are multiplied on tensor cores with fp32 sums: a few such roundings per value.  A host
     * emulation of these kernels (bf16 rounding, fp32 tile sums) measured 3e-3 normwise for
     * out and 2e-3 for dqkv against this CPU up to T = 1024: 1e-2 for out and lse, 2e-2 for
     * dqkv (dS = P (dP - D) is where the rounded operands cancel). */
    static const int shapes[][4] = {{2, 1, 32, 2},    {2, 37, 48, 3},   {1, 65, 12, 3},
                                    {1, 50, 96, 2},   {2, 130, 128, 2}, {1, 200, 128, 1},
                                    {1, 1024, 768, 12}};
    for (int i = 0; i < 7; i++) {
        const int *s = shapes[i];
        test_attention_on(gpu, "fp32", s[0], s[1], s[2], s[3], 1e-5, 2e-5);
        test_attention_on(tf32, "tf32", s[0], s[1], s[2], s[3], 1e-5, 2e-5);
        test_attention_on(bf16, "bf16", s[0], s[1], s[2], s[3], 1e-2, 2e-2);
    }
    time_attention(gpu, "fp32", 16, 1024, 768, 12);
    time_attention(bf16, "bf16", 16, 1024, 768, 12);
    kern_destroy(bf16);
    kern_destroy(tf32);
    kern_destroy(gpu);
    kern_destroy(cpu);
    printf("%s: %d failure%s\n", failures ? "FAILED" : "PASSED", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
