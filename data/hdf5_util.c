/* Small helpers every file of data/ uses: error messages, the module-wide HDF5 lock,
 * turning HDF5's error stack and types into words for those messages, and what the
 * converters write with (scalar attributes, fsync before the rename). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data_internal.h"

/* HDF5 is built thread-safe (one global lock inside the library), but this module serialises
 * its own calls as well so that a batch read of one loader is not interleaved call by call
 * with another loader's, and so that a non-thread-safe HDF5 build would still be correct. */
static pthread_mutex_t data_h5_lock = PTHREAD_MUTEX_INITIALIZER;

int data_errorf(char *err, size_t errlen, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void data_hdf5_lock(void) { pthread_mutex_lock(&data_h5_lock); }
void data_hdf5_unlock(void) { pthread_mutex_unlock(&data_h5_lock); }

void data_h5_begin(data_h5_scope *s) {
    pthread_mutex_lock(&data_h5_lock);
    s->func = NULL;
    s->client_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &s->func, &s->client_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void data_h5_end(data_h5_scope *s) {
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, s->func, s->client_data);
    pthread_mutex_unlock(&data_h5_lock);
}

typedef struct {
    char *buf;
    size_t len;
} detail_ctx;

/* Walking upward visits the most specific error first: that is the one that says what
 * actually went wrong ("truncated file: eof = ...", "inflate() failed"). */
static herr_t detail_walk(unsigned n, const H5E_error2_t *e, void *client) {
    detail_ctx *ctx = client;
    if (n == 0 && e->desc != NULL) snprintf(ctx->buf, ctx->len, "%s", e->desc);
    return 0;
}

void data_h5_error_detail(char *buf, size_t len) {
    if (buf == NULL || len == 0) return;
    buf[0] = '\0';
    detail_ctx ctx = {buf, len};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_walk, &ctx);
}

void data_h5_type_name(hid_t type, char *buf, size_t len) {
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    switch (cls) {
    case H5T_INTEGER:
        snprintf(buf, len, "%s%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
        break;
    case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    case H5T_ENUM: snprintf(buf, len, "enum (bool?)"); break;
    case H5T_ARRAY: snprintf(buf, len, "array type"); break;
    case H5T_VLEN: snprintf(buf, len, "variable-length sequence"); break;
    case H5T_OPAQUE: snprintf(buf, len, "opaque"); break;
    case H5T_BITFIELD: snprintf(buf, len, "bitfield"); break;
    case H5T_REFERENCE: snprintf(buf, len, "reference"); break;
    case H5T_TIME: snprintf(buf, len, "time"); break;
    default: snprintf(buf, len, "unknown type"); break;
    }
}

void data_h5_space_text(hid_t space, char *buf, size_t len) {
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    if (cls == H5S_SCALAR) {
        snprintf(buf, len, "scalar");
        return;
    }
    if (cls == H5S_NULL) {
        snprintf(buf, len, "empty (null dataspace)");
        return;
    }
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    if (nd < 0) {
        snprintf(buf, len, "unknown shape");
        return;
    }
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < nd && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? "," : "",
                                 (unsigned long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

herr_t data_h5_write_i64_attr(hid_t loc, const char *name, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space < 0 ? -1 : H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT,
                                          H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &value);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

herr_t data_h5_write_string_attr(hid_t loc, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    herr_t rc = H5Tset_size(t, strlen(value) + 1);
    if (rc >= 0) rc = H5Tset_strpad(t, H5T_STR_NULLTERM);
    if (rc >= 0) rc = H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t space = rc < 0 ? -1 : H5Screate(H5S_SCALAR);
    hid_t a = space < 0 ? -1 : H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    rc = a < 0 ? -1 : H5Awrite(a, t, value);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    H5Tclose(t);
    return rc;
}

herr_t data_h5_write_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                             int rank, const hsize_t *dims, const void *data) {
    hsize_t elements = 1;
    for (int i = 0; i < rank; i++) elements *= dims[i];
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = space < 0 ? -1 : H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT,
                                          H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : elements ? H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                                 data) : 0;
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return rc;
}

int data_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
