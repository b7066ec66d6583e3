/* data: HDF5 classification datasets, sharded across ranks, read in the background.
 *
 * Schema (docs/design.md, "Contracts"): /images uint8 or float32 [N,H,W], [N,H,W,C] or
 * [N,D]; /labels integer [N] (any HDF5 integer type, read as int32); attribute num_classes on
 * the file root or on /labels (integer); optional class_names (strings), mean and std (float,
 * scalar).
 *
 * Sharding: the order of an epoch is a permutation of [0,N) computed from (seed, epoch), the
 * same on every rank (identity when shuffle is off).  A global cursor counts samples consumed
 * in the epoch.  Each global batch of G samples is split in contiguous slices, rank r of R
 * taking [r*G/R, (r+1)*G/R).  Training drops the last incomplete global batch and rolls into
 * the next epoch; evaluation walks the epoch once in order, the last global batch may be
 * short (split the same way, so a rank may get 0 samples), and covers every sample exactly once.
 *
 * Threads: one background thread per loader makes every HDF5 call after open (reads are
 * serialised across loaders by a lock inside this module), and fills the next batch while the
 * caller trains on the current one.  Errors are returned to the caller with a message naming
 * the file and the dataset; nothing here prints or exits. */
#ifndef HARNESS_DATA_H
#define HARNESS_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DATA_U8 = 0, DATA_F32 = 1, DATA_I32 = 2 } data_dtype;

/* What a file holds, told by its contents: /images + /labels (classification) or /tokens
 * (language modelling). */
typedef enum { DATA_CLASSIFY = 0, DATA_TOKENS = 1 } data_kind;

#define DATA_MAX_DIMS 4
#define DATA_MAX_CLASSES 65536

typedef struct {
    int64_t n;                        /* samples */
    int sample_ndim;                  /* dims after N: 1..3 */
    int64_t sample_shape[DATA_MAX_DIMS - 1];
    int64_t sample_elems;             /* product of sample_shape */
    data_dtype dtype;
    int num_classes;
    int has_mean_std;                 /* attributes mean/std present */
    float mean, std;
    int n_class_names;                /* 0 when absent */
    char **class_names;               /* n_class_names strings, owned by the dataset */

    /* Token datasets (kind == DATA_TOKENS): /tokens uint16 or int32 [T], attribute
     * vocab_size; optional attributes tokenizer ("bytes", "gpt2") and eot_token, and the
     * tokenizer's own tables under /tokenizer.  data_inspect sets n = n_tokens and
     * sample_ndim = 0; a loader opened with a context sets n = windows of the grid (below),
     * sample_shape = {context}, sample_elems = context and dtype = DATA_I32. */
    data_kind kind;
    int64_t n_tokens;                 /* T */
    int token_bits;                   /* 16 (uint16 in the file) or 32 (int32) */
    int64_t vocab_size;
    int64_t eot_token;                /* -1 when absent */
    char tokenizer[32];               /* "" when absent */
    int64_t context;                  /* loader only: tokens per sample (window - 1) */
} data_info;

/* Schema check only: opens the file, validates it against the schema, fills info.  Also
 * validates every label against num_classes (error names the first bad index).  The caller
 * releases class_names with data_info_free. */
int data_inspect(const char *path, data_info *info, char *err, size_t errlen);
void data_info_free(data_info *info);

typedef enum { DATA_TRAIN = 0, DATA_EVAL = 1 } data_mode;

typedef struct {
    const char *path;
    data_mode mode;
    int rank, world;
    int64_t global_batch;     /* G: samples per global batch (all ranks together) */
    uint64_t seed;
    int shuffle;              /* training: permute each epoch; eval ignores this */
    int64_t cache_bytes;      /* whole dataset kept in memory when it fits; 0 = never */
    /* Training augmentation of image samples ([N,H,W] or [N,H,W,C]), applied on the fly in
     * the background thread, deterministic from (seed, epoch, sample index) so that a resumed
     * run sees the same pixels: random crop after zero padding of augment_pad pixels on each
     * side (torchvision RandomCrop(size, padding)), and horizontal flip with probability 1/2
     * when augment_hflip.  Ignored in eval mode. */
    int augment_pad;
    int augment_hflip;
    /* Host buffers for batches (pinned memory on GPU runs); NULL = malloc/free. */
    void *(*alloc_host)(size_t bytes, void *user);
    void (*free_host)(void *p, void *user);
    void *alloc_user;
    /* Token datasets: tokens per sample (the model's context); each sample is a window of
     * context + 1 tokens, inputs [0, context) and targets [1, context].  Required (> 0) for a
     * token file, ignored for images.  The windows of an epoch form a grid with stride
     * context over the token array: W = (T - 1) / context windows in evaluation (offset 0:
     * every window of the pass exactly once); in training with shuffle, W - 1 windows at an
     * offset in [0, context) drawn from (seed, epoch), so that over epochs every boundary is
     * seen (W when W == 1).  The windows are then permuted and sharded like images. */
    int64_t context;
} data_config;

typedef struct {
    const void *x;            /* [count, sample elems] in the file's dtype (info.dtype);
                               * tokens: int32 [count, context] inputs */
    const int32_t *y;         /* [count] labels; tokens: [count, context] targets (inputs
                               * shifted by one) */
    int64_t count;            /* this rank's samples in this batch (eval: may be 0) */
    int64_t global_count;     /* samples in the whole global batch */
    int64_t rank_offset;      /* where this rank's samples start within the global batch
                               * (data_rank_slice's begin): their dropout streams' index */
    int64_t epoch;            /* epoch and cursor of this batch's first sample */
    int64_t cursor;
    int last;                 /* eval: this is the final batch of the pass */
} data_batch;

typedef struct data_loader data_loader;

/* Validates the file (as data_inspect) and the config, starts the background thread. */
int data_loader_open(const data_config *cfg, data_loader **out, char *err, size_t errlen);
const data_info *data_loader_info(const data_loader *l);
/* Hands out the next batch; the previous batch's buffers are recycled, so the caller must be
 * done with them.  Training: never ends (rolls over epochs).  Eval: after the batch marked
 * last, returns 1 (end of pass) once, then starts a new pass from the beginning.
 * Returns 0 (batch), 1 (eval pass finished) or -1 (error, err says why). */
int data_loader_next(data_loader *l, data_batch *batch, char *err, size_t errlen);
/* Training position of the NEXT batch to be handed out. */
void data_loader_position(const data_loader *l, int64_t *epoch, int64_t *cursor);
/* Restarts the stream at (epoch, cursor): used on resume, possibly with another world size. */
int data_loader_seek(data_loader *l, int64_t epoch, int64_t cursor, char *err, size_t errlen);
/* Seconds the caller spent waiting in data_loader_next (for the step time breakdown). */
double data_loader_wait_seconds(const data_loader *l);
void data_loader_close(data_loader *l);
/* The module-wide lock every HDF5 call of data/ (the loaders' prefetch threads included) runs
 * under.  For a caller that makes HDF5 calls of its own from another thread while loaders run
 * (the background checkpoint writer) on an HDF5 build that is not thread-safe: hold it around
 * them.  Not re-entrant; never call data/ while holding it. */
void data_hdf5_lock(void);
void data_hdf5_unlock(void);

/* The permutation of epoch `epoch`: perm[N] (exposed for tests and tools). */
void data_epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);
/* The window grid of a token dataset in an epoch (data_config.context): *windows (the same
 * in every epoch) and the token offset of window 0. */
void data_token_grid(int64_t n_tokens, int64_t context, data_mode mode, int shuffle,
                     uint64_t seed, int64_t epoch, int64_t *windows, int64_t *offset);
/* Rank r's slice [begin, end) of a global batch of g samples. */
void data_rank_slice(int64_t g, int rank, int world, int64_t *begin, int64_t *end);

/* Converters: IDX (MNIST format, optionally gzipped) images+labels -> HDF5 classification
 * file with /images uint8 [N,H,W], /labels uint8->int32 [N], num_classes, class_names. */
int data_convert_idx(const char *images_idx, const char *labels_idx, const char *out_h5,
                     int num_classes, const char *const *class_names,
                     char *err, size_t errlen);

/* Image folders (data/convert_images.c): ROOT/CLASS/NAME.jpg|jpeg|png -> out_dir/train.h5 and
 * out_dir/val.h5 (out_dir must exist): /images uint8 [N,H,W,3] (RGB; gray expanded, PNG alpha
 * composited onto black; every image resized bilinearly to HxW), /labels int32 [N] (class =
 * index of CLASS among ROOT's subdirectories in name order), attributes num_classes,
 * class_names, mean and std (of pixel/255 over the file).  Per class, round(val_fraction x n)
 * of its n files, chosen from seed, go to val.h5 (at least 1 when val_fraction > 0 and n >= 2,
 * never all; val_fraction 0: no val.h5).  A file that does not
 * decode stops the conversion naming it, or (skip_bad) is reported through skipped() and left
 * out.  Files are decoded by content (JPEG or PNG magic), not by extension. */
typedef struct {
    const char *out_dir;
    int height, width;          /* 0, 0: the first image's size */
    double val_fraction;        /* [0, 1) */
    int skip_bad;
    uint64_t seed;
} data_images_options;

typedef struct {
    int64_t done, total, skipped;
    double seconds;
} data_images_progress;

typedef struct {
    void (*progress)(const data_images_progress *p, void *user);   /* about 5 times a second */
    void (*skipped)(const char *path, const char *why, void *user);
    void *user;
} data_images_callbacks;

typedef struct {
    int64_t train, val, skipped;
    int classes, height, width;
    double seconds;
} data_images_stats;

int data_convert_images(const char *root, const data_images_options *o,
                        const data_images_callbacks *cb, data_images_stats *st, char *err,
                        size_t errlen);

/* Token converters (data/convert_text.c, data/convert_tokens.c).  Both write token datasets
 * (/tokens uint16 when vocab_size <= 65536, else int32, contiguous; attribute vocab_size; the
 * tokenizer's attributes and tables when one is given) to a temporary name, fsynced and
 * renamed into place, and stream their inputs (memory does not grow with the input). */
struct data_tokenizer;

typedef struct {
    int64_t bytes_done, bytes_total;   /* input bytes read so far / in all inputs */
    int64_t tokens;                    /* tokens produced so far */
    double seconds;                    /* since the start */
    int file_index;                    /* the input being read */
} data_convert_progress;

typedef struct {
    int64_t bytes_in, tokens;          /* all inputs together */
    int64_t train_tokens, val_tokens;  /* text: the two files; tokens: train = all */
    double seconds;
} data_convert_stats;

/* Text files -> out_dir/train.h5 and out_dir/val.h5 (out_dir must exist).  The inputs are
 * read in order, in blocks cut at line starts where the tokenization cannot depend on the
 * cut; each file is one document: with a tokenizer that has an end-of-text token, that token
 * separates consecutive files.  val.h5 holds the last floor(val_fraction * T) tokens (at least
 * 1 when val_fraction > 0), train.h5 the rest; val_fraction in [0, 1) (0: no val.h5, an
 * existing one is removed).  progress (may be NULL)
 * is called about every 4 MiB of input and once at the end. */
int data_convert_text(const char *const *inputs, int n_inputs, const struct data_tokenizer *tok,
                      double val_fraction, const char *out_dir,
                      void (*progress)(const data_convert_progress *p, void *user), void *user,
                      data_convert_stats *stats, char *err, size_t errlen);

/* Other trainers' token files -> one token dataset, the inputs concatenated in order.
 *   DATA_FROM_LLMC     llm.c .bin shards: 256 x int32 header (magic 20240520, version 1,
 *                      token count), then that many uint16 tokens; vocabulary 50257 by default,
 *                      attribute tokenizer = "gpt2" (tables only when tok is given)
 *   DATA_FROM_NANOGPT  nanoGPT's train.bin / val.bin: raw little-endian uint16 tokens;
 *                      vocab_size is required
 * vocab_size 0 = the format's default.  Every token is checked against vocab_size (the error
 * names the file and the token's position in it).  tok (may be NULL) is stored in the file;
 * its vocabulary must fit vocab_size. */
typedef enum { DATA_FROM_LLMC = 0, DATA_FROM_NANOGPT = 1 } data_token_format;
int data_convert_tokens(data_token_format from, const char *const *inputs, int n_inputs,
                        int64_t vocab_size, const struct data_tokenizer *tok, const char *out_h5,
                        data_convert_stats *stats, char *err, size_t errlen);

/* Tokens [start, start + count) of a token file's /tokens (uint16 or int32 in the file) as
 * int32, for tools (inspect) and tests; no schema check beyond the dataset's type and size. */
int data_read_tokens(const char *path, int64_t start, int64_t count, int32_t *out, char *err,
                     size_t errlen);

#endif
