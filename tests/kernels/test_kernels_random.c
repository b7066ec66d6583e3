/* test_kernels_random.c: Philox4x32-10 and everything drawn from it (init, dropout).
 *   - known-answer vectors of Random123 for the raw generator;
 *   - the stream layout (seed, stream_id, i) against values computed independently in Python;
 *   - the same numbers whatever n and however the loops chunk the work;
 *   - the basic-operations-only log/sin/cos behind Box-Muller against libm;
 *   - uniform, normal and dropout statistics within 5-sigma bounds (fixed seeds: no flakes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test_util.h"
#include "philox.h"

static const double PI = 3.14159265358979323846, LN2 = 0.69314718055994530942;

static kern_ctx *K;

static int setup(void **state) {
    kern_options opt = {.backend = KERN_CPU, .threads = 1, .device = 0};
    char err[256];
    return kern_create(&opt, &K, err, sizeof(err));
}

static int teardown(void **state) {
    kern_destroy(K);
    return 0;
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* Random123, tests/kat_vectors: "philox4x32 10" lines (counter[4] key[2] -> result[4]) */
static void test_philox_known_answers(void **state) {
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
         0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        kern_philox_block r = kern_philox4x32_10(kat[t], kat[t] + 4);
        for (int j = 0; j < 4; j++) assert_int_equal(r.v[j], kat[t][6 + j]);
    }
}

/* Golden values from an independent Python implementation of philox.h's layout and transforms
 * (Python floats are IEEE doubles; the normals agree with libm's log/sin/cos too):
 * seed 0x0123456789abcdef, stream 0x5000000a1. */
static const uint64_t GOLD_SEED = 0x0123456789abcdefull, GOLD_STREAM = 0x00000005000000a1ull;
static const int gold_index[12] = {0, 1, 2, 3, 4, 5, 6, 7, 1021, 1022, 1023, 1024};
static const uint32_t gold_uniform[12] = {   /* lo = -1, hi = 1.5 */
    0xbf4a584a, 0xbf619ac0, 0x3f579142, 0x3e8a4a4c, 0x3f4bb5d4, 0x3f5209fa,
    0x3e9a50b3, 0x3f4a78f7, 0x3f331b96, 0xbf11709c, 0x3f5d9ca7, 0xbf594aa8};
static const uint32_t gold_normal[12] = {    /* mean = 0.25, std = 0.02 */
    0x3e95caf6, 0x3e86b40b, 0x3e7003ae, 0x3e7f311d, 0x3e7db944, 0x3e6f7f0a,
    0x3e7b1741, 0x3e691e65, 0x3e65c215, 0x3e7f19ac, 0x3e59a1a0, 0x3e4ff2f0};

static void test_stream_layout_golden(void **state) {
    enum { n = 1030 };
    float *x = kern_alloc(K, n * sizeof(float));
    kern_init_uniform(K, x, n, -1.0f, 1.5f, GOLD_SEED, GOLD_STREAM);
    for (int j = 0; j < 12; j++) assert_int_equal(float_bits(x[gold_index[j]]), gold_uniform[j]);
    kern_init_normal(K, x, n, 0.25f, 0.02f, GOLD_SEED, GOLD_STREAM);
    for (int j = 0; j < 12; j++) assert_int_equal(float_bits(x[gold_index[j]]), gold_normal[j]);
    /* element indices past 2^32 blocks use the counter's high word */
    assert_int_equal(kern_philox_u32(GOLD_SEED, GOLD_STREAM, (1ull << 34) + 3), 0xb3394ea6);
    assert_int_equal(kern_philox_u32(GOLD_SEED, GOLD_STREAM, (1ull << 34) + 4), 0xec38ea9a);
    kern_free(K, x);
}

/* philox.h's own log and sincos (deterministic on every backend) against libm, on every
 * 13th of the 2^24 arguments they are ever given. */
static void test_box_muller_math_matches_libm(void **state) {
    double worst_log = 0, worst_trig = 0;
    for (uint32_t k = 0; k < (1u << 24); k += 13) {
        double u1 = kern_u32_to_uniform01_open0(k << 8);
        double want = log(u1);
        worst_log = tu_max_keep_nan(worst_log, fabs(kern_log_det(u1) - want) / fmax(fabs(want), 1e-300));
        double u2 = k * (1.0 / 16777216.0), s, c;
        kern_sincos_2pi(u2, &s, &c);
        /* absolute: libm's own cos(2 pi u) is off by ~1e-16 * 2 pi from rounding 2 pi u */
        double theta = 2 * PI * u2;
        worst_trig = tu_max_keep_nan(worst_trig, tu_max_keep_nan(fabs(s - sin(theta)), fabs(c - cos(theta))));
    }
    assert_true(worst_log < 1e-15);
    assert_true(worst_trig < 2e-15);
    double s, c;   /* the exact points */
    kern_sincos_2pi(0.0, &s, &c);
    assert_true(s == 0.0 && c == 1.0);
    kern_sincos_2pi(0.25, &s, &c);
    assert_true(s == 1.0 && c == 0.0);
    kern_sincos_2pi(0.5, &s, &c);
    assert_true(s == 0.0 && c == -1.0);
    assert_true(kern_log_det(1.0) == 0.0);
    assert_true(fabs(kern_log_det(0x1p-24) - -24 * LN2) < 1e-14);
}

/* Every prefix length gives the prefix of the longest draw, and every element equals the
 * scalar definition from philox.h: the chunked loops change nothing. */
static void test_same_numbers_whatever_the_chunking(void **state) {
    enum { nmax = 4099 };
    const int64_t lens[] = {1, 3, 4, 5, 1023, 1024, 1025, 2048, 3001};
    const uint64_t seed = 99, stream = 7;
    float *full = kern_alloc(K, nmax * sizeof(float)), *part = kern_alloc(K, nmax * sizeof(float));
    float *ones = kern_alloc(K, nmax * sizeof(float)), *drop = kern_alloc(K, nmax * sizeof(float));
    uint8_t *mfull = kern_alloc(K, nmax), *mpart = kern_alloc(K, nmax);

    kern_init_uniform(K, full, nmax, -2.0f, 3.0f, seed, stream);
    for (int64_t i = 0; i < nmax; i++) {
        double u = kern_u32_to_uniform01(kern_philox_u32(seed, stream, (uint64_t)i));
        assert_true(full[i] == (float)(-2.0 + 5.0 * u));
    }
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        kern_init_uniform(K, part, lens[l], -2.0f, 3.0f, seed, stream);
        assert_memory_equal(part, full, lens[l] * sizeof(float));
    }

    kern_init_normal(K, full, nmax, 0.0f, 1.0f, seed, stream);
    for (int64_t i = 0; i < nmax; i++) {
        kern_philox_block blk = kern_philox_stream_block(seed, stream, (uint64_t)i / 4);
        assert_true(full[i] == (float)kern_philox_block_normal(blk, (int)(i % 4)));
    }
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        kern_init_normal(K, part, lens[l], 0.0f, 1.0f, seed, stream);
        assert_memory_equal(part, full, lens[l] * sizeof(float));
    }

    kern_fill(K, ones, 1.0f, nmax);
    kern_dropout_forward(K, drop, mfull, ones, nmax, 0.3f, seed, stream);
    for (int64_t i = 0; i < nmax; i++) {
        float u = kern_u32_to_uniform01(kern_philox_u32(seed, stream, (uint64_t)i));
        assert_int_equal(mfull[i], u >= 0.3f);
    }
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        kern_dropout_forward(K, part, mpart, ones, lens[l], 0.3f, seed, stream);
        assert_memory_equal(mpart, mfull, lens[l]);
        assert_memory_equal(part, drop, lens[l] * sizeof(float));
    }
    kern_free(K, full), kern_free(K, part), kern_free(K, ones), kern_free(K, drop);
    kern_free(K, mfull), kern_free(K, mpart);
}

static int count_equal(const float *a, const float *b, int64_t n) {
    int c = 0;
    for (int64_t i = 0; i < n; i++) c += a[i] == b[i];
    return c;
}

static void test_seeds_and_streams_differ(void **state) {
    enum { n = 1000 };
    float *a = kern_alloc(K, n * sizeof(float)), *b = kern_alloc(K, n * sizeof(float));
    kern_init_uniform(K, a, n, 0.0f, 1.0f, 5, 9);
    kern_init_uniform(K, b, n, 0.0f, 1.0f, 5, 9);
    assert_int_equal(count_equal(a, b, n), n);
    const uint64_t other[4][2] = {{6, 9}, {5, 10}, {5 + (1ull << 32), 9}, {5, 9 + (1ull << 32)}};
    for (int o = 0; o < 4; o++) {
        kern_init_uniform(K, b, n, 0.0f, 1.0f, other[o][0], other[o][1]);
        assert_true(count_equal(a, b, n) < 5);   /* 24-bit values: equal only by chance */
    }
    kern_free(K, a), kern_free(K, b);
}

enum { NSTAT = 1000000 };

static void test_uniform_statistics(void **state) {
    const float lo = -0.5f, hi = 2.0f;
    float *x = kern_alloc(K, NSTAT * sizeof(float));
    kern_init_uniform(K, x, NSTAT, lo, hi, 1234, 1);
    double s = 0, s2 = 0;
    for (int i = 0; i < NSTAT; i++) {
        assert_true(x[i] >= lo && x[i] <= hi);
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    double mean = s / NSTAT, var = s2 / NSTAT - mean * mean;
    double w = hi - lo, want_var = w * w / 12;
    assert_true(fabs(mean - (lo + hi) / 2.0) < 5 * sqrt(want_var / NSTAT));
    /* var of the sample variance of a uniform: (mu4 - sigma^4)/n with mu4 = w^4/80 */
    assert_true(fabs(var - want_var) < 5 * sqrt((pow(w, 4) / 80 - want_var * want_var) / NSTAT));
    kern_free(K, x);
}

static void test_normal_statistics(void **state) {
    const float mean = 0.5f, std = 0.02f;
    float *x = kern_alloc(K, NSTAT * sizeof(float));
    kern_init_normal(K, x, NSTAT, mean, std, 4321, 2);
    double s = 0, s2 = 0;
    int64_t within1 = 0, beyond3 = 0;
    for (int i = 0; i < NSTAT; i++) {
        assert_true(isfinite(x[i]));
        double z = (x[i] - (double)mean) / std;
        s += z;
        s2 += z * z;
        within1 += fabs(z) < 1.0;
        beyond3 += fabs(z) > 3.0;
    }
    double m = s / NSTAT, sd = sqrt(s2 / NSTAT - m * m);
    assert_true(fabs(m) < 5.0 / sqrt(NSTAT));
    assert_true(fabs(sd - 1.0) < 5.0 / sqrt(2.0 * NSTAT));
    /* shape: P(|z|<1) = 0.682689, P(|z|>3) = 0.0026998 */
    double p1 = 0.682689492137086, p3 = 0.002699796063260;
    assert_true(fabs((double)within1 / NSTAT - p1) < 5 * sqrt(p1 * (1 - p1) / NSTAT));
    assert_true(fabs((double)beyond3 / NSTAT - p3) < 5 * sqrt(p3 * (1 - p3) / NSTAT));
    kern_free(K, x);
}

static void test_dropout_statistics(void **state) {
    float *x = kern_alloc(K, NSTAT * sizeof(float)), *y = kern_alloc(K, NSTAT * sizeof(float));
    float *dx = kern_alloc(K, NSTAT * sizeof(float));
    uint8_t *mask = kern_alloc(K, NSTAT), *mask2 = kern_alloc(K, NSTAT);
    kern_init_uniform(K, x, NSTAT, -1.0f, 1.0f, 77, 0);
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (int t = 0; t < 3; t++) {
        float p = ps[t], scale = 1.0f / (1.0f - p);
        kern_dropout_forward(K, y, mask, x, NSTAT, p, 2024, 10 + t);
        int64_t dropped = 0;
        for (int i = 0; i < NSTAT; i++) {
            dropped += !mask[i];
            if (mask[i]) assert_true(y[i] == x[i] * scale);
            else assert_true(y[i] == 0.0f);
        }
        assert_true(fabs((double)dropped / NSTAT - p) < 5 * sqrt(p * (1 - p) / NSTAT));

        kern_dropout_forward(K, y, mask2, x, NSTAT, p, 2024, 10 + t);   /* same stream */
        assert_memory_equal(mask, mask2, NSTAT);
        kern_dropout_forward(K, y, mask2, x, NSTAT, p, 2024, 20 + t);   /* another stream */
        int64_t same = 0;
        for (int i = 0; i < NSTAT; i++) same += mask[i] == mask2[i];
        double p_same = p * p + (1 - p) * (1 - p);   /* independent masks */
        assert_true(fabs((double)same / NSTAT - p_same) < 5 * sqrt(p_same * (1 - p_same) / NSTAT));

        kern_dropout_backward(K, dx, x, mask, NSTAT, p);
        for (int i = 0; i < NSTAT; i++) assert_true(dx[i] == (mask[i] ? x[i] * scale : 0.0f));
    }
    kern_free(K, x), kern_free(K, y), kern_free(K, dx), kern_free(K, mask), kern_free(K, mask2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_stream_layout_golden),
        cmocka_unit_test(test_box_muller_math_matches_libm),
        cmocka_unit_test(test_same_numbers_whatever_the_chunking),
        cmocka_unit_test(test_seeds_and_streams_differ),
        cmocka_unit_test(test_uniform_statistics),
        cmocka_unit_test(test_normal_statistics),
        cmocka_unit_test(test_dropout_statistics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
