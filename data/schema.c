/* Schema check of a classification file: /images uint8|float32 [N,...] (2 to 4 dims),
 * /labels integer [N] with every label in [0, num_classes), attribute num_classes (on / or on
 * /labels), optional class_names (strings), mean and std (numbers).  Every failure becomes one
 * message naming the file, the dataset or attribute, what was expected and what was found. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"

#define LABEL_BLOCK ((int64_t)1 << 20) /* labels validated this many at a time */

static void close_hid(hid_t *id, herr_t (*closer)(hid_t)) {
    if (*id >= 0) closer(*id);
    *id = H5I_INVALID_HID;
}

static htri_t is_hdf5(const char *path) {
#if H5_VERSION_GE(1, 12, 0)
    return H5Fis_accessible(path, H5P_DEFAULT);
#else
    return H5Fis_hdf5(path);
#endif
}

/* detail receives HDF5's reason on failure (taken before H5Pclose clears the stack). */
static hid_t open_file(const char *path, char *detail, size_t len) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return H5I_INVALID_HID;
#if H5_VERSION_GE(1, 10, 7)
    /* Keep HDF5's read lock, but do not fail on file systems without flock (Lustre, some NFS),
     * which would otherwise need HDF5_USE_FILE_LOCKING=FALSE on every cluster. */
    H5Pset_file_locking(fapl, 1, 1);
#endif
    /* Random rows of a contiguous dataset are read one run at a time; HDF5's default 64 KiB
     * sieve buffer would read 64 KiB for every small run, so keep it small. */
    H5Pset_sieve_buf_size(fapl, 4096);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) data_h5_error_detail(detail, len);
    H5Pclose(fapl);
    return file;
}

/* Opens /name as a dataset; a missing link and a non-dataset are told apart. */
static hid_t open_dataset(hid_t file, const char *path, const char *name, const char *expected,
                          char *err, size_t errlen) {
    htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
    if (exists <= 0) {
        data_errorf(err, errlen, "%s: dataset /%s: not found (expected %s)", path, name,
                    expected);
        return H5I_INVALID_HID;
    }
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    /* Chunked, compressed files: keep more decompressed chunks than the 1 MiB default. */
    if (dapl >= 0) H5Pset_chunk_cache(dapl, 12421, (size_t)16 << 20, 1.0);
    hid_t dset = H5Dopen2(file, name, dapl >= 0 ? dapl : H5P_DEFAULT);
    char detail[256] = "";
    if (dset < 0) data_h5_error_detail(detail, sizeof detail);
    if (dapl >= 0) H5Pclose(dapl);
    if (dset < 0) {
        data_errorf(err, errlen, "%s: dataset /%s: cannot open as a dataset (expected %s): %s",
                    path, name, expected, detail);
    }
    return dset;
}

/* Type and shape of an open dataset, in words. */
static void describe(hid_t dset, char *buf, size_t len) {
    char tname[64] = "?", shape[160] = "?";
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    if (type >= 0) data_h5_type_name(type, tname, sizeof tname);
    if (space >= 0) data_h5_space_text(space, shape, sizeof shape);
    snprintf(buf, len, "%s %s", tname, shape);
    close_hid(&type, H5Tclose);
    close_hid(&space, H5Sclose);
}

static int check_images(const char *path, hid_t images, data_info *info, hid_t *memtype,
                        char *err, size_t errlen) {
    static const char *expected = "uint8 or float32 with 2 to 4 dims [N,...]";
    char found[256];
    describe(images, found, sizeof found);
    hid_t type = H5Dget_type(images), space = H5Dget_space(images);
    int rc = -1;
    if (type < 0 || space < 0) {
        data_errorf(err, errlen, "%s: dataset /images: cannot read its type or shape", path);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type) == H5T_SGN_NONE) {
        info->dtype = DATA_U8;
        *memtype = H5T_NATIVE_UCHAR;
    } else if (cls == H5T_FLOAT && size == 4) {
        info->dtype = DATA_F32;
        *memtype = H5T_NATIVE_FLOAT;
    } else {
        data_errorf(err, errlen, "%s: dataset /images: expected %s, found %s", path, expected,
                    found);
        goto done;
    }
    int nd = H5Sget_simple_extent_type(space) == H5S_SIMPLE
                 ? H5Sget_simple_extent_ndims(space) : 0;
    if (nd < 2 || nd > DATA_MAX_DIMS) {
        data_errorf(err, errlen, "%s: dataset /images: expected %s, found %s", path, expected,
                    found);
        goto done;
    }
    hsize_t dims[DATA_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    if (dims[0] == 0) {
        data_errorf(err, errlen, "%s: dataset /images: no samples, found %s", path, found);
        goto done;
    }
    /* Sizes must fit int64 and size_t: N * sample elems * element bytes. */
    uint64_t limit = INT64_MAX < SIZE_MAX ? (uint64_t)INT64_MAX : (uint64_t)SIZE_MAX;
    uint64_t elems = 1;
    for (int i = 1; i < nd; i++) {
        if (dims[i] == 0) {
            data_errorf(err, errlen, "%s: dataset /images: sample dims must be non-zero, found %s",
                        path, found);
            goto done;
        }
        if (dims[i] > limit / elems) goto overflow;
        elems *= dims[i];
        info->sample_shape[i - 1] = (int64_t)dims[i];
    }
    if (dims[0] > limit || elems > limit / size || dims[0] > limit / (elems * size))
        goto overflow;
    info->n = (int64_t)dims[0];
    info->sample_ndim = nd - 1;
    info->sample_elems = (int64_t)elems;
    rc = 0;
    goto done;
overflow:
    data_errorf(err, errlen, "%s: dataset /images: shape %s is too large (sizes overflow)", path,
                found);
done:
    close_hid(&type, H5Tclose);
    close_hid(&space, H5Sclose);
    return rc;
}

static int check_labels(const char *path, hid_t labels, int64_t n, char *err, size_t errlen) {
    char found[256];
    describe(labels, found, sizeof found);
    hid_t type = H5Dget_type(labels), space = H5Dget_space(labels);
    int rc = -1;
    if (type < 0 || space < 0) {
        data_errorf(err, errlen, "%s: dataset /labels: cannot read its type or shape", path);
        goto done;
    }
    int nd = H5Sget_simple_extent_type(space) == H5S_SIMPLE
                 ? H5Sget_simple_extent_ndims(space) : 0;
    if (H5Tget_class(type) != H5T_INTEGER || nd != 1) {
        data_errorf(err, errlen, "%s: dataset /labels: expected integer [N] class labels, found %s",
                    path, found);
        goto done;
    }
    hsize_t dim;
    H5Sget_simple_extent_dims(space, &dim, NULL);
    if (dim != (hsize_t)n) {
        data_errorf(err, errlen,
                    "%s: dataset /labels: expected [%lld] to match N of /images, found %s", path,
                    (long long)n, found);
        goto done;
    }
    rc = 0;
done:
    close_hid(&type, H5Tclose);
    close_hid(&space, H5Sclose);
    return rc;
}

/* Hostile-file check (fuzzing, tests/fuzz): the data must be stored in this file before
 * anything reads or sizes buffers by the shape.  Otherwise a few-KB file can declare
 * billions of never-written samples (read back as fill values: hours of label validation and
 * gigabytes of buffers), point at external files, or carry a compact dataset whose stored
 * size disagrees with its shape (HDF5 1.10 then copies from a NULL buffer: a crash).
 * Compact and contiguous data must be exactly elements x element size; chunked data must
 * have every chunk in the file (H5Dget_space_status cannot tell: it compares compressed
 * bytes with the full size). */
static int check_storage(const char *path, const char *name, hid_t dset, char *err,
                         size_t errlen) {
    hid_t dcpl = H5Dget_create_plist(dset), type = H5Dget_type(dset), space = H5Dget_space(dset);
    hsize_t dims[H5S_MAX_RANK], maxdims[H5S_MAX_RANK], chunk[H5S_MAX_RANK], need = 1, have = 0;
    int rc = -1, nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (dcpl < 0 || type < 0 || nd < 0 || nd > H5S_MAX_RANK ||
        H5Sget_simple_extent_dims(space, dims, maxdims) < 0) {
        data_errorf(err, errlen, "%s: dataset /%s: cannot read its storage layout", path, name);
        goto done;
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    size_t tsize = H5Tget_size(type);
    hsize_t stored = H5Dget_storage_size(dset);
    if ((layout != H5D_COMPACT && layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED) ||
        H5Pget_external_count(dcpl) != 0) {
        data_errorf(err, errlen, "%s: dataset /%s: data in external files or a virtual dataset "
                    "(expected its data in this file)", path, name);
        goto done;
    }
    if (layout == H5D_CHUNKED) {
        if (H5Pget_chunk(dcpl, nd, chunk) != nd) goto not_stored;
        for (int i = 0; i < nd; i++) {
            /* HDF5 never writes a chunk larger than a fixed dimension; one that says so
             * makes HDF5 1.10 copy past the chunk it decompressed (a crash). */
            if (chunk[i] == 0 || (maxdims[i] != H5S_UNLIMITED && chunk[i] > maxdims[i]))
                goto not_stored;
            need *= dims[i] / chunk[i] + (dims[i] % chunk[i] != 0);  /* <= elements: no overflow */
        }
        if (H5Dget_num_chunks(dset, space, &have) < 0 || have != need) goto not_stored;
    } else if (npoints < 0 || tsize == 0 || stored % tsize != 0 ||
               stored / tsize != (hsize_t)npoints) {
        goto not_stored;
    }
    rc = 0;
    goto done;
not_stored:
    data_errorf(err, errlen, "%s: dataset /%s: its stored data does not match its shape (%llu "
                "bytes%s; never written, or the file is damaged)", path, name,
                (unsigned long long)stored, layout == H5D_CHUNKED ? " in chunks" : "");
done:
    close_hid(&dcpl, H5Pclose);
    close_hid(&type, H5Tclose);
    close_hid(&space, H5Sclose);
    return rc;
}

/* ---- attributes ---- */

typedef struct {
    hid_t obj;         /* borrowed */
    const char *where; /* "/" or "/labels" */
} attr_home;

/* Reads a one-element numeric attribute (scalar or 1-element array) converted to memtype. */
static int read_number_attr(const char *path, attr_home home, const char *name, int integer_only,
                            hid_t memtype, void *out, char *err, size_t errlen) {
    hid_t attr = H5Aopen(home.obj, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    int rc = -1;
    if (attr < 0 || type < 0 || space < 0) {
        data_errorf(err, errlen, "%s: attribute %s (on %s): cannot be read", path, name,
                    home.where);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    int ok_class = cls == H5T_INTEGER || (!integer_only && cls == H5T_FLOAT);
    H5S_class_t scls = H5Sget_simple_extent_type(space);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    if (!ok_class || scls == H5S_NULL || npoints != 1) {
        char tname[64], shape[160];
        data_h5_type_name(type, tname, sizeof tname);
        data_h5_space_text(space, shape, sizeof shape);
        data_errorf(err, errlen, "%s: attribute %s (on %s): expected %s scalar, found %s %s",
                    path, name, home.where, integer_only ? "an integer" : "a numeric", tname,
                    shape);
        goto done;
    }
    if (H5Aread(attr, memtype, out) < 0) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        data_errorf(err, errlen, "%s: attribute %s (on %s): read failed: %s", path, name,
                    home.where, detail);
        goto done;
    }
    rc = 0;
done:
    close_hid(&space, H5Sclose);
    close_hid(&type, H5Tclose);
    close_hid(&attr, H5Aclose);
    return rc;
}

/* Which of the homes (in order) carries attribute name; -1 when none. */
static int find_attr(const attr_home *homes, int nhomes, const char *name) {
    for (int i = 0; i < nhomes; i++)
        if (H5Aexists(homes[i].obj, name) > 0) return i;
    return -1;
}

static int read_num_classes(const char *path, hid_t file, hid_t labels, data_info *info,
                            char *err, size_t errlen) {
    attr_home homes[2] = {{file, "/"}, {labels, "/labels"}};
    long long value[2] = {0, 0};
    int found[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (H5Aexists(homes[i].obj, "num_classes") <= 0) continue;
        if (read_number_attr(path, homes[i], "num_classes", 1, H5T_NATIVE_LLONG, &value[i], err,
                             errlen))
            return -1;
        found[i] = 1;
    }
    if (!found[0] && !found[1])
        return data_errorf(err, errlen,
                           "%s: attribute num_classes: missing (expected an integer attribute "
                           "on / or on /labels)", path);
    if (found[0] && found[1] && value[0] != value[1])
        return data_errorf(err, errlen,
                           "%s: attribute num_classes: / says %lld but /labels says %lld", path,
                           value[0], value[1]);
    long long v = found[0] ? value[0] : value[1];
    if (v <= 0 || v > DATA_MAX_CLASSES)
        return data_errorf(err, errlen,
                           "%s: attribute num_classes (on %s): expected 1 to %d, found %lld",
                           path, found[0] ? "/" : "/labels", DATA_MAX_CLASSES, v);
    info->num_classes = (int)v;
    return 0;
}

static void free_names(char **names, int n) {
    if (names == NULL) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* class_names: variable-length strings (h5py's list of str) or fixed-length strings
 * (numpy 'S' arrays), one per class. */
static int read_class_names(const char *path, attr_home home, data_info *info, char *err,
                            size_t errlen) {
    hid_t attr = H5Aopen(home.obj, "class_names", H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    hid_t memtype = H5I_INVALID_HID;
    char **names = NULL, **vlen = NULL;
    char *fixed = NULL;
    int rc = -1;
    int64_t n = 0;
    if (attr < 0 || type < 0 || space < 0) {
        data_errorf(err, errlen, "%s: attribute class_names (on %s): cannot be read", path,
                    home.where);
        goto done;
    }
    int nd = H5Sget_simple_extent_type(space) == H5S_SIMPLE
                 ? H5Sget_simple_extent_ndims(space) : 0;
    n = H5Sget_simple_extent_npoints(space);
    if (H5Tget_class(type) != H5T_STRING || nd > 1) {
        char tname[64], shape[160];
        data_h5_type_name(type, tname, sizeof tname);
        data_h5_space_text(space, shape, sizeof shape);
        data_errorf(err, errlen,
                    "%s: attribute class_names (on %s): expected %d strings, found %s %s", path,
                    home.where, info->num_classes, tname, shape);
        goto done;
    }
    if (n != info->num_classes) {
        data_errorf(err, errlen,
                    "%s: attribute class_names (on %s): expected num_classes = %d strings, "
                    "found %lld", path, home.where, info->num_classes, (long long)n);
        goto done;
    }
    names = calloc((size_t)n, sizeof *names);
    if (names == NULL) goto oom;
    if (H5Tis_variable_str(type) > 0) {
        memtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(memtype, H5T_VARIABLE);
        H5Tset_cset(memtype, H5Tget_cset(type));
        vlen = calloc((size_t)n, sizeof *vlen);
        if (vlen == NULL) goto oom;
        if (H5Aread(attr, memtype, vlen) < 0) goto read_failed;
        for (int64_t i = 0; i < n; i++) {
            names[i] = strdup(vlen[i] != NULL ? vlen[i] : "");
            if (names[i] == NULL) break;
        }
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(memtype, space, H5P_DEFAULT, vlen);
#else
        H5Dvlen_reclaim(memtype, space, H5P_DEFAULT, vlen);
#endif
    } else {
        size_t size = H5Tget_size(type);
        /* Hostile files: n strings of `size` bytes must be what the attribute stores. */
        if (size == 0 || (hsize_t)n * size != H5Aget_storage_size(attr)) {
            data_errorf(err, errlen, "%s: attribute class_names (on %s): damaged (%lld strings "
                        "of %zu bytes, %llu bytes stored)", path, home.where, (long long)n, size,
                        (unsigned long long)H5Aget_storage_size(attr));
            goto done;
        }
        fixed = malloc((size_t)n * size + 1);
        if (fixed == NULL) goto oom;
        if (H5Aread(attr, type, fixed) < 0) goto read_failed;
        int spacepad = H5Tget_strpad(type) == H5T_STR_SPACEPAD;
        for (int64_t i = 0; i < n; i++) {
            const char *s = fixed + (size_t)i * size;
            size_t len = strnlen(s, size);
            while (spacepad && len > 0 && s[len - 1] == ' ') len--;
            names[i] = strndup(s, len);
            if (names[i] == NULL) break;
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (names[i] == NULL) goto oom;
    info->class_names = names;
    info->n_class_names = (int)n;
    names = NULL;
    rc = 0;
    goto done;
read_failed: {
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    data_errorf(err, errlen, "%s: attribute class_names (on %s): read failed: %s", path,
                home.where, detail);
    goto done;
}
oom:
    data_errorf(err, errlen, "%s: attribute class_names: out of memory", path);
done:
    free_names(names, (int)n);
    free(vlen);
    free(fixed);
    close_hid(&memtype, H5Tclose);
    close_hid(&space, H5Sclose);
    close_hid(&type, H5Tclose);
    close_hid(&attr, H5Aclose);
    return rc;
}

static int read_optional_attrs(const char *path, hid_t file, hid_t images, hid_t labels,
                               data_info *info, char *err, size_t errlen) {
    attr_home homes[2] = {{file, "/"}, {labels, "/labels"}};
    int at = find_attr(homes, 2, "class_names");
    if (at >= 0 && read_class_names(path, homes[at], info, err, errlen)) return -1;

    /* mean/std describe the images: on / or on /images, both or neither. */
    attr_home image_homes[2] = {{file, "/"}, {images, "/images"}};
    int at_mean = find_attr(image_homes, 2, "mean");
    int at_std = find_attr(image_homes, 2, "std");
    if (at_mean < 0 && at_std < 0) return 0;
    if (at_mean < 0 || at_std < 0)
        return data_errorf(err, errlen, "%s: attribute %s: missing (%s is present; give both or "
                           "neither)", path, at_mean < 0 ? "mean" : "std",
                           at_mean < 0 ? "std" : "mean");
    if (read_number_attr(path, image_homes[at_mean], "mean", 0, H5T_NATIVE_FLOAT, &info->mean,
                         err, errlen) ||
        read_number_attr(path, image_homes[at_std], "std", 0, H5T_NATIVE_FLOAT, &info->std, err,
                         errlen))
        return -1;
    if (!isfinite(info->mean) || !isfinite(info->std) || info->std <= 0.0f)
        return data_errorf(err, errlen,
                           "%s: attributes mean/std: expected finite values with std > 0, "
                           "found mean %g, std %g", path, info->mean, info->std);
    info->has_mean_std = 1;
    return 0;
}

/* Every label must lie in [0, num_classes).  Read in blocks as int64 (HDF5 converts from any
 * integer type); kept as int32 when labels_out is given. */
static int validate_labels(const char *path, hid_t labels, const data_info *info,
                           int32_t **labels_out, char *err, size_t errlen) {
    int64_t n = info->n;
    int64_t block = n < LABEL_BLOCK ? n : LABEL_BLOCK;
    int64_t *buf = malloc((size_t)block * sizeof *buf);
    int32_t *out = labels_out != NULL ? malloc((size_t)n * sizeof *out) : NULL;
    hid_t fspace = H5Dget_space(labels), mspace = H5I_INVALID_HID;
    int rc = -1;
    if (buf == NULL || (labels_out != NULL && out == NULL)) {
        data_errorf(err, errlen, "%s: dataset /labels: out of memory for %lld labels", path,
                    (long long)n);
        goto done;
    }
    for (int64_t start = 0; start < n; start += block) {
        hsize_t off = (hsize_t)start;
        hsize_t cnt = (hsize_t)(n - start < block ? n - start : block);
        close_hid(&mspace, H5Sclose);
        mspace = H5Screate_simple(1, &cnt, NULL);
        if (fspace < 0 || mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &off, NULL, &cnt, NULL) < 0 ||
            H5Dread(labels, H5T_NATIVE_INT64, mspace, fspace, H5P_DEFAULT, buf) < 0) {
            char detail[256];
            data_h5_error_detail(detail, sizeof detail);
            data_errorf(err, errlen, "%s: dataset /labels: read failed: %s", path, detail);
            goto done;
        }
        for (hsize_t i = 0; i < cnt; i++) {
            int64_t v = buf[i];
            if (v < 0 || v >= info->num_classes) {
                data_errorf(err, errlen,
                            "%s: dataset /labels: label %lld at index %lld is outside "
                            "[0, num_classes = %d)", path, (long long)v,
                            (long long)(start + (int64_t)i), info->num_classes);
                goto done;
            }
            if (out != NULL) out[start + (int64_t)i] = (int32_t)v;
        }
    }
    if (labels_out != NULL) {
        *labels_out = out;
        out = NULL;
    }
    rc = 0;
done:
    close_hid(&mspace, H5Sclose);
    close_hid(&fspace, H5Sclose);
    free(buf);
    free(out);
    return rc;
}

/* ---- token datasets ---- */

/* A scalar string attribute (fixed or variable length) into buf; 0, or -1 with err. */
static int read_string_attr(const char *path, hid_t obj, const char *where, const char *name,
                            char *buf, size_t len, char *err, size_t errlen) {
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    hid_t memtype = H5I_INVALID_HID;
    int rc = -1;
    buf[0] = '\0';
    if (attr < 0 || type < 0 || space < 0 || H5Tget_class(type) != H5T_STRING ||
        H5Sget_simple_extent_npoints(space) != 1) {
        data_errorf(err, errlen, "%s: attribute %s (on %s): expected one string", path, name,
                    where);
        goto done;
    }
    memtype = H5Tcopy(H5T_C_S1);
    if (memtype >= 0) H5Tset_cset(memtype, H5Tget_cset(type));   /* h5py writes UTF-8 */
    if (H5Tis_variable_str(type) > 0) {
        char *v = NULL;
        if (memtype < 0 || H5Tset_size(memtype, H5T_VARIABLE) < 0 || H5Aread(attr, memtype, &v) < 0) {
            data_errorf(err, errlen, "%s: attribute %s (on %s): cannot be read", path, name, where);
            goto done;
        }
        snprintf(buf, len, "%s", v ? v : "");
        H5free_memory(v);
    } else {
        size_t n = H5Tget_size(type);
        char *tmp = n > 0 && n < 4096 ? calloc(1, n + 1) : NULL;
        if (!tmp || memtype < 0 || H5Tset_size(memtype, n) < 0 || H5Aread(attr, memtype, tmp) < 0) {
            free(tmp);
            data_errorf(err, errlen, "%s: attribute %s (on %s): cannot be read", path, name, where);
            goto done;
        }
        snprintf(buf, len, "%s", tmp);
        free(tmp);
    }
    rc = 0;
done:
    close_hid(&memtype, H5Tclose);
    close_hid(&space, H5Sclose);
    close_hid(&type, H5Tclose);
    close_hid(&attr, H5Aclose);
    return rc;
}

/* /tokens uint16 or int32 [T] with vocab_size (on / or /tokens); h->images holds /tokens. */
static int check_tokens(const char *path, hid_t file, hid_t tokens, data_info *info, char *err,
                        size_t errlen) {
    char what[224];
    describe(tokens, what, sizeof what);
    hid_t type = H5Dget_type(tokens), space = H5Dget_space(tokens);
    int rc = -1;
    if (type < 0 || space < 0) {
        data_errorf(err, errlen, "%s: dataset /tokens: cannot read its type and shape", path);
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[1] = {0};
    int u16 = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 2 &&
              H5Tget_sign(type) == H5T_SGN_NONE;
    int i32 = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 4 &&
              H5Tget_sign(type) == H5T_SGN_2;
    if ((!u16 && !i32) || nd != 1 || H5Sget_simple_extent_dims(space, dims, NULL) != 1) {
        data_errorf(err, errlen, "%s: dataset /tokens: expected uint16 or int32 [T] token ids, "
                    "found %s", path, what);
        goto done;
    }
    if (check_storage(path, "tokens", tokens, err, errlen)) goto done;
    info->kind = DATA_TOKENS;
    info->n_tokens = (int64_t)dims[0];
    info->n = info->n_tokens;
    info->token_bits = u16 ? 16 : 32;
    info->dtype = DATA_I32;
    info->sample_ndim = 0;
    info->eot_token = -1;
    attr_home homes[2] = {{file, "/"}, {tokens, "/tokens"}};
    int at = find_attr(homes, 2, "vocab_size");
    if (at < 0) {
        data_errorf(err, errlen, "%s: attribute vocab_size: not found on / or /tokens (expected "
                    "the vocabulary size, e.g. f.attrs[\"vocab_size\"] = 50257)", path);
        goto done;
    }
    long long v = 0;
    if (read_number_attr(path, homes[at], "vocab_size", 1, H5T_NATIVE_LLONG, &v, err, errlen))
        goto done;
    if (v < 1 || v > INT32_MAX || (u16 && v > 65536)) {
        data_errorf(err, errlen, "%s: attribute vocab_size (on %s): %lld is out of range (1 to "
                    "%s)", path, homes[at].where, v, u16 ? "65536 for uint16 /tokens; store "
                    "int32 tokens for larger vocabularies" : "2147483647");
        goto done;
    }
    info->vocab_size = v;
    if ((at = find_attr(homes, 2, "eot_token")) >= 0) {
        long long e = -1;
        if (read_number_attr(path, homes[at], "eot_token", 1, H5T_NATIVE_LLONG, &e, err, errlen))
            goto done;
        if (e < 0 || e >= v) {
            data_errorf(err, errlen, "%s: attribute eot_token (on %s): %lld is outside the "
                        "vocabulary [0, %lld)", path, homes[at].where, e, v);
            goto done;
        }
        info->eot_token = e;
    }
    if ((at = find_attr(homes, 2, "tokenizer")) >= 0 &&
        read_string_attr(path, homes[at].obj, homes[at].where, "tokenizer", info->tokenizer,
                         sizeof info->tokenizer, err, errlen))
        goto done;
    rc = 0;
done:
    close_hid(&space, H5Sclose);
    close_hid(&type, H5Tclose);
    return rc;
}

int data_schema_open(const char *path, data_info *info, data_h5_file *h, int32_t **labels_out,
                     char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    h->file = h->images = H5I_INVALID_HID;
    h->images_memtype = H5I_INVALID_HID;
    if (labels_out != NULL) *labels_out = NULL;
    if (path == NULL || path[0] == '\0') return data_errorf(err, errlen, "data: no file given");

    struct stat st;
    if (stat(path, &st) != 0)
        return data_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return data_errorf(err, errlen, "%s: is a directory, expected an HDF5 file", path);
    htri_t is = is_hdf5(path);
    if (is <= 0) {
        char why[256];
        data_h5_error_detail(why, sizeof why);
        return data_errorf(err, errlen, "%s: not an HDF5 file%s%s%s", path,
                           why[0] ? " (" : "", why, why[0] ? ")" : "");
    }

    hid_t labels = H5I_INVALID_HID;
    char detail[256] = "";
    h->file = open_file(path, detail, sizeof detail);
    if (h->file < 0) {
        data_errorf(err, errlen, "%s: cannot open as HDF5 (damaged or truncated file?): %s",
                    path, detail);
        goto fail;
    }
    /* told by contents: /tokens without /images is a language-model dataset */
    if (H5Lexists(h->file, "tokens", H5P_DEFAULT) > 0 &&
        H5Lexists(h->file, "images", H5P_DEFAULT) <= 0) {
        h->images = open_dataset(h->file, path, "tokens", "uint16 or int32 [T] token ids", err,
                                 errlen);
        if (h->images < 0 || check_tokens(path, h->file, h->images, info, err, errlen)) goto fail;
        h->images_memtype = H5T_NATIVE_INT32;
        return 0;
    }
    h->images = open_dataset(h->file, path, "images",
                             "uint8 or float32 with 2 to 4 dims [N,...] (or /tokens for a "
                             "language-model dataset)", err, errlen);
    if (h->images < 0) goto fail;
    if (check_images(path, h->images, info, &h->images_memtype, err, errlen)) goto fail;
    labels = open_dataset(h->file, path, "labels", "integer [N] class labels", err, errlen);
    if (labels < 0) goto fail;
    if (check_labels(path, labels, info->n, err, errlen)) goto fail;
    if (check_storage(path, "images", h->images, err, errlen) ||  /* hostile files: see there */
        check_storage(path, "labels", labels, err, errlen))
        goto fail;
    if (read_num_classes(path, h->file, labels, info, err, errlen)) goto fail;
    if (read_optional_attrs(path, h->file, h->images, labels, info, err, errlen)) goto fail;
    if (validate_labels(path, labels, info, labels_out, err, errlen)) goto fail;
    H5Dclose(labels);
    return 0;
fail:
    close_hid(&labels, H5Dclose);
    data_schema_close(h);
    data_info_free(info);
    return -1;
}

void data_schema_close(data_h5_file *h) {
    close_hid(&h->images, H5Dclose);
    close_hid(&h->file, H5Fclose);
}

int data_inspect(const char *path, data_info *info, char *err, size_t errlen) {
    data_h5_scope scope;
    data_h5_file h;
    data_h5_begin(&scope);
    int rc = data_schema_open(path, info, &h, NULL, err, errlen);
    if (rc == 0) data_schema_close(&h);
    data_h5_end(&scope);
    return rc;
}

void data_info_free(data_info *info) {
    if (info == NULL) return;
    free_names(info->class_names, info->n_class_names);
    info->class_names = NULL;
    info->n_class_names = 0;
}
