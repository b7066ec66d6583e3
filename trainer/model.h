/* model: a list of layers from the config, with every parameter in one flat buffer.
 *
 * Activations are NCHW: act[i] is the input of layer i, [batch, c, h, w] for the per-rank
 * micro-batch (vectors are [batch, d, 1, 1]); act[n_layers] holds the logits.  flatten and
 * residual_start are views (no copy).  linear takes any input as [batch, c*h*w].
 *
 * Parameters are laid out layer by layer (layer 0 first; weight then bias; batch norm: weight
 * = gamma, bias = beta), so backward, which runs last layer first, finishes gradients from the
 * END of the buffer towards the start: each finished layer hands comm the offset where its
 * parameters begin.  Batch-norm running statistics are buffers (saved in checkpoints, not
 * trained) in a second flat array.
 *
 * All memory comes from the kernel backend at build time; forward and backward allocate
 * nothing. */
#ifndef HARNESS_MODEL_H
#define HARNESS_MODEL_H

#include <stdint.h>
#include "config.h"
#include "kernels.h"

typedef struct {
    int64_t c, h, w;          /* per-sample shape; c*h*w features */
} model_shape;

typedef struct {
    layer_type type;
    model_shape in, out;
    int bias;                 /* linear, conv2d, residual_end projection */
    float p;                  /* dropout */
    kern_conv_shape conv;     /* conv2d, pools, residual_end projection (B set per call) */
    float eps, momentum;      /* batchnorm2d */
    int sync;                 /* batchnorm2d: statistics over all ranks */
    int block_start;          /* residual_end: index of its residual_start */
    int project;              /* residual_end: 1x1 convolution on the shortcut */
    int64_t w_off, b_off;     /* offsets into the flat parameter buffer; -1 = none */
    int64_t rm_off, rv_off;   /* batchnorm2d: running mean / var offsets in buffers; -1 = none */
    char w_name[40], b_name[40], rm_name[40], rv_name[40];
    uint8_t *mask;            /* dropout: [batch, in features] */
    int32_t *argmax;          /* maxpool2d: [batch, out features] */
    float *mean_invstd;       /* batchnorm2d: [2c] saved by forward */
    double *bn_sums;          /* batchnorm2d: [2c + 1] statistics / backward sums (+ count) */
    float *skip_grad;         /* residual_start: [batch, features] gradient via the shortcut */
    float *proj_out;          /* residual_end with projection: [batch, out features] */
} model_layer;

/* One named tensor: a parameter (in params/grads) or a buffer (in buffers). */
typedef struct {
    const char *name;         /* "layers.1.weight" (PyTorch nn.Sequential naming) */
    int is_buffer;            /* batch-norm running statistics */
    int64_t offset, count;
    int ndim;                 /* 1, 2 or 4 */
    int64_t dims[4];
} model_tensor;

/* Sums x[n] (doubles, host memory) over all ranks in place; for synchronised batch norm. */
typedef int (*model_allreduce_fn)(void *user, double *x, int n);

typedef struct {
    kern_ctx *k;
    int n_layers;
    model_layer layers[CFG_MAX_LAYERS];
    model_shape input;
    int64_t in_features, n_classes;
    int64_t batch;            /* per-rank micro-batch the buffers are sized for */
    int64_t n_params, n_buffers;
    float *params, *grads;    /* [n_params] each */
    float *buffers;           /* [n_buffers] running statistics */
    float **act;              /* act[0..n_layers]: [batch, features] */
    float *dbuf[2];           /* ping-pong gradients of activations: [batch, max features] */
    float *losses;            /* [batch] */
    void *conv_workspace;     /* the largest conv2d workspace of any layer */
    double *host_sums;        /* [2 * max channels + 1] host staging for batch-norm sums */
    float *host_floats;       /* [2 * max channels] the same as floats */
    double flops_per_sample;  /* forward + backward, multiply-add = 2 FLOPs */
    model_allreduce_fn allreduce;   /* set by the trainer when batch norm is synchronised */
    void *allreduce_user;
} model;

/* Builds the layers for samples of the given shape (the dataset's dims after N: [D], [H,W] or
 * [H,W,C]) and n_classes outputs, allocating all buffers for micro-batches of up to `batch`.
 * 0 or -1 with err naming the layer. */
int model_build(model *m, const config *cfg, const int64_t *sample_shape, int sample_ndim,
                int64_t n_classes, int64_t batch, kern_ctx *k, char *err, size_t errlen);
void model_free(model *m);

/* Bytes model_build would allocate (parameters, gradients, buffers, activations, scratch)
 * without allocating; and the parameter count.  -1 when the layers do not fit the input. */
int64_t model_estimate_bytes(const config *cfg, const int64_t *sample_shape, int sample_ndim,
                             int64_t n_classes, int64_t batch, int64_t *n_params);

/* The tensors in buffer order: parameters first, then buffers; returns their number. */
int model_tensors(const model *m, model_tensor *out, int max);
#define MODEL_MAX_TENSORS (4 * CFG_MAX_LAYERS)

/* Deterministic initialisation from (seed) on any backend.  "kaiming_uniform" is PyTorch's
 * default for nn.Linear and nn.Conv2d (weight and bias uniform in +-1/sqrt(fan_in)); "normal"
 * draws weights from N(0, 0.02^2) with zero biases.  Batch norm: gamma 1, beta 0, running
 * mean 0, running var 1. */
void model_init_params(model *m, const char *init, uint64_t seed);

/* The input buffer of the model, act[0]: [batch, in_features]; the trainer converts each
 * batch straight into it. */
float *model_input(model *m);

/* Forward of the first B <= batch samples of model_input.  When training, dropout draws its
 * mask from (seed, step_id, global sample index), so the split over ranks does not change the
 * result; sample_base is the global index (within the global batch) of this rank's first
 * sample; batch norm uses batch statistics (over all ranks when synchronised) and updates its
 * running statistics.  Returns the logits act[n_layers]: [B, n_classes]. */
float *model_forward(model *m, int64_t B, int training, uint64_t seed, uint64_t step_id,
                     int64_t sample_base);

/* Where the caller puts dlogits [B, n_classes] before model_backward. */
float *model_dlogits(model *m);

/* Backward from model_dlogits through every layer, accumulating into m->grads.  After
 * finishing each layer that owns parameters, calls on_layer_done(user, offset of the layer's
 * first parameter) so communication can start early (may be NULL). */
void model_backward(model *m, int64_t B,
                    void (*on_layer_done)(void *user, int64_t param_offset), void *user);

/* Where non-finite values (NaN, Inf) first appear in the last forward pass of B samples:
 * -1 = already in the input, i = in the output of layer i, n_layers = nowhere. */
int model_first_nonfinite_layer(model *m, int64_t B);
/* The first parameter tensor (model_tensors order) whose values (grads = 0) or gradients
 * (grads = 1) are non-finite, or -1. */
int model_first_nonfinite_tensor(model *m, int grads);

#endif
