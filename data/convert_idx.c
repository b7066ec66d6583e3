/* IDX (the MNIST file format, plain or gzipped) -> HDF5 classification file.
 *
 * IDX: big-endian magic 0x00000803 (uint8, 3 dims) for images [N,H,W], 0x00000801 (uint8,
 * 1 dim) for labels [N], then the dims as big-endian uint32, then the bytes.  zlib's gzread
 * reads gzipped and plain files alike.  The output is written to a temporary name next to
 * out_h5, fsynced and renamed, so a reader never sees half a file:
 *   /images uint8 [N,H,W], /labels int32 [N], attributes num_classes (int32), class_names
 *   (variable-length UTF-8 strings, str in h5py) when given, and mean and std (float32) of the
 *   pixels scaled to [0,1], which trainers use to normalise inputs. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data_internal.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

typedef struct {
    const char *path;
    const char *kind;  /* "image" or "label" for messages */
    gzFile gz;
    uint32_t dims[3];
    size_t bytes;      /* product of dims */
} idx_file;

/* Reads exactly len bytes; a short read is a truncated file. */
static int read_exact(idx_file *f, void *buf, size_t len, const char *what, char *err,
                      size_t errlen) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < (size_t)INT_MAX ? len - got : (size_t)INT_MAX;
        int n = gzread(f->gz, (unsigned char *)buf + got, (unsigned)want);
        if (n < 0) {
            int zerr;
            const char *msg = gzerror(f->gz, &zerr);
            return data_errorf(err, errlen, "%s: read error in %s: %s", f->path, what,
                               zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (n == 0)
            return data_errorf(err, errlen,
                               "%s: truncated IDX %s file: %s needs %zu bytes, only %zu present",
                               f->path, f->kind, what, len, got);
        got += (size_t)n;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Opens the file and checks magic and dims; ndims is 3 (images) or 1 (labels). */
static int idx_open(idx_file *f, const char *path, uint32_t magic, int ndims, char *err,
                    size_t errlen) {
    f->path = path;
    f->kind = ndims == 3 ? "image" : "label";
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL)
        return data_errorf(err, errlen, "%s: cannot open: %s", path,
                           errno ? strerror(errno) : "out of memory");
    unsigned char head[16];
    if (read_exact(f, head, 4, "the magic number", err, errlen)) return -1;
    uint32_t found = be32(head);
    if (found != magic)
        return data_errorf(err, errlen, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)",
                           path, f->kind, found, magic);
    if (read_exact(f, head + 4, 4 * (size_t)ndims, "the header dims", err, errlen)) return -1;
    size_t bytes = 1;
    for (int i = 0; i < ndims; i++) {
        f->dims[i] = be32(head + 4 + 4 * i);
        if (f->dims[i] == 0)
            return data_errorf(err, errlen, "%s: IDX %s file has a zero dimension (dim %d)",
                               path, f->kind, i);
        if ((size_t)f->dims[i] > SIZE_MAX / bytes)
            return data_errorf(err, errlen, "%s: IDX %s file dims are too large", path, f->kind);
        bytes *= f->dims[i];
    }
    f->bytes = bytes;
    return 0;
}

static void idx_close(idx_file *f) {
    if (f->gz != NULL) gzclose(f->gz);
    f->gz = NULL;
}

static int write_h5(const char *tmp, const char *out_h5, const idx_file *img,
                    const unsigned char *pixels, const int32_t *labels, int num_classes,
                    const char *const *class_names, char *err, size_t errlen) {
    hid_t file = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t attr = H5I_INVALID_HID, strtype = H5I_INVALID_HID;
    const char *what = "creating the file";
    hsize_t dims[3] = {img->dims[0], img->dims[1], img->dims[2]};
    hsize_t nclass = (hsize_t)num_classes;

    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) goto fail;

    what = "writing /images";
    if (data_h5_write_dataset(file, "images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 3, dims,
                              pixels) < 0)
        goto fail;
    what = "writing /labels";
    if (data_h5_write_dataset(file, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims,
                              labels) < 0)
        goto fail;

    what = "writing attribute num_classes";
    int32_t nc = num_classes;
    space = H5Screate(H5S_SCALAR);
    attr = H5Acreate2(file, "num_classes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (space < 0 || attr < 0 || H5Awrite(attr, H5T_NATIVE_INT32, &nc) < 0) goto fail;
    H5Aclose(attr);
    H5Sclose(space);
    attr = space = H5I_INVALID_HID;

    /* mean and std of pixel/255 over the whole file, accumulated in double */
    {
        size_t total = img->bytes;
        double sum = 0.0, sumsq = 0.0;
        for (size_t i = 0; i < total; i++) {
            double v = pixels[i] / 255.0;
            sum += v;
            sumsq += v * v;
        }
        double mean = total ? sum / (double)total : 0.0;
        double var = total ? sumsq / (double)total - mean * mean : 0.0;
        float stats[2] = {(float)mean, (float)sqrt(var > 0.0 ? var : 0.0)};
        if (!(stats[1] > 0.0f)) stats[1] = 1.0f;   /* a constant image set: no scaling */
        const char *names[2] = {"mean", "std"};
        for (int a = 0; a < 2; a++) {
            what = a == 0 ? "writing attribute mean" : "writing attribute std";
            space = H5Screate(H5S_SCALAR);
            attr = H5Acreate2(file, names[a], H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT);
            if (space < 0 || attr < 0 || H5Awrite(attr, H5T_NATIVE_FLOAT, &stats[a]) < 0)
                goto fail;
            H5Aclose(attr);
            H5Sclose(space);
            attr = space = H5I_INVALID_HID;
        }
    }

    if (class_names != NULL) {
        what = "writing attribute class_names";
        strtype = H5Tcopy(H5T_C_S1);
        if (strtype < 0 || H5Tset_size(strtype, H5T_VARIABLE) < 0 ||
            H5Tset_cset(strtype, H5T_CSET_UTF8) < 0)
            goto fail;
        space = H5Screate_simple(1, &nclass, NULL);
        attr = H5Acreate2(file, "class_names", strtype, space, H5P_DEFAULT, H5P_DEFAULT);
        if (space < 0 || attr < 0 || H5Awrite(attr, strtype, class_names) < 0) goto fail;
        H5Aclose(attr);
        H5Sclose(space);
        H5Tclose(strtype);
        attr = space = strtype = H5I_INVALID_HID;
    }

    what = "closing the file";
    herr_t closed = H5Fclose(file);
    file = H5I_INVALID_HID;
    if (closed < 0) goto fail;
    return 0;
fail: {
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    if (strtype >= 0) H5Tclose(strtype);
    if (file >= 0) H5Fclose(file);
    return data_errorf(err, errlen, "%s: %s failed: %s", out_h5, what,
                       detail[0] ? detail : "unknown HDF5 error");
}
}

int data_convert_idx(const char *images_idx, const char *labels_idx, const char *out_h5,
                     int num_classes, const char *const *class_names,
                     char *err, size_t errlen) {
    idx_file img = {0}, lab = {0};
    unsigned char *pixels = NULL, *raw_labels = NULL;
    int32_t *labels = NULL;
    char *tmp = NULL;
    int rc = -1;

    if (images_idx == NULL || labels_idx == NULL || out_h5 == NULL)
        return data_errorf(err, errlen, "convert: images, labels and output paths are required");
    if (num_classes < 1 || num_classes > DATA_MAX_CLASSES)
        return data_errorf(err, errlen, "convert: num_classes must be 1 to %d, got %d",
                           DATA_MAX_CLASSES, num_classes);
    if (class_names != NULL)
        for (int i = 0; i < num_classes; i++)
            if (class_names[i] == NULL)
                return data_errorf(err, errlen, "convert: class name %d is missing", i);

    if (idx_open(&img, images_idx, IDX_IMAGES_MAGIC, 3, err, errlen) ||
        idx_open(&lab, labels_idx, IDX_LABELS_MAGIC, 1, err, errlen))
        goto done;
    if (img.dims[0] != lab.dims[0]) {
        data_errorf(err, errlen, "%s and %s: %u images but %u labels", images_idx, labels_idx,
                    img.dims[0], lab.dims[0]);
        goto done;
    }
    size_t n = lab.dims[0];
    pixels = malloc(img.bytes);
    raw_labels = malloc(n);
    labels = malloc(n * sizeof *labels);
    if (pixels == NULL || raw_labels == NULL || labels == NULL) {
        data_errorf(err, errlen, "%s: out of memory for %zu bytes of images", images_idx,
                    img.bytes);
        goto done;
    }
    if (read_exact(&img, pixels, img.bytes, "the image data", err, errlen) ||
        read_exact(&lab, raw_labels, n, "the label data", err, errlen))
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (raw_labels[i] >= num_classes) {
            data_errorf(err, errlen, "%s: label %u at index %zu is outside [0, num_classes = %d)",
                        labels_idx, raw_labels[i], i, num_classes);
            goto done;
        }
        labels[i] = raw_labels[i];
    }

    size_t tlen = strlen(out_h5) + 32;
    tmp = malloc(tlen);
    if (tmp == NULL) {
        data_errorf(err, errlen, "%s: out of memory", out_h5);
        goto done;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", out_h5, (long)getpid());
    data_h5_scope scope;
    data_h5_begin(&scope);
    int wrc = write_h5(tmp, out_h5, &img, pixels, labels, num_classes, class_names, err, errlen);
    data_h5_end(&scope);
    if (wrc) {
        remove(tmp);
        goto done;
    }
    if (data_fsync_path(tmp) != 0 || rename(tmp, out_h5) != 0) {
        data_errorf(err, errlen, "%s: cannot move %s into place: %s", out_h5, tmp,
                    strerror(errno));
        remove(tmp);
        goto done;
    }
    rc = 0;
done:
    idx_close(&img);
    idx_close(&lab);
    free(pixels);
    free(raw_labels);
    free(labels);
    free(tmp);
    return rc;
}
