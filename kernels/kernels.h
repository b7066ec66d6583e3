/* kernels: the math of a training step behind one backend-neutral API.
 *
 * A kern_ctx is a backend - CPU (cpu/: OpenBLAS and plain C) or CUDA (cuda/: cuBLAS,
 * cuBLASLt, cuDNN and own kernels, in builds with HARNESS_HAVE_CUDA) - plus its own context
 * (BLAS threads; device, streams, handles).  Each backend is one table of functions
 * (kern_backend.h); every kern_* function below calls its entry in the context's table
 * (kernels.c).  Shape arithmetic that callers and backends share is in kern_shapes.h.
 * Every op takes plain pointers to memory that belongs to that backend (host memory for CPU,
 * device memory for CUDA) and explicit sizes; shapes are given in the comments, row-major,
 * outer dimension first. Ops that produce parameter gradients ACCUMULATE into them (+=), so
 * gradient accumulation and shared weights need no extra pass; callers zero them with
 * kern_fill. Ops never allocate: buffers come from kern_alloc at start-up.
 *
 * Errors: ops on a healthy context cannot fail on the CPU; a backend that can fail
 * asynchronously (CUDA) records the first error, which kern_check reports. */
#ifndef HARNESS_KERNELS_H
#define HARNESS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kern_shapes.h"

typedef enum { KERN_CPU = 0, KERN_CUDA = 1 } kern_backend;

typedef struct kern_ctx kern_ctx;

/* What GEMM inputs are rounded to (products are accumulated in fp32 in every mode; master
 * weights, gradients and optimizer state stay fp32).  The CPU backend takes bf16 for the GEMMs
 * of linear layers and convolutions where kern_cpu_bf16_fast() says so, fp32 otherwise. */
typedef enum { KERN_FP32 = 0, KERN_TF32 = 1, KERN_BF16 = 2 } kern_precision;

/* CPU convolutions: AUTO picks per shape (oneDNN's own convolution where it was measured
 * faster, im2col + GEMM elsewhere: kernels/cpu/cpu_conv_dnnl.c); IM2COL and DNNL force one
 * path for tests and benchmarks (DNNL still falls back to im2col where oneDNN has no
 * optimised kernel for the shape or a build has no oneDNN). */
typedef enum { KERN_CONV_AUTO = 0, KERN_CONV_IM2COL = 1, KERN_CONV_DNNL = 2 } kern_cpu_conv;

typedef struct {
    kern_backend backend;
    int threads;      /* CPU: BLAS/worker threads for this process (>= 1) */
    int device;       /* CUDA: device ordinal; ignored on CPU */
    kern_precision precision;   /* GEMM input precision (CUDA: tensor cores for TF32/BF16;
                                 * CPU: BF16 on AMX, see kern_cpu_bf16_fast) */
    int separate_epilogues;     /* CUDA: 1 = bias / activation / bias gradient as their own
                                 * kernels, never fused into the GEMMs (run.gemm_epilogues:
                                 * separate); 0 = fused by cuBLASLt where it can */
    int upload_delay_ms;        /* CUDA, fault-injection tests: the copy stream pauses this
                                 * long before each kern_upload's copies, so the transfer
                                 * starts late; 0 = none (the caller reads its own settings:
                                 * the kernels read no environment) */
    int download_delay_ms;      /* fault-injection tests: each kern_download's copies start
                                 * this late (CUDA: the download stream pauses; CPU: the copy
                                 * is deferred to kern_download_fence / kern_download_wait,
                                 * as if the transfer had not run yet); 0 = none */
    kern_cpu_conv cpu_conv;     /* CPU: how convolutions run; KERN_CONV_AUTO (0) everywhere
                                 * but tests and benchmarks, which compare the paths */
} kern_options;

/* Work the backend has queued since it was created, for per-step counts.  CUDA: kernel
 * launches (each <<<>>>, cuBLAS/cuBLASLt GEMM and cuDNN op counts one), host waits on the
 * device (stream/event synchronisations and synchronous copies), GEMMs that ran with a fused
 * cuBLASLt epilogue and those that fell back to separate kernels.  CPU: all zero. */
typedef struct {
    int64_t launches, host_syncs, fused_gemms, epilogue_fallbacks;
    /* CUDA: whether cuBLASLt's ReLU epilogue keeps a NaN (it does not say): 1 yes, 0 no - the
     * fused ReLU is then off and ReLU runs as its own kernel, so the non-finite report still
     * sees the NaN - and -1 not measured yet (at the first linear+relu). CPU: 0. */
    int64_t relu_epilogue_keeps_nan;
    int64_t gemm_plans;   /* CUDA: GEMM shapes whose cuBLASLt plan is cached (no limit) */
} kern_counters;
void kern_get_counters(kern_ctx *k, kern_counters *out);

/* CUDA graphs of a training step (CUDA backend; kern_graph_available is 0 on the CPU).
 * Between kern_graph_begin and kern_graph_end the ops queued on the backend are recorded,
 * not run (no host reads or waits may come in between: kern_to_host, kern_sync, ...).  The
 * step-varying values of the recorded guarded updates (lr, t_plus), kern_grad_stats (step),
 * kern_grad_verdict_from (step) and kern_dropout_forward_rows (step_id) are then taken from
 * the values that kern_graph_set_values queued last before each kern_graph_launch - also
 * when it was called before kern_graph_begin - not from the arguments given while recording;
 * a launch with no values ever set gives non-finite parameters.  kern_graph_end returns -1
 * with the reason when the capture failed; the recorded work has then not run and the caller
 * runs it without a graph.
 * The CPU backend emulates the contract for tests: there the recorded ops run as they are
 * queued, reading the values set so far, and every launch needs a recording of its own. */
typedef struct {
    float lr;
    int64_t t_plus, step;
    uint64_t step_id;
} kern_step_values;
int kern_graph_available(kern_ctx *k);
int kern_graph_begin(kern_ctx *k, char *err, size_t errlen);
int kern_graph_end(kern_ctx *k, char *err, size_t errlen);
void kern_graph_set_values(kern_ctx *k, const kern_step_values *v);
void kern_graph_launch(kern_ctx *k);

/* 0 on success; on failure *out is NULL and err holds the reason. */
int kern_create(const kern_options *opt, kern_ctx **out, char *err, size_t errlen);
void kern_destroy(kern_ctx *k);
kern_backend kern_get_backend(const kern_ctx *k);
/* OpenBLAS picks its CPU kernels when it loads, from the CPU model it knows; a CPU it does not
 * know gets a generic older kernel.  When a faster one fits this CPU (AVX-512 CPUs that OpenBLAS
 * runs with its AVX2 kernels, measured 1.2-1.6x on GEMMs here), returns the value for the
 * OPENBLAS_CORETYPE environment variable that selects it; NULL when nothing is to be gained -
 * always in a build with oneDNN, which does the GEMMs then and picks kernels by CPU features.
 * Only effective for a process that sets it before it starts (see harness's main). */
const char *kern_blas_coretype_hint(void);
/* The CPU backend's GEMM library and the instruction set it dispatches to on this CPU, and
 * the clone of harness's own element-wise loops that runs, for the start-up line and `harness
 * devices`, e.g. "avx512_core_amx, oneDNN 2.6.3 (bf16 on AMX), loops x86-64-v4 (AVX-512)". */
void kern_cpu_describe(char *buf, size_t len);
/* 1 where bf16 GEMM inputs are faster than fp32 on this CPU (AMX tiles), so that
 * run.precision=bf16 applies to the CPU backend; 0 where it would be slower (fp32 is used). */
int kern_cpu_bf16_fast(void);
/* Whether this build contains the CUDA backend and a device is usable (count of devices). */
int kern_cuda_device_count(void);
/* The same count, with why there is none: > 0 devices usable; 0 none here (no NVIDIA GPU, or
 * a build without CUDA: a test skips), `why` says which; -1 the NVIDIA driver lists GPUs
 * (/dev/nvidiaN, /proc/driver/nvidia/gpus) but CUDA can use none - a CUDA runtime newer than
 * the driver, a broken install: a failure, `why` gives CUDA's error and both versions. */
int kern_cuda_device_status(char *why, size_t len);

/* Memory owned by the backend; for use at start-up, not inside a step. NULL on failure. */
void *kern_alloc(kern_ctx *k, size_t bytes);
void kern_free(kern_ctx *k, void *p);
/* Host memory the backend copies from fastest (pinned on CUDA, aligned malloc on CPU), for
 * batch buffers.  NULL on failure. */
void *kern_alloc_host(kern_ctx *k, size_t bytes);
void kern_free_host(kern_ctx *k, void *p);
/* Free and total bytes of the backend's memory (CUDA: cudaMemGetInfo on the context's
 * device); 0 on success, -1 where the backend has no memory of its own (CPU). */
int kern_memory_info(kern_ctx *k, size_t *free_bytes, size_t *total_bytes);
/* The name of the backend's device ("NVIDIA H100 80GB HBM3"), for the MFU peak table;
 * 0, or -1 where the backend has no device (CPU: buf "") or the query failed (buf: why). */
int kern_device_name(kern_ctx *k, char *buf, size_t len);
/* The backend's native stream (a cudaStream_t on CUDA, NULL on CPU), for the caller to hand to
 * communication libraries (NCCL) so that they order their work after the compute. */
void *kern_native_stream(kern_ctx *k);
/* Copies between host memory and backend memory (plain memcpy on CPU). */
void kern_to_device(kern_ctx *k, void *dst, const void *host_src, size_t bytes);
void kern_to_host(kern_ctx *k, void *host_dst, const void *src, size_t bytes);
/* Batch upload from a host buffer that goes back to a producer (the data loader's pinned
 * slots): copies the n parts host_src[i][bytes[i]] to dst[i] (backend memory), ordered before
 * every op queued afterwards, and returns once the host buffers may be reused - it waits for
 * the transfer only, never for the compute queue.  CUDA: the copies run on a copy stream into
 * one of two device staging buffers (used in turn; a staging buffer is refilled only after the
 * compute stream has copied the batch before last out of it), the compute stream waits for an
 * event behind them and copies staging -> dst, and kern_upload returns without waiting.  The
 * host buffers may be reused after kern_upload_settle (or the next kern_upload), which waits
 * for the transfer: call it just before the slot goes back to its loader.  So the host runs
 * at most two batches ahead of the device, a slot goes back only after its copy has
 * completed, and the host waits only when the device is that far behind.  CPU: memcpy
 * (settle does nothing).  Staging grows on demand; call kern_upload_reserve at start-up with
 * the largest batch's total bytes (each part rounded up to 256) so that no step allocates.
 * Fault hook for tests: kern_options.upload_delay_ms = N holds the copy stream N ms before
 * each copy (settle must still wait). */
int kern_upload_reserve(kern_ctx *k, size_t bytes, char *err, size_t errlen);
void kern_upload(kern_ctx *k, int n, void *const dst[], const void *const host_src[],
                 const size_t bytes[]);
void kern_upload_settle(kern_ctx *k);
/* Snapshot downloads, for checkpoints written in the background: kern_download queues copies
 * of the n parts src[i][bytes[i]] (backend memory) into host_dst[i] (kern_alloc_host memory),
 * ordered after all work queued so far, and returns without waiting for them.  CUDA: on a
 * download stream of its own, behind an event on the compute stream, so the next step's
 * kernels run while the data crosses to the host.  Until the transfer is done, host_dst must
 * not be read (kern_download_wait) and src must not be written: kern_download_fence queues
 * the compute stream behind the transfer (it never makes the host wait), and a caller calls it
 * before the first op that overwrites src (the optimizer's update).  kern_download_wait
 * returns once host_dst holds the data: 0, or -1 with a reason in err (the failure is the
 * caller's to report; it is not kept for kern_check).  It is the one entry here that another
 * thread may call (the checkpoint writer), concurrently with the step's ops.  At most one
 * download at a time: a kern_download waits for the previous one.  CPU: plain copies (fence
 * and wait return at once), unless kern_options.download_delay_ms defers them (above). */
void kern_download(kern_ctx *k, int n, void *const host_dst[], const void *const src[],
                   const size_t bytes[]);
void kern_download_fence(kern_ctx *k);
int kern_download_wait(kern_ctx *k, char *err, size_t errlen);
/* Timestamps on the compute queue, for tracing (the trainer's trace.json).  A marks set holds
 * n slots, allocated once (kern_marks_create, at start-up); kern_mark(i) stamps slot i when the
 * work queued before it has run: CPU, the host's monotonic clock at the call (the CPU backend
 * runs synchronously); CUDA, an event recorded on the compute stream, so a span between two
 * marks is the device's time, not the host's queueing.  Slot 0 is the anchor: marking it waits
 * for the stream once (CUDA) so that device times can be placed on the host's clock.
 * kern_marks_read waits for the last of the first n marks and writes their times as host
 * monotonic seconds; 0, or -1 (a CUDA error, recorded for kern_check).  No clock is read and
 * nothing is allocated unless these are called. */
typedef struct kern_marks kern_marks;
kern_marks *kern_marks_create(kern_ctx *k, int n);
void kern_mark(kern_ctx *k, kern_marks *m, int i);
int kern_marks_read(kern_ctx *k, kern_marks *m, int n, double *seconds);
void kern_marks_free(kern_ctx *k, kern_marks *m);
/* Waits until all queued work is done; 0 or an error (then err says what failed). */
int kern_sync(kern_ctx *k, char *err, size_t errlen);
int kern_check(kern_ctx *k, char *err, size_t errlen);

/* ---- element-wise and fills ---- */
void kern_fill(kern_ctx *k, float *x, float value, int64_t n);
void kern_copy(kern_ctx *k, float *dst, const float *src, int64_t n);
void kern_scale(kern_ctx *k, float *x, float alpha, int64_t n);            /* x *= alpha */
void kern_axpy(kern_ctx *k, float *y, float alpha, const float *x, int64_t n); /* y += a*x */

/* Input conversion: x[i] = (src[i] * in_scale - mean) / std.  For uint8 images in_scale is
 * typically 1/255.  mean/std are scalars (per-dataset). */
void kern_u8_to_f32(kern_ctx *k, float *dst, const uint8_t *src, int64_t n,
                    float in_scale, float mean, float std);
void kern_f32_normalize(kern_ctx *k, float *dst, const float *src, int64_t n,
                        float mean, float std);

/* ---- deterministic random numbers (counter-based, Philox4x32-10) ----
 * Element i of the stream (seed, stream_id) is a pure function of (seed, stream_id, i), so
 * any backend, thread count or rank reproduces the same numbers. */
void kern_init_uniform(kern_ctx *k, float *x, int64_t n, float lo, float hi,
                       uint64_t seed, uint64_t stream_id);
void kern_init_normal(kern_ctx *k, float *x, int64_t n, float mean, float std,
                      uint64_t seed, uint64_t stream_id);

/* ---- linear: out[B,O] = in[B,I] @ w[O,I]^T + b[O]  (b may be NULL) ---- */
void kern_linear_forward(kern_ctx *k, float *out, const float *in, const float *w,
                         const float *b, int B, int I, int O);
/* din[B,I] = dout[B,O] @ w[O,I]          (overwritten; skipped when din is NULL)
 * dw[O,I] += dout^T[O,B] @ in[B,I]       (accumulated)
 * db[O]   += sum_b dout[b,:]             (accumulated; skipped when db is NULL) */
void kern_linear_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int B, int I, int O);
/* The same with overwrite = 1: dw and db are written (=) instead of accumulated, so that the
 * first writer of a gradient needs no zeroed buffer.  On CUDA with overwrite the bias
 * gradient comes from the weight-gradient GEMM's epilogue (cuBLASLt BGRADB). */
void kern_linear_backward_ex(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                             const float *in, const float *w, int B, int I, int O,
                             int overwrite);

/* A linear layer and the activation after it in one op:
 *   pre[B,O] = in @ w^T + b;   out[B,O] = act(pre)
 * act KERN_ACT_RELU: pre may be NULL (not written then; relu's backward can use out, as
 * out > 0 exactly where pre > 0).  KERN_ACT_GELU: pre is required (the backward reads it).
 * CUDA fuses bias and activation into the GEMM (cuBLASLt RELU_BIAS / GELU_AUX_BIAS
 * epilogues) where the shape and alignment allow; elsewhere, and on the CPU, it runs
 * kern_linear_forward then the activation: the same math up to rounding. */
typedef enum { KERN_ACT_NONE = 0, KERN_ACT_RELU = 1, KERN_ACT_GELU = 2 } kern_act;
void kern_linear_act_forward(kern_ctx *k, float *pre, float *out, const float *in,
                             const float *w, const float *b, int B, int I, int O, kern_act act);

/* ---- activations (n elements; in-place allowed: out == in, din == dout) ---- */
void kern_relu_forward(kern_ctx *k, float *out, const float *in, int64_t n);
/* din = dout * (in > 0) ; uses the forward INPUT */
void kern_relu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n);
/* GELU, tanh approximation (PyTorch approximate="tanh"); backward uses the forward INPUT */
void kern_gelu_forward(kern_ctx *k, float *out, const float *in, int64_t n);
void kern_gelu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n);

/* Inverted dropout with probability p: out = in * mask / (1-p).  The mask is drawn from
 * (seed, stream_id, i) and stored as 0/1 bytes in mask[n] for the backward pass. */
void kern_dropout_forward(kern_ctx *k, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id);
void kern_dropout_backward(kern_ctx *k, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p);
/* Dropout over rows[rows, row_elems] in ONE call (one launch on CUDA): row r is the sample
 * first_row + r and draws its mask from the stream
 *   kern_dropout_stream(step_id, first_row + r, layer)
 * of `seed`, so the result equals rows separate kern_dropout_forward calls with those stream
 * ids, bit for bit: a sample's mask depends on (seed, step, global sample, layer) only, never
 * on the rank that holds it or how the batch is split.  The backward of both forms is
 * kern_dropout_backward over rows*row_elems elements. */
static inline uint64_t kern_dropout_stream(uint64_t step_id, int64_t sample, int layer) {
    return (step_id << 24) ^ ((uint64_t)sample << 6) ^ (uint64_t)layer;
}
void kern_dropout_forward_rows(kern_ctx *k, float *out, uint8_t *mask, const float *in,
                               int64_t rows, int64_t row_elems, float p, uint64_t seed,
                               uint64_t step_id, int64_t first_row, int layer);

/* ---- fused, numerically stable softmax cross-entropy ----
 * logits[B,C], labels[B] in [0,C).  losses[b] = -log softmax(logits[b])[labels[b]].
 * If dlogits is non-NULL: dlogits[B,C] = (softmax - onehot) * grad_scale (overwritten), the
 * gradient of grad_scale * sum_b losses[b].  correct (may be NULL) receives the number of rows
 * whose argmax equals the label (ties: lowest index wins).
 * Returns the sum of losses as double (CPU); on other backends may sync. */
double kern_softmax_xent(kern_ctx *k, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale);

/* ---- reductions and optimizer updates over flat parameter buffers ---- */
/* Sum of squares of x[n], accumulated in double. */
double kern_sumsq(kern_ctx *k, const float *x, int64_t n);
/* Non-zero if any element is NaN or Inf. */
int kern_has_nonfinite(kern_ctx *k, const float *x, int64_t n);

/* SGD with momentum (PyTorch semantics):
 *   g = grad + wd*param;  buf = momentum*buf + g  (buf = g on the first step, when first != 0)
 *   step = nesterov ? g + momentum*buf : buf;  param -= lr * step
 * With momentum == 0, buf is unused (may be NULL). */
void kern_sgd_update(kern_ctx *k, float *param, float *buf, const float *grad, int64_t n,
                     float lr, float momentum, float weight_decay, int nesterov, int first);
/* AdamW (decoupled weight decay, PyTorch semantics); t is the 1-based step count:
 *   param *= (1 - lr*wd);  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *   param -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
void kern_adamw_update(kern_ctx *k, float *param, float *m, float *v, const float *grad,
                       int64_t n, float lr, float beta1, float beta2, float eps,
                       float weight_decay, int64_t t);

/* The optimizer's verdict on a step, kept in backend memory (gstate[KERN_GS_LEN] doubles,
 * zeroed at start-up) so that the host never waits for it: kern_grad_stats writes it, the
 * guarded updates below read it, the host reads it (kern_to_host) only when it logs. */
enum {
    KERN_GS_NORM = 0,   /* global L2 norm of this step's gradients (NaN/Inf: non-finite) */
    KERN_GS_SCALE,      /* factor the update applies to the gradients: clip_norm/(norm+1e-6)
                         * when clipping is on and norm > clip_norm, else 1 */
    KERN_GS_SKIP,       /* 1: this step's update is skipped */
    KERN_GS_STOP,       /* 1: training must stop; this and every later update is skipped */
    KERN_GS_STOP_STEP,  /* the step that set STOP */
    KERN_GS_SKIPPED,    /* non-finite steps skipped so far (allowed by max_run) */
    KERN_GS_RUN,        /* consecutive non-finite steps ending at the latest step */
    KERN_GS_SPARE,
    KERN_GS_LEN
};
/* One pass (one launch on CUDA) over grads[n]: NORM = sqrt(sum of squares, in double; the
 * same bits as sqrt(kern_sumsq) on the CPU backend), then
 *   STOP already set:  SKIP = 1
 *   norm finite:       SKIP = 0, RUN = 0, SCALE as above (clip_norm <= 0: no clipping)
 *   non-finite:        RUN += 1; RUN <= max_run: SKIP = 1, SKIPPED += 1 (train.nonfinite=skip
 *                      passes its limit of consecutive skips, error passes 0); else SKIP =
 *                      STOP = 1, STOP_STEP = step. */
void kern_grad_stats(kern_ctx *k, double *gstate, const float *grads, int64_t n,
                     float clip_norm, int max_run, int64_t step);
/* The sharded form of kern_grad_stats (train.zero_stage 1), in two halves so that the shards'
 * sums can be added across ranks in between without the host seeing them:
 *   kern_sumsq_to:        *sumsq = sum of squares of grads[n] in double, written to backend
 *                         memory (sumsq is a kern_alloc'd double); the same reduction, and on
 *                         CUDA the same bits, as kern_grad_stats's.  No host read.
 *   kern_grad_verdict_from: gstate's verdict from norm = sqrt(*sumsq) (one thread on CUDA), the
 *                         same rules as kern_grad_stats. */
void kern_sumsq_to(kern_ctx *k, double *sumsq, const float *grads, int64_t n);
void kern_grad_verdict_from(kern_ctx *k, double *gstate, const double *sumsq, float clip_norm,
                            int max_run, int64_t step);
/* kern_sgd_update / kern_adamw_update that read gstate: nothing happens when SKIP is set;
 * otherwise the gradient is g = grad * (float)SCALE (the same bits as kern_scale(grad, SCALE)
 * followed by the plain update) and the step count is t = t_plus - SKIPPED (AdamW's bias
 * correction; SGD's first step is t == 1), so skipped steps do not count. */
void kern_sgd_update_guarded(kern_ctx *k, float *param, float *buf, const float *grad,
                             int64_t n, float lr, float momentum, float weight_decay,
                             int nesterov, const double *gstate, int64_t t_plus);
void kern_adamw_update_guarded(kern_ctx *k, float *param, float *m, float *v,
                               const float *grad, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay,
                               const double *gstate, int64_t t_plus);

/* ---- convolutional layers (NCHW: [batch, channels, height, width], row-major) ---- */

/* conv2d: the shape (kern_conv_shape) and its output size P x Q (kern_conv_out_h/_w) are in
 * kern_shapes.h. */
/* Scratch bytes the backend needs for this shape (e.g. an im2col buffer); the caller passes
 * at least that much workspace to the conv ops, allocated once at start-up. */
size_t kern_conv2d_workspace(kern_ctx *k, const kern_conv_shape *s);
/* 1 when the shape runs through a library's own convolution (CUDA: cuDNN, always; CPU:
 * oneDNN's primitives where the measured rule or kern_options.cpu_conv says so), 0 when the
 * CPU runs it as im2col + GEMM.  Asked after kern_conv2d_workspace for the shape, as the
 * passes are; for tests and benchmarks. */
int kern_conv2d_library(kern_ctx *k, const kern_conv_shape *s);
void kern_conv2d_forward(kern_ctx *k, float *out, const float *in, const float *w,
                         const float *b, const kern_conv_shape *s, void *workspace);
/* din[B,C,H,W] overwritten (skipped when NULL); dw and db (may be NULL) ACCUMULATED.
 * (dw NULL: the CPU backend only, for benchmarks of the data gradient alone.) */
void kern_conv2d_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, const kern_conv_shape *s,
                          void *workspace);

/* Pooling over R x S windows (kern_conv_shape with K = C, groups, dil ignored).
 * maxpool: padding counts as -inf; argmax[B,C,P,Q] keeps the winning input index (h*W + w)
 * for backward; ties pick the first in row-major window order.
 * avgpool: PyTorch's count_include_pad=True (divide by R*S); a global average pool is
 * R = H, S = W, stride 1, pad 0.  Backward overwrites din. */
void kern_maxpool2d_forward(kern_ctx *k, float *out, int32_t *argmax, const float *in,
                            const kern_conv_shape *s);
void kern_maxpool2d_backward(kern_ctx *k, float *din, const float *dout, const int32_t *argmax,
                             const kern_conv_shape *s);
void kern_avgpool2d_forward(kern_ctx *k, float *out, const float *in, const kern_conv_shape *s);
void kern_avgpool2d_backward(kern_ctx *k, float *din, const float *dout,
                             const kern_conv_shape *s);

/* Batch norm over x[B,C,HW] per channel, split in steps so that statistics can be summed
 * across ranks (synchronised batch norm) between them:
 *   stats:   sums[2C] = {sum_c x, sum_c x^2} over this rank's B*HW values (overwritten; the
 *            caller may all-reduce them and the count)
 *   forward: mean = sum/count, var = sumsq/count - mean^2 (biased), invstd = 1/sqrt(var+eps);
 *            out = (x-mean)*invstd*gamma + beta; saves mean_invstd[2C] for backward; updates
 *            running_mean/var with momentum (PyTorch: running = (1-m)*running + m*batch, with
 *            the UNBIASED variance var*count/(count-1)); NULL running buffers skip the update
 *   eval:    out = (x-running_mean)/sqrt(running_var+eps)*gamma + beta
 *   backward_reduce: red[2C] = {sum_c dy, sum_c dy*xhat} over this rank (overwritten; the
 *            caller ACCUMULATES dbeta += red[0..C), dgamma += red[C..2C) from the LOCAL sums,
 *            and may all-reduce red before backward)
 *   backward: din = gamma*invstd/count * (count*dy - red_dy - xhat*red_dyxhat) (overwritten) */
void kern_batchnorm_stats(kern_ctx *k, double *sums, const float *x, int B, int C, int HW);
void kern_batchnorm_forward(kern_ctx *k, float *out, float *mean_invstd, const float *x,
                            const float *gamma, const float *beta, const double *sums,
                            double count, float eps, float *running_mean, float *running_var,
                            float momentum, int B, int C, int HW);
void kern_batchnorm_forward_eval(kern_ctx *k, float *out, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float eps, int B, int C, int HW);
void kern_batchnorm_backward_reduce(kern_ctx *k, double *red, const float *dout, const float *x,
                                    const float *mean_invstd, int B, int C, int HW);
void kern_batchnorm_backward(kern_ctx *k, float *din, const float *dout, const float *x,
                             const float *mean_invstd, const float *gamma, const double *red,
                             double count, int B, int C, int HW);
/* dbeta[c] += (float)red[c], dgamma[c] += (float)red[C + c] from kern_batchnorm_backward_reduce's
 * LOCAL sums, on the backend (no host round trip); the same bits as converting the sums to
 * float and adding them with kern_axpy(.., 1, ..). */
void kern_batchnorm_param_grads(kern_ctx *k, float *dgamma, float *dbeta, const double *red,
                                int C);

/* A residual connection is kern_axpy(y, 1, x). */

/* ---- language models (GPT) ----
 * Sequences are [B, T, C] row-major: B sequences of T positions of C features; N = B*T rows.
 * Every backward below is deterministic: the same inputs give the same bits on every run
 * (no floating-point atomics), so resume and data-parallel equivalence stay exact. */

/* Scratch bytes the GPT ops below need for the given sizes (the largest over all calls is
 * allocated once at start-up and passed as `workspace`).  0 when an op needs none. */
size_t kern_gpt_workspace(kern_ctx *k, int B, int T, int C, int NH, int V);

/* Token + position embedding:
 *   out[b,t,:] = wte[tokens[b,t], :] + wpe[t, :]        (wpe may be NULL: no positions)
 * tokens[B*T] must lie in [0, V) (the data module validates them). */
void kern_embedding_forward(kern_ctx *k, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C);
/* dwte[V,C] += sum over (b,t) with tokens[b,t] = v of dout[b,t,:]  (ACCUMULATED)
 * dwpe[T,C] += sum_b dout[b,t,:]                                   (ACCUMULATED; skipped when NULL)
 * Deterministic: every row's sum is taken in (b,t) order whatever the backend. */
void kern_embedding_backward(kern_ctx *k, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V,
                             void *workspace);

/* Layer norm over the last dimension of x[N,C] (PyTorch nn.LayerNorm, biased variance):
 *   out = (x - mean) * rstd * w + b,  rstd = 1/sqrt(var + eps)   (b may be NULL)
 * mean_rstd[2N] receives {mean[N], rstd[N]} for backward. */
void kern_layernorm_forward(kern_ctx *k, float *out, float *mean_rstd, const float *x,
                            const float *w, const float *b, int N, int C, float eps);
/* din[N,C] OVERWRITTEN (skipped when NULL); dw[C], db[C] ACCUMULATED (db skipped when NULL). */
void kern_layernorm_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                             const float *x, const float *mean_rstd, const float *w, int N,
                             int C, void *workspace);

/* Causal multi-head self-attention on a fused projection qkv[B,T,3C] (q = [..., 0:C),
 * k = [C:2C), v = [2C:3C); head h uses features [h*HS, (h+1)*HS) of each, HS = C/NH):
 *   S[b,h,t,s] = q_t . k_s / sqrt(HS),  P[b,h,t,s] = softmax_s<=t S[b,h,t,s]  (0 for s > t)
 *   out[b,t,h*HS:(h+1)*HS] = sum_s P[b,h,t,s] v_s
 *   lse[b,h,t] = log sum_s<=t exp S[b,h,t,s]   (saved for backward: [B,NH,T], not T x T)
 * The probabilities are never stored (backward recomputes them from lse).  The CUDA backend
 * takes head sizes up to 128. */
void kern_attention_forward(kern_ctx *k, float *out, float *lse, const float *qkv, int B,
                            int T, int C, int NH, void *workspace);
/* dqkv[B,T,3C] OVERWRITTEN from dout[B,T,C] and the forward's qkv, out and lse. */
void kern_attention_backward(kern_ctx *k, float *dqkv, const float *dout, const float *qkv,
                             const float *out, const float *lse, int B, int T, int C, int NH,
                             void *workspace);
/* Attention of ONE new position against a key-value cache, for generation:
 *   q[B,C] (the new position's queries), kcache/vcache[B,Tmax,C] hold positions [0, t] (the
 *   new one already written at t); out[B,C] = per head softmax(q.k_s/sqrt(HS), s <= t) v_s. */
void kern_attention_decode(kern_ctx *k, float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int t, int Tmax, int C, int NH,
                           void *workspace);

/* Softmax cross-entropy that keeps its sums on the backend (no host round trip), for rows
 * of ld >= C floats of which the first C are the classes (the rest: padding, never
 * predicted, their dlogits set to 0):
 *   losses[r] = -log softmax(logits[r, 0:C))[labels[r]]        (losses may be NULL)
 *   dlogits[r, :] = (softmax - onehot) * grad_scale             (NULL: forward only; may
 *                                                                ALIAS logits: in place)
 *   acc[0] += sum_r losses[r], acc[1] += rows whose argmax (first max) equals the label
 * acc is backend memory (2 doubles), read by the caller with kern_to_host when it logs. */
void kern_softmax_xent_acc(kern_ctx *k, float *losses, float *dlogits, double *acc,
                           const float *logits, const int32_t *labels, int B, int C, int ld,
                           float grad_scale);

#endif
