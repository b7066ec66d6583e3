/* checkpoint: one HDF5 file per checkpoint, written atomically, verified on read.
 *
 * Layout (any h5py user can read it):
 *   /meta                      group; attributes format_version, step, epoch, cursor,
 *                              optimizer_steps, seed, world_size, optimizer, rng, config
 *                              (the resolved YAML), meta_crc32 (CRC-32 of all of those);
 *                              language models also vocab_size (before padding to 64)
 *   /params/<name>             float32 [out, in], [out, in/groups, kh, kw] or [out]
 *                              (PyTorch names: layers.1.weight, layers.3.bias)
 *   /buffers/<name>            batch-norm running statistics (layers.2.running_mean)
 *   /optim/<name>/exp_avg, exp_avg_sq      (AdamW)   or   /optim/<name>/momentum_buffer (SGD)
 * Every dataset is chunked with HDF5's Fletcher-32 checksum filter, and the file uses the
 * 1.10 format so that HDF5's own metadata carries checksums too: a flipped byte anywhere
 * that matters makes the file fail verification.
 *
 * With checkpoint.writers 0 every rank writes a part file and /params, /optim are HDF5 virtual
 * datasets that map onto them (ckpt_parts.h); h5py reads the file the same way.
 *
 * Writing (rank 0 only; with sharded optimizer state the other ranks serve their shards, see
 * ckpt_state_fetch): DIR/step_NNNNNNNN.h5.tmp, flushed, closed, fsynced, renamed to
 * DIR/step_NNNNNNNN.h5, directory fsynced; then all but the newest `keep` are deleted.  A
 * crash at any point leaves the previous checkpoints untouched.
 *
 * The RNG needs no saved stream: dropout masks are a pure function of (seed, step, sample). */
#ifndef HARNESS_CHECKPOINT_H
#define HARNESS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "optim.h"

#define CKPT_FORMAT_VERSION 1

typedef struct {
    int64_t step;             /* optimizer steps completed */
    int64_t epoch, cursor;    /* data position of the next batch */
    int64_t optimizer_steps;  /* optim.t */
    uint64_t seed;
    int world_size;
    /* checkpoint.writers 0 (ckpt_parts.h): the number of part files and the id they all
     * carry; 0 for a checkpoint written whole by rank 0 */
    int parts;
    uint64_t parts_id;
} ckpt_state;

/* Where ckpt_write gets optimizer state tensor `state` (0: exp_avg or momentum_buffer, 1:
 * exp_avg_sq) of the flat elements [offset, offset + count): into out[count], host memory.
 * ckpt_write calls it once per (tensor, state) in tensor order, state order.  0 or -1. */
typedef int (*ckpt_state_fetch)(void *user, int state, int64_t offset, int64_t count, float *out);
/* Writes the checkpoint of `state` into dir (created if missing).  params and buffers are read
 * from the backend one tensor at a time; the optimizer state too (fetch NULL: from o's own
 * full-size buffers) or through fetch (zero_stage 1: gathered from the shards).  path_out (may
 * be NULL) receives the final file name.  0 or -1 (it may stop calling fetch at an error). */
int ckpt_write(const char *dir, const model *m, const optim *o, const ckpt_state *state,
               const char *config_yaml, int keep, ckpt_state_fetch fetch, void *fetch_user,
               char *path_out, size_t path_len, char *err, size_t errlen);

/* A host copy of everything a checkpoint holds (checkpoint.async's snapshot): flat like the
 * model's buffers - params[n_params], buffers[n_buffers], state[s][n_params] for the
 * optimizer's state tensors (full size: zero_stage 1 gathers the shards into it). */
typedef struct {
    const float *params, *buffers, *state[2];
} ckpt_host_src;
/* ckpt_write from a host snapshot: m and o give the tensor names, shapes and the optimizer
 * type only; no backend call is made, so another thread than the training loop's may call
 * it while the model trains on.  Same file, same guarantees. */
int ckpt_write_host(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml, int keep, const ckpt_host_src *src, char *path_out,
                    size_t path_len, char *err, size_t errlen);
/* The same into the file `path` itself (atomically: a temporary name, fsync, rename), nothing
 * pruned.  o may be NULL: a parameters-only checkpoint (/meta optimizer "none", no /optim), as
 * `harness convert weights` writes; runs start from it with model.init_from. */
int ckpt_write_file(const char *path, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml, ckpt_state_fetch fetch, void *fetch_user,
                    char *err, size_t errlen);

/* Fault-injection tests (HARNESS_FAULT_CKPT_SLEEP_MS, read by the run's hooks): ckpt_write
 * pauses ms milliseconds after the temporary file is complete and before the rename, so a
 * test can kill -9 the writer there.  0 (the default): no pause.  For the whole process. */
void ckpt_set_test_pause(long ms);

/* Errors of ckpt_read: the file is damaged (try an older one) or does not fit this run. */
enum { CKPT_OK = 0, CKPT_CORRUPT = -1, CKPT_MISMATCH = -2 };

/* Reads and verifies path into the model and optimizer (which must already be built for the
 * run's config): every tensor's name and shape must match, the optimizer type too, else
 * CKPT_MISMATCH naming the first mismatching tensor.  Checksum failures, missing pieces and
 * unreadable files are CKPT_CORRUPT.  Nothing is modified unless the whole file verifies.
 * o may be NULL (evaluation): then only the parameters are read. */
int ckpt_read(const char *path, model *m, optim *o, ckpt_state *state, char *err, size_t errlen);

/* The resolved config stored in a checkpoint (malloc'd, NUL-terminated) or NULL with err. */
char *ckpt_read_config(const char *path, char *err, size_t errlen);

/* A language model's vocabulary before padding (/meta/vocab_size, written for token models):
 * 0 with *vocab set, 1 when the checkpoint does not record it, -1 with err. */
int ckpt_read_vocab_size(const char *path, int64_t *vocab, char *err, size_t errlen);

/* Checkpoint files in dir, newest step first: fills paths (each of path_len bytes) and returns
 * how many (at most max).  Temporary files of interrupted writes are not listed. */
int ckpt_list(const char *dir, char (*paths)[1200], int max);

/* `harness inspect`: prints step, epoch, cursor, world size, config, and every tensor's name,
 * shape and L2 norm.  0 or -1 with err. */
int ckpt_inspect(const char *path, FILE *out, char *err, size_t errlen);

#endif
