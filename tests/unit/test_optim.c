/* The optimizer (trainer/run/optim.c over the CPU backend's update kernels) against the
 * update rules as PyTorch's documentation of torch.optim.SGD and torch.optim.AdamW writes
 * them, computed here in double: five parameters, three steps with different gradients.
 *
 * Tolerance: the parameters stay below 4 in magnitude, where a float's ulp is at most
 * 4.8e-7; a step rounds about ten times (half an ulp each, <= 2.4e-6) and an error in a
 * parameter carries into the next step unchanged (times 1 - lr*wd), so three steps stay
 * below 1e-5.  A wrong sign, a missing bias correction or a missing decay changes a value by
 * lr * O(1) = O(0.01..0.1), far above it.  Comparisons fail on NaN. */
#include "unit_util.h"

#include "optim.h"

#define N 5
#define STEPS 3
#define TOL 1e-5


static const double start[N] = {1.0, -0.5, 0.25, 2.0, -1.5};
static const double grad[STEPS][N] = {
    {0.5, -1.0, 0.125, 2.0, -0.25},
    {-0.25, 0.75, 0.5, 1.5, 1.0},
    {0.1, -0.3, -0.6, 0.2, 0.4},
};
/* weight decay per element: the last two are "biases" (optim_set_decay below) */
static const int decayed[N] = {1, 1, 1, 0, 0};

typedef struct {
    double lr, momentum, wd, beta1, beta2, eps;
    int nesterov;
} hyper;

/* torch.optim.SGD: g += wd*p; b = g on the first step, else momentum*b + g (dampening 0);
 * g = g + momentum*b with nesterov, else b; p -= lr*g */
static void sgd_reference(const hyper *h, int steps, double *p) {
    double b[N] = {0};
    for (int t = 1; t <= steps; t++)
        for (int i = 0; i < N; i++) {
            double wd = decayed[i] ? h->wd : 0.0;
            double g = grad[t - 1][i] + wd * p[i];
            if (h->momentum != 0.0) {
                b[i] = t == 1 ? g : h->momentum * b[i] + g;
                g = h->nesterov ? g + h->momentum * b[i] : b[i];
            }
            p[i] -= h->lr * g;
        }
}

/* torch.optim.AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) */
static void adamw_reference(const hyper *h, int steps, double *p, double *m, double *v) {
    for (int i = 0; i < N; i++) m[i] = v[i] = 0.0;
    for (int t = 1; t <= steps; t++)
        for (int i = 0; i < N; i++) {
            double wd = decayed[i] ? h->wd : 0.0, g = grad[t - 1][i];
            p[i] *= 1.0 - h->lr * wd;
            m[i] = h->beta1 * m[i] + (1.0 - h->beta1) * g;
            v[i] = h->beta2 * v[i] + (1.0 - h->beta2) * g * g;
            double mhat = m[i] / (1.0 - pow(h->beta1, t));
            double vhat = v[i] / (1.0 - pow(h->beta2, t));
            p[i] -= h->lr * mhat / (sqrt(vhat) + h->eps);
        }
}

/* An optimizer for cfg over N parameters with the decay pattern above. */
static void make_optim(optim *o, const config *cfg) {
    char err[256];
    assert_int_equal(optim_create(o, cfg, N, 100, k, err, sizeof err), 0);
    const int64_t offsets[N] = {0, 1, 2, 3, 4}, counts[N] = {1, 1, 1, 1, 1};
    assert_int_equal(optim_set_decay(o, offsets, counts, decayed, N), 0);
    assert_int_equal(o->n_runs, 2);   /* [0, 3) decayed, [3, 5) not: neighbours merge */
}

/* Runs `steps` steps through optim_step (device = 0) or through optim_device_step +
 * optim_read, the path training takes (device = 1); p gets the parameters. */
static void run_steps(const config *cfg, int steps, int device, float *p, optim *o) {
    make_optim(o, cfg);
    for (int i = 0; i < N; i++) p[i] = (float)start[i];
    for (int t = 0; t < steps; t++) {
        float g[N];
        for (int i = 0; i < N; i++) g[i] = (float)grad[t][i];
        if (device) {
            optim_device_step(o, p, g, o->lr, t);
            optim_verdict v;
            optim_read(o, &v);
            assert_false(v.skipped);
            assert_false(v.stop);
        } else {
            optim_step(o, p, g, o->lr);
        }
    }
    assert_int_equal(o->t, steps);
}

static void compare(const float *got, const double *want, const char *what) {
    for (int i = 0; i < N; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= TOL)) {
            print_error("%s: parameter %d is %.9g, expected %.9g\n", what, i, (double)got[i],
                        want[i]);
            fail();
        }
    }
}

/* `steps` steps through both paths (a: optim_step, b: optim_device_step), each compared with
 * want; the two must also agree bit for bit (on the CPU they compute the same). */
static void run_both(const config *cfg, int steps, const double *want, optim *a, optim *b) {
    float host[N], dev[N];
    run_steps(cfg, steps, 0, host, a);
    run_steps(cfg, steps, 1, dev, b);
    compare(host, want, "optim_step");
    compare(dev, want, "optim_device_step");
    assert_memory_equal(host, dev, sizeof host);
    if (a->m) assert_memory_equal(a->m, b->m, N * sizeof(float));
    if (a->v) assert_memory_equal(a->v, b->v, N * sizeof(float));
}

static void check_sgd(const char *momentum, const char *nesterov) {
    config cfg;
    unit_config(&cfg, "train.optimizer=sgd", "train.lr=0.1", "train.weight_decay=0.01",
                momentum, nesterov, NULL);
    hyper h = {0.1, cfg.momentum, 0.01, 0, 0, 0, cfg.nesterov};
    for (int steps = 1; steps <= STEPS; steps++) {
        double want[N];
        memcpy(want, start, sizeof want);
        sgd_reference(&h, steps, want);
        optim a, b;
        run_both(&cfg, steps, want, &a, &b);
        optim_free(&a);
        optim_free(&b);
    }
}

static void test_sgd_plain(void **state) {
    (void)state;
    /* one step by hand: 1 - 0.1 * (0.5 + 0.01 * 1) = 0.949; -0.5 - 0.1 * (-1 - 0.005) =
     * -0.3995; the undecayed 2 - 0.1 * 2 = 1.8 */
    config cfg;
    unit_config(&cfg, "train.optimizer=sgd", "train.lr=0.1", "train.weight_decay=0.01",
                "train.momentum=0", NULL);
    float p[N];
    optim o;
    run_steps(&cfg, 1, 0, p, &o);
    assert_close(p[0], 0.949, TOL);
    assert_close(p[1], -0.3995, TOL);
    assert_close(p[3], 1.8, TOL);
    assert_null(o.m);   /* no momentum, no state */
    optim_free(&o);
    check_sgd("train.momentum=0", "train.nesterov=false");
}

static void test_sgd_momentum(void **state) {
    (void)state;
    check_sgd("train.momentum=0.9", "train.nesterov=false");
}

static void test_sgd_nesterov(void **state) {
    (void)state;
    check_sgd("train.momentum=0.9", "train.nesterov=true");
}

static void test_adamw(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "train.optimizer=adamw", "train.lr=0.1", "train.weight_decay=0.01",
                "train.beta1=0.9", "train.beta2=0.999", "train.eps=1e-8", NULL);
    hyper h = {0.1, 0, 0.01, 0.9, 0.999, 1e-8, 0};
    /* the first step by hand: m/(1-b1) = g and v/(1-b2) = g^2, so the step is lr*g/(|g|+eps):
     * 1 * (1 - 0.1*0.01) - 0.1 * 0.5/(0.5 + 1e-8) = 0.999 - 0.0999999980 = 0.899000002 */
    float p[N];
    optim o;
    run_steps(&cfg, 1, 0, p, &o);
    assert_close(p[0], 0.899000002, TOL);
    assert_close(p[3], 2.0 - 0.1, TOL);   /* not decayed: 2 - lr * sign(g) */
    optim_free(&o);
    for (int steps = 1; steps <= STEPS; steps++) {
        double want[N], m[N], v[N];
        memcpy(want, start, sizeof want);
        adamw_reference(&h, steps, want, m, v);
        optim a, b;
        run_both(&cfg, steps, want, &a, &b);
        /* the moments as checkpoints store them (exp_avg, exp_avg_sq) */
        for (int i = 0; i < N; i++) {
            assert_close(a.m[i], m[i], 1e-6);
            assert_close(a.v[i], v[i], 1e-6);
        }
        optim_free(&a);
        optim_free(&b);
    }
}

/* A non-finite gradient: the device step skips the update (parameters and moments keep
 * their bits, t does not count it) while at most max_skips come in a row, and says stop
 * beyond that.  The limit is the optimizer's, from train.nonfinite. */
static void test_nonfinite_skip(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "train.optimizer=adamw", "train.lr=0.1", NULL);
    float p[N], before[N], m_before[N];
    optim o;
    run_steps(&cfg, 1, 1, p, &o);
    assert_int_equal(o.max_skips, 0);   /* train.nonfinite=error: the first one stops */
    optim_free(&o);
    unit_config(&cfg, "train.optimizer=adamw", "train.lr=0.1", "train.nonfinite=skip", NULL);
    run_steps(&cfg, 1, 1, p, &o);
    assert_int_equal(o.max_skips, OPTIM_MAX_SKIPS);
    o.max_skips = 1;   /* so that the second in a row is past the limit */
    memcpy(before, p, sizeof p);
    memcpy(m_before, o.m, sizeof m_before);
    float g[N] = {0.1f, NAN, 0.2f, 0.3f, 0.4f};
    optim_verdict v;
    optim_device_step(&o, p, g, o.lr, 1);
    optim_read(&o, &v);
    assert_true(v.skipped);
    assert_false(v.stop);
    assert_true(isnan(v.norm));
    assert_int_equal(v.skipped_total, 1);
    assert_int_equal(o.t, 1);
    assert_memory_equal(p, before, sizeof p);
    assert_memory_equal(o.m, m_before, sizeof m_before);
    g[1] = INFINITY;   /* a second in a row is one more than max_skips = 1 allows */
    optim_device_step(&o, p, g, o.lr, 2);
    optim_read(&o, &v);
    assert_true(v.stop);
    assert_int_equal(v.stop_step, 2);
    assert_memory_equal(p, before, sizeof p);
    optim_free(&o);
}

/* Learning-rate schedules: linear warmup over 2 steps to lr = 1, then cosine or linear decay
 * to min_lr = 0.1 at step 10. */
static void test_schedule(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "train.optimizer=sgd", "train.lr=1", "train.min_lr=0.1",
                "train.warmup_steps=2", "train.schedule=cosine", NULL);
    optim o;
    char err[256];
    assert_int_equal(optim_create(&o, &cfg, N, 10, k, err, sizeof err), 0);
    assert_close(optim_lr(&o, 0), 0.5, 1e-7);
    assert_close(optim_lr(&o, 1), 1.0, 1e-7);
    assert_close(optim_lr(&o, 2), 1.0, 1e-7);
    /* step 4: 2 of 8 decay steps, 0.1 + 0.9 * (1 + cos(pi/4))/2 = 0.868198052 */
    assert_close(optim_lr(&o, 4), 0.868198052, 1e-6);
    assert_close(optim_lr(&o, 10), 0.1, 1e-7);
    assert_close(optim_lr(&o, 50), 0.1, 1e-7);
    o.schedule = SCHED_LINEAR;
    assert_close(optim_lr(&o, 4), 0.1 + 0.9 * 0.75, 1e-6);
    optim_free(&o);
}

/* Global-norm clipping: [3, 4] has norm 5; clipped to 1 it becomes [0.6, 0.8] (over
 * 5 + 1e-6, PyTorch's clip_grad_norm_). */
static void test_clip(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "train.optimizer=sgd", "train.clip_grad_norm=1", NULL);
    optim o;
    char err[256];
    assert_int_equal(optim_create(&o, &cfg, 2, 10, k, err, sizeof err), 0);
    float g[2] = {3.0f, 4.0f};
    double norm = optim_grad_norm(&o, g);
    assert_close(norm, 5.0, 1e-12);
    optim_clip(&o, g, norm);
    /* two float roundings (the factor, the product) at 0.6-0.8, where an ulp is 6e-8 */
    assert_close(g[0], 3.0 / (5.0 + 1e-6), 2e-7);
    assert_close(g[1], 4.0 / (5.0 + 1e-6), 2e-7);
    optim_free(&o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_nonfinite_skip),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_clip),
    };
    return cmocka_run_group_tests(tests, unit_setup_backend, unit_free_backend);
}
