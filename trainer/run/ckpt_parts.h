/* ckpt_parts: a checkpoint that every rank writes its own part of (checkpoint.writers 0),
 * still one file to h5py and `harness inspect`.  Internal to trainer/run/.
 *
 * Files in the checkpoint directory, for a run of W ranks:
 *   step_NNNNNNNN.h5.part_RRRR_of_WWWW   rank R's part (not *.h5: globs of checkpoints stay).  Rank R owns the flat slice [lo, hi) of
 *       the parameter buffer, lo = floor(n R / W) - the cut of ZeRO-1's shards, so a sharded
 *       optimizer state is written where it lives, with no gather.  /part carries the
 *       attributes parts_id, part, parts, lo, hi, step; every tensor that meets the slice has
 *       a 1-D float32 dataset of that intersection, /params/<name> and /optim/<name>/<state>
 *       (chunked, Fletcher-32), with attribute flat_offset (its first element's place in the
 *       flat buffer).
 *   step_NNNNNNNN.h5   written by rank 0 once every part is durable: /meta as for a whole file
 *       plus parts (W) and parts_id (both under the meta CRC), /buffers as plain datasets,
 *       and /params, /optim as HDF5 virtual datasets of the tensors' own shapes whose pieces
 *       (at most 2 ndim - 1 per part: a flat range of a C-order array) map onto the parts.
 *       The source file names are bare names: HDF5 looks for a relative source next to the
 *       virtual dataset's file (after HDF5_VDS_PREFIX and H5Pset_virtual_prefix, before the
 *       working directory), so a moved or copied checkpoint directory still reads.  Fill
 *       value NaN: a missing part reads as NaN in h5py, never as plausible zeros.
 * Publishing: each part is written under a temporary name, fsynced and renamed (directory
 * fsynced); rank 0 checks that every part is there with this save's id, then publishes the
 * main file the same way.  Only the main file's name is a checkpoint (ckpt_list), so a
 * crash before it leaves the previous checkpoint the newest; keep-K deletes a checkpoint's
 * parts with it, and parts without a main file (ckpt_parts_prune).
 * Reading: the trainer does not trust the mapping: it opens the parts itself, checks each
 * one's id, range and datasets and reads the slices (ckpt_parts_read), so a missing,
 * truncated or stale part (another save of the same step) fails verification naming the
 * file, and --resume auto falls back to the previous checkpoint. */
#ifndef HARNESS_CKPT_PARTS_H
#define HARNESS_CKPT_PARTS_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

/* Part `part` of `parts` owns the flat elements [lo, hi) of n. */
void ckpt_part_bounds(int64_t n, int part, int parts, int64_t *lo, int64_t *hi);

/* One rank's slice, host memory, or backend memory when k is not NULL (copied to the host
 * one tensor at a time).  params and state[s] point at the slice's first element. */
typedef struct {
    const float *params, *state[2];
    kern_ctx *k;
} ckpt_part_src;

/* Writes and renames rank `part`'s file of checkpoint state (state->parts, ->parts_id set).
 * 0 or -1 with err. */
int ckpt_part_write(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                    int part, const ckpt_part_src *src, char *err, size_t errlen);

/* Rank 0, once every part is written: checks them, writes and publishes the main file, then
 * keeps the newest `keep`.  buffers: host copy of m->buffers (NULL: read from the backend).
 * 0 or -1 with err. */
int ckpt_parts_publish(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                       const char *config_yaml, int keep, const float *buffers, char *path_out,
                       size_t path_len, char *err, size_t errlen);

/* The parts of the checkpoint `path` (its /meta says s->parts and s->parts_id), checked:
 * each file opens, carries the id, and the slices tile [0, n) (n < 0: not checked).
 * CKPT_OK or CKPT_CORRUPT with err naming the file. */
typedef struct ckpt_parts ckpt_parts;
int ckpt_parts_open(const char *path, const ckpt_state *s, int64_t n, ckpt_parts **out,
                    char *err, size_t errlen);
/* The flat elements [offset, offset + count) of the parts' dataset rel ("params/NAME",
 * "optim/NAME/STATE") into out[count].  CKPT_OK or CKPT_CORRUPT with err. */
int ckpt_parts_read(ckpt_parts *p, const char *rel, int64_t offset, int64_t count, float *out,
                    char *err, size_t errlen);
void ckpt_parts_close(ckpt_parts *p);

/* Deletes part files whose checkpoint (main file) does not exist. */
void ckpt_parts_prune(const char *dir);

/* checkpoint.c's pieces the parts share */
int ckpt_write_meta(hid_t f, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml);
int ckpt_optim_states(const optim *o, const char **names, float **bufs);
void ckpt_prune(const char *dir, int keep);
void ckpt_fault_pause(void);

#endif
