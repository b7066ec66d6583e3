/* model: a list of layers from the config, with every parameter in one flat buffer.
 *
 * Parameters are laid out layer by layer (layer 0 first, weight then bias), so backward,
 * which runs last layer first, finishes gradients from the END of the buffer towards the
 * start: each finished layer hands comm the offset where its parameters begin.
 *
 * Activations: act[i] is the input of layer i, act[n_layers] the logits, each
 * [batch, width_i] for the per-rank micro-batch.  All buffers come from the kernel backend at
 * build time; forward and backward allocate nothing. */
#ifndef HARNESS_MODEL_H
#define HARNESS_MODEL_H

#include <stdint.h>
#include "config.h"
#include "kernels.h"

typedef struct {
    layer_type type;
    int64_t in, out;          /* features per sample in and out */
    int bias;                 /* linear */
    float p;                  /* dropout */
    int64_t w_off, b_off;     /* offsets into the flat parameter buffer; -1 = none */
    char w_name[32], b_name[32];
    uint8_t *mask;            /* dropout: [batch, in] */
} model_layer;

typedef struct {
    kern_ctx *k;
    int n_layers;
    model_layer layers[CFG_MAX_LAYERS];
    int64_t in_features, n_classes;
    int64_t batch;            /* per-rank micro-batch the buffers are sized for */
    int64_t n_params;
    float *params, *grads;    /* [n_params] each */
    float **act;              /* act[0..n_layers]: [batch, width] */
    float *dbuf[2];           /* ping-pong gradients of activations: [batch, max width] */
    float *losses;            /* [batch] */
    double flops_per_sample;  /* forward + backward, multiply-add = 2 FLOPs */
} model;

/* One named parameter tensor inside the flat buffer: [dims[0]] or [dims[0], dims[1]]. */
typedef struct {
    const char *name;         /* "layers.1.weight" (PyTorch nn.Sequential naming) */
    int64_t offset, count;
    int ndim;
    int64_t dims[2];
} model_tensor;

/* Builds the layer list for inputs of in_features and n_classes outputs, allocates all
 * buffers for micro-batches of up to `batch` samples.  0 or -1 with err naming the layer. */
int model_build(model *m, const config *cfg, int64_t in_features, int64_t n_classes,
                int64_t batch, kern_ctx *k, char *err, size_t errlen);
void model_free(model *m);

/* Bytes model_build would allocate for these inputs and micro-batch (parameters and
 * gradients, activations), without allocating; and the parameter count.  -1 when the
 * layer list does not fit the inputs (model_build then says why). */
int64_t model_estimate_bytes(const config *cfg, int64_t in_features, int64_t batch,
                             int64_t *n_params);

/* The parameter tensors in buffer order; returns their number (at most 2 per layer). */
int model_tensors(const model *m, model_tensor *out, int max);

/* Deterministic initialisation from (seed) on any backend.  init "kaiming_uniform" is
 * PyTorch nn.Linear's default (weight and bias uniform in +-1/sqrt(fan_in)); "normal" draws
 * weights from N(0, 0.02^2) with zero biases. */
void model_init_params(model *m, const char *init, uint64_t seed);

/* The input buffer of the model, act[0]: [batch, in_features]; the trainer converts each
 * batch straight into it. */
float *model_input(model *m);

/* Forward of the first B <= batch samples of model_input.  When training, dropout draws its
 * mask from (seed, step_id, global sample index), so the split over ranks does not change the
 * result; sample_base is the global index (within the global batch) of this rank's first
 * sample.  Returns the logits act[n_layers]: [B, n_classes]. */
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
