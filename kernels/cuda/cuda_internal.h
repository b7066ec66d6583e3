/* cuda_internal.h: what the CUDA backend's .cu files share and nobody else sees.
 *
 * The context (device, stream, cuBLAS and cuDNN handles, preallocated scratch, first recorded
 * error), the ops that the backend's table (cuda_ops.cu) points to, the error-recording
 * helpers every CUDA/cuBLAS/cuDNN call goes through, the launch geometry of the grid-stride
 * kernels, and the block reductions used by the loss, the norm and batch norm.
 *
 * Errors: every runtime, cuBLAS and cuDNN call, and every kernel launch, is checked; the first
 * failure is recorded with the call, file and line, and kcuda_check/kcuda_sync report and clear
 * it.  Later errors are dropped (the first one is the cause; the rest are usually its echo). */
#ifndef HARNESS_KERNELS_CUDA_INTERNAL_H
#define HARNESS_KERNELS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda_backend.h"

typedef struct kcuda_ctx kcuda_ctx;

/* The ops of the table (cuda_ops.cu), one per line, typed by kern_backend.h: the arguments of
 * kernels.h's kern_X with the context as `void *` (a kcuda_ctx).  Ops call each other with a
 * kcuda_ctx *, which converts. */
extern "C" {
/* context, memory, copies, counters (cuda_context.cu); device name (cuda_info.cu); trace
 * marks (cuda_marks.cu) */
kern_create_fn kcuda_create;
kern_destroy_fn kcuda_destroy;
kern_alloc_fn kcuda_alloc;        /* cudaMalloc, zeroed */
kern_free_fn kcuda_free;
kern_alloc_fn kcuda_alloc_host;   /* cudaMallocHost (pinned) */
kern_free_fn kcuda_free_host;
kern_memory_info_fn kcuda_memory_info;   /* cudaMemGetInfo */
kern_device_name_fn kcuda_device_name;
kern_native_stream_fn kcuda_native_stream;   /* the cudaStream_t all ops run on */
kern_to_device_fn kcuda_to_device;
kern_to_host_fn kcuda_to_host;    /* synchronous */
kern_sync_fn kcuda_sync;
kern_sync_fn kcuda_check;
kern_get_counters_fn kcuda_get_counters;
kern_marks_create_fn kcuda_marks_create;
kern_mark_fn kcuda_mark;
kern_marks_read_fn kcuda_marks_read;
kern_marks_free_fn kcuda_marks_free;

/* element-wise, fills, conversions, activations (cuda_elementwise.cu) */
kern_fill_fn kcuda_fill;
kern_copy_fn kcuda_copy;
kern_scale_fn kcuda_scale;
kern_axpy_fn kcuda_axpy;
kern_u8_to_f32_fn kcuda_u8_to_f32;
kern_f32_normalize_fn kcuda_f32_normalize;
kern_act_forward_fn kcuda_relu_forward;
kern_act_backward_fn kcuda_relu_backward;
kern_act_forward_fn kcuda_gelu_forward;
kern_act_backward_fn kcuda_gelu_backward;

/* random numbers and dropout (cuda_random.cu) */
kern_init_uniform_fn kcuda_init_uniform;
kern_init_normal_fn kcuda_init_normal;
kern_dropout_forward_fn kcuda_dropout_forward;
kern_dropout_backward_fn kcuda_dropout_backward;

/* linear layer (cuda_linear.cu, with cuBLASLt epilogues from cuda_lt.cu) */
kern_linear_forward_fn kcuda_linear_forward;
kern_linear_backward_fn kcuda_linear_backward;
kern_linear_backward_ex_fn kcuda_linear_backward_ex;
kern_linear_act_forward_fn kcuda_linear_act_forward;

/* losses: kcuda_softmax_xent (cuda_softmax_xent.cu: losses device, correct host memory;
 * syncs), kcuda_softmax_xent_acc (cuda_gpt.cu) */
kern_softmax_xent_fn kcuda_softmax_xent;
kern_softmax_xent_acc_fn kcuda_softmax_xent_acc;

/* reductions and optimizers (cuda_optim.cu); the reductions sync */
kern_sumsq_fn kcuda_sumsq;
kern_has_nonfinite_fn kcuda_has_nonfinite;
kern_sgd_update_fn kcuda_sgd_update;
kern_adamw_update_fn kcuda_adamw_update;

/* convolution with cuDNN (cuda_conv.cu): plans (descriptors, algorithms) cached per shape */
kern_conv2d_workspace_fn kcuda_conv2d_workspace;
kern_conv2d_forward_fn kcuda_conv2d_forward;
kern_conv2d_backward_fn kcuda_conv2d_backward;

/* pooling (cuda_pool.cu) */
kern_maxpool2d_forward_fn kcuda_maxpool2d_forward;
kern_maxpool2d_backward_fn kcuda_maxpool2d_backward;
kern_avgpool2d_forward_fn kcuda_avgpool2d_forward;
kern_avgpool2d_backward_fn kcuda_avgpool2d_backward;

/* batch norm (cuda_batchnorm.cu); sums, red: device memory */
kern_batchnorm_stats_fn kcuda_batchnorm_stats;
kern_batchnorm_forward_fn kcuda_batchnorm_forward;
kern_batchnorm_forward_eval_fn kcuda_batchnorm_forward_eval;
kern_batchnorm_backward_reduce_fn kcuda_batchnorm_backward_reduce;
kern_batchnorm_backward_fn kcuda_batchnorm_backward;

/* the GPU step without host round trips (cuda_step.cu): batch uploads on the copy stream,
 * dropout over rows, the optimizer's verdict and guarded updates, batch-norm parameter
 * gradients, CUDA graphs */
kern_upload_reserve_fn kcuda_upload_reserve;
kern_upload_fn kcuda_upload;
kern_upload_settle_fn kcuda_upload_settle;
/* snapshot downloads (cuda_step.cu): a stream of their own */
kern_download_fn kcuda_download;
kern_download_fence_fn kcuda_download_fence;
kern_sync_fn kcuda_download_wait;
kern_dropout_forward_rows_fn kcuda_dropout_forward_rows;
kern_grad_stats_fn kcuda_grad_stats;
kern_sumsq_to_fn kcuda_sumsq_to;
kern_grad_verdict_from_fn kcuda_grad_verdict_from;
kern_sgd_update_guarded_fn kcuda_sgd_update_guarded;
kern_adamw_update_guarded_fn kcuda_adamw_update_guarded;
kern_batchnorm_param_grads_fn kcuda_batchnorm_param_grads;
kern_graph_begin_fn kcuda_graph_begin;
kern_graph_begin_fn kcuda_graph_end;
kern_graph_set_values_fn kcuda_graph_set_values;
kern_graph_launch_fn kcuda_graph_launch;

/* language models (cuda_gpt.cu) */
kern_gpt_workspace_fn kcuda_gpt_workspace;
kern_embedding_forward_fn kcuda_embedding_forward;
kern_embedding_backward_fn kcuda_embedding_backward;
kern_layernorm_forward_fn kcuda_layernorm_forward;
kern_layernorm_backward_fn kcuda_layernorm_backward;
kern_attention_forward_fn kcuda_attention_forward;
kern_attention_backward_fn kcuda_attention_backward;
kern_attention_decode_fn kcuda_attention_decode;
}

/* Threads per block of the 1-D element-wise kernels. */
#define KCUDA_THREADS 256
/* Upper bound on the blocks of a reduction launch: its per-block partials live in scratch
 * of this many entries, and the grid size depends only on n, never on the device, so a sum
 * is reduced in the same order (same bits) on every GPU. */
#define KCUDA_MAX_PARTIALS 1024
/* cuBLAS workspace, preallocated so that no GEMM allocates (32 MiB: NVIDIA's recommendation
 * for Hopper; plenty for Ampere). */
#define KCUDA_CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
/* Per-block partial sums of the batch-norm reductions: 2 (sum, sum of squares) x channels x
 * blocks per channel doubles (2 MiB; cuda_batchnorm.cu fits its grid to it). */
#define KCUDA_BN_PARTIALS ((size_t)1 << 18)

/* The per-step values of a captured step (cuda_step.cu), on the device. */
typedef struct {
    float lr;
    long long t_plus, step;
    unsigned long long step_id;
} kcuda_step_scalars;

/* cuDNN's functions, loaded by the first convolution (cuda_cudnn.cu); each member has the type
 * of the cudnn.h function of the same name with the cudnn prefix. */
typedef struct {
    decltype(&cudnnGetErrorString) GetErrorString;
    decltype(&cudnnGetLastErrorString) GetLastErrorString;
    decltype(&cudnnGetVersion) GetVersion;
    decltype(&cudnnCreate) Create;
    decltype(&cudnnDestroy) Destroy;
    decltype(&cudnnSetStream) SetStream;
    decltype(&cudnnCreateTensorDescriptor) CreateTensorDescriptor;
    decltype(&cudnnDestroyTensorDescriptor) DestroyTensorDescriptor;
    decltype(&cudnnSetTensor4dDescriptor) SetTensor4dDescriptor;
    decltype(&cudnnCreateFilterDescriptor) CreateFilterDescriptor;
    decltype(&cudnnDestroyFilterDescriptor) DestroyFilterDescriptor;
    decltype(&cudnnSetFilter4dDescriptor) SetFilter4dDescriptor;
    decltype(&cudnnCreateConvolutionDescriptor) CreateConvolutionDescriptor;
    decltype(&cudnnDestroyConvolutionDescriptor) DestroyConvolutionDescriptor;
    decltype(&cudnnSetConvolution2dDescriptor) SetConvolution2dDescriptor;
    decltype(&cudnnSetConvolutionGroupCount) SetConvolutionGroupCount;
    decltype(&cudnnSetConvolutionMathType) SetConvolutionMathType;
    decltype(&cudnnGetConvolution2dForwardOutputDim) GetConvolution2dForwardOutputDim;
    decltype(&cudnnGetConvolutionForwardAlgorithm_v7) GetConvolutionForwardAlgorithm_v7;
    decltype(&cudnnGetConvolutionBackwardDataAlgorithm_v7) GetConvolutionBackwardDataAlgorithm_v7;
    decltype(&cudnnGetConvolutionBackwardFilterAlgorithm_v7) GetConvolutionBackwardFilterAlgorithm_v7;
    decltype(&cudnnGetConvolutionForwardWorkspaceSize) GetConvolutionForwardWorkspaceSize;
    decltype(&cudnnGetConvolutionBackwardDataWorkspaceSize) GetConvolutionBackwardDataWorkspaceSize;
    decltype(&cudnnGetConvolutionBackwardFilterWorkspaceSize) GetConvolutionBackwardFilterWorkspaceSize;
    decltype(&cudnnConvolutionForward) ConvolutionForward;
    decltype(&cudnnConvolutionBackwardData) ConvolutionBackwardData;
    decltype(&cudnnConvolutionBackwardFilter) ConvolutionBackwardFilter;
} kcuda_cudnn_api;
extern kcuda_cudnn_api kcuda_dnn;
/* The context's cuDNN handle on its stream, loading cuDNN first if no context has: 0, or -1
 * with the error recorded (no libcudnn: the message names it). */
int kcuda_cudnn_open(kcuda_ctx *c);

/* Result of a reduction, written on the device and copied back in one transfer. */
typedef struct {
    double sum;
    long long count;
    unsigned int flag;
} kcuda_result;

struct kcuda_ctx {
    int device;
    int sm_count;                /* multiprocessors: sizes the element-wise grids */
    cudaStream_t stream;         /* non-blocking: all ops, copies and GEMMs run on it */
    cublasHandle_t cublas;       /* bound to stream, workspace below */
    cublasComputeType_t gemm_compute;   /* fp32, or tensor-core TF32 / BF16 inputs */
    void *cublas_workspace;      /* [KCUDA_CUBLAS_WORKSPACE_BYTES] */
    double *part_sum;            /* [KCUDA_MAX_PARTIALS] per-block partial sums */
    long long *part_count;       /* [KCUDA_MAX_PARTIALS] per-block partial counts */
    kcuda_result *result_dev;    /* [1] the finished reduction */
    kcuda_result *result_host;   /* [1] pinned copy of it */
    cudnnHandle_t cudnn;         /* bound to stream: the convolutions */
    cudnnMathType_t conv_math;   /* FMA (exact fp32) or tensor-op (TF32) convolutions */
    struct kcuda_conv_cache *conv_cache;   /* descriptors + algorithms per shape (cuda_conv.cu) */
    double *bn_partials;         /* [KCUDA_BN_PARTIALS] batch-norm per-block partial sums */
    unsigned int *ticket;        /* [1] single-launch reductions: blocks done (cuda_step.cu);
                                  * 0 between launches (the last block resets it) */
    /* batch uploads (cuda_step.cu): copy stream, two staging buffers used in turn, and per
     * buffer the events "its H2D copy is done" (copy stream) and "the compute stream has copied
     * it out" (compute stream); created at the first kcuda_upload_reserve / kcuda_upload */
    cudaStream_t copy_stream;
    void *staging[2];
    size_t staging_bytes;        /* size of each */
    cudaEvent_t staged[2], drained[2];
    int staging_next;
    int upload_delay_ms;         /* kern_options.upload_delay_ms (fault-injection tests) */
    int upload_pending;          /* 1 + the staging buffer whose H2D copy kcuda_upload_settle
                                  * has not yet seen complete; 0: none */
    /* snapshot downloads (cuda_step.cu, kern_download): their own stream, so that a
     * checkpoint's D2H copy neither waits behind nor holds up the batch uploads; the events
     * "the work queued before it is done" (compute stream) and "the copy is done" (download
     * stream); created at the first kcuda_download */
    cudaStream_t dl_stream;
    cudaEvent_t dl_queued, dl_done;
    int dl_active;               /* a download was queued and not yet waited for */
    int dl_fence_pending;        /* the compute stream is not yet queued behind dl_done */
    int download_delay_ms;       /* kern_options.download_delay_ms (fault-injection tests) */
    /* cuBLASLt (cuda_lt.cu): handle and the plans of the GEMMs with epilogues, per shape */
    cublasLtHandle_t lt;
    struct kcuda_lt_cache *lt_cache;
    int separate_epilogues;      /* kern_options.separate_epilogues */
    /* CUDA graphs (cuda_step.cu): capturing now; the step's values read by captured
     * kernels; the instantiated graph */
    int capturing;
    kcuda_step_scalars *step_scalars;
    cudaGraphExec_t graph_exec;
    /* kern_counters */
    int64_t launches, host_syncs, fused_gemms, epilogue_fallbacks;
    int relu_nan_probe;          /* cuda_linear.cu: 0 not measured, 1 the ReLU epilogue keeps
                                  * NaN, -1 it hides NaN (fused ReLU off) */
    int has_error;
    char error[512];
};

/* C[m,n] = alpha * op(A) op(B) + beta * C, column-major, fp32 in and out, computed with the
 * context's precision (cublasGemmEx). */
void kcuda_sgemm(kcuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc);

/* Record the first failure; return 1 when `e` is a success, else 0.  `what` names the call. */
int kcuda_cuda_ok(kcuda_ctx *c, cudaError_t e, const char *what, const char *file, int line);
int kcuda_cublas_ok(kcuda_ctx *c, cublasStatus_t s, const char *what, const char *file,
                    int line);
int kcuda_cudnn_ok(kcuda_ctx *c, cudnnStatus_t s, const char *what, const char *file, int line);
/* Record a failure that is not a library status (a shape an op cannot handle, ...). */
void kcuda_fail(kcuda_ctx *c, const char *what, const char *file, int line, const char *reason);

#define KCUDA_CALL(c, call) kcuda_cuda_ok((c), (call), #call, __FILE__, __LINE__)
#define KCUBLAS_CALL(c, call) kcuda_cublas_ok((c), (call), #call, __FILE__, __LINE__)
#define KCUDNN_CALL(c, call) kcuda_cudnn_ok((c), (call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: catches bad configurations (and any earlier sticky error). */
#define KCUDA_LAUNCHED(c, kernel) \
    (++(c)->launches, kcuda_cuda_ok((c), cudaGetLastError(), "launch of " kernel, __FILE__, __LINE__))
/* A stream operation that is not a kernel (cudaMemcpyAsync, cudaMemsetAsync): counted as a
 * launch (kern_counters) and checked like any call. */
#define KCUDA_OP(c, call) (++(c)->launches, kcuda_cuda_ok((c), (call), #call, __FILE__, __LINE__))
/* A host wait on the device (stream or event synchronisation): counted and checked. */
#define KCUDA_WAIT(c, call) (++(c)->host_syncs, kcuda_cuda_ok((c), (call), #call, __FILE__, __LINE__))

/* for (i over [0,n) in steps of the whole grid): each thread visits i, i + grid size, ... */
#define KCUDA_GRID_STRIDE_LOOP(i, n)                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)

/* Blocks for a grid-stride loop over n items with KCUDA_THREADS threads each: enough to fill
 * the device once (8 blocks of 256 threads per multiprocessor), fewer for small n.  n > 0. */
static inline unsigned int kcuda_grid_1d(const kcuda_ctx *c, int64_t n) {
    int64_t want = (n + KCUDA_THREADS - 1) / KCUDA_THREADS;
    int64_t cap = (int64_t)c->sm_count * 8;
    return (unsigned int)(want < cap ? want : cap);
}

/* Blocks of a reduction over n items (n > 0): a function of n only (see KCUDA_MAX_PARTIALS). */
static inline unsigned int kcuda_grid_reduce(int64_t n) {
    int64_t want = (n + KCUDA_THREADS - 1) / KCUDA_THREADS;
    return (unsigned int)(want < KCUDA_MAX_PARTIALS ? want : KCUDA_MAX_PARTIALS);
}

/* Sum c->part_sum[0..nparts) (and c->part_count when with_count) on the device in a fixed
 * order, copy the result to c->result_host and wait for it (cuda_context.cu).  0 on success;
 * on failure the error is recorded and the result is NaN / 0. */
int kcuda_finish_reduction(kcuda_ctx *c, unsigned int nparts, int with_count);

/* cuBLASLt (cuda_lt.cu), created and destroyed with the context; 0 / -1 (error recorded). */
int kcuda_lt_create(kcuda_ctx *c);
void kcuda_lt_destroy(kcuda_ctx *c);
/* D[m,n] = op(A) op(B) (+ beta * D) with a fused epilogue (a cublasLtEpilogue_t value), fp32
 * in and out at the context's precision; column-major as kcuda_sgemm.  bias: the bias (BIAS
 * epilogues, length m) or the bias gradient written (BGRADB: length n); aux: the GELU input
 * (GELU_AUX_BIAS writes it, ld = ldc).  Returns 1 when the GEMM was queued, 0 when cuBLASLt
 * has no algorithm for it (nothing queued, nothing recorded: the caller runs separate
 * kernels), -1 on an error (recorded). */
int kcuda_lt_matmul(kcuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const float *A, int lda, const float *B, int ldb, float beta,
                    float *D, int ldd, unsigned int epilogue, void *bias, float *aux);

/* GEMM plans the cuBLASLt cache holds (cuda_lt.cu) */
int kcuda_lt_plan_count(const kcuda_ctx *c);

/* The device copy of the step's values for kernels queued while capturing, else NULL (the
 * kernels then use their by-value arguments). */
static inline const kcuda_step_scalars *kcuda_step_values(const kcuda_ctx *c) {
    return c->capturing ? c->step_scalars : NULL;
}
/* c->step_scalars, with the context (0, or -1 with the error recorded); released with it */
int kcuda_graph_create(kcuda_ctx *c);
void kcuda_graph_release(kcuda_ctx *c);

/* Releases what cuda_step.cu created (copy stream, staging, events); the stream is idle. */
void kcuda_step_destroy(kcuda_ctx *c);

/* The convolution plan cache (cuda_conv.cu), created and destroyed with the context.
 * 0 on success; on failure the error is recorded. */
int kcuda_conv_cache_create(kcuda_ctx *c);
void kcuda_conv_cache_destroy(kcuda_ctx *c);

/* Output size of a convolution or pooling window along one axis: kern_conv_out_size
 * (kern_shapes.h), the one formula the CPU backend and the layers use too. */
static inline int kcuda_conv_out_size(int in, int pad, int dil, int win, int stride) {
    return kern_conv_out_size(in, pad, dil, win, stride);
}

/* Scratch bytes of the fused attention (cuda_attention.cu) for these sizes. */
size_t kcuda_attention_workspace(int B, int T, int NH);

#ifdef __CUDACC__
/* Sum over the 32 lanes of a warp; every lane gets the total (butterfly, fixed order). */
__device__ static inline double kcuda_warp_sum_f64(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ static inline long long kcuda_warp_sum_i64(long long v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* Sum over a block of KCUDA_THREADS threads; the total is valid in thread 0.  Deterministic:
 * warps reduce by butterfly, then warp 0 adds the per-warp sums in warp order. */
__device__ static inline double kcuda_block_sum_f64(double v) {
    __shared__ double warp_sums[KCUDA_THREADS / 32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = kcuda_warp_sum_f64(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < KCUDA_THREADS / 32; w++) total += warp_sums[w];
    __syncthreads();   /* warp_sums may be reused by a following call */
    return total;
}
#endif

#endif
