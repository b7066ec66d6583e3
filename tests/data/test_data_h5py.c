/* Files written by h5py in the usual ways (make_h5py_files.py, a ctest fixture) load with the
 * right info and contents; the bad ones are refused with clear messages.  argv[1] is the
 * directory the fixture wrote; exits 77 (skipped) when it is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "data_test_util.h"

static const char *dir;

static void path_of(char *buf, size_t len, const char *name) {
    tu_join(buf, len, dir, name);
}

/* Reads the file once through a 2-rank eval loader pair and checks every sample. */
static void check_contents(const char *path, int64_t cache_bytes) {
    data_loader *l[2];
    char err[512];
    for (int r = 0; r < 2; r++) {
        data_config cfg = {.path = path, .mode = DATA_EVAL, .rank = r, .world = 2,
                           .global_batch = 7, .cache_bytes = cache_bytes};
        if (data_loader_open(&cfg, &l[r], err, sizeof err)) fail_msg("%s", err);
    }
    const data_info *info = data_loader_info(l[0]);
    int64_t seen = 0;
    for (;;) {
        data_batch b[2];
        int rc0 = data_loader_next(l[0], &b[0], err, sizeof err);
        int rc1 = data_loader_next(l[1], &b[1], err, sizeof err);
        assert_int_equal(rc0, rc1);
        if (rc0 == 1) break;
        assert_int_equal(rc0, 0);
        for (int r = 0; r < 2; r++) {
            int64_t begin, end;
            data_rank_slice(b[r].global_count, r, 2, &begin, &end);
            for (int64_t i = 0; i < b[r].count; i++)
                tu_check_sample(&b[r], i, b[r].cursor + begin + i, info);
            seen += b[r].count;
        }
    }
    assert_int_equal(seen, info->n);
    data_loader_close(l[0]);
    data_loader_close(l[1]);
}

static void test_u8_hw_obvious_way(void **state) {
    char p[4096];
    path_of(p, sizeof p, "u8_hw.h5");
    data_info info;
    char err[512] = "";
    if (data_inspect(p, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.n, 57);
    assert_int_equal(info.sample_ndim, 2);
    assert_int_equal(info.sample_shape[0], 28);
    assert_int_equal(info.sample_shape[1], 28);
    assert_int_equal(info.dtype, DATA_U8);
    assert_int_equal(info.num_classes, 10);
    assert_int_equal(info.n_class_names, 10);
    assert_string_equal(info.class_names[0], "T-shirt/top");
    assert_string_equal(info.class_names[9], "Ankle böot");
    assert_int_equal(info.has_mean_std, 0);
    data_info_free(&info);
    check_contents(p, 0);
    check_contents(p, 1 << 20);
}

static void test_f32_hwc_attrs(void **state) {
    char p[4096];
    path_of(p, sizeof p, "f32_hwc.h5");
    data_info info;
    char err[512] = "";
    if (data_inspect(p, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.n, 33);
    assert_int_equal(info.sample_ndim, 3);
    assert_int_equal(info.sample_elems, 8 * 8 * 3);
    assert_int_equal(info.dtype, DATA_F32);
    assert_int_equal(info.num_classes, 5);
    assert_int_equal(info.n_class_names, 5);
    assert_string_equal(info.class_names[3], "three");
    assert_int_equal(info.has_mean_std, 1);
    assert_true(info.mean == 0.5f && info.std == 0.25f);
    data_info_free(&info);
    check_contents(p, 0);
}

static void test_gzip_chunked_and_flat(void **state) {
    char p[4096];
    data_info info;
    char err[512] = "";
    path_of(p, sizeof p, "u8_flat_gzip.h5");
    if (data_inspect(p, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.n, 40);
    assert_int_equal(info.sample_elems, 20);
    assert_int_equal(info.num_classes, 7);
    assert_string_equal(info.class_names[6], "c6");
    data_info_free(&info);
    check_contents(p, 0);

    path_of(p, sizeof p, "f32_flat.h5");
    if (data_inspect(p, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.dtype, DATA_F32);
    assert_int_equal(info.num_classes, 3);
    data_info_free(&info);
    check_contents(p, 1 << 20);
}

static void expect_bad(const char *name, ...) {
    char p[4096], err[512] = "";
    path_of(p, sizeof p, name);
    data_info info;
    assert_int_not_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_non_null(strstr(err, p));
    va_list ap;
    va_start(ap, name);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        if (strstr(err, s) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err, s);
    va_end(ap);
}

static void test_bad_files(void **state) {
    expect_bad("bad_float64.h5", "/images", "float64 [10,4,4]", NULL);
    expect_bad("bad_labels_2d.h5", "/labels", "[10,1]", NULL);
    expect_bad("bad_num_classes_float.h5", "num_classes", "float64", NULL);
    expect_bad("bad_label_value.h5", "/labels", "index 13", "label 10", NULL);
    expect_bad("bad_no_num_classes.h5", "num_classes", "missing", NULL);
}

/* Token files from h5py: info, every eval window's ids (cached and read by windows). */
static void check_token_file(const char *name, int64_t n, int bits, int64_t vocab, int64_t eot,
                             const char *tokenizer) {
    char p[4096], err[512] = "";
    path_of(p, sizeof p, name);
    data_info info;
    if (data_inspect(p, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.kind, DATA_TOKENS);
    assert_int_equal(info.n_tokens, n);
    assert_int_equal(info.token_bits, bits);
    assert_int_equal(info.vocab_size, vocab);
    assert_int_equal(info.eot_token, eot);
    assert_string_equal(info.tokenizer, tokenizer);
    data_info_free(&info);
    for (int cache = 0; cache < 2; cache++) {
        const int64_t ctx = 10;
        data_config cfg = {.path = p, .mode = DATA_EVAL, .world = 1, .global_batch = 6,
                           .cache_bytes = cache ? 1 << 20 : 0, .context = ctx};
        data_loader *l;
        if (data_loader_open(&cfg, &l, err, sizeof err)) fail_msg("%s", err);
        int64_t windows = 0;
        data_batch b;
        while (data_loader_next(l, &b, err, sizeof err) == 0)
            for (int64_t k = 0; k < b.count; k++, windows++)
                for (int64_t j = 0; j < ctx; j++) {
                    int64_t at = (b.cursor + k) * ctx + j;
                    assert_int_equal(((const int32_t *)b.x)[k * ctx + j], (at * 37 + 11) % vocab);
                    assert_int_equal(b.y[k * ctx + j], ((at + 1) * 37 + 11) % vocab);
                }
        assert_int_equal(windows, (n - 1) / ctx);
        data_loader_close(l);
    }
}

static void test_token_files(void **state) {
    check_token_file("tokens_u16.h5", 777, 16, 256, -1, "bytes");
    check_token_file("tokens_i32.h5", 500, 32, 70001, 70000, "");
    expect_bad("bad_tokens_float.h5", "/tokens", "float32", NULL);
    char p[4096], err[512] = "";
    path_of(p, sizeof p, "bad_tokens_value.h5");
    data_config cfg = {.path = p, .mode = DATA_EVAL, .world = 1, .global_batch = 4,
                       .cache_bytes = 1 << 20, .context = 8};
    data_loader *l;
    int rc = data_loader_open(&cfg, &l, err, sizeof err);
    if (rc == 0) {
        data_batch b;
        while ((rc = data_loader_next(l, &b, err, sizeof err)) == 0) {}
        data_loader_close(l);
    }
    assert_int_equal(rc, -1);
    tu_assert_contains(err, p, "/tokens", "position 211", "300", NULL);
}

int main(int argc, char **argv) {
    dir = argc > 1 ? argv[1] : "h5py_files";
    char probe[4096];
    tu_join(probe, sizeof probe, dir, "u8_hw.h5");
    if (access(probe, R_OK) != 0) {
        printf("skipping: %s not found (h5py fixture did not run)\n", probe);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u8_hw_obvious_way),
        cmocka_unit_test(test_f32_hwc_attrs),
        cmocka_unit_test(test_gzip_chunked_and_flat),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_token_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
