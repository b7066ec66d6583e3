/* test_kernels_torch.c: kern_* against PyTorch's numbers on the same inputs and weights.
 *
 * torch_reference.py (a ctest fixture) writes the inputs, weights, outputs and gradients of
 * nn.Linear, relu, gelu(tanh), cross_entropy, a small MLP, SGD and AdamW to a file; this test
 * reads it (path in argv[1]), recomputes everything with the kernels and compares.
 * Exits 77 (skipped) when the file is missing, i.e. when the fixture was skipped for lack of
 * torch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "kernels.h"
#include "torch_file.h"

/* Relative tolerance against PyTorch, plus an absolute floor of ABS_FLOOR * max|reference|
 * for values that are sums of many rounded products (GEMMs) or cancel (GELU for x << 0).
 * Typical agreement is 100x better; the largest gap is AdamW's exp_avg_sq, 1.3e-5 relative,
 * because kern_adamw_update takes beta2 as a float: 1 - 0.999f is not PyTorch's 1 - 0.999. */
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

static float *zeros(int64_t n) { return kern_alloc(K, (size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* compare backend buffer `dev` with torch's `want` */
static void expect_close(const char *what, const float *dev, const float *want, int64_t n) {
    torch_expect_close(K, what, dev, want, n, NULL, RTOL, ABS_FLOOR);
}

/* ---- tests ---- */

static void check_linear(const char *name) {
    const int32_t *d = torch_ints(name, "dims", 3);
    int B = d[0], I = d[1], O = d[2];
    float *x = upload(torch_floats(name, "x", B * I), B * I);
    float *w = upload(torch_floats(name, "w", O * I), O * I);
    float *b = upload(torch_floats(name, "b", O), O);
    float *dy = upload(torch_floats(name, "dy", B * O), B * O);
    float *y = zeros(B * O), *dx = zeros(B * I), *dw = zeros(O * I), *db = zeros(O);
    kern_linear_forward(K, y, x, w, b, B, I, O);
    expect_close(name, y, torch_floats(name, "y", B * O), B * O);
    kern_linear_backward(K, dx, dw, db, dy, x, w, B, I, O);
    expect_close("linear dx", dx, torch_floats(name, "dx", B * I), B * I);
    expect_close("linear dw", dw, torch_floats(name, "dw", O * I), O * I);
    expect_close("linear db", db, torch_floats(name, "db", O), O);
    kern_free(K, x), kern_free(K, w), kern_free(K, b), kern_free(K, dy);
    kern_free(K, y), kern_free(K, dx), kern_free(K, dw), kern_free(K, db);
}

static void test_linear(void **state) {
    check_linear("linear0");
    check_linear("linear1");
}

static void test_activations(void **state) {
    const char *names[2] = {"relu", "gelu"};
    for (int a = 0; a < 2; a++) {
        const char *name = names[a];
        char what[64];
        torch_array_named(a == 0 ? "relu.x" : "gelu.x", TORCH_FLOAT32);
        int64_t n = torch_array_named(a == 0 ? "relu.x" : "gelu.x", TORCH_FLOAT32)->count;
        float *x = upload(torch_floats(name, "x", n), n);
        float *dy = upload(torch_floats(name, "dy", n), n);
        float *y = zeros(n), *dx = zeros(n);
        if (a == 0) {
            kern_relu_forward(K, y, x, n);
            kern_relu_backward(K, dx, dy, x, n);
        } else {
            kern_gelu_forward(K, y, x, n);
            kern_gelu_backward(K, dx, dy, x, n);
        }
        snprintf(what, sizeof(what), "%s out", name);
        expect_close(what, y, torch_floats(name, "y", n), n);
        snprintf(what, sizeof(what), "%s din", name);
        expect_close(what, dx, torch_floats(name, "dx", n), n);
        kern_free(K, x), kern_free(K, dy), kern_free(K, y), kern_free(K, dx);
    }
}

static void test_cross_entropy(void **state) {
    const int32_t *d = torch_ints("xent", "dims", 2);
    int B = d[0], C = d[1];
    float *logits = upload(torch_floats("xent", "logits", B * C), B * C);
    int32_t *labels = kern_alloc(K, B * sizeof(int32_t));
    kern_to_device(K, labels, torch_ints("xent", "labels", B), B * sizeof(int32_t));
    float *losses = zeros(B), *dl = zeros(B * C);

    int64_t correct = -1;
    double sum = kern_softmax_xent(K, losses, dl, &correct, logits, labels, B, C, 1.0f / B);
    assert_int_equal(correct, torch_ints("xent", "correct", 1)[0]);
    expect_close("xent losses", losses, torch_floats("xent", "losses", B), B);
    expect_close("xent dlogits (mean)", dl, torch_floats("xent", "dlogits_mean", B * C), B * C);
    float mean = (float)(sum / B);
    assert_true(fabs(mean - torch_floats("xent", "loss_mean", 1)[0]) <= RTOL * fabs(mean));

    sum = kern_softmax_xent(K, NULL, dl, NULL, logits, labels, B, C, 1.0f);
    expect_close("xent dlogits (sum)", dl, torch_floats("xent", "dlogits_sum", B * C), B * C);
    assert_true(fabs(sum - torch_floats("xent", "loss_sum", 1)[0]) <= RTOL * fabs(sum));
    kern_free(K, logits), kern_free(K, labels), kern_free(K, losses), kern_free(K, dl);
}

/* linear -> gelu -> linear -> cross-entropy(mean), forward and backward through the kernels */
static void test_mlp(void **state) {
    const int32_t *d = torch_ints("mlp", "dims", 4);
    int B = d[0], I = d[1], H = d[2], C = d[3];
    float *x = upload(torch_floats("mlp", "x", B * I), B * I);
    float *w1 = upload(torch_floats("mlp", "w1", H * I), H * I);
    float *b1 = upload(torch_floats("mlp", "b1", H), H);
    float *w2 = upload(torch_floats("mlp", "w2", C * H), C * H);
    float *b2 = upload(torch_floats("mlp", "b2", C), C);
    int32_t *labels = kern_alloc(K, B * sizeof(int32_t));
    kern_to_device(K, labels, torch_ints("mlp", "labels", B), B * sizeof(int32_t));
    float *h = zeros(B * H), *a = zeros(B * H), *logits = zeros(B * C), *dlogits = zeros(B * C);
    float *da = zeros(B * H), *dw1 = zeros(H * I), *db1 = zeros(H), *dw2 = zeros(C * H);
    float *db2 = zeros(C);

    kern_linear_forward(K, h, x, w1, b1, B, I, H);
    kern_gelu_forward(K, a, h, B * H);
    kern_linear_forward(K, logits, a, w2, b2, B, H, C);
    double loss = kern_softmax_xent(K, NULL, dlogits, NULL, logits, labels, B, C, 1.0f / B) / B;
    kern_linear_backward(K, da, dw2, db2, dlogits, a, w2, B, H, C);
    kern_gelu_backward(K, da, da, h, B * H);   /* in place */
    kern_linear_backward(K, NULL, dw1, db1, da, x, w1, B, I, H);

    expect_close("mlp logits", logits, torch_floats("mlp", "logits", B * C), B * C);
    float want = torch_floats("mlp", "loss", 1)[0];
    assert_true(fabs(loss - want) <= RTOL * fabs(want));
    expect_close("mlp dw2", dw2, torch_floats("mlp", "dw2", C * H), C * H);
    expect_close("mlp db2", db2, torch_floats("mlp", "db2", C), C);
    expect_close("mlp dw1", dw1, torch_floats("mlp", "dw1", H * I), H * I);
    expect_close("mlp db1", db1, torch_floats("mlp", "db1", H), H);
    float *bufs[] = {x, w1, b1, w2, b2, h, a, logits, dlogits, da, dw1, db1, dw2, db2};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) kern_free(K, bufs[i]);
    kern_free(K, labels);
}

static void test_sgd(void **state) {
    for (int c = 0; c < 5; c++) {
        char name[16];
        snprintf(name, sizeof(name), "sgd%d", c);
        const float *cfg = torch_floats(name, "cfg", 4);
        float lr = cfg[0], momentum = cfg[1], wd = cfg[2];
        int nesterov = cfg[3] != 0.0f;
        int64_t n = torch_array_named("sgd0.p0", TORCH_FLOAT32)->count;
        const float *grads = torch_floats(name, "grads", 5 * n);
        const float *params = torch_floats(name, "params", 5 * n);
        const float *bufs = momentum != 0.0f ? torch_floats(name, "momentum_buffer", 5 * n) : NULL;
        float *p = upload(torch_floats(name, "p0", n), n), *g = zeros(n);
        float *buf = momentum != 0.0f ? zeros(n) : NULL;
        for (int t = 0; t < 5; t++) {
            kern_to_device(K, g, grads + t * n, n * sizeof(float));
            kern_sgd_update(K, p, buf, g, n, lr, momentum, wd, nesterov, t == 0);
            char what[64];
            snprintf(what, sizeof(what), "%s param, step %d", name, t + 1);
            expect_close(what, p, params + t * n, n);
            if (buf) {
                snprintf(what, sizeof(what), "%s momentum buffer, step %d", name, t + 1);
                expect_close(what, buf, bufs + t * n, n);
            }
        }
        kern_free(K, p), kern_free(K, g);
        if (buf) kern_free(K, buf);
    }
}

static void test_adamw(void **state) {
    for (int c = 0; c < 3; c++) {
        char name[16];
        snprintf(name, sizeof(name), "adamw%d", c);
        const float *cfg = torch_floats(name, "cfg", 5);
        int64_t n = torch_array_named("adamw0.p0", TORCH_FLOAT32)->count;
        const float *grads = torch_floats(name, "grads", 5 * n);
        const float *params = torch_floats(name, "params", 5 * n);
        const float *ms = torch_floats(name, "exp_avg", 5 * n);
        const float *vs = torch_floats(name, "exp_avg_sq", 5 * n);
        float *p = upload(torch_floats(name, "p0", n), n);
        float *g = zeros(n), *m = zeros(n), *v = zeros(n);
        for (int t = 1; t <= 5; t++) {
            kern_to_device(K, g, grads + (t - 1) * n, n * sizeof(float));
            kern_adamw_update(K, p, m, v, g, n, cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], t);
            char what[64];
            snprintf(what, sizeof(what), "%s param, step %d", name, t);
            expect_close(what, p, params + (t - 1) * n, n);
            snprintf(what, sizeof(what), "%s exp_avg, step %d", name, t);
            expect_close(what, m, ms + (t - 1) * n, n);
            snprintf(what, sizeof(what), "%s exp_avg_sq, step %d", name, t);
            expect_close(what, v, vs + (t - 1) * n, n);
        }
        kern_free(K, p), kern_free(K, g), kern_free(K, m), kern_free(K, v);
    }
}

int main(int argc, char **argv) {
    int rc = torch_test_start(argc, argv, "torch_reference.py", 2, &K);
    if (rc != 0) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    torch_test_finish(K);
    return rc;
}
