/* tokens.c: windows of a token dataset - the grid of an epoch and the reads.
 *
 * A sample is a window of context + 1 tokens starting at offset + w * context (w the window
 * index): inputs are its first context tokens, targets its last context.  The grid keeps the
 * same number of windows in every epoch, so the loader's cursor means the same in each;
 * training with shuffle moves the grid by an offset from (seed, epoch) so that over epochs
 * every token boundary falls inside some window.
 *
 * Reads: a batch's windows are sorted by start, overlapping or adjacent windows merge into
 * runs, each run is one hyperslab read into staging (HDF5 converts uint16 to int32), and the
 * windows are copied out in batch order.  A file that fits the cache is read once and
 * validated whole; otherwise each window is validated as it is read.  Every token must lie in
 * [0, vocab_size); the error names its position in /tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

void data_token_grid(int64_t n_tokens, int64_t context, data_mode mode, int shuffle,
                     uint64_t seed, int64_t epoch, int64_t *windows, int64_t *offset) {
    int64_t w = context > 0 && n_tokens > context ? (n_tokens - 1) / context : 0;
    *offset = 0;
    *windows = w;
    if (mode != DATA_TRAIN || !shuffle || w < 2) return;
    *windows = w - 1;
    uint64_t h = data_splitmix64_mix(seed ^ 0x746f6b656e677269ULL ^
                                     ((uint64_t)epoch * DATA_GOLDEN_GAMMA));
    *offset = (int64_t)(h % (uint64_t)context);
}

typedef struct {
    int64_t start;   /* first token of the window */
    int64_t slot;    /* position in the batch */
} window_item;

static int by_start(const void *a, const void *b) {
    int64_t x = ((const window_item *)a)->start, y = ((const window_item *)b)->start;
    return (x > y) - (x < y);
}

int data_token_reader_init(data_token_reader *r, const char *path, hid_t tokens,
                           const data_info *info, int64_t context, int64_t cap, int use_cache,
                           char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->tokens = tokens;
    r->n_tokens = info->n_tokens;
    r->vocab = info->vocab_size;
    r->context = context;
    r->cap = cap;
    r->use_cache = use_cache;
    r->items = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(window_item));
    /* staging: the worst case is cap disjoint windows */
    r->staging = use_cache ? NULL : malloc((size_t)(cap > 0 ? cap : 1) * (size_t)(context + 1) * 4);
    if (!r->items || (!use_cache && !r->staging)) {
        data_token_reader_free(r);
        return data_errorf(err, errlen, "%s: out of memory for read buffers (%lld windows)", path,
                           (long long)cap);
    }
    return 0;
}

void data_token_reader_free(data_token_reader *r) {
    free(r->items);
    free(r->staging);
    free(r->cache);
    memset(r, 0, sizeof *r);
}

/* Tokens [first, first + n) of /tokens into dst as int32 (inside data_h5_begin/end). */
static int read_range(data_token_reader *r, int64_t first, int64_t n, int32_t *dst, char *err,
                      size_t errlen) {
    hid_t fspace = H5Dget_space(r->tokens);
    hsize_t start[1] = {(hsize_t)first}, count[1] = {(hsize_t)n};
    hid_t mspace = H5Screate_simple(1, count, NULL);
    int rc = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dread(r->tokens, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, dst) >= 0)
        rc = 0;
    if (rc) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        data_errorf(err, errlen, "%s: dataset /tokens: reading tokens [%lld, %lld) failed: %s",
                    r->path, (long long)first, (long long)(first + n),
                    detail[0] ? detail : "unknown HDF5 error");
    }
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

/* Every token of t[0, n) (file positions first..) inside [0, vocab). */
static int validate(const data_token_reader *r, const int32_t *t, int64_t n, int64_t first,
                    char *err, size_t errlen) {
    for (int64_t i = 0; i < n; i++)
        if (t[i] < 0 || (int64_t)t[i] >= r->vocab)
            return data_errorf(err, errlen, "%s: dataset /tokens: token %d at position %lld is "
                               "outside the vocabulary [0, %lld) (attribute vocab_size)",
                               r->path, t[i], (long long)(first + i), (long long)r->vocab);
    return 0;
}

int data_token_reader_load_cache(data_token_reader *r, char *err, size_t errlen) {
    if (r->cache || !r->use_cache) return 0;
    r->cache = malloc((size_t)(r->n_tokens > 0 ? r->n_tokens : 1) * sizeof(int32_t));
    if (!r->cache)
        return data_errorf(err, errlen, "%s: out of memory caching %lld tokens", r->path,
                           (long long)r->n_tokens);
    /* in slices, so that conversion buffers stay small */
    const int64_t slice = (int64_t)1 << 24;
    for (int64_t at = 0; at < r->n_tokens; at += slice) {
        int64_t n = r->n_tokens - at < slice ? r->n_tokens - at : slice;
        if (read_range(r, at, n, r->cache + at, err, errlen) ||
            validate(r, r->cache + at, n, at, err, errlen)) {
            free(r->cache);
            r->cache = NULL;
            return -1;
        }
    }
    return 0;
}

static void split(const int32_t *window, int64_t context, int32_t *x, int32_t *y) {
    memcpy(x, window, (size_t)context * sizeof(int32_t));
    memcpy(y, window + 1, (size_t)context * sizeof(int32_t));
}

int data_token_reader_read(data_token_reader *r, const int64_t *starts, int64_t count,
                           int32_t *x, int32_t *y, char *err, size_t errlen) {
    int64_t ctx = r->context, w = ctx + 1;
    if (r->cache) {
        for (int64_t i = 0; i < count; i++)
            split(r->cache + starts[i], ctx, x + i * ctx, y + i * ctx);
        return 0;
    }
    window_item *items = r->items;
    for (int64_t i = 0; i < count; i++) items[i] = (window_item){starts[i], i};
    qsort(items, (size_t)count, sizeof *items, by_start);
    /* runs of overlapping or adjacent windows: one read each */
    int64_t i = 0;
    while (i < count) {
        int64_t first = items[i].start, end = first + w, j = i + 1;
        while (j < count && items[j].start <= end) {
            if (items[j].start + w > end) end = items[j].start + w;
            j++;
        }
        if (read_range(r, first, end - first, r->staging, err, errlen) ||
            validate(r, r->staging, end - first, first, err, errlen))
            return -1;
        for (int64_t k = i; k < j; k++) {
            int64_t slot = items[k].slot;
            split(r->staging + (items[k].start - first), ctx, x + slot * ctx, y + slot * ctx);
        }
        i = j;
    }
    return 0;
}
