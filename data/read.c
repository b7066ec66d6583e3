/* Batched reads of /images rows.
 *
 * A batch's indices are sorted, consecutive indices are merged into runs, groups of runs become
 * union hyperslabs so HDF5 reads each run once with few H5Dread calls (in file order, into a
 * staging buffer), and the rows are then copied into batch order.  When the whole dataset fits
 * the cache it is read once, on first use, and batches are copied out of memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* Runs per H5Dread.  HDF5 1.10 builds a union of hyperslabs in time quadratic in the number of
 * runs (a batch of 4096 random rows of Fashion-MNIST: ~150 ms as one union, ~6 ms in groups of
 * 64, ~16 ms with one H5Dread per run), so a batch is read as a few unions of 64 runs. */
#define RUNS_PER_READ 64

static int by_index(const void *a, const void *b) {
    int64_t x = ((const data_read_item *)a)->index, y = ((const data_read_item *)b)->index;
    return (x > y) - (x < y);
}

int data_reader_init(data_reader *r, const char *path, const data_h5_file *h,
                     const data_info *info, int64_t cap, int use_cache, char *err,
                     size_t errlen) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->images = h->images;
    r->memtype = h->images_memtype;
    r->n = info->n;
    r->sample_bytes = (size_t)info->sample_elems * (info->dtype == DATA_U8 ? 1 : 4);
    r->cap = cap;
    r->use_cache = use_cache;
    r->items = malloc((size_t)cap * sizeof *r->items);
    /* The cached path copies straight from memory and needs no staging rows. */
    r->staging = use_cache ? NULL : malloc((size_t)cap * r->sample_bytes);
    if (r->items == NULL || (!use_cache && r->staging == NULL)) {
        data_reader_free(r);
        return data_errorf(err, errlen, "%s: out of memory for read buffers (%lld samples)",
                           path, (long long)cap);
    }
    return 0;
}

void data_reader_free(data_reader *r) {
    free(r->items);
    free(r->staging);
    free(r->cache);
    r->items = NULL;
    r->staging = NULL;
    r->cache = NULL;
}

static int read_failed(data_reader *r, const char *what, char *err, size_t errlen) {
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    return data_errorf(err, errlen, "%s: dataset /images: %s failed: %s", r->path, what,
                       detail[0] ? detail : "unknown HDF5 error");
}

static int load_cache(data_reader *r, char *err, size_t errlen) {
    r->cache = malloc((size_t)r->n * r->sample_bytes);
    if (r->cache == NULL) {
        /* Not fatal: fall back to reading runs, which needs the staging rows. */
        r->use_cache = 0;
        r->staging = malloc((size_t)r->cap * r->sample_bytes);
        if (r->staging == NULL)
            return data_errorf(err, errlen, "%s: out of memory for read buffers", r->path);
        return 0;
    }
    if (H5Dread(r->images, r->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->cache) < 0) {
        free(r->cache);
        r->cache = NULL;
        return read_failed(r, "reading the whole dataset into the cache", err, errlen);
    }
    return 0;
}

/* Selects in fspace the runs that start at sorted item `first`, at most max_runs of them:
 * rows [start, start+len) of every run.  Returns the number of rows selected. */
static int64_t select_runs(const data_reader *r, hid_t fspace, int64_t first, int64_t count,
                           int64_t max_runs, int64_t *nruns) {
    int nd = H5Sget_simple_extent_ndims(fspace);
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, block[H5S_MAX_RANK];
    if (nd < 1 || H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) return -1;
    for (int d = 1; d < nd; d++) block[d] = dims[d];
    *nruns = 0;
    int64_t i = first;
    while (i < count && *nruns < max_runs) {
        int64_t j = i + 1;
        while (j < count && r->items[j].index == r->items[j - 1].index + 1) j++;
        start[0] = (hsize_t)r->items[i].index;
        block[0] = (hsize_t)(j - i);
        H5S_seloper_t op = *nruns == 0 ? H5S_SELECT_SET : H5S_SELECT_OR;
        if (H5Sselect_hyperslab(fspace, op, start, NULL, block, NULL) < 0) return -1;
        (*nruns)++;
        i = j;
    }
    return i - first;
}

int data_reader_read(data_reader *r, const int64_t *indices, int64_t count, void *x,
                     char *err, size_t errlen) {
    unsigned char *out = x;
    size_t sb = r->sample_bytes;
    if (count <= 0) return 0;
    if (count > r->cap)
        return data_errorf(err, errlen, "%s: dataset /images: internal error: %lld rows asked, "
                           "buffers hold %lld", r->path, (long long)count, (long long)r->cap);
    for (int64_t i = 0; i < count; i++)
        if (indices[i] < 0 || indices[i] >= r->n)
            return data_errorf(err, errlen, "%s: dataset /images: internal error: row %lld "
                               "outside [0, %lld)", r->path, (long long)indices[i],
                               (long long)r->n);

    if (r->use_cache && r->cache == NULL && load_cache(r, err, errlen)) return -1;
    if (r->use_cache) {
        for (int64_t i = 0; i < count; i++)
            memcpy(out + (size_t)i * sb, r->cache + (size_t)indices[i] * sb, sb);
        return 0;
    }

    for (int64_t i = 0; i < count; i++) {
        r->items[i].index = indices[i];
        r->items[i].slot = i;
    }
    qsort(r->items, (size_t)count, sizeof *r->items, by_index);

    hid_t fspace = H5Dget_space(r->images);
    if (fspace < 0) return read_failed(r, "getting the dataspace", err, errlen);
    size_t elem = H5Tget_size(r->memtype);
    int rc = 0;
    for (int64_t done = 0; done < count;) {
        int64_t nruns = 0;
        int64_t rows = select_runs(r, fspace, done, count, RUNS_PER_READ, &nruns);
        hsize_t mdim = (hsize_t)(rows > 0 ? rows : 1) * (hsize_t)(sb / elem);
        hid_t mspace = rows > 0 ? H5Screate_simple(1, &mdim, NULL) : H5I_INVALID_HID;
        if (mspace < 0 || H5Dread(r->images, r->memtype, mspace, fspace, H5P_DEFAULT,
                                  r->staging + (size_t)done * sb) < 0) {
            char what[96];
            snprintf(what, sizeof what, "reading samples %lld.. (%lld runs)",
                     (long long)r->items[done].index, (long long)nruns);
            rc = read_failed(r, what, err, errlen);
        }
        if (mspace >= 0) H5Sclose(mspace);
        if (rc) break;
        done += rows;
    }
    H5Sclose(fspace);
    if (rc) return rc;

    /* Rows arrived in file order; put each where the batch wants it. */
    for (int64_t k = 0; k < count; k++)
        memcpy(out + (size_t)r->items[k].slot * sb, r->staging + (size_t)k * sb, sb);
    return 0;
}
