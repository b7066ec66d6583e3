/* test_kernels_gradcheck.c: the float64 reference backward passes against central finite
 * differences of the reference forward passes, on odd sizes (B=3, I=7, O=5, C=5).
 * Each loss is L = sum(G * forward(x)) for a fixed random G, so dL/dout = G. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

enum { B = 3, I = 7, O = 5, C = 5, N = 23 };

/* Agreement required of finite differences: the truncation and rounding errors of the central
 * difference with these h are ~1e-10, far below this, while any wrong term in a gradient is
 * of order 1e-2 or more. */
#define FD_RTOL 1e-7
#define FD_ATOL 1e-9

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

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- linear ---- */

typedef struct {
    double in[B * I], w[O * I], b[O], G[B * O];
} linear_case;

static double linear_loss(void *p) {
    linear_case *c = p;
    double out[B * O];
    ref_linear_forward(out, c->in, c->w, c->b, B, I, O);
    return dot(out, c->G, B * O);
}

static void make_linear_case(linear_case *c, uint64_t seed) {
    tu_fill_uniform(c->in, B * I, &seed, -1, 1);
    tu_fill_uniform(c->w, O * I, &seed, -1, 1);
    tu_fill_uniform(c->b, O, &seed, -1, 1);
    tu_fill_uniform(c->G, B * O, &seed, -1, 1);
}

static void test_linear_gradcheck(void **state) {
    linear_case c;
    make_linear_case(&c, 1);
    double din[B * I], dw[O * I] = {0}, db[O] = {0};
    ref_linear_backward(din, dw, db, c.G, c.in, c.w, B, I, O);
    double nin[B * I], nw[O * I], nb[O];
    numgrad(c.in, B * I, linear_loss, &c, 1e-4, nin);
    numgrad(c.w, O * I, linear_loss, &c, 1e-4, nw);
    numgrad(c.b, O, linear_loss, &c, 1e-4, nb);
    assert_int_equal(tu_close("linear din", din, nin, B * I, FD_RTOL, FD_ATOL), 0);
    assert_int_equal(tu_close("linear dw", dw, nw, O * I, FD_RTOL, FD_ATOL), 0);
    assert_int_equal(tu_close("linear db", db, nb, O, FD_RTOL, FD_ATOL), 0);
}

/* The same check must reject a gradient that is wrong in one element by a tiny amount:
 * proof that the tolerances above can fail. */
static void test_gradcheck_rejects_wrong_gradient(void **state) {
    linear_case c;
    make_linear_case(&c, 2);
    double dw[O * I] = {0}, nw[O * I];
    ref_linear_backward(NULL, dw, NULL, c.G, c.in, c.w, B, I, O);
    numgrad(c.w, O * I, linear_loss, &c, 1e-4, nw);
    assert_int_equal(tu_close("linear dw", dw, nw, O * I, FD_RTOL, FD_ATOL), 0);
    dw[17] *= 1.0 + 1e-5;
    assert_int_equal(tu_close("(expected mismatch) linear dw", dw, nw, O * I, FD_RTOL, FD_ATOL),
                     1);
}

/* ---- element-wise activations ---- */

typedef struct {
    double x[N], G[N];
    void (*forward)(double *out, const double *in, int64_t n);
} act_case;

static double act_loss(void *p) {
    act_case *c = p;
    double y[N];
    c->forward(y, c->x, N);
    return dot(y, c->G, N);
}

static void test_relu_gradcheck(void **state) {
    act_case c = {.forward = ref_relu_forward};
    uint64_t seed = 3;
    for (int i = 0; i < N; i++) {
        double v = tu_uniform(&seed, 0.1, 2.0);   /* away from the kink at 0 */
        c.x[i] = i % 2 ? v : -v;
    }
    tu_fill_uniform(c.G, N, &seed, -1, 1);
    double dx[N], nx[N];
    ref_relu_backward(dx, c.G, c.x, N);
    numgrad(c.x, N, act_loss, &c, 1e-6, nx);
    assert_int_equal(tu_close("relu din", dx, nx, N, FD_RTOL, FD_ATOL), 0);
}

static void test_gelu_gradcheck(void **state) {
    act_case c = {.forward = ref_gelu_forward};
    uint64_t seed = 4;
    tu_fill_uniform(c.x, N, &seed, -5, 5);
    c.x[0] = 0.0;
    c.x[1] = -0.3;
    tu_fill_uniform(c.G, N, &seed, -1, 1);
    double dx[N], nx[N];
    ref_gelu_backward(dx, c.G, c.x, N);
    numgrad(c.x, N, act_loss, &c, 1e-5, nx);
    assert_int_equal(tu_close("gelu din", dx, nx, N, FD_RTOL, FD_ATOL), 0);
}

typedef struct {
    double x[N], G[N];
    uint8_t mask[N];
    double p;
} dropout_case;

static double dropout_loss(void *p) {
    dropout_case *c = p;
    double y[N];
    ref_dropout_forward(y, c->mask, c->x, N, c->p);
    return dot(y, c->G, N);
}

static void test_dropout_gradcheck(void **state) {
    dropout_case c = {.p = 0.3};
    uint64_t seed = 5;
    tu_fill_uniform(c.x, N, &seed, -2, 2);
    tu_fill_uniform(c.G, N, &seed, -1, 1);
    for (int i = 0; i < N; i++) c.mask[i] = (uint8_t)(i % 3 != 0);
    double dx[N], nx[N];
    ref_dropout_backward(dx, c.G, c.mask, N, c.p);
    numgrad(c.x, N, dropout_loss, &c, 1e-4, nx);
    assert_int_equal(tu_close("dropout din", dx, nx, N, FD_RTOL, FD_ATOL), 0);
}

/* ---- softmax cross-entropy: L = grad_scale * sum_b losses[b] ---- */

typedef struct {
    double logits[B * C];
    int32_t labels[B];
    double grad_scale;
} xent_case;

static double xent_loss(void *p) {
    xent_case *c = p;
    return c->grad_scale * ref_softmax_xent(NULL, NULL, NULL, c->logits, c->labels, B, C, 1.0);
}

static void test_softmax_xent_gradcheck(void **state) {
    xent_case c = {.labels = {2, 0, 4}, .grad_scale = 0.37};
    uint64_t seed = 6;
    tu_fill_uniform(c.logits, B * C, &seed, -3, 3);
    double d[B * C], nd[B * C];
    ref_softmax_xent(NULL, d, NULL, c.logits, c.labels, B, C, c.grad_scale);
    numgrad(c.logits, B * C, xent_loss, &c, 1e-5, nd);
    assert_int_equal(tu_close("softmax_xent dlogits", d, nd, B * C, FD_RTOL, FD_ATOL), 0);
    /* and the loss itself against -log(softmax) computed the long way */
    for (int r = 0; r < B; r++) {
        double s = 0.0;
        for (int j = 0; j < C; j++) s += exp(c.logits[r * C + j]);
        double want = -log(exp(c.logits[r * C + c.labels[r]]) / s);
        double loss;
        ref_softmax_xent(&loss, NULL, NULL, c.logits + r * C, c.labels + r, 1, C, 1.0);
        assert_true(fabs(loss - want) <= 1e-12 * (1.0 + fabs(want)));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_gradcheck),
        cmocka_unit_test(test_gradcheck_rejects_wrong_gradient),
        cmocka_unit_test(test_relu_gradcheck),
        cmocka_unit_test(test_gelu_gradcheck),
        cmocka_unit_test(test_dropout_gradcheck),
        cmocka_unit_test(test_softmax_xent_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
