/* Schema checks: good files written with the HDF5 C API load with the right info; every kind
 * of bad file fails with a message naming the file and the dataset or attribute. */
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

/* ---- good files ---- */

static void test_u8_flat(void **state) {
    char p[4096];
    path_of(p, sizeof p, "u8_flat.h5");
    tu_write_simple(p, DATA_U8, 50, 17, 0, 0, 10);
    data_info info;
    char err[512] = "";
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_int_equal(info.n, 50);
    assert_int_equal(info.sample_ndim, 1);
    assert_int_equal(info.sample_shape[0], 17);
    assert_int_equal(info.sample_elems, 17);
    assert_int_equal(info.dtype, DATA_U8);
    assert_int_equal(info.num_classes, 10);
    assert_int_equal(info.has_mean_std, 0);
    assert_int_equal(info.n_class_names, 0);
    data_info_free(&info);
}

static void test_u8_hw(void **state) {
    char p[4096];
    path_of(p, sizeof p, "u8_hw.h5");
    tu_write_simple(p, DATA_U8, 20, 5, 7, 0, 3);
    data_info info;
    char err[512] = "";
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_int_equal(info.sample_ndim, 2);
    assert_int_equal(info.sample_shape[0], 5);
    assert_int_equal(info.sample_shape[1], 7);
    assert_int_equal(info.sample_elems, 35);
    assert_int_equal(info.num_classes, 3);
    data_info_free(&info);
}

static void test_f32_hwc(void **state) {
    char p[4096];
    path_of(p, sizeof p, "f32_hwc.h5");
    tu_write_simple(p, DATA_F32, 9, 4, 3, 2, 7);
    data_info info;
    char err[512] = "";
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_int_equal(info.dtype, DATA_F32);
    assert_int_equal(info.sample_ndim, 3);
    assert_int_equal(info.sample_elems, 24);
    data_info_free(&info);
}

/* num_classes on /labels, labels stored as uint8 and as big-endian int64. */
static void test_label_types_and_attr_on_labels(void **state) {
    hid_t types[] = {H5T_STD_U8LE, H5T_STD_I64BE, H5T_STD_U16LE, H5T_STD_I8LE};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        char p[4096];
        path_of(p, sizeof p, "label_types.h5");
        tu_spec s = {.dtype = DATA_U8, .ndims = 2, .dims = {30, 4}, .labels_type = types[t],
                     .num_classes = 6, .num_classes_where = TU_ATTR_ON_LABELS};
        tu_write_file(p, &s);
        data_info info;
        char err[512] = "";
        assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
        assert_int_equal(info.num_classes, 6);
        data_info_free(&info);
    }
}

/* class_names (variable-length UTF-8 and fixed-length), mean/std, 1-element num_classes. */
static void test_optional_attributes(void **state) {
    char p[4096];
    path_of(p, sizeof p, "attrs.h5");
    tu_spec s = {.dtype = DATA_U8, .ndims = 2, .dims = {12, 3}, .num_classes = 3,
                 .num_classes_where = TU_ATTR_NONE};
    tu_write_file(p, &s);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    /* num_classes as a 1-element uint16 array on the root */
    hsize_t one = 1, three = 3;
    hid_t sp = H5Screate_simple(1, &one, NULL);
    hid_t a = H5Acreate2(f, "num_classes", H5T_STD_U16LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    unsigned short nc = 3;
    H5Awrite(a, H5T_NATIVE_USHORT, &nc);
    H5Aclose(a);
    H5Sclose(sp);
    /* variable-length UTF-8 names */
    const char *names[3] = {"cat", "dög", "bird"};
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    sp = H5Screate_simple(1, &three, NULL);
    a = H5Acreate2(f, "class_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, names);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    /* mean (float64) and std (float32) scalars */
    double mean = 0.25;
    float sd = 2.0f;
    sp = H5Screate(H5S_SCALAR);
    a = H5Acreate2(f, "mean", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &mean);
    H5Aclose(a);
    a = H5Acreate2(f, "std", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_FLOAT, &sd);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);

    data_info info;
    char err[512] = "";
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_int_equal(info.num_classes, 3);
    assert_int_equal(info.n_class_names, 3);
    assert_string_equal(info.class_names[0], "cat");
    assert_string_equal(info.class_names[1], "dög");
    assert_string_equal(info.class_names[2], "bird");
    assert_int_equal(info.has_mean_std, 1);
    assert_true(info.mean == 0.25f && info.std == 2.0f);
    data_info_free(&info);

    /* fixed-length, null-padded names replace the variable-length ones */
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "class_names");
    st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 5);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    sp = H5Screate_simple(1, &three, NULL);
    a = H5Acreate2(f, "class_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "ab\0\0\0horse" "c\0\0\0\0");
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    H5Fclose(f);
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0);
    assert_int_equal(info.n_class_names, 3);
    assert_string_equal(info.class_names[0], "ab");
    assert_string_equal(info.class_names[1], "horse");
    assert_string_equal(info.class_names[2], "c");
    data_info_free(&info);
}

/* ---- bad files ---- */

/* Inspect and loader open both fail, with the path and every needle in the message. */
static void expect_bad(const char *path, ...) {
    char err[1024] = "";
    data_info info;
    memset(&info, 0x5a, sizeof info);
    assert_int_not_equal(data_inspect(path, &info, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    va_list ap;
    va_start(ap, path);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        if (strstr(err, s) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err, s);
    va_end(ap);

    data_config cfg = {.path = path, .mode = DATA_TRAIN, .world = 1, .global_batch = 2};
    data_loader *l = (data_loader *)0x1;
    char err2[1024] = "";
    assert_int_not_equal(data_loader_open(&cfg, &l, err2, sizeof err2), 0);
    assert_null(l);
    assert_string_equal(err, err2);
}

static void write_spec(const char *name, const tu_spec *s, char *p, size_t len) {
    path_of(p, len, name);
    tu_write_file(p, s);
}

static void test_missing_file(void **state) {
    char p[4096];
    path_of(p, sizeof p, "does_not_exist.h5");
    expect_bad(p, "No such file", NULL);
}

static void test_directory(void **state) {
    expect_bad(dir, "directory", NULL);
}

static void test_not_hdf5(void **state) {
    char p[4096];
    path_of(p, sizeof p, "text.h5");
    FILE *f = fopen(p, "w");
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    expect_bad(p, "not an HDF5 file", NULL);
}

static void test_truncated(void **state) {
    char p[4096];
    path_of(p, sizeof p, "truncated.h5");
    tu_write_simple(p, DATA_U8, 200, 8, 8, 0, 10);
    FILE *f = fopen(p, "rb+");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(p, size / 2), 0);
    expect_bad(p, "truncated file: eof", NULL);
    /* cut inside the superblock */
    assert_int_equal(truncate(p, 20), 0);
    expect_bad(p, NULL);
}

static void test_missing_datasets(void **state) {
    char p[4096];
    tu_spec s = {.dtype = DATA_U8, .ndims = 2, .dims = {10, 4}, .num_classes = 10,
                 .no_labels = 1};
    write_spec("no_labels.h5", &s, p, sizeof p);
    expect_bad(p, "/labels", "not found", NULL);
    tu_spec s2 = {.dtype = DATA_U8, .ndims = 2, .dims = {10, 4}, .num_classes = 10,
                  .no_images = 1};
    write_spec("no_images.h5", &s2, p, sizeof p);
    expect_bad(p, "/images", "not found", NULL);
    /* /images is a group, not a dataset */
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(f, "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    expect_bad(p, "/images", "cannot open as a dataset", NULL);
}

static void test_images_rank_and_dtype(void **state) {
    char p[4096];
    tu_spec s1 = {.dtype = DATA_U8, .ndims = 1, .dims = {10}, .num_classes = 10};
    write_spec("rank1.h5", &s1, p, sizeof p);
    expect_bad(p, "/images", "2 to 4 dims", "uint8 [10]", NULL);
    tu_spec s5 = {.dtype = DATA_U8, .ndims = 5, .dims = {10, 2, 2, 2, 2}, .num_classes = 10};
    write_spec("rank5.h5", &s5, p, sizeof p);
    expect_bad(p, "/images", "[10,2,2,2,2]", NULL);
    tu_spec s16 = {.images_type = H5T_STD_I16LE, .ndims = 2, .dims = {10, 3},
                   .num_classes = 10};
    write_spec("int16.h5", &s16, p, sizeof p);
    expect_bad(p, "/images", "expected uint8 or float32", "found int16 [10,3]", NULL);
    tu_spec s64 = {.images_type = H5T_IEEE_F64LE, .ndims = 3, .dims = {10, 3, 3},
                   .num_classes = 10};
    write_spec("float64.h5", &s64, p, sizeof p);
    expect_bad(p, "/images", "float64", NULL);
    tu_spec si8 = {.images_type = H5T_STD_I8LE, .ndims = 2, .dims = {10, 3},
                   .num_classes = 10};
    write_spec("int8.h5", &si8, p, sizeof p);
    expect_bad(p, "/images", "int8", NULL);
}

static void test_zero_and_huge_dims(void **state) {
    char p[4096];
    tu_spec s = {.dtype = DATA_U8, .ndims = 3, .dims = {10, 0, 4}, .num_classes = 10};
    write_spec("zero_dim.h5", &s, p, sizeof p);
    expect_bad(p, "/images", "non-zero", NULL);

    /* Chunked and never written, so the file is small while the shape overflows. */
    path_of(p, sizeof p, "huge.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[3] = {(hsize_t)1 << 40, (hsize_t)1 << 20, (hsize_t)1 << 20}, chunk[3] = {1, 1, 1};
    hid_t sp = H5Screate_simple(3, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, chunk);
    H5Dclose(H5Dcreate2(f, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    expect_bad(p, "/images", "overflow", NULL);
}

static void test_labels_problems(void **state) {
    char p[4096];
    tu_spec big = {.dtype = DATA_U8, .ndims = 2, .dims = {40, 3}, .num_classes = 10,
                   .bad_label = 1, .bad_label_index = 37, .bad_label_value = 10};
    write_spec("label_too_big.h5", &big, p, sizeof p);
    expect_bad(p, "/labels", "index 37", "label 10", "num_classes = 10", NULL);
    tu_spec neg = {.dtype = DATA_U8, .ndims = 2, .dims = {40, 3}, .num_classes = 10,
                   .bad_label = 1, .bad_label_index = 5, .bad_label_value = -1};
    write_spec("label_negative.h5", &neg, p, sizeof p);
    expect_bad(p, "/labels", "index 5", "label -1", NULL);
    tu_spec mismatch = {.dtype = DATA_U8, .ndims = 2, .dims = {40, 3}, .num_classes = 10,
                        .n_labels = 39};
    write_spec("n_mismatch.h5", &mismatch, p, sizeof p);
    expect_bad(p, "/labels", "[40]", "[39]", NULL);
    tu_spec twod = {.dtype = DATA_U8, .ndims = 2, .dims = {40, 3}, .num_classes = 10,
                    .labels_ndims = 2};
    write_spec("labels_2d.h5", &twod, p, sizeof p);
    expect_bad(p, "/labels", "integer [N]", "[40,1]", NULL);
    tu_spec flt = {.dtype = DATA_U8, .ndims = 2, .dims = {40, 3}, .num_classes = 10,
                   .labels_type = H5T_IEEE_F32LE};
    write_spec("labels_float.h5", &flt, p, sizeof p);
    expect_bad(p, "/labels", "integer", "float32", NULL);
}

static void write_root_attr(const char *p, const char *name, hid_t type, const void *value) {
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, type, value) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
}

static void test_num_classes_problems(void **state) {
    char p[4096];
    tu_spec none = {.dtype = DATA_U8, .ndims = 2, .dims = {20, 3}, .num_classes = 10,
                    .num_classes_where = TU_ATTR_NONE};
    write_spec("nc_missing.h5", &none, p, sizeof p);
    expect_bad(p, "num_classes", "missing", NULL);

    int zero = 0, huge = DATA_MAX_CLASSES + 1;
    write_root_attr(p, "num_classes", H5T_NATIVE_INT, &zero);
    expect_bad(p, "num_classes", "found 0", NULL);
    write_root_attr(p, "num_classes", H5T_NATIVE_INT, &huge);
    expect_bad(p, "num_classes", "65537", NULL);
    float ten = 10.0f;
    write_root_attr(p, "num_classes", H5T_NATIVE_FLOAT, &ten);
    expect_bad(p, "num_classes", "integer", "float32", NULL);
    /* labels are 0..9 but the file says 5 classes */
    int five = 5;
    write_root_attr(p, "num_classes", H5T_NATIVE_INT, &five);
    expect_bad(p, "/labels", "outside [0, num_classes = 5)", NULL);

    /* root and /labels disagree */
    tu_spec onl = {.dtype = DATA_U8, .ndims = 2, .dims = {20, 3}, .num_classes = 10,
                   .num_classes_where = TU_ATTR_ON_LABELS};
    write_spec("nc_disagree.h5", &onl, p, sizeof p);
    int eleven = 11;
    write_root_attr(p, "num_classes", H5T_NATIVE_INT, &eleven);
    expect_bad(p, "num_classes", "/labels says 10", NULL);
}

static void test_optional_attribute_problems(void **state) {
    char p[4096];
    tu_spec s = {.dtype = DATA_U8, .ndims = 2, .dims = {20, 3}, .num_classes = 3};
    write_spec("bad_attrs.h5", &s, p, sizeof p);
    float mean = 0.5f;
    write_root_attr(p, "mean", H5T_NATIVE_FLOAT, &mean);
    expect_bad(p, "std", "missing", NULL);
    float sd = 0.0f;
    write_root_attr(p, "std", H5T_NATIVE_FLOAT, &sd);
    expect_bad(p, "std > 0", NULL);

    write_spec("bad_names.h5", &s, p, sizeof p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *names[2] = {"a", "b"};
    hsize_t two = 2;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    hid_t sp = H5Screate_simple(1, &two, NULL);
    hid_t a = H5Acreate2(f, "class_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, names);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    H5Fclose(f);
    expect_bad(p, "class_names", "expected num_classes = 3 strings, found 2", NULL);
}

/* Errors must not print anything: HDF5's automatic error printing stays off inside data/, and
 * is restored for the caller afterwards. */
static void test_error_printing_restored(void **state) {
    H5E_auto2_t func = NULL;
    void *client = NULL;
    H5Eget_auto2(H5E_DEFAULT, &func, &client);
    char p[4096], err[512];
    path_of(p, sizeof p, "text.h5");
    data_info info;
    assert_int_not_equal(data_inspect(p, &info, err, sizeof err), 0);
    H5E_auto2_t after = NULL;
    void *client_after = NULL;
    H5Eget_auto2(H5E_DEFAULT, &after, &client_after);
    assert_true(after == func);
    assert_ptr_equal(client_after, client);
    /* err may be NULL */
    assert_int_not_equal(data_inspect(p, &info, NULL, 0), 0);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "schema");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u8_flat),
        cmocka_unit_test(test_u8_hw),
        cmocka_unit_test(test_f32_hwc),
        cmocka_unit_test(test_label_types_and_attr_on_labels),
        cmocka_unit_test(test_optional_attributes),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_not_hdf5),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_missing_datasets),
        cmocka_unit_test(test_images_rank_and_dtype),
        cmocka_unit_test(test_zero_and_huge_dims),
        cmocka_unit_test(test_labels_problems),
        cmocka_unit_test(test_num_classes_problems),
        cmocka_unit_test(test_optional_attribute_problems),
        cmocka_unit_test(test_error_printing_restored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
