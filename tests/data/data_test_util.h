/* Helpers for the data tests: scratch directories and classification files written with the
 * HDF5 C API, filled with contents a test can recompute (tu_pixel, tu_label). */
#ifndef DATA_TEST_UTIL_H
#define DATA_TEST_UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"

/* Contents of every generated file (the h5py fixture script uses the same formulas):
 * element e (row-major within a sample) of sample i, and the label of sample i. */
double tu_pixel(int64_t i, int64_t e, data_dtype dtype);
int32_t tu_label(int64_t i, int num_classes);

enum { TU_ATTR_ROOT = 0, TU_ATTR_ON_LABELS = 1, TU_ATTR_NONE = 2 };

typedef struct {
    data_dtype dtype;
    hid_t images_type;      /* 0: from dtype; else written with this file type (bad dtypes) */
    int ndims;              /* of /images, including N */
    hsize_t dims[6];
    hid_t labels_type;      /* 0: H5T_STD_I32LE */
    int labels_ndims;       /* 0: 1 */
    hsize_t n_labels;       /* 0: dims[0] */
    int num_classes;
    int num_classes_where;  /* TU_ATTR_* */
    int no_images, no_labels;
    int bad_label;          /* write bad_label_value at bad_label_index */
    int64_t bad_label_index, bad_label_value;
    int images_chunked;     /* chunked (one sample per chunk) + deflate */
} tu_spec;

/* Writes a file per spec; asserts (cmocka) on HDF5 failures. */
void tu_write_file(const char *path, const tu_spec *spec);
/* A good u8 or f32 file with n samples of sample dims (d1, d2, d3; 0 = absent). */
void tu_write_simple(const char *path, data_dtype dtype, int64_t n, hsize_t d1, hsize_t d2,
                     hsize_t d3, int num_classes);

/* dir/name into buf. */
void tu_join(char *buf, size_t len, const char *dir, const char *name);
/* Creates dir (and parents); returns dir. */
const char *tu_mkdir(const char *dir);
/* The scratch directory given as argv[1] (created), or "./data_test_tmp". */
const char *tu_workdir(int argc, char **argv, const char *sub);

/* Asserts that sample index idx of a batch holds the contents of file sample `sample`. */
void tu_check_sample(const data_batch *b, int64_t k, int64_t sample, const data_info *info);

/* Asserts that haystack contains each of the (NULL-terminated) needles, printing it if not. */
void tu_assert_contains(const char *haystack, ...);

#endif
