/* optim: learning-rate schedule, global-norm clipping and the optimizer step over the flat
 * parameter buffer (state buffers have the same layout as the parameters). */
#ifndef HARNESS_OPTIM_H
#define HARNESS_OPTIM_H

#include <stdint.h>
#include "config.h"
#include "kernels.h"

typedef struct {
    kern_ctx *k;
    optimizer_type type;
    int64_t n;
    float *m, *v;          /* AdamW moments, or m = SGD momentum buffer; NULL when unused */
    int64_t t;             /* optimizer steps taken (AdamW bias correction, SGD first step) */
    float lr, min_lr, momentum, beta1, beta2, eps, weight_decay, clip;
    int nesterov;
    schedule_type schedule;
    int64_t warmup, total_steps;
} optim;

int optim_create(optim *o, const config *cfg, int64_t n_params, int64_t total_steps,
                 kern_ctx *k, char *err, size_t errlen);
void optim_free(optim *o);
/* Learning rate for 0-based optimizer step `step`. */
float optim_lr(const optim *o, int64_t step);
/* Global L2 norm of grads (NaN or Inf when any gradient is non-finite). */
double optim_grad_norm(optim *o, const float *grads);
/* Scales grads down to the configured clip norm when norm exceeds it (no-op when off). */
void optim_clip(optim *o, float *grads, double norm);
/* One update of params with grads at learning rate lr. */
void optim_step(optim *o, float *params, const float *grads, float lr);

#endif
