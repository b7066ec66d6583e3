/* model: a list of layers from the config, with every parameter in one flat buffer.
 *
 * Activations are [batch, ...] with the last dimensions the features: act[i] is the input of
 * layer i, per sample t positions of c*h*w features (images: t = 1, [c, h, w] NCHW; vectors:
 * [d, 1, 1]; sequences: t positions of [c, 1, 1]); act[n_layers] holds the logits.  Layers
 * that act on "the last dimension" (linear, layernorm, gelu, lm_head) see B*t rows of c*h*w
 * features, so the same layers serve images and sequences.  flatten and residual_start are
 * views (no copy).  A model whose first layer is an embedding takes int32 tokens
 * (model_input_tokens) instead of floats.
 *
 * Each layer type lives in its own file (trainer/model/layers/) behind a small table of functions
 * (layer.h); this file only walks the list.
 *
 * Parameters are laid out layer by layer (layer 0 first; each layer's tensors in the order it
 * declares them), so backward, which runs last layer first, finishes gradients from the END of
 * the buffer towards the start: each finished layer hands comm the offset where its
 * parameters begin.  Buffers (batch-norm running statistics) are in a second flat array.
 *
 * All memory comes from the kernel backend at build time; forward and backward allocate
 * nothing. */
#ifndef HARNESS_MODEL_H
#define HARNESS_MODEL_H

#include <stdint.h>
#include "config.h"
#include "kernels.h"

typedef struct {
    int64_t t;                /* positions per sample (1 for images and vectors) */
    int64_t c, h, w;          /* features per position: c*h*w */
} model_shape;

typedef struct layer_ops layer_ops;

typedef struct {
    const layer_ops *ops;
    layer_config cfg;         /* this layer's config (presets fill name / init_std) */
    layer_type type;
    int index;
    model_shape in, out;
    int view;                 /* the output is the input's memory */
    int64_t param_off;        /* offset of its first own parameter; -1 = none */
    int64_t param_count;      /* its own parameters: [param_off, param_off + param_count) */
    double flops_fwd;         /* per sample: forward, weight gradients, input gradient */
    double flops_bwd_w, flops_bwd_in;
    void *state;              /* the type's own data (layers/<type>.c), calloc'd at plan */
    /* Fusion (model.c, after planning): a linear followed by relu or gelu computes both in
     * one op (kern_linear_act_forward: cuBLASLt epilogues on CUDA).  The linear's fused_act
     * names the activation; the activation is marked fused and skips its forward.  With relu
     * the linear's own output (the pre-activation) is not written: relu's backward reads its
     * output instead, which is > 0 exactly where the input is. */
    int fused_act;            /* linear: kern_act applied on the way out (KERN_ACT_NONE: none) */
    int fused;                /* relu / gelu: the previous linear did the forward */
    /* Gradient zeroing folded into the first writer: a layer with overwrites set writes (=)
     * the gradients of its tensors in the first backward after model_zero_grads instead of
     * adding to them, when it is the first layer of the backward pass to write them.  Its
     * tensors are its own parameters and, when shared_count > 0, the shared range (a tied
     * lm_head: the token embedding's weight). */
    int overwrites;
    int64_t shared_off, shared_count;
} model_layer;

typedef enum { INIT_FANIN, INIT_NORMAL, INIT_ONE, INIT_ZERO } model_init_kind;

/* One named tensor: a parameter (in params/grads) or a buffer (in buffers). */
typedef struct {
    char name[96];            /* "layers.1.weight", "transformer.h.0.attn.c_attn.weight" */
    int is_buffer;            /* batch-norm running statistics */
    int64_t offset, count;
    int ndim;                 /* 1, 2 or 4 */
    int64_t dims[4];
    int decay;                /* AdamW weight decay applies (train.weight_decay) */
    model_init_kind init;     /* FANIN: model.init's rule with bound a (uniform +-a) */
    float init_a;             /* FANIN: 1/sqrt(fan_in); NORMAL: std */
    int is_bias;              /* FANIN under model.init=normal: zero instead of N(0, 0.02) */
    int64_t init_count;       /* elements initialised; the rest are zero (vocabulary padding) */
} model_tensor;

/* Sums x[n] (doubles, host memory) over all ranks in place; for synchronised batch norm. */
typedef int (*model_allreduce_fn)(void *user, double *x, int n);

/* What the data gives the model. */
typedef struct {
    int tokens;                   /* 1: token ids [context] per sample (an embedding first) */
    int64_t sample_shape[3];      /* images/vectors: the dataset's dims after N; tokens: {context} */
    int sample_ndim;
    int64_t n_classes;            /* classes, or the vocabulary size */
} model_input_desc;

typedef struct model {
    kern_ctx *k;
    int n_layers;
    model_layer *layers;          /* [n_layers] */
    int n_tensors;
    model_tensor *tensors;        /* [n_tensors]: parameters in buffer order, then buffers */
    model_input_desc input_desc;
    model_shape input;
    int64_t in_features, n_classes;
    int64_t out_ld;               /* floats per logits row: n_classes, or the padded vocabulary */
    int64_t rows_per_sample;      /* logits rows per sample: 1, or the context */
    int64_t batch;                /* per-rank micro-batch the buffers are sized for */
    int64_t n_params, n_buffers;
    float *params, *grads;        /* [n_params] each */
    float *buffers;               /* [n_buffers] running statistics */
    float **act;                  /* act[0..n_layers]: [batch, features] */
    int32_t *tokens;              /* [batch, context] input tokens (token models) */
    float *dbuf[2];               /* ping-pong gradients of activations: [batch, max features] */
    float *losses;                /* [batch * rows_per_sample] */
    void *workspace;              /* the largest scratch any layer needs */
    double *host_sums;            /* [2 * max channels + 1] host staging for synchronised batch-norm sums */
    double flops_per_sample;      /* forward + backward, multiply-add = 2 FLOPs */
    /* Set by the trainer while parameters may still be arriving (train.zero_stage=1: the
     * all-gather overlaps the next forward): called before a layer's forward with each range
     * of parameters it reads (its own, and a tied head's shared range). */
    void (*params_needed)(void *user, int64_t offset, int64_t count);
    void *params_user;
    model_allreduce_fn allreduce; /* set by the trainer when batch norm is synchronised */
    void *allreduce_user;
    int decode;                   /* built for generation: key-value caches, batch = sequences */
    /* model_zero_grads: the gradient range it fills (count 0: none, every gradient has an
     * overwriting first writer), and whether the next backward's first writers overwrite */
    int64_t zero_off, zero_count;
    int grads_unset;
    int64_t allocated_bytes;      /* backend memory model_build allocated */
    int n_allocs;                 /* layer-owned backend memory, freed with the model */
    void **allocs;
    struct trace *trace;          /* NULL, or the run's trace: a span per layer per pass */
} model;

/* Builds the layers for the input and allocates all buffers for micro-batches of up to
 * `batch` samples.  decode != 0 builds for generation (model_decode_step) instead.  0 or -1
 * with err naming the layer. */
int model_build(model *m, const config *cfg, const model_input_desc *in, int64_t batch,
                int decode, kern_ctx *k, char *err, size_t errlen);
void model_free(model *m);

/* Bytes model_build would allocate (parameters, gradients, buffers, activations, scratch)
 * without allocating; and the parameter count.  -1 when the layers do not fit the input. */
int64_t model_estimate_bytes(const config *cfg, const model_input_desc *in, int64_t batch,
                             int64_t *n_params);

/* Deterministic initialisation from (seed) on any backend: each tensor its own Philox
 * stream (its index).  FANIN tensors follow model.init: "kaiming_uniform" is PyTorch's
 * default for nn.Linear and nn.Conv2d (weight and bias uniform in +-1/sqrt(fan_in));
 * "normal" draws weights from N(0, 0.02^2) with zero biases.  NORMAL tensors (GPT) use
 * their own std; batch norm and layer norm: weight 1, bias 0; running mean 0, var 1. */
void model_init_params(model *m, const char *init, uint64_t seed);

/* The input buffer of the model, act[0]: [batch, in_features]; the trainer converts each
 * batch straight into it.  Token models: model_input_tokens [batch, context]. */
float *model_input(model *m);
int32_t *model_input_tokens(model *m);

/* Whether the model is a language model (token ids in, the next token predicted at every
 * position): the one place the trainer asks, set from its input at model_build. */
int model_is_lm(const model *m);
/* Loss rows of `samples` samples, one label each: samples x rows_per_sample (a language
 * model's tokens; one row per sample otherwise). */
int64_t model_rows(const model *m, int64_t samples);

/* Forward of the first B <= batch samples of the input.  When training, dropout draws its
 * mask from (seed, step_id, global sample index), so the split over ranks does not change the
 * result; sample_base is the global index (within the global batch) of this rank's first
 * sample; batch norm uses batch statistics (over all ranks when synchronised) and updates its
 * running statistics.  Returns the logits act[n_layers]: [B * rows_per_sample, out_ld]. */
float *model_forward(model *m, int64_t B, int training, uint64_t seed, uint64_t step_id,
                     int64_t sample_base);

/* Generation (a model built with decode): one new token per sequence, model_input_tokens[B],
 * at position pos (the key-value caches hold positions [0, pos)).  Returns the logits
 * [B, out_ld]. */
float *model_decode_step(model *m, int64_t B, int64_t pos);

/* Where the caller puts dlogits [B * rows_per_sample, out_ld] before model_backward: the
 * logits buffer itself (the loss writes its gradient in place, so the largest activation of a
 * language model is stored once). */
float *model_dlogits(model *m);

/* The gradients move to g (n_params floats that the caller keeps until model_free, such as
 * this rank's segment of the node's gradient window): their values are copied and the
 * model's own buffer is freed. */
void model_move_grads(model *m, float *g);
/* Starts a step's gradients: the next model_backward writes every gradient as if m->grads
 * had been zeroed.  Only the tensors whose first writer in backward cannot overwrite are
 * filled with zeros here (none for a model of linear layers; one launch at most). */
void model_zero_grads(model *m);

/* Backward from model_dlogits through every layer, accumulating into m->grads.  After
 * finishing each layer that owns parameters, calls on_layer_done(user, offset of the layer's
 * first parameter) so communication can start early (may be NULL). */
void model_backward(model *m, int64_t B,
                    void (*on_layer_done)(void *user, int64_t param_offset), void *user);

/* Where non-finite values (NaN, Inf) first appear in the last forward pass of B samples:
 * -1 = already in the input, i = in the output of layer i, n_layers = nowhere. */
int model_first_nonfinite_layer(model *m, int64_t B);
/* The first parameter tensor whose part of flat (n_params floats laid out as the parameters:
 * m->params, gradients) holds a non-finite value, or -1. */
int model_first_nonfinite_tensor(model *m, const float *flat);

#endif
