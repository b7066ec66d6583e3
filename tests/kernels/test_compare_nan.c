/* test_compare_nan.c: the comparison helpers of the tests fail on NaN (issue 22: `if (d > worst)`
 * and `fabs(got - want) > tol` are false for NaN, so an all-NaN result passed).  Each helper is
 * fed a result with one NaN - first, in the middle, last - and an infinity where the reference
 * is finite, and must report a failure; the same data without them must pass.
 *   tests/kernels/test_util.h: tu_close, tu_close_f, tu_close_scaled_f, tu_max_keep_nan
 *   tests/gpu/gpu_compare.h:   gc_diff_f, gc_diff_d, gc_within, gc_rel, gc_max_keep_nan
 * (tests/nan_safe.py, the scripts' helper, is fed NaN by the ctest compare_nan_python.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "gpu_compare.h"
#include "test_util.h"

enum { N = 9 };

static void fill(double *want, float *wf) {
    for (int i = 0; i < N; i++) {
        want[i] = 1.0 + 0.25 * i;
        wf[i] = (float)want[i];
    }
}

static void test_util_helpers_fail_on_nan(void **state) {
    double want[N], got[N], scale[N];
    float wf[N], gf[N];
    fill(want, wf);
    for (int i = 0; i < N; i++) scale[i] = 1.0;
    const double bad[2] = {NAN, INFINITY};
    memcpy(got, want, sizeof got);
    memcpy(gf, wf, sizeof gf);
    assert_int_equal(tu_close("clean", got, want, N, 1e-6, 1e-6), 0);
    assert_int_equal(tu_close_f("clean", gf, want, N, 1e-6, 1e-6), 0);
    assert_int_equal(tu_close_scaled_f("clean", gf, want, scale, N, 1e-6), 0);
    for (int b = 0; b < 2; b++)
        for (int at = 0; at < N; at += N / 2) {
            memcpy(got, want, sizeof got);
            memcpy(gf, wf, sizeof gf);
            got[at] = bad[b];
            gf[at] = (float)bad[b];
            assert_int_equal(tu_close("bad got", got, want, N, 1e-6, 1e-6), 1);
            assert_int_equal(tu_close_f("bad got", gf, want, N, 1e-6, 1e-6), 1);
            assert_int_equal(tu_close_scaled_f("bad got", gf, want, scale, N, 1e-6), 1);
            /* and a NaN in the reference */
            assert_int_equal(tu_close("bad want", want, got, N, 1e-6, 1e-6), 1);
        }
    /* a running worst error keeps the NaN wherever it comes */
    for (int at = 0; at < N; at++) {
        double worst = 0.0;
        for (int i = 0; i < N; i++) worst = tu_max_keep_nan(worst, i == at ? NAN : 0.1 * i);
        assert_false(worst <= 1.0);
    }
}

static void gpu_compare_helpers_fail_on_nan(void **state) {
    double want[N], got[N];
    float wf[N], gf[N];
    fill(want, wf);
    memcpy(got, want, sizeof got);
    memcpy(gf, wf, sizeof gf);
    gc_diff d = gc_diff_f(wf, gf, N);
    assert_true(gc_within(&d, 0.0) && gc_within(&d, 1e-6) && d.worst == -1);
    d = gc_diff_d(want, got, N);
    assert_true(gc_within(&d, 0.0) && gc_within(&d, 1e-6));
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++)
        for (int at = 0; at < N; at += N / 2) {
            memcpy(got, want, sizeof got);
            memcpy(gf, wf, sizeof gf);
            got[at] = bad[b];
            gf[at] = (float)bad[b];
            /* a small difference elsewhere too, so that the NaN is not the only candidate */
            got[(at + 1) % N] += 1e-9;
            d = gc_diff_f(wf, gf, N);
            assert_true(isnan(d.max_diff) && isnan(gc_rel(&d)));
            assert_int_equal(d.worst, at);
            assert_false(gc_within(&d, 1e-6));
            assert_false(gc_within(&d, 0.0));
            assert_false(gc_within(&d, INFINITY));
            d = gc_diff_d(want, got, N);
            assert_false(gc_within(&d, 1e-6));
            assert_false(gc_within(&d, INFINITY));
            /* the same non-finite value on both sides is a match (the CPU reference has it) */
            d = gc_diff_d(got, got, N);
            assert_true(gc_within(&d, 0.0));
        }
    /* every element NaN on the GPU */
    for (int i = 0; i < N; i++) gf[i] = NAN;
    d = gc_diff_f(wf, gf, N);
    assert_false(gc_within(&d, 1.0));
    for (int at = 0; at < N; at++) {
        double worst = 0.0;
        for (int i = 0; i < N; i++) worst = gc_max_keep_nan(worst, i == at ? NAN : 0.1 * i);
        assert_false(worst <= 1.0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_helpers_fail_on_nan),
        cmocka_unit_test(gpu_compare_helpers_fail_on_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
