/* layer: the table of functions behind every layer type, and what model.c offers them.
 *
 * A layer type is one file in trainer/model/layers/ that defines a `const layer_ops layer_<type>`
 * (listed in layer_table, layers.c).  model.c walks the list and calls:
 *   plan      once, at build (and for estimates): given L->in, set L->out, declare parameters
 *             (plan_param), buffers (plan_buffer), layer-owned memory (plan_memory), shared
 *             scratch (plan_scratch) and FLOPs; check the input fits.  May calloc L->state.
 *   forward   act[i] -> act[i+1] for pass->B samples (pass->T positions each).
 *   backward  given dout (the gradient of act[i+1]), accumulate parameter gradients and, when
 *             need_din, write the gradient of act[i] into din and return 1; or update dout in
 *             place into the gradient of act[i] and return 0.
 * Shapes: a layer acting on the last dimension works on rows = B * T of c*h*w features. */
#ifndef HARNESS_LAYER_H
#define HARNESS_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    int64_t B;              /* samples (sequences) in this call */
    int64_t T;              /* positions per sample in this call: in.t, or 1 when decoding */
    int64_t pos;            /* decoding: the position of the new token */
    int training, decode;
    int overwrite;          /* backward: layers with `overwrites` write (=) their gradients */
    uint64_t seed, step_id;
    int64_t sample_base;    /* global index of this rank's first sample in the global batch */
} model_pass;

/* Build-time bookkeeping (model.c). */
typedef struct {
    model *m;
    kern_ctx *k;            /* NULL when only estimating */
    int64_t batch;
    int decode;
    int64_t act_floats;     /* activation memory that is not a view */
    int64_t max_dfeatures;  /* widest activation gradient: sizes the ping-pong buffers */
    int64_t max_channels;   /* widest batch norm (host staging) */
    int64_t memory_bytes;   /* layer-owned memory */
    size_t workspace;       /* largest scratch */
    int open_block;         /* index of the open residual_start, or -1 */
    int embedding;          /* index of the first embedding layer, or -1 (tied heads) */
    int decay_vectors;      /* weight decay on 1-D tensors (biases, norms) too */
    int64_t vocab, vocab_padded;   /* token models: the dataset's and the padded vocabulary */
    int n_alloc_requests, cap_alloc_requests;
    struct plan_alloc { void **where; size_t bytes; } *alloc_requests;
    int cap_tensors;
} model_plan;

struct layer_ops {
    int (*plan)(model_layer *L, model_plan *p, char *err, size_t errlen);
    void (*forward)(model *m, model_layer *L, const model_pass *a);
    int (*backward)(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                    int need_din);
    int view;               /* output = input memory (flatten, residual_start) */
};

/* The table, indexed by layer_type (layers.c). */
extern const layer_ops *const layer_table[LAYER_TYPE_COUNT];

/* Declares a parameter tensor of L named "<prefix>.<suffix>" (prefix: the preset's name or
 * "layers.I"); returns its offset in the flat buffer, or -1 (out of memory: plan fails).
 * Weight decay applies to every tensor of an explicit layer list (PyTorch's AdamW over
 * model.parameters()) and to matrices and embeddings only in presets (nanoGPT, GPT-2). */
int64_t plan_param(model_plan *p, model_layer *L, const char *suffix, int ndim,
                   const int64_t *dims, model_init_kind init, float init_a, int is_bias);
/* A buffer tensor (saved in checkpoints, not trained). */
int64_t plan_buffer(model_plan *p, model_layer *L, const char *suffix, int64_t count);
/* Backend memory of `bytes` the layer owns (allocated at build into *where, freed with the
 * model); 0 or -1. */
int plan_memory(model_plan *p, void **where, size_t bytes);
/* Shared scratch: the model allocates the largest request once. */
void plan_scratch(model_plan *p, size_t bytes);
/* The GPT ops' scratch for these sizes (kern_gpt_workspace, or an upper bound when
 * estimating without a backend). */
void plan_gpt_scratch(model_plan *p, int64_t T, int64_t C, int64_t NH, int64_t V);
/* conv2d's workspace for geometry g (batch set from the plan) and output shape out. */
void plan_conv_workspace(model_plan *p, const kern_conv_shape *g, model_shape out);
/* The token embedding weight of an embedding layer: its offset and [rows, dim]. */
int64_t layer_embedding_weight(const model_layer *L, int64_t *rows, int64_t *dim);
/* The fail message "model.layers[I]: ..." (always -1). */
int plan_fail(char *err, size_t errlen, const model_layer *L, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline int64_t shape_features(model_shape s) { return s.c * s.h * s.w; }   /* per position */
static inline int64_t shape_size(model_shape s) { return s.t * s.c * s.h * s.w; }  /* per sample */

/* act[i] and act[i+1] of layer L. */
static inline const float *layer_in(const model *m, const model_layer *L) { return m->act[L->index]; }
static inline float *layer_out(const model *m, const model_layer *L) { return m->act[L->index + 1]; }
/* Rows of a last-dimension op in this pass. */
static inline int64_t pass_rows(const model_pass *a) { return a->B * a->T; }

#endif
