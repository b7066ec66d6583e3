/* cuda_step.cu: what keeps the GPU step free of host round trips.
 *
 *   uploads        a host batch goes to the device on a copy stream through two staging
 *                  buffers used in turn (kernels.h, kern_upload); kern_upload_settle, just
 *                  before the pinned slot goes back to the loader, waits for its transfer
 *                  (done by then unless the device is two batches behind)
 *   downloads      a checkpoint's snapshot goes to pinned host memory on a stream of its own
 *                  (kern_download), while the next step runs; the optimizer's update waits
 *                  for it on the device (kern_download_fence), the writer thread on the host
 *   dropout rows   one launch for a whole batch, each row its own Philox stream
 *   grad stats     norm, clip factor and the skip/stop verdict in ONE launch (the last block
 *                  to finish sums the per-block partials, in the fixed order of
 *                  kcuda_finish_reduction, so NORM has the bits of sqrt(kcuda_sumsq)), kept in
 *                  device memory for the guarded updates; no copy to the host
 *   guarded updates SGD / AdamW that read the verdict: skipped steps change nothing
 *   batch-norm parameter gradients from the double sums, on the device
 * The per-element math is elementwise.h's and philox.h's, as in the other .cu files. */
#include "cuda_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "elementwise.h"
#include "philox.h"

/* ---- uploads ---- */

#define STAGING_ALIGN 256

static size_t round_up(size_t n) { return (n + STAGING_ALIGN - 1) / STAGING_ALIGN * STAGING_ALIGN; }

/* Copy stream and events on first use; staging of at least `bytes` each.  1 on success. */
static int ensure_staging(kcuda_ctx *c, size_t bytes) {
    if (!c->copy_stream) {
        if (!KCUDA_CALL(c, cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking)))
            return 0;
        for (int i = 0; i < 2; i++)
            if (!KCUDA_CALL(c, cudaEventCreateWithFlags(&c->staged[i], cudaEventDisableTiming)) ||
                !KCUDA_CALL(c, cudaEventCreateWithFlags(&c->drained[i], cudaEventDisableTiming)))
                return 0;
    }
    if (bytes <= c->staging_bytes) return 1;
    /* growing: nothing may still read the old buffers (start-up, or a larger batch) */
    if (!KCUDA_WAIT(c, cudaStreamSynchronize(c->copy_stream)) ||
        !KCUDA_WAIT(c, cudaStreamSynchronize(c->stream)))
        return 0;
    for (int i = 0; i < 2; i++) {
        if (c->staging[i]) KCUDA_CALL(c, cudaFree(c->staging[i]));
        c->staging[i] = NULL;
    }
    c->staging_bytes = 0;
    for (int i = 0; i < 2; i++)
        if (!KCUDA_CALL(c, cudaMalloc(&c->staging[i], bytes))) return 0;
    c->staging_bytes = bytes;
    return 1;
}

int kcuda_upload_reserve(void *ctx, size_t bytes, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (ensure_staging(c, bytes)) return 0;
    return kcuda_check(c, err, errlen);
}

void kcuda_step_destroy(kcuda_ctx *c) {
    if (c->dl_stream) (void)cudaStreamSynchronize(c->dl_stream);
    if (c->dl_queued) (void)cudaEventDestroy(c->dl_queued);
    if (c->dl_done) (void)cudaEventDestroy(c->dl_done);
    if (c->dl_stream) (void)cudaStreamDestroy(c->dl_stream);
    c->dl_stream = NULL;
    c->dl_queued = c->dl_done = NULL;
    if (c->copy_stream) (void)cudaStreamSynchronize(c->copy_stream);
    for (int i = 0; i < 2; i++) {
        if (c->staging[i]) (void)cudaFree(c->staging[i]);
        if (c->staged[i]) (void)cudaEventDestroy(c->staged[i]);
        if (c->drained[i]) (void)cudaEventDestroy(c->drained[i]);
        c->staging[i] = NULL;
    }
    if (c->copy_stream) (void)cudaStreamDestroy(c->copy_stream);
    c->copy_stream = NULL;
    c->staging_bytes = 0;
}

/* Fault hook: runs on the copy stream before the copies, so the transfer starts late. */
static void CUDART_CB upload_delay(void *ms) {
    long v = (long)(intptr_t)ms;
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void kcuda_upload(void *ctx, int n, void *const dst[], const void *const host_src[],
                  const size_t bytes[]) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += round_up(bytes[i]);
    if (total == 0) return;
    kcuda_upload_settle(c);   /* the previous batch's host buffers are free from here on */
    if (!ensure_staging(c, total)) return;
    int s = c->staging_next;
    c->staging_next ^= 1;
    char *stage = (char *)c->staging[s];
    /* staging s is free once the compute stream has copied out the batch before last (an
     * event never recorded counts as complete) */
    if (!KCUDA_CALL(c, cudaStreamWaitEvent(c->copy_stream, c->drained[s], 0))) return;
    if (c->upload_delay_ms > 0 &&
        !KCUDA_CALL(c, cudaLaunchHostFunc(c->copy_stream, upload_delay,
                                          (void *)(intptr_t)c->upload_delay_ms)))
        return;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (bytes[i] && !KCUDA_OP(c, cudaMemcpyAsync(stage + off, host_src[i], bytes[i],
                                                       cudaMemcpyHostToDevice, c->copy_stream)))
            return;
        off += round_up(bytes[i]);
    }
    if (!KCUDA_CALL(c, cudaEventRecord(c->staged[s], c->copy_stream)) ||
        !KCUDA_CALL(c, cudaStreamWaitEvent(c->stream, c->staged[s], 0)))
        return;
    off = 0;
    for (int i = 0; i < n; i++) {
        if (bytes[i] && !KCUDA_OP(c, cudaMemcpyAsync(dst[i], stage + off, bytes[i],
                                                       cudaMemcpyDeviceToDevice, c->stream)))
            return;
        off += round_up(bytes[i]);
    }
    KCUDA_CALL(c, cudaEventRecord(c->drained[s], c->stream));
    /* the host buffers may go back to their producer once the transfer is done:
     * kcuda_upload_settle waits for it, as late as possible */
    c->upload_pending = s + 1;
}

void kcuda_upload_settle(void *ctx) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c->upload_pending) return;
    int s = c->upload_pending - 1;
    c->upload_pending = 0;
    cudaError_t e = cudaEventQuery(c->staged[s]);
    if (e == cudaSuccess) return;   /* done already: no wait */
    if (e == cudaErrorNotReady) {
        (void)cudaGetLastError();   /* not an error */
        KCUDA_WAIT(c, cudaEventSynchronize(c->staged[s]));
        return;
    }
    KCUDA_CALL(c, e);
}

/* ---- snapshot downloads ---- */

void kcuda_download(void *ctx, int n, void *const host_dst[], const void *const src[],
                    const size_t bytes[]) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c->dl_stream &&
        (!KCUDA_CALL(c, cudaStreamCreateWithFlags(&c->dl_stream, cudaStreamNonBlocking)) ||
         !KCUDA_CALL(c, cudaEventCreateWithFlags(&c->dl_queued, cudaEventDisableTiming)) ||
         !KCUDA_CALL(c, cudaEventCreateWithFlags(&c->dl_done, cudaEventDisableTiming))))
        return;
    if (c->dl_active && !KCUDA_WAIT(c, cudaEventSynchronize(c->dl_done))) return;
    c->dl_active = 0;
    /* the copies start once everything queued so far on the compute stream has run */
    if (!KCUDA_CALL(c, cudaEventRecord(c->dl_queued, c->stream)) ||
        !KCUDA_CALL(c, cudaStreamWaitEvent(c->dl_stream, c->dl_queued, 0)))
        return;
    if (c->download_delay_ms > 0 &&
        !KCUDA_CALL(c, cudaLaunchHostFunc(c->dl_stream, upload_delay,
                                          (void *)(intptr_t)c->download_delay_ms)))
        return;
    for (int i = 0; i < n; i++)
        if (bytes[i] && !KCUDA_OP(c, cudaMemcpyAsync(host_dst[i], src[i], bytes[i],
                                                       cudaMemcpyDeviceToHost, c->dl_stream)))
            return;
    if (!KCUDA_CALL(c, cudaEventRecord(c->dl_done, c->dl_stream))) return;
    c->dl_active = 1;
    c->dl_fence_pending = 1;
}

/* The compute stream waits for the copy (the host does not).  Outside a capture only: the
 * trainer fences before it records or launches a step's graph. */
void kcuda_download_fence(void *ctx) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c->dl_fence_pending || c->capturing) return;
    c->dl_fence_pending = 0;
    KCUDA_CALL(c, cudaStreamWaitEvent(c->stream, c->dl_done, 0));
}

/* From the checkpoint writer's thread: only the event is touched, and errors go to the caller
 * (the context's first-error record belongs to the step loop's thread). */
int kcuda_download_wait(void *ctx, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c->dl_done) return 0;
    cudaError_t e = cudaSetDevice(c->device);   /* this thread's current device */
    if (e == cudaSuccess) e = cudaEventSynchronize(c->dl_done);
    if (e == cudaSuccess) return 0;
    snprintf(err, errlen, "CUDA backend: the snapshot's device-to-host copy failed: %s (%s)",
             cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

/* ---- dropout over rows ---- */

/* Philox block `blk` of row r covers the row's elements 4*blk .. 4*blk+3; the row's stream id
 * is kern_dropout_stream(step_id, first_row + r, layer) = base ^ ((first_row + r) << 6) with
 * base = (step_id << 24) ^ layer (XOR commutes). */
__global__ static void dropout_rows_kernel(float *out, uint8_t *mask, const float *in,
                                           int64_t rows, int64_t row_elems, float p, float scale,
                                           uint64_t seed, uint64_t base, int64_t first_row,
                                           const kcuda_step_scalars *sv, uint64_t layer) {
    /* in a CUDA graph the step id comes from the step's scalars on the device */
    if (sv) base = (sv->step_id << 24) ^ layer;
    int64_t per_row = (row_elems + 3) / 4;
    KCUDA_GRID_STRIDE_LOOP(t, rows * per_row) {
        int64_t r = t / per_row, blk = t % per_row;
        uint64_t stream = base ^ ((uint64_t)(first_row + r) << 6);
        kern_philox_block rnd = kern_philox_stream_block(seed, stream, (uint64_t)blk);
        for (int lane = 0; lane < 4 && blk * 4 + lane < row_elems; lane++) {
            int64_t i = r * row_elems + blk * 4 + lane;
            uint8_t keep = kern_u32_to_uniform01(rnd.v[lane]) >= p;
            mask[i] = keep;
            out[i] = keep ? in[i] * scale : 0.0f;
        }
    }
}

void kcuda_dropout_forward_rows(void *ctx, float *out, uint8_t *mask, const float *in,
                                int64_t rows, int64_t row_elems, float p, uint64_t seed,
                                uint64_t step_id, int64_t first_row, int layer) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int64_t n = rows * row_elems;
    if (n <= 0) return;
    if (p <= 0.0f || p >= 1.0f) {   /* no random numbers: one constant pass */
        kcuda_dropout_forward(c, out, mask, in, n, p, seed, 0);
        return;
    }
    float scale = 1.0f / (1.0f - p);
    uint64_t base = (step_id << 24) ^ (uint64_t)layer;
    int64_t work = rows * ((row_elems + 3) / 4);
    dropout_rows_kernel<<<kcuda_grid_1d(c, work), KCUDA_THREADS, 0, c->stream>>>(
        out, mask, in, rows, row_elems, p, scale, seed, base, first_row, kcuda_step_values(c),
        (uint64_t)layer);
    KCUDA_LAUNCHED(c, "dropout_rows_kernel");
}

/* ---- the optimizer's verdict ---- */

/* Every block: its grid-stride share of sum x^2 (as sumsq_kernel) into part[block].  The last
 * block to finish sums the partials (as finish_reduction_kernel) and decides; see kernels.h. */
__global__ static void grad_stats_kernel(double *gs, double *part, unsigned int *ticket,
                                         const float *x, int64_t n, float clip_norm, int max_run,
                                         int64_t step, const kcuda_step_scalars *sv) {
    __shared__ int is_last;
    if (sv) step = sv->step;
    double acc = 0.0;
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        double v = (double)x[i];
        acc += v * v;
    }
    acc = kcuda_block_sum_f64(acc);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = acc;
        __threadfence();   /* the partial is visible before the ticket says so */
        is_last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    double s = 0.0;
    for (unsigned int i = threadIdx.x; i < gridDim.x; i += blockDim.x) s += __ldcg(&part[i]);
    s = kcuda_block_sum_f64(s);
    if (threadIdx.x != 0) return;
    *ticket = 0;
    double norm = sqrt(s);
    kern_grad_verdict(gs, norm, clip_norm, max_run, step);
}

void kcuda_grad_stats(void *ctx, double *gstate, const float *grads, int64_t n,
                      float clip_norm, int max_run, int64_t step) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    unsigned int grid = n > 0 ? kcuda_grid_reduce(n) : 1;
    grad_stats_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(gstate, c->part_sum, c->ticket,
                                                             grads, n > 0 ? n : 0, clip_norm,
                                                             max_run, step, kcuda_step_values(c));
    KCUDA_LAUNCHED(c, "grad_stats_kernel");
}

/* kern_sumsq_to: grad_stats_kernel's reduction (same partials, same order, same bits), the
 * last block writes the sum instead of deciding. */
__global__ static void sumsq_to_kernel(double *out, double *part, unsigned int *ticket,
                                       const float *x, int64_t n) {
    __shared__ int is_last;
    double acc = 0.0;
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        double v = (double)x[i];
        acc += v * v;
    }
    acc = kcuda_block_sum_f64(acc);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = acc;
        __threadfence();
        is_last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    double s = 0.0;
    for (unsigned int i = threadIdx.x; i < gridDim.x; i += blockDim.x) s += __ldcg(&part[i]);
    s = kcuda_block_sum_f64(s);
    if (threadIdx.x != 0) return;
    *ticket = 0;
    *out = s;
}

void kcuda_sumsq_to(void *ctx, double *sumsq, const float *grads, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    unsigned int grid = n > 0 ? kcuda_grid_reduce(n) : 1;
    sumsq_to_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(sumsq, c->part_sum, c->ticket, grads,
                                                           n > 0 ? n : 0);
    KCUDA_LAUNCHED(c, "sumsq_to_kernel");
}

__global__ static void grad_verdict_kernel(double *gs, const double *sumsq, float clip_norm,
                                           int max_run, int64_t step,
                                           const kcuda_step_scalars *sv) {
    if (sv) step = sv->step;
    kern_grad_verdict(gs, sqrt(*sumsq), clip_norm, max_run, step);
}

void kcuda_grad_verdict_from(void *ctx, double *gstate, const double *sumsq, float clip_norm,
                             int max_run, int64_t step) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    grad_verdict_kernel<<<1, 1, 0, c->stream>>>(gstate, sumsq, clip_norm, max_run, step,
                                                kcuda_step_values(c));
    KCUDA_LAUNCHED(c, "grad_verdict_kernel");
}

/* ---- guarded updates ---- */

__global__ static void sgd_guarded_kernel(float *param, float *buf, const float *grad, int64_t n,
                                          float lr, float momentum, float wd, int nesterov,
                                          const double *gs, int64_t t_plus,
                                          const kcuda_step_scalars *sv) {
    if (gs[KERN_GS_SKIP] != 0.0) return;
    if (sv) {
        lr = sv->lr;
        t_plus = sv->t_plus;
    }
    float scale = (float)gs[KERN_GS_SCALE];
    int first = t_plus - (int64_t)gs[KERN_GS_SKIPPED] == 1;
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        float g = grad[i] * scale;
        if (momentum == 0.0f) {
            param[i] = kern_sgd_plain(param[i], g, lr, wd);
        } else {
            float b = buf[i];
            param[i] = kern_sgd_momentum(param[i], &b, g, lr, momentum, wd, nesterov, first);
            buf[i] = b;
        }
    }
}

__global__ static void adamw_guarded_kernel(float *param, float *m, float *v, const float *grad,
                                            int64_t n, float lr, float beta1, float beta2,
                                            float eps, float wd, const double *gs,
                                            int64_t t_plus, const kcuda_step_scalars *sv) {
    __shared__ float step_size, bc2_sqrt, decay;
    if (gs[KERN_GS_SKIP] != 0.0) return;
    if (sv) {
        lr = sv->lr;
        t_plus = sv->t_plus;
    }
    if (threadIdx.x == 0) {
        /* the per-step scalars of cpu_optim.c, from the device's count of taken steps */
        double t = (double)(t_plus - (int64_t)gs[KERN_GS_SKIPPED]);
        double bc1 = 1.0 - pow((double)beta1, t);
        double bc2 = 1.0 - pow((double)beta2, t);
        step_size = (float)((double)lr / bc1);
        bc2_sqrt = (float)sqrt(bc2);
        decay = (float)(1.0 - (double)lr * (double)wd);
    }
    __syncthreads();
    float scale = (float)gs[KERN_GS_SCALE];
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        float mi = m[i], vi = v[i];
        param[i] = kern_adamw(param[i], &mi, &vi, grad[i] * scale, beta1, beta2, eps, decay,
                              step_size, bc2_sqrt);
        m[i] = mi;
        v[i] = vi;
    }
}

void kcuda_sgd_update_guarded(void *ctx, float *param, float *buf, const float *grad,
                              int64_t n, float lr, float momentum, float weight_decay,
                              int nesterov, const double *gstate, int64_t t_plus) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    sgd_guarded_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        param, buf, grad, n, lr, momentum, weight_decay, nesterov, gstate, t_plus,
        kcuda_step_values(c));
    KCUDA_LAUNCHED(c, "sgd_guarded_kernel");
}

void kcuda_adamw_update_guarded(void *ctx, float *param, float *m, float *v,
                                const float *grad, int64_t n, float lr, float beta1,
                                float beta2, float eps, float weight_decay,
                                const double *gstate, int64_t t_plus) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    adamw_guarded_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, gstate, t_plus,
        kcuda_step_values(c));
    KCUDA_LAUNCHED(c, "adamw_guarded_kernel");
}

/* ---- CUDA graphs of a training step ----
 *
 * kcuda_graph_begin starts capturing the context's stream (thread-local mode: the loader's
 * and comm's threads are not affected); every op the trainer then queues is recorded, not
 * run.  The values that change from step to step (learning rate, AdamW's step count, the
 * step and dropout's step id) are read by the recorded kernels from c->step_scalars (made
 * with the context), which kcuda_graph_set_values writes with a one-thread kernel queued
 * before each launch - before the recording too - so one captured graph replays every later
 * step.  Everything else a step touches stays where it
 * was at capture: parameters, gradients, activations, the loss accumulators, the batch's
 * device buffers (the upload fills them before the launch, outside the graph). */

__global__ static void set_scalars_kernel(kcuda_step_scalars *sv, kcuda_step_scalars v) {
    *sv = v;
}

/* Queue a write of the step's values to c->step_scalars (stream order: every later launch,
 * and a graph launched after it, reads them). */
static void queue_scalars(kcuda_ctx *c, kcuda_step_scalars s) {
    set_scalars_kernel<<<1, 1, 0, c->stream>>>(c->step_scalars, s);
    KCUDA_LAUNCHED(c, "set_scalars_kernel");
}

int kcuda_graph_create(kcuda_ctx *c) {
    /* From the context's creation on, so that values set before the first recording (the
     * trainer sets them, then records) reach the graph's first launch.  Until then they hold
     * lr = NaN and t = 0: a launch with no values ever set gives NaN parameters, not a
     * silent result from whatever the memory held. */
    if (!KCUDA_CALL(c, cudaMalloc((void **)&c->step_scalars, sizeof(kcuda_step_scalars))))
        return -1;
    kcuda_step_scalars unset;
    unset.lr = __builtin_nanf("");
    unset.t_plus = unset.step = 0;
    unset.step_id = 0;
    queue_scalars(c, unset);
    return c->has_error ? -1 : 0;
}

int kcuda_graph_begin(void *ctx, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    /* An error from before the capture is the step's real failure, not the capture's: it
     * stays recorded, so that kern_check reports it and training stops, rather than being
     * turned into "recording failed, training without a graph". */
    KCUDA_CALL(c, cudaPeekAtLastError());
    if (c->has_error) {
        snprintf(err, errlen, "a CUDA error before the recording (%s)", c->error);
        return -1;
    }
    if (!KCUDA_CALL(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal)))
        return kcuda_check(c, err, errlen), -1;
    c->capturing = 1;
    return 0;
}

int kcuda_graph_end(void *ctx, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    c->capturing = 0;
    int failed = e != cudaSuccess || c->has_error || !g;
    if (!failed) {
        cudaGraphExec_t x = NULL;
        e = cudaGraphInstantiateWithFlags(&x, g, 0);
        if (e == cudaSuccess) {
            if (c->graph_exec) (void)cudaGraphExecDestroy(c->graph_exec);
            c->graph_exec = x;
        } else {
            failed = 1;
        }
    }
    if (g) (void)cudaGraphDestroy(g);
    if (!failed) return 0;
    /* what went wrong, then a clean slate: the caller runs the step without a graph */
    if (c->has_error) snprintf(err, errlen, "%s", c->error);
    else snprintf(err, errlen, "capture or instantiation failed: %s", cudaGetErrorString(e));
    c->has_error = 0;
    c->error[0] = '\0';
    (void)cudaGetLastError();
    /* ... unless the device itself has failed (a sticky error such as an illegal address
     * that surfaced while recording): that one stays recorded for kern_check.  One wait, once
     * per process (a failed recording turns graphs off). */
    KCUDA_WAIT(c, cudaStreamSynchronize(c->stream));
    return -1;
}

void kcuda_graph_set_values(void *ctx, const kern_step_values *v) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    kcuda_step_scalars s;
    s.lr = v->lr;
    s.t_plus = v->t_plus;
    s.step = v->step;
    s.step_id = v->step_id;
    queue_scalars(c, s);
}

void kcuda_graph_launch(void *ctx) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c->graph_exec) {
        kcuda_fail(c, "kcuda_graph_launch", __FILE__, __LINE__, "no graph has been captured");
        return;
    }
    c->launches++;
    KCUDA_CALL(c, cudaGraphLaunch(c->graph_exec, c->stream));
}

void kcuda_graph_release(kcuda_ctx *c) {
    if (c->graph_exec) (void)cudaGraphExecDestroy(c->graph_exec);
    c->graph_exec = NULL;
    if (c->step_scalars) (void)cudaFree(c->step_scalars);
    c->step_scalars = NULL;
}

/* ---- batch-norm parameter gradients ---- */

__global__ static void bn_param_grads_kernel(float *dgamma, float *dbeta, const double *red,
                                             int C) {
    KCUDA_GRID_STRIDE_LOOP(j, C) {
        dbeta[j] += (float)red[j];
        dgamma[j] += (float)red[C + j];
    }
}

void kcuda_batchnorm_param_grads(void *ctx, float *dgamma, float *dbeta, const double *red,
                                 int C) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (C <= 0) return;
    bn_param_grads_kernel<<<kcuda_grid_1d(c, C), KCUDA_THREADS, 0, c->stream>>>(dgamma, dbeta,
                                                                                red, C);
    KCUDA_LAUNCHED(c, "bn_param_grads_kernel");
}
