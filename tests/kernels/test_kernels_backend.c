/* test_kernels_backend.c: what the dispatcher (kernels.c) answers on the CPU backend for the
 * features its table leaves out (replayed CUDA graphs - the CPU only emulates their contract -,
 * device memory and name, a native stream, staged uploads, launch counters), the trace marks' slot rules, backend selection errors, and the
 * shared shape arithmetic (kern_shapes.h).  These are the answers kernels.h documents for the
 * CPU; the trainer relies on them (no graph recording, no MFU device, ...). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kernels.h"

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

static void cpu_has_no_cuda_features(void **state) {
    char err[128] = "";
    assert_int_equal(kern_get_backend(K), KERN_CPU);
    /* no replaying graphs on the CPU (the trainer does not record there) - but the entries
     * emulate the graph's contract for tests (issue 22; test_kernels_step.c checks the values):
     * end without begin fails, a recording is launched once, a launch without one is reported */
    assert_int_equal(kern_graph_available(K), 0);
    assert_int_equal(kern_graph_end(K, err, sizeof err), -1);
    assert_non_null(strstr(err, "without kern_graph_begin"));
    kern_step_values v = {.lr = 1.0f, .t_plus = 2, .step = 3, .step_id = 4};
    kern_graph_set_values(K, &v);
    assert_int_equal(kern_graph_begin(K, err, sizeof err), 0);
    assert_int_equal(kern_graph_begin(K, err, sizeof err), -1);   /* already recording */
    assert_int_equal(kern_graph_end(K, err, sizeof err), 0);
    kern_graph_launch(K);
    assert_int_equal(kern_check(K, err, sizeof err), 0);
    kern_graph_launch(K);   /* the CPU cannot replay: reported, not ignored */
    assert_int_equal(kern_check(K, err, sizeof err), -1);
    assert_non_null(strstr(err, "kern_graph_launch"));

    size_t free_bytes = 123, total_bytes = 456;
    assert_int_equal(kern_memory_info(K, &free_bytes, &total_bytes), -1);
    assert_int_equal(free_bytes, 0);
    assert_int_equal(total_bytes, 0);
    char name[32] = "stale";
    assert_int_equal(kern_device_name(K, name, sizeof name), -1);
    assert_string_equal(name, "");
    assert_null(kern_native_stream(K));

    kern_counters c;
    memset(&c, 0x5a, sizeof c);
    kern_get_counters(K, &c);
    assert_int_equal(c.launches, 0);
    assert_int_equal(c.host_syncs, 0);
    assert_int_equal(c.fused_gemms, 0);
    assert_int_equal(c.epilogue_fallbacks, 0);

    assert_int_equal(kern_upload_reserve(K, (size_t)1 << 20, err, sizeof err), 0);
    kern_upload_settle(K);
}

/* Slots outside [0, n) are ignored, reads are clipped to n, the CPU stamps the host's
 * monotonic clock in call order. */
static void marks_follow_the_slot_rules(void **state) {
    assert_null(kern_marks_create(K, 0));
    kern_marks *m = kern_marks_create(K, 3);
    assert_non_null(m);
    for (int i = 0; i < 3; i++) kern_mark(K, m, i);
    kern_mark(K, m, 3);    /* out of range: ignored */
    kern_mark(K, m, -1);
    kern_mark(K, NULL, 0);
    double t[5] = {-1, -1, -1, -7, -7};
    assert_int_equal(kern_marks_read(K, m, 5, t), 0);
    assert_true(t[0] > 0.0);
    assert_true(t[0] <= t[1] && t[1] <= t[2]);
    assert_true(t[3] == -7 && t[4] == -7);   /* only 3 slots written */
    assert_int_equal(kern_marks_read(K, m, 0, t), 0);
    assert_int_equal(kern_marks_read(K, NULL, 3, t), 0);
    kern_marks_free(K, m);
    kern_marks_free(K, NULL);
}

static void bad_backends_are_refused(void **state) {
    kern_ctx *k = (kern_ctx *)&k;   /* must come back NULL */
    char err[128] = "";
    kern_options opt = {.backend = (kern_backend)7, .threads = 1};
    assert_int_equal(kern_create(&opt, &k, err, sizeof err), -1);
    assert_null(k);
    assert_string_equal(err, "unknown kernel backend 7");

    k = (kern_ctx *)&k;
    err[0] = '\0';
    opt.backend = KERN_CPU;
    opt.threads = 0;
    assert_int_equal(kern_create(&opt, &k, err, sizeof err), -1);
    assert_null(k);
    assert_non_null(strstr(err, "threads"));

    /* without a usable device (this build has no CUDA backend, or the node no GPU) */
    if (kern_cuda_device_count() == 0) {
        k = (kern_ctx *)&k;
        err[0] = '\0';
        opt = (kern_options){.backend = KERN_CUDA, .threads = 1};
        assert_int_equal(kern_create(&opt, &k, err, sizeof err), -1);
        assert_null(k);
        assert_true(err[0] != '\0');
    }
}

/* kern_conv_out_h/_w are kern_conv_out_size per axis; pooling shapes leave dilation 0. */
static void shapes_follow_one_formula(void **state) {
    kern_conv_shape s = {.B = 2, .C = 3, .H = 9, .W = 7, .K = 4, .R = 3, .S = 2,
                         .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0,
                         .dil_h = 2, .dil_w = 0, .groups = 1};
    assert_int_equal(kern_conv_out_size(9, 1, 2, 3, 2), 4);   /* (9 + 2 - 4 - 1) / 2 + 1 */
    assert_int_equal(kern_conv_out_h(&s), kern_conv_out_size(9, 1, 2, 3, 2));
    assert_int_equal(kern_conv_out_size(7, 0, 0, 2, 1), 6);   /* dilation 0 counts as 1 */
    assert_int_equal(kern_conv_out_w(&s), 6);
    assert_int_equal(kern_conv_out_size(2, 0, 1, 3, 1), 0);   /* the window does not fit */
    assert_int_equal(kern_conv_out_size(5, 0, 1, 3, 0), 0);   /* no stride */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_has_no_cuda_features),
        cmocka_unit_test(marks_follow_the_slot_rules),
        cmocka_unit_test(bad_backends_are_refused),
        cmocka_unit_test(shapes_follow_one_formula),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
