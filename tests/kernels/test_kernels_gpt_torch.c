/* test_kernels_gpt_torch.c: the language-model kern_* ops against PyTorch on the same inputs.
 *
 * torch_gpt_reference.py (a ctest fixture) writes the inputs, weights, outputs and gradients
 * of nn.Embedding (tokens + positions), nn.LayerNorm, nanoGPT's causal self-attention on a
 * fused qkv, and F.cross_entropy over padded logits; this test recomputes them with the
 * kernels and compares.  Exits 77 (skipped) when the file is missing (no torch). */
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
#include "torch_file.h"

/* Both sides compute in float32 with different summation orders: results agree to RTOL
 * relative, with an absolute floor of ABS_FLOOR * max|reference| for values near 0 that are
 * sums of cancelling terms (layer norm's dx, attention's dq and dk). */
#define RTOL 1e-5
#define ABS_FLOOR 1e-6

static kern_ctx *K;

static float *upload(const float *host, int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    kern_to_device(K, p, host, (size_t)n * sizeof(float));
    return p;
}

/* n floats of NaN: outputs that the op must overwrite */
static float *nans(int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static float *zeros(int64_t n) {
    float *p = kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static void *workspace(int B, int T, int C, int NH, int V) {
    void *w = kern_alloc(K, kern_gpt_workspace(K, B, T, C, NH, V) + 64);
    assert_non_null(w);
    return w;
}

static void expect_close(const char *what, const float *dev, const float *want, int64_t n) {
    torch_expect_close(K, what, dev, want, n, NULL, RTOL, ABS_FLOOR);
}

static void test_embedding(void **state) {
    const int32_t *d = torch_ints("emb", "dims", 4);
    int B = d[0], T = d[1], C = d[2], V = d[3];
    int64_t n = (int64_t)B * T * C;
    float *wte = upload(torch_floats("emb", "wte", (int64_t)V * C), (int64_t)V * C);
    float *wpe = upload(torch_floats("emb", "wpe", (int64_t)T * C), (int64_t)T * C);
    float *dy = upload(torch_floats("emb", "dy", n), n);
    int32_t *tok = kern_alloc(K, (size_t)B * T * sizeof(int32_t));
    assert_non_null(tok);
    memcpy(tok, torch_ints("emb", "tokens", (int64_t)B * T), (size_t)B * T * sizeof(int32_t));
    float *y = nans(n), *dwte = zeros((int64_t)V * C), *dwpe = zeros((int64_t)T * C);
    void *ws = workspace(B, T, C, 1, V);
    kern_embedding_forward(K, y, tok, wte, wpe, B, T, C);
    kern_embedding_backward(K, dwte, dwpe, dy, tok, B, T, C, V, ws);
    expect_close("embedding y", y, torch_floats("emb", "y", n), n);
    expect_close("embedding dwte", dwte, torch_floats("emb", "dwte", (int64_t)V * C),
                 (int64_t)V * C);
    expect_close("embedding dwpe", dwpe, torch_floats("emb", "dwpe", (int64_t)T * C),
                 (int64_t)T * C);
    kern_free(K, wte), kern_free(K, wpe), kern_free(K, dy), kern_free(K, tok);
    kern_free(K, y), kern_free(K, dwte), kern_free(K, dwpe), kern_free(K, ws);
}

static void test_layernorm(void **state) {
    const int32_t *d = torch_ints("ln", "dims", 2);
    int N = d[0], C = d[1];
    int64_t n = (int64_t)N * C;
    float *x = upload(torch_floats("ln", "x", n), n), *dy = upload(torch_floats("ln", "dy", n), n);
    float *w = upload(torch_floats("ln", "w", C), C), *b = upload(torch_floats("ln", "b", C), C);
    float *y = nans(n), *mr = nans(2 * N), *dx = nans(n), *dw = zeros(C), *db = zeros(C);
    void *ws = workspace(N, 1, C, 1, 1);
    kern_layernorm_forward(K, y, mr, x, w, b, N, C, 1e-5f);
    kern_layernorm_backward(K, dx, dw, db, dy, x, mr, w, N, C, ws);
    expect_close("layernorm y", y, torch_floats("ln", "y", n), n);
    expect_close("layernorm dx", dx, torch_floats("ln", "dx", n), n);
    expect_close("layernorm dw", dw, torch_floats("ln", "dw", C), C);
    expect_close("layernorm db", db, torch_floats("ln", "db", C), C);
    kern_free(K, x), kern_free(K, dy), kern_free(K, w), kern_free(K, b), kern_free(K, y);
    kern_free(K, mr), kern_free(K, dx), kern_free(K, dw), kern_free(K, db), kern_free(K, ws);
}

static void attention_case(const char *name) {
    const int32_t *d = torch_ints(name, "dims", 4);
    int B = d[0], T = d[1], C = d[2], NH = d[3];
    int64_t nq = (int64_t)B * T * 3 * C, no = (int64_t)B * T * C, nl = (int64_t)B * NH * T;
    float *qkv = upload(torch_floats(name, "qkv", nq), nq);
    float *dy = upload(torch_floats(name, "dy", no), no);
    float *y = nans(no), *lse = nans(nl), *dqkv = nans(nq);
    void *ws = workspace(B, T, C, NH, 1);
    char what[64];
    kern_attention_forward(K, y, lse, qkv, B, T, C, NH, ws);
    kern_attention_backward(K, dqkv, dy, qkv, y, lse, B, T, C, NH, ws);
    snprintf(what, sizeof(what), "%s y", name);
    expect_close(what, y, torch_floats(name, "y", no), no);
    snprintf(what, sizeof(what), "%s lse", name);
    expect_close(what, lse, torch_floats(name, "lse", nl), nl);
    snprintf(what, sizeof(what), "%s dqkv", name);
    expect_close(what, dqkv, torch_floats(name, "dqkv", nq), nq);
    kern_free(K, qkv), kern_free(K, dy), kern_free(K, y), kern_free(K, lse);
    kern_free(K, dqkv), kern_free(K, ws);
}

static void test_attention(void **state) {
    attention_case("att0");
    attention_case("att1");
    attention_case("att2");
}

/* in place (dlogits == logits), grad_scale 1/B as the mean of F.cross_entropy */
static void test_xent(void **state) {
    const int32_t *d = torch_ints("xent", "dims", 3);
    int B = d[0], V = d[1], ld = d[2];
    int64_t n = (int64_t)B * ld;
    float *z = upload(torch_floats("xent", "logits", n), n), *losses = nans(B);
    int32_t *labels = kern_alloc(K, (size_t)B * sizeof(int32_t));
    double *acc = kern_alloc(K, 2 * sizeof(double));
    assert_non_null(labels);
    assert_non_null(acc);
    memcpy(labels, torch_ints("xent", "labels", B), (size_t)B * sizeof(int32_t));
    kern_softmax_xent_acc(K, losses, z, acc, z, labels, B, V, ld, 1.0f / B);
    expect_close("xent losses", losses, torch_floats("xent", "losses", B), B);
    expect_close("xent dlogits", z, torch_floats("xent", "dlogits", n), n);
    const float *sums = torch_floats("xent", "sums", 2);
    double host[2];
    kern_to_host(K, host, acc, sizeof(host));
    assert_true(fabs(host[0] - sums[0]) <= RTOL * fabs(sums[0]));
    assert_true(host[1] == sums[1] && host[1] >= 2.0);
    kern_free(K, z), kern_free(K, losses), kern_free(K, labels), kern_free(K, acc);
}

int main(int argc, char **argv) {
    int rc = torch_test_start(argc, argv, "torch_gpt_reference.py", 1, &K);
    if (rc != 0) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_xent),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    torch_test_finish(K);
    return rc;
}
