/* data internals shared by the files of this module (not part of the public API).
 *
 *   hdf5_util.c  error messages, the module-wide HDF5 lock, quiet HDF5 error printing,
 *                the attribute and dataset writers and the fsync the converters share
 *   schema.c     open + validate a classification file (data_inspect)
 *   shard.c      the splitmix64 generator, epoch permutation, rank slices, the batch plan
 *   augment.c    training augmentation: random crop after zero padding, horizontal flip
 *   read.c       batched reads: sort, merge runs, grouped hyperslab reads, permute; cache
 *   loader.c     the loader: background thread, double buffering, public loader API
 *   tokens.c     token datasets: the window grid, window reads and validation
 *   convert_idx.c  IDX -> HDF5 converter */
#ifndef HARNESS_DATA_INTERNAL_H
#define HARNESS_DATA_INTERNAL_H

#include <hdf5.h>
#include <stdarg.h>
#include "data.h"

#if defined(__GNUC__)
#define DATA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DATA_PRINTF(a, b)
#endif

/* ---- hdf5_util.c ---- */

/* snprintf into err (NULL or errlen 0 is allowed); always returns -1 so callers can
 * `return data_errorf(...)`. */
int data_errorf(char *err, size_t errlen, const char *fmt, ...) DATA_PRINTF(3, 4);

/* Every HDF5 call of this module runs between begin and end: begin takes the module-wide lock
 * and silences HDF5's automatic error printing for this thread (the setting is per thread in a
 * thread-safe build), end restores the caller's setting and unlocks. */
typedef struct {
    H5E_auto2_t func;
    void *client_data;
} data_h5_scope;
void data_h5_begin(data_h5_scope *s);
void data_h5_end(data_h5_scope *s);

/* The innermost message on this thread's HDF5 error stack ("" when none); call right after
 * the failing call, before any other HDF5 call clears the stack. */
void data_h5_error_detail(char *buf, size_t len);
/* "uint8", "int64", "float32", "string", ... for messages. */
void data_h5_type_name(hid_t type, char *buf, size_t len);
/* "[60000,28,28]" (or "scalar") for messages. */
void data_h5_space_text(hid_t space, char *buf, size_t len);

/* Scalar attributes on loc (a file or group), as the converters write them: an int64, and a
 * UTF-8 string stored fixed-length (strlen + 1 bytes, NUL-terminated), not variable-length
 * (those live in HDF5's global heap, which has no checksum); h5py reads both kinds.
 * Negative on failure (the HDF5 error stack says why). */
herr_t data_h5_write_i64_attr(hid_t loc, const char *name, int64_t value);
herr_t data_h5_write_string_attr(hid_t loc, const char *name, const char *value);
/* A contiguous dataset name [dims[0], ..., dims[rank-1]] of file_type under loc, written whole
 * from data (mem_type); nothing is written when it has no elements. */
herr_t data_h5_write_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                             int rank, const hsize_t *dims, const void *data);

/* fsync(2) of a finished file, so that its data reaches the disk before a rename makes it
 * visible under its final name.  0, or -1 with errno set. */
int data_fsync_path(const char *path);

/* ---- schema.c ---- */

typedef struct {
    hid_t file;
    hid_t images;
    hid_t images_memtype; /* H5T_NATIVE_UCHAR or H5T_NATIVE_FLOAT (not to be closed) */
} data_h5_file;

/* Opens and validates path (caller is inside data_h5_begin/end).  On success the handles stay
 * open (close with data_schema_close) and, when labels_out is not NULL, *labels_out receives
 * the validated labels [N] as int32 (malloc'd).  On failure everything is released. */
int data_schema_open(const char *path, data_info *info, data_h5_file *h, int32_t **labels_out,
                     char *err, size_t errlen);
void data_schema_close(data_h5_file *h);

/* ---- shard.c ---- */

/* splitmix64 (a counter-based generator): state advances by the golden gamma, the output is
 * the mixed state, so a stream is a pure function of its starting state. */
#define DATA_GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL
typedef struct {
    uint64_t state;
} data_rng;
uint64_t data_splitmix64_mix(uint64_t z);
uint64_t data_rng_next(data_rng *r);
/* Uniform in [0, bound), bound >= 1, without modulo bias. */
uint64_t data_rng_below(data_rng *r, uint64_t bound);

/* What the next item of a stream is, given its position (epoch, cursor). */
typedef struct {
    int end_of_pass;           /* eval only: the pass is over, nothing to read */
    int64_t epoch, cursor;     /* position of this batch's first sample */
    int64_t global_count;      /* samples in the global batch */
    int last;                  /* eval: final batch of the pass */
    int64_t next_epoch, next_cursor;
} data_plan;

/* Moves (epoch, cursor) to where the next batch really starts: in training a cursor with no
 * room for a full global batch rolls into the next epoch. */
void data_plan_normalize(data_mode mode, int64_t n, int64_t g, int64_t *epoch, int64_t *cursor);
void data_plan_next(data_mode mode, int64_t n, int64_t g, int64_t epoch, int64_t cursor,
                    data_plan *plan);

/* ---- read.c ---- */

typedef struct {
    int64_t index; /* sample index in the file */
    int64_t slot;  /* position in the batch */
} data_read_item;

typedef struct {
    const char *path;
    hid_t images;            /* borrowed from data_h5_file */
    hid_t memtype;
    int64_t n;
    size_t sample_bytes;
    int64_t cap;             /* most samples one read may ask for */
    data_read_item *items;   /* [cap] */
    unsigned char *staging;  /* [cap, sample_bytes]: rows in file order before permuting */
    int use_cache;           /* whole /images fits cache_bytes: read once, serve from memory */
    unsigned char *cache;    /* [n, sample_bytes] once loaded */
} data_reader;

int data_reader_init(data_reader *r, const char *path, const data_h5_file *h,
                     const data_info *info, int64_t cap, int use_cache, char *err,
                     size_t errlen);
/* x[i] = images[indices[i]] for i < count (count <= cap).  Makes HDF5 calls: inside
 * data_h5_begin/end. */
int data_reader_read(data_reader *r, const int64_t *indices, int64_t count, void *x,
                     char *err, size_t errlen);
void data_reader_free(data_reader *r);

/* ---- tokens.c ---- */

typedef struct {
    const char *path;
    hid_t tokens;            /* borrowed from data_h5_file (its images handle) */
    int64_t n_tokens, vocab, context;
    int64_t cap;             /* most windows one read may ask for */
    void *items;             /* [cap] window starts with their batch slots */
    int32_t *staging;        /* [cap * (context + 1)] tokens in file order */
    int use_cache;           /* the whole /tokens fits the cache: read once, validated */
    int32_t *cache;          /* [n_tokens] once loaded */
} data_token_reader;

int data_token_reader_init(data_token_reader *r, const char *path, hid_t tokens,
                           const data_info *info, int64_t context, int64_t cap, int use_cache,
                           char *err, size_t errlen);
/* Reads and validates the whole /tokens into the cache when use_cache (inside
 * data_h5_begin/end); 0 when there is nothing to do. */
int data_token_reader_load_cache(data_token_reader *r, char *err, size_t errlen);
/* The windows starting at starts[0, count): x[i] = tokens [s, s + context), y[i] = tokens
 * [s + 1, s + context + 1).  HDF5 calls unless cached: inside data_h5_begin/end. */
int data_token_reader_read(data_token_reader *r, const int64_t *starts, int64_t count,
                           int32_t *x, int32_t *y, char *err, size_t errlen);
void data_token_reader_free(data_token_reader *r);

/* ---- augment.c ---- */

/* What one training sample gets: crop offset (dy, dx) in [0, 2*pad]^2 into the zero-padded
 * [H+2p, W+2p] image, then a horizontal flip when flip. */
typedef struct {
    int dy, dx;
    int flip;
} data_augment_draw;

/* The key of the augmentation stream of (seed, epoch), distinct from the permutation's. */
uint64_t data_augment_key(uint64_t seed, int64_t epoch);
/* The draws of sample `index` (in the dataset) under key: a pure function of its arguments,
 * so neither world size, rank, batch position nor resume changes them. */
data_augment_draw data_augment_draw_sample(uint64_t key, int64_t index, int pad, int hflip);

typedef struct {
    int on;                  /* training with pad > 0 or hflip */
    int pad, hflip;
    int64_t h, w;            /* sample [H, W] or [H, W, C] */
    size_t pixel_bytes;      /* C * element size */
} data_augment;

/* Validates cfg's augmentation against the samples (training only; eval ignores it) and fills
 * a.  Errors name the file, /images and the config field. */
int data_augment_init(data_augment *a, const data_config *cfg, const data_info *info,
                      char *err, size_t errlen);
/* One sample [H, W, C] in place (no allocation). */
void data_augment_sample(const data_augment *a, data_augment_draw d, void *sample);
/* x[i] = augment(x[i]) with the draws of sample indices[i] in epoch `epoch`. */
void data_augment_batch(const data_augment *a, uint64_t seed, int64_t epoch,
                        const int64_t *indices, int64_t count, void *x);

#endif
