/* optim: learning-rate schedule, global-norm clipping and the optimizer step over the flat
 * parameter buffer (state buffers have the same layout as the parameters).
 *
 * Sharded (train.zero_stage=1): the optimizer owns the slice [shard_lo, shard_lo + n) of the
 * flat buffer; its state is n floats per state tensor, its updates take params + shard_lo and
 * the shard's averaged gradients, and the global norm adds the shards' sums of squares through
 * the caller's sum_across_ranks (one scalar all-reduce, which also carries the non-finite
 * verdict: NaN or Inf on any rank makes the sum NaN or Inf on every rank). */
#ifndef HARNESS_OPTIM_H
#define HARNESS_OPTIM_H

#include <stdint.h>
#include "config.h"
#include "kernels.h"

/* train.nonfinite=skip gives up after this many skipped steps in a row. */
#define OPTIM_MAX_SKIPS 20

typedef struct {
    kern_ctx *k;
    optimizer_type type;
    int64_t n;             /* elements this optimizer updates (the shard; all when unsharded) */
    int64_t shard_lo;      /* where they start in the flat buffer */
    int64_t n_total;       /* the flat buffer's size */
    /* Sharded: sums x (one double) over all ranks in place, NULL when unsharded.  On the CPU
     * backend x is host memory; on a GPU backend x is device memory (sumsq below) and the sum
     * must be queued on the compute stream's order without a host wait (NCCL), so the step
     * never reads the norm on the host. */
    void (*sum_across_ranks)(void *user, double *x);
    /* CPU backend: the sum of squares of the gradients the next update takes (the shard's
     * when sharded) where the caller has it already - the gradient exchange takes it on the
     * way (comm_grads_sumsq) - into *x, returning 1; else 0, and the optimizer reads the
     * gradients for it.  NULL: never. */
    int (*known_sumsq)(void *user, double *x);
    void *sum_user;        /* both hooks' user */
    double *sumsq;         /* GPU backends, sharded: [1] on the device, the shard's sum of squares */
    float *m, *v;          /* AdamW moments, or m = SGD momentum buffer; NULL when unused */
    int state_on_host;     /* m and v are host memory whatever the backend (ckpt_read into
                            * rank 0's full copy of a sharded state) */
    int64_t t;             /* optimizer steps taken (AdamW bias correction, SGD first step) */
    int max_skips;         /* non-finite steps in a row that are skipped before the verdict
                            * says stop: OPTIM_MAX_SKIPS under train.nonfinite=skip, else 0 */
    float lr, min_lr, momentum, beta1, beta2, eps, weight_decay, clip;
    int nesterov;
    schedule_type schedule;
    int64_t warmup, total_steps;
    /* Runs of the flat buffer with the same weight-decay setting: [offset, offset + count)
     * decayed when decay is 1.  One run over everything unless optim_set_decay says more. */
    int n_runs;
    struct optim_run { int64_t offset, count; int decay; } *runs;
    /* The step's verdict on the backend (kernels.h, KERN_GS_*), and how many of its skipped
     * steps t already accounts for (t counts attempted updates minus the skips read back). */
    double *gstate;
    int64_t skips_seen;
} optim;

int optim_create(optim *o, const config *cfg, int64_t n_params, int64_t total_steps,
                 kern_ctx *k, char *err, size_t errlen);
/* The shard [lo, lo + count) of n_params (optim_create is the shard [0, n_params)). */
int optim_create_shard(optim *o, const config *cfg, int64_t n_params, int64_t lo, int64_t count,
                       int64_t total_steps, kern_ctx *k, char *err, size_t errlen);
/* Optimizer state tensors per element (AdamW 2, SGD with momentum 1, plain SGD 0). */
int optim_state_count(const config *cfg);
void optim_free(optim *o);
/* Weight decay per tensor: n tensors at offsets[i] with counts[i] (in buffer order, covering
 * the buffer; offsets in the flat buffer, cut to the shard here), decayed where decay[i]; neighbours with the same setting merge into one run
 * (one optimizer launch).  0 or -1 (out of memory). */
int optim_set_decay(optim *o, const int64_t *offsets, const int64_t *counts, const int *decay,
                    int n);
/* Learning rate for 0-based optimizer step `step`. */
float optim_lr(const optim *o, int64_t step);
/* Global L2 norm of grads (NaN or Inf when any gradient is non-finite). */
double optim_grad_norm(optim *o, const float *grads);
/* Scales grads down to the configured clip norm when norm exceeds it (no-op when off). */
void optim_clip(optim *o, float *grads, double norm);
/* One update of params with grads at learning rate lr. */
void optim_step(optim *o, float *params, const float *grads, float lr);

/* ---- the step without the host (docs/design.md, "Rules of the GPU step") ----
 * optim_device_step queues, on the backend, the gradient norm, the clip factor and the
 * finite check (kern_grad_stats) and the update guarded by them: a non-finite step changes
 * nothing, and counts as skipped while at most max_skips non-finite steps come in a row
 * (train.nonfinite=skip: OPTIM_MAX_SKIPS; error: 0), else the verdict says stop and
 * every later update is skipped too.  The host does not wait for any of it.  On the CPU
 * backend the numbers are the bits of optim_grad_norm + optim_clip + optim_step.
 * optim_read copies the verdict to the host (on GPUs it waits for the step) and brings t up
 * to date with the skipped steps; call it where the host needs the norm or the verdict (log
 * intervals) and before the optimizer state is saved (t). */
typedef struct {
    double norm;            /* the last step's global gradient norm (before clipping) */
    int skipped;            /* the last step's update was skipped */
    int64_t skipped_total;  /* non-finite steps skipped so far (this process) */
    int64_t new_skips;      /* of which since the previous optim_read */
    int64_t run;            /* consecutive non-finite steps ending at the last step */
    int stop;               /* non-finite beyond what max_skips allows: training must stop */
    int64_t stop_step;      /* the 0-based step that said so */
} optim_verdict;
/* Sharded: params and grads point at the shard (params + shard_lo, the averaged shard). */
void optim_device_step(optim *o, float *params, const float *grads, float lr, int64_t step);
/* optim_device_step in its two halves, for a step replayed from a CUDA graph: the host's
 * count of attempted steps (returns t_plus, the value the update kernels get), and the
 * launches themselves with that t_plus (recorded once, replayed with kern_step_values). */
int64_t optim_count_step(optim *o);
void optim_queue_update(optim *o, float *params, const float *grads, float lr, int64_t step,
                        int64_t t_plus);
void optim_read(optim *o, optim_verdict *v);

#endif
