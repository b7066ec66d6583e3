#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "data_test_util.h"

double tu_pixel(int64_t i, int64_t e, data_dtype dtype) {
    if (dtype == DATA_U8) return (double)((i * 31 + e * 7) % 256);
    return (double)(i * 1024 + e) / 1024.0; /* exact in float32 for i < 16384 */
}

int32_t tu_label(int64_t i, int num_classes) {
    return (int32_t)((i * 7 + 3) % num_classes);
}

void tu_join(char *buf, size_t len, const char *dir, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
}

const char *tu_mkdir(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(tmp, 0777);
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) fail_msg("cannot create %s", dir);
    return dir;
}

const char *tu_workdir(int argc, char **argv, const char *sub) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", argc > 1 ? argv[1] : "data_test_tmp", sub);
    return tu_mkdir(dir);
}

static hid_t file_type_of(data_dtype dtype) {
    return dtype == DATA_U8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
}

static void write_int_attr(hid_t obj, const char *name, int value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(attr >= 0);
    assert_true(H5Awrite(attr, H5T_NATIVE_INT, &value) >= 0);
    H5Aclose(attr);
    H5Sclose(space);
}

void tu_write_file(const char *path, const tu_spec *spec) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    int64_t n = (int64_t)spec->dims[0];
    if (!spec->no_images) {
        int64_t elems = 1;
        for (int d = 1; d < spec->ndims; d++) elems *= (int64_t)spec->dims[d];
        hid_t type = spec->images_type ? spec->images_type : file_type_of(spec->dtype);
        hid_t space = H5Screate_simple(spec->ndims, spec->dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (spec->images_chunked) {
            hsize_t chunk[6];
            for (int d = 0; d < spec->ndims; d++) chunk[d] = d == 0 ? 1 : spec->dims[d];
            H5Pset_chunk(dcpl, spec->ndims, chunk);
            H5Pset_deflate(dcpl, 6);
        }
        hid_t dset = H5Dcreate2(file, "images", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(dset >= 0);
        if (n * elems > 0 && n * elems < ((int64_t)1 << 28)) {
            double *buf = malloc((size_t)(n * elems) * sizeof *buf);
            for (int64_t i = 0; i < n; i++)
                for (int64_t e = 0; e < elems; e++)
                    buf[i * elems + e] = tu_pixel(i, e, spec->dtype);
            assert_true(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >=
                        0);
            free(buf);
        }
        H5Dclose(dset);
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    if (!spec->no_labels) {
        hsize_t nl = spec->n_labels ? spec->n_labels : spec->dims[0];
        hsize_t ldims[2] = {nl, 1};
        int lnd = spec->labels_ndims ? spec->labels_ndims : 1;
        int nc = spec->num_classes > 0 ? spec->num_classes : 10;
        int64_t *buf = malloc((size_t)nl * sizeof *buf);
        for (hsize_t i = 0; i < nl; i++) buf[i] = tu_label((int64_t)i, nc);
        if (spec->bad_label) buf[spec->bad_label_index] = spec->bad_label_value;
        hid_t type = spec->labels_type ? spec->labels_type : H5T_STD_I32LE;
        hid_t space = H5Screate_simple(lnd, ldims, NULL);
        hid_t dset = H5Dcreate2(file, "labels", type, space, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
        assert_true(dset >= 0);
        assert_true(H5Dwrite(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        if (spec->num_classes_where == TU_ATTR_ON_LABELS)
            write_int_attr(dset, "num_classes", spec->num_classes);
        free(buf);
        H5Dclose(dset);
        H5Sclose(space);
    }
    if (spec->num_classes_where == TU_ATTR_ROOT)
        write_int_attr(file, "num_classes", spec->num_classes);
    assert_true(H5Fclose(file) >= 0);
}

void tu_write_simple(const char *path, data_dtype dtype, int64_t n, hsize_t d1, hsize_t d2,
                     hsize_t d3, int num_classes) {
    tu_spec s = {.dtype = dtype, .num_classes = num_classes};
    s.dims[0] = (hsize_t)n;
    s.ndims = 1;
    hsize_t extra[3] = {d1, d2, d3};
    for (int i = 0; i < 3 && extra[i]; i++) s.dims[s.ndims++] = extra[i];
    tu_write_file(path, &s);
}

void tu_check_sample(const data_batch *b, int64_t k, int64_t sample, const data_info *info) {
    int64_t elems = info->sample_elems;
    for (int64_t e = 0; e < elems; e++) {
        double want = tu_pixel(sample, e, info->dtype);
        double got = info->dtype == DATA_U8
                         ? (double)((const uint8_t *)b->x)[k * elems + e]
                         : (double)((const float *)b->x)[k * elems + e];
        if (got != want)
            fail_msg("batch (epoch %lld cursor %lld) item %lld: element %lld is %g, sample %lld "
                     "has %g", (long long)b->epoch, (long long)b->cursor, (long long)k,
                     (long long)e, got, (long long)sample, want);
    }
    assert_int_equal(b->y[k], tu_label(sample, info->num_classes));
}

void tu_assert_contains(const char *haystack, ...) {
    va_list ap;
    va_start(ap, haystack);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        if (strstr(haystack, s) == NULL) {
            va_end(ap);
            fail_msg("message \"%s\" does not contain \"%s\"", haystack, s);
        }
    va_end(ap);
}
