/* IDX -> HDF5: the real Fashion-MNIST test split (argv[2]/t10k-*.gz) converts to a file with
 * the right shape and known properties (read back by h5py in data_convert_h5py); small plain
 * IDX files written here convert too; bad IDX input gives clear errors.  Exits 77 (skipped)
 * when the Fashion-MNIST files are missing. */
#include <dirent.h>
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
static char images_gz[4096], labels_gz[4096];
static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* A plain (not gzipped) IDX file: magic, dims, then `bytes` data bytes (value i % 251). */
static void write_idx(const char *path, uint32_t magic, int ndims, const uint32_t *dims,
                      size_t bytes) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_be32(f, magic);
    for (int i = 0; i < ndims; i++) put_be32(f, dims[i]);
    for (size_t i = 0; i < bytes; i++) fputc((int)(i % 251 % (ndims == 1 ? 3 : 256)), f);
    fclose(f);
}

static void test_fashion_mnist_t10k(void **state) {
    char out[4096], err[512] = "";
    tu_join(out, sizeof out, dir, "fmnist_t10k.h5");
    if (data_convert_idx(images_gz, labels_gz, out, 10, names, err, sizeof err))
        fail_msg("%s", err);

    data_info info;
    if (data_inspect(out, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.n, 10000);
    assert_int_equal(info.sample_ndim, 2);
    assert_int_equal(info.sample_shape[0], 28);
    assert_int_equal(info.sample_shape[1], 28);
    assert_int_equal(info.dtype, DATA_U8);
    assert_int_equal(info.num_classes, 10);
    assert_int_equal(info.n_class_names, 10);
    for (int i = 0; i < 10; i++) assert_string_equal(info.class_names[i], names[i]);
    data_info_free(&info);

    data_config cfg = {.path = out, .mode = DATA_EVAL, .world = 1, .global_batch = 1000};
    data_loader *l;
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    int64_t per_class[10] = {0}, total = 0;
    int first_labels[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    data_batch b;
    int rc;
    while ((rc = data_loader_next(l, &b, err, sizeof err)) == 0) {
        const uint8_t *x = b.x;
        if (b.cursor == 0) {
            for (int i = 0; i < 10; i++) assert_int_equal(b.y[i], first_labels[i]);
            int64_t sum = 0;
            for (int e = 0; e < 784; e++) sum += x[e];
            assert_int_equal(sum, 33456); /* pixel sum of the first test image */
        }
        for (int64_t i = 0; i < b.count; i++) {
            assert_true(b.y[i] >= 0 && b.y[i] < 10);
            per_class[b.y[i]]++;
        }
        total += b.count;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(total, 10000);
    for (int c = 0; c < 10; c++) assert_int_equal(per_class[c], 1000);
    data_loader_close(l);

    /* nothing but the result is left behind (no temporary file) */
    DIR *d = opendir(dir);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) assert_null(strstr(ent->d_name, ".tmp"));
    closedir(d);
}

static void test_plain_idx(void **state) {
    char img[4096], lab[4096], out[4096], err[512] = "";
    tu_join(img, sizeof img, dir, "small-images-idx3-ubyte");
    tu_join(lab, sizeof lab, dir, "small-labels-idx1-ubyte");
    tu_join(out, sizeof out, dir, "small.h5");
    uint32_t idims[3] = {6, 3, 5}, ldims[1] = {6};
    write_idx(img, 0x00000803, 3, idims, 90);
    write_idx(lab, 0x00000801, 1, ldims, 6);
    if (data_convert_idx(img, lab, out, 3, NULL, err, sizeof err)) fail_msg("%s", err);
    data_info info;
    if (data_inspect(out, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.n, 6);
    assert_int_equal(info.sample_elems, 15);
    assert_int_equal(info.num_classes, 3);
    assert_int_equal(info.n_class_names, 0);
    data_info_free(&info);
    /* converting again replaces the file */
    if (data_convert_idx(img, lab, out, 4, NULL, err, sizeof err)) fail_msg("%s", err);
    if (data_inspect(out, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.num_classes, 4);
    data_info_free(&info);
}

static void expect_fail(const char *img, const char *lab, const char *out, int nc,
                        const char *names_or_null[], ...) {
    char err[512] = "";
    assert_int_not_equal(data_convert_idx(img, lab, out, nc, names_or_null, err, sizeof err), 0);
    va_list ap;
    va_start(ap, names_or_null);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        if (strstr(err, s) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err, s);
    va_end(ap);
    assert_int_not_equal(access(out, F_OK), 0); /* no output on failure */
}

static void test_bad_idx(void **state) {
    char out[4096], img[4096], lab[4096], tgz[4096];
    tu_join(out, sizeof out, dir, "never.h5");
    unlink(out);
    /* labels file given as the images file */
    expect_fail(labels_gz, labels_gz, out, 10, NULL, labels_gz,
                "not an IDX image file (magic 0x00000801, expected 0x00000803)", NULL);
    expect_fail(images_gz, images_gz, out, 10, NULL, images_gz, "not an IDX label file",
                NULL);
    /* header promises 10 images of 28x28, data stops after 100 bytes */
    tu_join(img, sizeof img, dir, "short-images-idx3-ubyte");
    uint32_t idims[3] = {10, 28, 28};
    write_idx(img, 0x00000803, 3, idims, 100);
    tu_join(lab, sizeof lab, dir, "ten-labels-idx1-ubyte");
    uint32_t ldims[1] = {10};
    write_idx(lab, 0x00000801, 1, ldims, 10);
    expect_fail(img, lab, out, 10, NULL, img, "truncated", "7840 bytes", NULL);
    /* header cut short */
    FILE *f = fopen(img, "wb");
    put_be32(f, 0x00000803);
    put_be32(f, 10);
    fclose(f);
    expect_fail(img, lab, out, 10, NULL, img, "truncated", NULL);
    /* a truncated gzip stream */
    tu_join(tgz, sizeof tgz, dir, "cut-images-idx3-ubyte.gz");
    FILE *in = fopen(images_gz, "rb");
    FILE *o = fopen(tgz, "wb");
    char buf[65536];
    size_t got = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, got, o);
    fclose(in);
    fclose(o);
    expect_fail(tgz, labels_gz, out, 10, NULL, tgz, NULL);
    /* counts differ: 10 images, 10000 labels */
    write_idx(img, 0x00000803, 3, idims, 7840);
    expect_fail(img, labels_gz, out, 10, NULL, "10 images but 10000 labels", NULL);
    /* labels beyond num_classes */
    expect_fail(images_gz, labels_gz, out, 5, NULL, labels_gz, "label 9 at index 0", NULL);
    /* missing input, bad num_classes, unwritable output */
    tu_join(img, sizeof img, dir, "no-such-file");
    expect_fail(img, labels_gz, out, 10, NULL, img, "cannot open", NULL);
    expect_fail(images_gz, labels_gz, out, 0, NULL, "num_classes", NULL);
    char bad_out[4096];
    tu_join(bad_out, sizeof bad_out, dir, "no/such/dir/out.h5");
    expect_fail(images_gz, labels_gz, bad_out, 10, NULL, bad_out, NULL);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "convert");
    const char *src = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
    tu_join(images_gz, sizeof images_gz, src, "t10k-images-idx3-ubyte.gz");
    tu_join(labels_gz, sizeof labels_gz, src, "t10k-labels-idx1-ubyte.gz");
    if (access(images_gz, R_OK) != 0 || access(labels_gz, R_OK) != 0) {
        printf("skipping: Fashion-MNIST t10k files not found in %s\n", src);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist_t10k),
        cmocka_unit_test(test_plain_idx),
        cmocka_unit_test(test_bad_idx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
