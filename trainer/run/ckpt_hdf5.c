/* ckpt_hdf5.c: the HDF5 helpers checkpoint files are written and verified with (checkpoint.c,
 * ckpt_parts.c): attributes, checksummed float32 datasets, the hostile-file check. */
#include "ckpt_hdf5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_ELEMS (1 << 20)   /* at most 4 MiB per chunk (HDF5 chunks are limited to 4 GiB) */

int ckpt_errorf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

hid_t ckpt_fapl_v110(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* The 1.10 format puts checksums on the superblock and object headers. */
    if (fapl >= 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    return fapl;
}

herr_t ckpt_attr_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                         const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = (space < 0 || a < 0) ? -1 : H5Awrite(a, mem_type, value);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

/* Strings are fixed-length attributes: variable-length ones live in HDF5's global heap, which
 * has no checksum and which a damaged file can make the library crash or hang on. */
#define ATTR_STRING_MAX (1 << 20)

herr_t ckpt_attr_write_string(hid_t loc, const char *name, const char *value) {
    size_t len = strlen(value);
    if (len + 1 > ATTR_STRING_MAX) return -1;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    herr_t rc = ckpt_attr_write(loc, name, t, t, value);
    H5Tclose(t);
    return rc;
}

herr_t ckpt_attr_read(hid_t loc, const char *name, hid_t mem_type, void *value) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t space = H5Aget_space(a);
    herr_t rc = (space >= 0 && H5Sget_simple_extent_npoints(space) == 1) ? H5Aread(a, mem_type, value)
                                                                       : -1;
    if (space >= 0) H5Sclose(space);
    H5Aclose(a);
    return rc;
}

/* A variable-length string attribute, malloc'd; NULL when absent or of another type. */
/* A fixed-length string attribute (at most ATTR_STRING_MAX bytes), malloc'd and
 * NUL-terminated; NULL when absent, variable-length or of another type. */
char *ckpt_attr_read_string(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *result = NULL;
    hid_t ft = H5Aget_type(a), space = H5Aget_space(a);
    size_t size = ft >= 0 ? H5Tget_size(ft) : 0;
    if (ft >= 0 && space >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) == 0 &&
        H5Sget_simple_extent_npoints(space) == 1 && size > 0 && size <= ATTR_STRING_MAX &&
        H5Aget_storage_size(a) == size && (result = malloc(size + 1))) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, size);
        H5Tset_cset(t, H5Tget_cset(ft));
        if (H5Aread(a, t, result) >= 0) {
            result[size] = '\0';
        } else {
            free(result);
            result = NULL;
        }
        H5Tclose(t);
    }
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    H5Aclose(a);
    return result;
}

/* float32 dataset with the Fletcher-32 checksum filter; chunks of whole rows of the first
 * dimension, at most CHUNK_ELEMS elements where the rows allow */
herr_t ckpt_write_tensor(hid_t loc, const char *name, const float *data, int ndim,
                           const int64_t *dims) {
    hsize_t d[4] = {1, 1, 1, 1}, chunk[4] = {1, 1, 1, 1};
    hsize_t inner = 1;
    for (int i = 0; i < ndim; i++) {
        d[i] = chunk[i] = (hsize_t)dims[i];
        if (i > 0) inner *= d[i];
    }
    hsize_t rows = inner >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / inner;
    chunk[0] = rows < d[0] ? rows : d[0];
    hid_t space = H5Screate_simple(ndim, d, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    herr_t rc = -1;
    hid_t ds = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, ndim, chunk) >= 0 &&
        H5Pset_fletcher32(dcpl) >= 0) {
        ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds >= 0) rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    }
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}


/* Hostile files (tests/fuzz): 1 when all of the dataset's data is stored in this file.  HDF5
 * 1.10 reads a compact dataset whose stored size disagrees with its shape from a NULL buffer
 * (a crash), chunks missing from the file as fill values, and past the end of a chunk that
 * claims to be larger than a fixed dimension (a crash); external and virtual datasets keep
 * their data in other files.  Checked before every H5Dread of a checkpoint. */
int ckpt_stored_whole(hid_t ds) {
    hid_t dcpl = H5Dget_create_plist(ds), type = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK], maxdims[H5S_MAX_RANK], chunk[H5S_MAX_RANK], need = 1, have = 0;
    int nd = space >= 0 ? H5Sget_simple_extent_dims(space, dims, maxdims) : -1;
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    size_t tsize = type >= 0 ? H5Tget_size(type) : 0;
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    int ok = nd >= 0 && npoints >= 0 && tsize > 0 && H5Pget_external_count(dcpl) == 0;
    if (ok && layout == H5D_CHUNKED) {
        ok = H5Pget_chunk(dcpl, nd, chunk) == nd;
        for (int i = 0; ok && i < nd; i++) {
            hsize_t k = chunk[i] ? dims[i] / chunk[i] + (dims[i] % chunk[i] != 0) : 0;
            ok = chunk[i] > 0 && (k == 0 || need <= (hsize_t)-1 / k) &&
                 (maxdims[i] == H5S_UNLIMITED || chunk[i] <= maxdims[i]);
            need *= k;
        }
        ok = ok && H5Dget_num_chunks(ds, space, &have) >= 0 && have == need;
    } else if (ok) {
        hsize_t stored = H5Dget_storage_size(ds);
        ok = (layout == H5D_COMPACT || layout == H5D_CONTIGUOUS) && stored % tsize == 0 &&
             stored / tsize == (hsize_t)npoints;
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return ok;
}
