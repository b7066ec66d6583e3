/* ckpt_hdf5: HDF5 helpers shared by checkpoint.c and ckpt_parts.c (internal to trainer/run/).
 * All return < 0 (or NULL, or 0 for ckpt_stored_whole) on failure. */
#ifndef HARNESS_CKPT_HDF5_H
#define HARNESS_CKPT_HDF5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* The message into err (errlen bytes); returns -1, for `return ckpt_errorf(...)`. */
int ckpt_errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* File access with the 1.10 format: checksums on the superblock and object headers. */
hid_t ckpt_fapl_v110(void);
/* A scalar attribute. */
herr_t ckpt_attr_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                       const void *value);
/* A fixed-length UTF-8 string attribute (variable-length ones live in the unchecked global
 * heap); at most 1 MiB. */
herr_t ckpt_attr_write_string(hid_t loc, const char *name, const char *value);
herr_t ckpt_attr_read(hid_t loc, const char *name, hid_t mem_type, void *value);
/* malloc'd and NUL-terminated; NULL when absent, variable-length or of another type. */
char *ckpt_attr_read_string(hid_t loc, const char *name);
/* float32 dataset `name` of shape dims[ndim] from data, chunked, with Fletcher-32. */
herr_t ckpt_write_tensor(hid_t loc, const char *name, const float *data, int ndim,
                         const int64_t *dims);
/* 1 when all of the dataset's data is stored in this very file (see ckpt_hdf5.c). */
int ckpt_stored_whole(hid_t ds);

#endif
