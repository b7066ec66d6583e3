/* test_kernels_gpt.c: the language-model ops (embedding, layer norm, causal attention, decode,
 * padded softmax cross-entropy), CPU backend.
 *
 *   gradcheck  the float64 reference backward passes (reference_gpt.c) against central finite
 *              differences of the reference forward passes: embedding with repeated tokens,
 *              layer norm's din, dw and db, attention at T = 1 and odd T / head sizes, the
 *              padded cross-entropy.
 *   ops        the float32 kern_* ops against the float64 reference, with the API's
 *              semantics: dwte/dwpe/dw/db accumulated onto nonzero values, din/dqkv/out
 *              overwritten (prefilled with NaN), NULL wpe/b/db/din, decode against the full
 *              forward's last row, the cross-entropy in place with padding columns that hold
 *              the largest logits, a label out of range, acc accumulated.
 *   determinism  every backward twice on the same inputs: the same bits.
 *   attention    lse against the reference's log-sum-exp; T past one and several row blocks;
 *              causality (the last position's keys and values changed: every earlier row of
 *              out, lse and dq keeps its bits); the float32 kernel's gradient against central
 *              differences of its own forward along random directions.
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
#include "reference_gpt.h"
#include "test_util.h"

/* Finite differences in float64 with h = 1e-5: truncation ~1e-10 and rounding ~1e-11, while
 * a wrong term is of order 1e-2 or more. */
#define FD_H 1e-5
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8
/* float32 against float64, inputs of order 1: a few float32 roundings per value, relative
 * (plus the same absolute amount for values near 0 that are sums of cancelling terms) */
#define F32_RTOL 1e-5
#define F32_ATOL 1e-5
#define LN_EPS 1e-5

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

static double *drand(int64_t n, uint64_t *seed, double lo, double hi) {
    double *p = dalloc(n);
    tu_fill_uniform(p, n, seed, lo, hi);
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

/* a float copy of x, and x rounded to float in place (so both sides see the same inputs) */
static float *fcopy(double *x, int64_t n) {
    float *p = falloc(n);
    tu_to_float(p, x, n);
    tu_to_double(x, p, n);
    return p;
}

static void *workspace(int B, int T, int C, int NH, int V) {
    size_t bytes = kern_gpt_workspace(K, B, T, C, NH, V);
    void *w = kern_alloc(K, bytes ? bytes : 64);
    assert_non_null(w);
    return w;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* g[i] = (L(x + h e_i) - L(x - h e_i)) / 2h, perturbing x in place */
static void numgrad(double *x, int64_t n, loss_fn loss, void *ctx, double *g) {
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + FD_H;
        double lp = loss(ctx);
        x[i] = keep - FD_H;
        double lm = loss(ctx);
        x[i] = keep;
        g[i] = (lp - lm) / (2.0 * FD_H);
    }
}

static void check_fd(const char *what, double *x, int64_t n, loss_fn loss, void *ctx,
                     const double *analytic) {
    double *num = dalloc(n);
    numgrad(x, n, loss, ctx, num);
    assert_int_equal(tu_close(what, analytic, num, n, FD_RTOL, FD_ATOL), 0);
    free(num);
}

static int32_t *tokens_make(int n, int V, uint64_t *seed) {
    int32_t *t = kern_alloc(K, (size_t)n * sizeof(int32_t));
    assert_non_null(t);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(tu_next_u64(seed) % (uint64_t)V);
    return t;
}

/* ---- embedding ---- */

typedef struct {
    int B, T, C;
    const int32_t *tok;
    double *wte, *wpe, *G, *out;
} emb_case;

static double emb_loss(void *p) {
    emb_case *c = p;
    ref_embedding_forward(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C);
    return dot(c->out, c->G, (int64_t)c->B * c->T * c->C);
}

static void test_embedding_gradcheck(void **state) {
    uint64_t seed = 1;
    int B = 3, T = 5, C = 4, V = 4;   /* 15 tokens over 4 ids: every id repeats */
    int32_t *tok = tokens_make(B * T, V, &seed);
    tok[0] = tok[1] = tok[7] = 2;
    emb_case c = {B, T, C, tok, drand(V * C, &seed, -1, 1), drand(T * C, &seed, -1, 1),
                  drand(B * T * C, &seed, -1, 1), dalloc(B * T * C)};
    double *dwte = dalloc(V * C), *dwpe = dalloc(T * C);
    ref_embedding_backward(dwte, dwpe, c.G, tok, B, T, C);
    check_fd("embedding dwte", c.wte, V * C, emb_loss, &c, dwte);
    check_fd("embedding dwpe", c.wpe, T * C, emb_loss, &c, dwpe);
    free(c.wte), free(c.wpe), free(c.G), free(c.out), free(dwte), free(dwpe);
    kern_free(K, tok);
}

static void test_embedding_ops(void **state) {
    uint64_t seed = 2;
    int B = 3, T = 7, C = 33, V = 5;
    int32_t *tok = tokens_make(B * T, V, &seed);
    double *wte = drand(V * C, &seed, -1, 1), *wpe = drand(T * C, &seed, -1, 1);
    double *G = drand(B * T * C, &seed, -1, 1);
    double *dwte = drand(V * C, &seed, -1, 1), *dwpe = drand(T * C, &seed, -1, 1);
    float *fwte = fcopy(wte, V * C), *fwpe = fcopy(wpe, T * C), *fG = fcopy(G, B * T * C);
    float *fdwte = fcopy(dwte, V * C), *fdwpe = fcopy(dwpe, T * C);
    double *out = dalloc(B * T * C);
    float *fout = fnan(B * T * C);
    for (int with_pos = 1; with_pos >= 0; with_pos--) {
        ref_embedding_forward(out, tok, wte, with_pos ? wpe : NULL, B, T, C);
        kern_embedding_forward(K, fout, tok, fwte, with_pos ? fwpe : NULL, B, T, C);
        /* one float addition: within half an ulp (2^-24) of the exact sum */
        assert_int_equal(tu_close_f("embedding out", fout, out, B * T * C, 0x1p-24, 0), 0);
    }
    void *ws = workspace(B, T, C, 1, V);
    /* accumulated onto the random starting values; wpe skipped when NULL */
    ref_embedding_backward(dwte, dwpe, G, tok, B, T, C);
    kern_embedding_backward(K, fdwte, fdwpe, fG, tok, B, T, C, V, ws);
    assert_int_equal(tu_close_f("embedding dwte", fdwte, dwte, V * C, F32_RTOL, F32_ATOL), 0);
    assert_int_equal(tu_close_f("embedding dwpe", fdwpe, dwpe, T * C, F32_RTOL, F32_ATOL), 0);
    ref_embedding_backward(dwte, NULL, G, tok, B, T, C);
    kern_embedding_backward(K, fdwte, NULL, fG, tok, B, T, C, V, ws);
    assert_int_equal(tu_close_f("embedding dwte again", fdwte, dwte, V * C, F32_RTOL, F32_ATOL),
                     0);
    /* each row in (b,t) order: the same bits as a plain float loop */
    float *seq = falloc(V * C);
    memcpy(seq, fdwte, sizeof(float) * V * C);
    kern_embedding_backward(K, fdwte, NULL, fG, tok, B, T, C, V, ws);
    for (int r = 0; r < B * T; r++)
        for (int i = 0; i < C; i++) seq[(size_t)tok[r] * C + i] += fG[(size_t)r * C + i];
    assert_memory_equal(seq, fdwte, sizeof(float) * V * C);
    free(wte), free(wpe), free(G), free(dwte), free(dwpe), free(out);
    kern_free(K, fwte), kern_free(K, fwpe), kern_free(K, fG), kern_free(K, fdwte);
    kern_free(K, fdwpe), kern_free(K, fout), kern_free(K, ws), kern_free(K, seq);
    kern_free(K, tok);
}

/* ---- layer norm ---- */

typedef struct {
    int N, C;
    double *x, *w, *b, *G, *out;
} ln_case;

static double ln_loss(void *p) {
    ln_case *c = p;
    ref_layernorm_forward(c->out, NULL, c->x, c->w, c->b, c->N, c->C, LN_EPS);
    return dot(c->out, c->G, (int64_t)c->N * c->C);
}

static void test_layernorm_gradcheck(void **state) {
    uint64_t seed = 3;
    int N = 4, C = 7;
    ln_case c = {N, C, drand(N * C, &seed, -2, 2), drand(C, &seed, 0.5, 1.5),
                 drand(C, &seed, -1, 1), drand(N * C, &seed, -1, 1), dalloc(N * C)};
    c.x[3] += 3.0;   /* a row with a nonzero mean */
    double *din = dalloc(N * C), *dw = dalloc(C), *db = dalloc(C);
    ref_layernorm_backward(din, dw, db, c.G, c.x, c.w, N, C, LN_EPS);
    check_fd("layernorm din", c.x, N * C, ln_loss, &c, din);
    check_fd("layernorm dw", c.w, C, ln_loss, &c, dw);
    check_fd("layernorm db", c.b, C, ln_loss, &c, db);
    free(c.x), free(c.w), free(c.b), free(c.G), free(c.out), free(din), free(dw), free(db);
}

static void test_layernorm_ops(void **state) {
    uint64_t seed = 4;
    int N = 9, C = 77;
    double *x = drand(N * C, &seed, -2, 2), *w = drand(C, &seed, 0.5, 1.5);
    double *b = drand(C, &seed, -1, 1), *G = drand(N * C, &seed, -1, 1);
    for (int i = 0; i < C; i++) x[C + i] += 10.0;   /* mean far from 0 */
    double *dw = drand(C, &seed, -1, 1), *db = drand(C, &seed, -1, 1);
    float *fx = fcopy(x, N * C), *fw = fcopy(w, C), *fb = fcopy(b, C), *fG = fcopy(G, N * C);
    float *fdw = fcopy(dw, C), *fdb = fcopy(db, C);
    double *out = dalloc(N * C), *mr = dalloc(2 * N), *din = dalloc(N * C);
    float *fout = fnan(N * C), *fmr = fnan(2 * N), *fdin = fnan(N * C);
    void *ws = workspace(N, 1, C, 1, 1);
    for (int with_b = 1; with_b >= 0; with_b--) {
        ref_layernorm_forward(out, mr, x, w, with_b ? b : NULL, N, C, LN_EPS);
        kern_layernorm_forward(K, fout, fmr, fx, fw, with_b ? fb : NULL, N, C, LN_EPS);
        assert_int_equal(tu_close_f("layernorm out", fout, out, N * C, F32_RTOL, F32_ATOL), 0);
        assert_int_equal(tu_close_f("layernorm mean_rstd", fmr, mr, 2 * N, F32_RTOL, 1e-6), 0);
    }
    /* din overwritten (NaN before), dw and db accumulated onto random values */
    ref_layernorm_backward(din, dw, db, G, x, w, N, C, LN_EPS);
    kern_layernorm_backward(K, fdin, fdw, fdb, fG, fx, fmr, fw, N, C, ws);
    assert_int_equal(tu_close_f("layernorm din", fdin, din, N * C, F32_RTOL, F32_ATOL), 0);
    assert_int_equal(tu_close_f("layernorm dw", fdw, dw, C, F32_RTOL, F32_ATOL), 0);
    assert_int_equal(tu_close_f("layernorm db", fdb, db, C, F32_RTOL, F32_ATOL), 0);
    /* NULL din and db: dw still accumulated, din untouched */
    float *keep = falloc(N * C), *keep_db = falloc(C);
    memcpy(keep, fdin, sizeof(float) * N * C);
    memcpy(keep_db, fdb, sizeof(float) * C);
    ref_layernorm_backward(NULL, dw, NULL, G, x, w, N, C, LN_EPS);
    kern_layernorm_backward(K, NULL, fdw, NULL, fG, fx, fmr, fw, N, C, ws);
    assert_int_equal(tu_close_f("layernorm dw (no din, db)", fdw, dw, C, F32_RTOL, F32_ATOL), 0);
    assert_memory_equal(keep_db, fdb, sizeof(float) * C);
    assert_memory_equal(keep, fdin, sizeof(float) * N * C);
    /* deterministic */
    float *again = fnan(N * C);
    kern_layernorm_backward(K, again, fdw, fdb, fG, fx, fmr, fw, N, C, ws);
    kern_layernorm_backward(K, fdin, fdw, fdb, fG, fx, fmr, fw, N, C, ws);
    assert_memory_equal(again, fdin, sizeof(float) * N * C);
    free(x), free(w), free(b), free(G), free(dw), free(db), free(out), free(mr), free(din);
    kern_free(K, fx), kern_free(K, fw), kern_free(K, fb), kern_free(K, fG), kern_free(K, fdw);
    kern_free(K, fdb), kern_free(K, fout), kern_free(K, fmr), kern_free(K, fdin);
    kern_free(K, ws), kern_free(K, keep), kern_free(K, keep_db), kern_free(K, again);
}

/* ---- attention ---- */

typedef struct {
    int B, T, C, NH;
    double *qkv, *G, *out, *att;
} att_case;

static double att_loss(void *p) {
    att_case *c = p;
    ref_attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH);
    return dot(c->out, c->G, (int64_t)c->B * c->T * c->C);
}

static void test_attention_gradcheck(void **state) {
    static const int shapes[][4] = {{2, 1, 6, 2}, {2, 7, 6, 3}, {1, 5, 10, 2}, {1, 3, 4, 1}};
    for (int k = 0; k < 4; k++) {
        uint64_t seed = 10 + k;
        int B = shapes[k][0], T = shapes[k][1], C = shapes[k][2], NH = shapes[k][3];
        att_case c = {B, T, C, NH, drand(B * T * 3 * C, &seed, -1.5, 1.5),
                      drand(B * T * C, &seed, -1, 1), dalloc(B * T * C),
                      dalloc(B * NH * T * T)};
        double *dqkv = dalloc(B * T * 3 * C);
        att_loss(&c);
        ref_attention_backward(dqkv, c.G, c.qkv, c.att, B, T, C, NH);
        char what[64];
        snprintf(what, sizeof(what), "attention B%d T%d C%d NH%d dqkv", B, T, C, NH);
        check_fd(what, c.qkv, B * T * 3 * C, att_loss, &c, dqkv);
        free(c.qkv), free(c.G), free(c.out), free(c.att), free(dqkv);
    }
}

static void attention_ops_case(int B, int T, int C, int NH, uint64_t seed) {
    int64_t nq = (int64_t)B * T * 3 * C, no = (int64_t)B * T * C, na = (int64_t)B * NH * T * T;
    int64_t nl = (int64_t)B * NH * T;
    double *qkv = drand(nq, &seed, -1.5, 1.5), *G = drand(no, &seed, -1, 1);
    double *out = dalloc(no), *att = dalloc(na), *lse = dalloc(nl), *dqkv = dalloc(nq);
    float *fqkv = fcopy(qkv, nq), *fG = fcopy(G, no);
    float *fout = fnan(no), *flse = fnan(nl), *fdqkv = fnan(nq);
    void *ws = workspace(B, T, C, NH, 1);
    char what[80];
    ref_attention_forward(out, att, qkv, B, T, C, NH);
    ref_attention_lse(lse, qkv, B, T, C, NH);
    ref_attention_backward(dqkv, G, qkv, att, B, T, C, NH);
    kern_attention_forward(K, fout, flse, fqkv, B, T, C, NH, ws);
    kern_attention_backward(K, fdqkv, fG, fqkv, fout, flse, B, T, C, NH, ws);
    snprintf(what, sizeof(what), "attention B%d T%d C%d NH%d out", B, T, C, NH);
    assert_int_equal(tu_close_f(what, fout, out, no, F32_RTOL, F32_ATOL), 0);
    snprintf(what, sizeof(what), "attention B%d T%d C%d NH%d lse", B, T, C, NH);
    assert_int_equal(tu_close_f(what, flse, lse, nl, F32_RTOL, F32_ATOL), 0);
    snprintf(what, sizeof(what), "attention B%d T%d C%d NH%d dqkv", B, T, C, NH);
    assert_int_equal(tu_close_f(what, fdqkv, dqkv, nq, F32_RTOL, F32_ATOL), 0);
    /* the same bits again, from NaN-filled outputs */
    float *o2 = fnan(no), *a2 = fnan(nl), *d2 = fnan(nq);
    kern_attention_forward(K, o2, a2, fqkv, B, T, C, NH, ws);
    kern_attention_backward(K, d2, fG, fqkv, o2, a2, B, T, C, NH, ws);
    assert_memory_equal(o2, fout, sizeof(float) * no);
    assert_memory_equal(a2, flse, sizeof(float) * nl);
    assert_memory_equal(d2, fdqkv, sizeof(float) * nq);

    /* decode of the last position against the cache of positions [0, T-1], Tmax = T + 2 */
    int Tmax = T + 2;
    float *kc = fnan((int64_t)B * Tmax * C), *vc = fnan((int64_t)B * Tmax * C);
    float *q = falloc((int64_t)B * C), *dec = fnan((int64_t)B * C);
    double *want = dalloc((int64_t)B * C);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *row = fqkv + ((size_t)b * T + t) * 3 * C;
            memcpy(kc + ((size_t)b * Tmax + t) * C, row + C, sizeof(float) * C);
            memcpy(vc + ((size_t)b * Tmax + t) * C, row + 2 * C, sizeof(float) * C);
        }
        memcpy(q + (size_t)b * C, fqkv + ((size_t)b * T + T - 1) * 3 * C, sizeof(float) * C);
        memcpy(want + (size_t)b * C, out + ((size_t)b * T + T - 1) * C, sizeof(double) * C);
    }
    void *dws = workspace(B, Tmax, C, NH, 1);
    kern_attention_decode(K, dec, q, kc, vc, B, T - 1, Tmax, C, NH, dws);
    snprintf(what, sizeof(what), "attention decode B%d t%d C%d NH%d", B, T - 1, C, NH);
    assert_int_equal(tu_close_f(what, dec, want, (int64_t)B * C, F32_RTOL, F32_ATOL), 0);

    free(qkv), free(G), free(out), free(att), free(lse), free(dqkv), free(want);
    kern_free(K, fqkv), kern_free(K, fG), kern_free(K, fout), kern_free(K, flse);
    kern_free(K, fdqkv), kern_free(K, ws), kern_free(K, o2), kern_free(K, a2), kern_free(K, d2);
    kern_free(K, kc), kern_free(K, vc), kern_free(K, q), kern_free(K, dec), kern_free(K, dws);
}

static void test_attention_ops(void **state) {
    attention_ops_case(2, 1, 8, 2, 20);     /* one position */
    attention_ops_case(2, 13, 12, 3, 21);   /* T, HS = 4 odd-sized */
    attention_ops_case(1, 70, 48, 4, 22);   /* longer than a SIMD width of rows */
    attention_ops_case(3, 33, 20, 5, 23);   /* one row past a 32-row block */
    attention_ops_case(1, 97, 128, 2, 24);  /* blocks of 32: three full, one of a single row */
    attention_ops_case(1, 300, 64, 1, 25);  /* blocks of 64, the last one partial; HS = 64 */
}

/* Causality: outputs and gradients of positions t < T-1 must not see position T-1.  Its
 * keys and values are replaced by large values; every other row of out, lse and dq keeps
 * its bits (the blocked GEMMs read the masked entries as exact zeros). */
static void test_attention_causal(void **state) {
    const int B = 2, T = 45, C = 24, NH = 3;
    int64_t nq = (int64_t)B * T * 3 * C, no = (int64_t)B * T * C, nl = (int64_t)B * NH * T;
    uint64_t seed = 31;
    double *qkv = drand(nq, &seed, -1, 1), *G = drand(no, &seed, -1, 1);
    float *fqkv = fcopy(qkv, nq), *fG = fcopy(G, no), *ws = workspace(B, T, C, NH, 1);
    float *out[2] = {fnan(no), fnan(no)}, *lse[2] = {fnan(nl), fnan(nl)};
    float *dq[2] = {fnan(nq), fnan(nq)};
    for (int run = 0; run < 2; run++) {
        if (run == 1)
            for (int b = 0; b < B; b++)
                for (int i = C; i < 3 * C; i++) fqkv[((size_t)b * T + T - 1) * 3 * C + i] = 1e3f;
        kern_attention_forward(K, out[run], lse[run], fqkv, B, T, C, NH, ws);
        kern_attention_backward(K, dq[run], fG, fqkv, out[run], lse[run], B, T, C, NH, ws);
    }
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * T * C, d = (size_t)b * T * 3 * C;
        assert_memory_equal(out[0] + o, out[1] + o, sizeof(float) * (T - 1) * C);
        for (int t = 0; t < T - 1; t++)   /* dq of row t: the first C of its 3C */
            assert_memory_equal(dq[0] + d + (size_t)t * 3 * C, dq[1] + d + (size_t)t * 3 * C,
                                sizeof(float) * C);
        for (int h = 0; h < NH; h++) {
            size_t l = ((size_t)b * NH + h) * T;
            assert_memory_equal(lse[0] + l, lse[1] + l, sizeof(float) * (T - 1));
        }
        /* and the last row does see it */
        assert_true(out[0][o + (size_t)(T - 1) * C] != out[1][o + (size_t)(T - 1) * C]);
    }
    free(qkv), free(G);
    kern_free(K, fqkv), kern_free(K, fG), kern_free(K, ws);
    for (int i = 0; i < 2; i++) kern_free(K, out[i]), kern_free(K, lse[i]), kern_free(K, dq[i]);
}

/* The float32 kernel's own gradient against a central difference of its own forward, along
 * random directions u: (L(x + h u) - L(x - h u)) / 2h = <dqkv, u> with L = sum(G * out).
 * h = 1e-2: truncation ~h^2 = 1e-4 relative; float32 rounding of L (~1e-7 |L| sqrt(n)) over
 * 2h stays below 1e-4 of the derivative's size; a wrong term is of order 1. */
static void test_attention_kernel_gradcheck(void **state) {
    const int B = 2, T = 70, C = 32, NH = 2;   /* three row blocks of 32 */
    int64_t nq = (int64_t)B * T * 3 * C, no = (int64_t)B * T * C, nl = (int64_t)B * NH * T;
    uint64_t seed = 41;
    double *qkv = drand(nq, &seed, -1, 1), *G = drand(no, &seed, -1, 1);
    float *fqkv = fcopy(qkv, nq), *fG = fcopy(G, no), *x = falloc(nq), *ws = workspace(B, T, C, NH, 1);
    float *out = falloc(no), *lse = falloc(nl), *dqkv = fnan(nq);
    kern_attention_forward(K, out, lse, fqkv, B, T, C, NH, ws);
    kern_attention_backward(K, dqkv, fG, fqkv, out, lse, B, T, C, NH, ws);
    for (int dir = 0; dir < 3; dir++) {
        double *u = drand(nq, &seed, -1, 1), lp = 0, lm = 0, want = 0;
        const double h = 1e-2;
        for (int sign = 1; sign >= -1; sign -= 2) {
            for (int64_t i = 0; i < nq; i++) x[i] = (float)(qkv[i] + sign * h * u[i]);
            kern_attention_forward(K, out, lse, x, B, T, C, NH, ws);
            double l = 0;
            for (int64_t i = 0; i < no; i++) l += G[i] * out[i];
            *(sign > 0 ? &lp : &lm) = l;
        }
        for (int64_t i = 0; i < nq; i++) want += (double)dqkv[i] * u[i];
        double got = (lp - lm) / (2 * h), err = fabs(got - want);
        printf("attention float32 gradcheck direction %d: fd %.6f analytic %.6f\n", dir, got, want);
        assert_true(err <= 1e-3 * fabs(want) + 1e-3);
        free(u);
    }
    free(qkv), free(G);
    kern_free(K, fqkv), kern_free(K, fG), kern_free(K, x), kern_free(K, ws);
    kern_free(K, out), kern_free(K, lse), kern_free(K, dqkv);
}

/* ---- padded softmax cross-entropy ---- */

typedef struct {
    int B, C, ld;
    const int32_t *labels;
    double *z;
} xent_case;

static double xent_loss(void *p) {
    xent_case *c = p;
    double acc[2] = {0, 0};
    ref_softmax_xent_acc(NULL, NULL, acc, c->z, c->labels, c->B, c->C, c->ld, 1.0);
    return acc[0];
}

static void test_xent_gradcheck(void **state) {
    uint64_t seed = 30;
    int B = 4, C = 6, ld = 8;
    int32_t labels[4] = {0, 5, 2, 2};
    xent_case c = {B, C, ld, labels, drand(B * ld, &seed, -3, 3)};
    double *d = dalloc(B * ld), acc[2] = {0, 0};
    ref_softmax_xent_acc(NULL, d, acc, c.z, labels, B, C, ld, 1.0);
    check_fd("softmax_xent_acc dlogits", c.z, B * ld, xent_loss, &c, d);
    free(c.z), free(d);
}

static void test_xent_ops(void **state) {
    uint64_t seed = 31;
    int B = 6, C = 50, ld = 64;
    int32_t *labels = tokens_make(B, C, &seed);
    double *z = drand(B * ld, &seed, -4, 4);
    for (int r = 0; r < B; r++)   /* padding holds the largest values: never counts */
        for (int j = C; j < ld; j++) z[(size_t)r * ld + j] = 100.0;
    z[2 * ld + labels[2]] = 10.0;   /* a row predicted right */
    labels[4] = C;                 /* out of range: NaN row */
    float *fz = fcopy(z, B * ld);
    double *loss = dalloc(B), *d = dalloc(B * ld), acc[2] = {1.5, 2.0};
    float *floss = fnan(B), *fd = fnan(B * ld);
    double *facc = kern_alloc(K, 2 * sizeof(double));
    facc[0] = 1.5, facc[1] = 2.0;
    ref_softmax_xent_acc(loss, d, acc, z, labels, B, C, ld, 0.25);
    kern_softmax_xent_acc(K, floss, fd, facc, fz, labels, B, C, ld, 0.25);
    assert_true(isnan(floss[4]) && isnan(facc[0]));
    for (int j = 0; j < ld; j++) assert_true(j < C ? isnan(fd[4 * ld + j]) : fd[4 * ld + j] == 0);
    labels[4] = 0;   /* now the valid comparison */
    acc[0] = 1.5, acc[1] = 2.0, facc[0] = 1.5, facc[1] = 2.0;
    ref_softmax_xent_acc(loss, d, acc, z, labels, B, C, ld, 0.25);
    kern_softmax_xent_acc(K, floss, fd, facc, fz, labels, B, C, ld, 0.25);
    assert_int_equal(tu_close_f("xent losses", floss, loss, B, F32_RTOL, F32_ATOL), 0);
    assert_int_equal(tu_close_f("xent dlogits", fd, d, B * ld, F32_RTOL, 1e-7), 0);
    assert_int_equal(tu_close("xent acc", facc, acc, 2, 1e-6, 0), 0);
    assert_true(facc[1] >= 3.0);   /* row 2 counted */
    /* in place: dlogits == logits gives the same bits; forward only leaves logits alone */
    double acc2[2] = {0, 0};
    float *inplace = falloc(B * ld);
    memcpy(inplace, fz, sizeof(float) * B * ld);
    kern_softmax_xent_acc(K, NULL, NULL, facc, inplace, labels, B, C, ld, 0.25);
    assert_memory_equal(inplace, fz, sizeof(float) * B * ld);
    facc[0] = facc[1] = 0;
    kern_softmax_xent_acc(K, NULL, inplace, facc, inplace, labels, B, C, ld, 0.25);
    assert_memory_equal(inplace, fd, sizeof(float) * B * ld);
    ref_softmax_xent_acc(NULL, NULL, acc2, z, labels, B, C, ld, 0.25);
    assert_int_equal(tu_close("xent acc in place", facc, acc2, 2, 1e-6, 0), 0);
    free(z), free(loss), free(d);
    kern_free(K, labels), kern_free(K, fz), kern_free(K, floss), kern_free(K, fd);
    kern_free(K, facc), kern_free(K, inplace);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding_gradcheck), cmocka_unit_test(test_embedding_ops),
        cmocka_unit_test(test_layernorm_gradcheck), cmocka_unit_test(test_layernorm_ops),
        cmocka_unit_test(test_attention_gradcheck), cmocka_unit_test(test_attention_ops),
        cmocka_unit_test(test_attention_causal), cmocka_unit_test(test_attention_kernel_gradcheck),
        cmocka_unit_test(test_xent_gradcheck),      cmocka_unit_test(test_xent_ops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
