/* cuda_context.cu: the CUDA backend's context (device, stream, cuBLAS, cuDNN), device memory,
 * copies, first-error recording, and the scratch through which reductions come back to the
 * host.
 *
 * Everything is queued on one non-blocking stream, so ops never wait for (or are ordered with)
 * the legacy default stream; anything that must see their results goes through this stream
 * (kcuda_to_host, kcuda_sync).  Nothing here allocates after kcuda_create except kcuda_alloc. */
#include "cuda_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

/* ---- first-error recording ---- */

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void record_error(kcuda_ctx *c, const char *what, const char *file, int line,
                         const char *reason) {
    if (c->has_error) return;
    c->has_error = 1;
    snprintf(c->error, sizeof c->error, "CUDA backend: %s failed at %s:%d: %s", what,
             base_name(file), line, reason);
}

int kcuda_cuda_ok(kcuda_ctx *c, cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return 1;
    char reason[160];
    snprintf(reason, sizeof reason, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    record_error(c, what, file, line, reason);
    /* The runtime also keeps it as its "last error"; clear that (when it is not sticky), or
     * the next launch check would report it again as that kernel's failure. */
    (void)cudaGetLastError();
    return 0;
}

int kcuda_cublas_ok(kcuda_ctx *c, cublasStatus_t s, const char *what, const char *file,
                    int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    record_error(c, what, file, line, cublasGetStatusString(s));
    return 0;
}

int kcuda_cudnn_ok(kcuda_ctx *c, cudnnStatus_t s, const char *what, const char *file, int line) {
    if (s == CUDNN_STATUS_SUCCESS) return 1;
    /* cuDNN 9 keeps a message saying which parameter it rejected; it is the useful part */
    char detail[256] = "", reason[400];
    kcuda_dnn.GetLastErrorString(detail, sizeof detail);
    if (detail[0])
        snprintf(reason, sizeof reason, "%s (%s)", kcuda_dnn.GetErrorString(s), detail);
    else
        snprintf(reason, sizeof reason, "%s", kcuda_dnn.GetErrorString(s));
    record_error(c, what, file, line, reason);
    return 0;
}

void kcuda_fail(kcuda_ctx *c, const char *what, const char *file, int line, const char *reason) {
    record_error(c, what, file, line, reason);
}

/* ---- devices and the context ---- */

/* GPUs the NVIDIA kernel driver knows, whatever CUDA says: /dev/nvidia0, 1, ... and the
 * entries of /proc/driver/nvidia/gpus (one per GPU), whichever counts more. */
static int driver_gpu_count(void) {
    int dev = 0, proc = 0;
    char path[64];
    for (int i = 0; i < 64; i++) {
        snprintf(path, sizeof path, "/dev/nvidia%d", i);
        if (access(path, F_OK) == 0) dev = i + 1;
    }
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (e->d_name[0] != '.') proc++;
        closedir(d);
    }
    return dev > proc ? dev : proc;
}

int kcuda_device_status(char *why, size_t len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    /* the failed call leaves its error as the runtime's last error; clear it so that it does
     * not surface in an unrelated cudaGetLastError later */
    if (e != cudaSuccess) (void)cudaGetLastError();
    if (e == cudaSuccess && n > 0) {
        snprintf(why, len, "%d CUDA device%s", n, n == 1 ? "" : "s");
        return n;
    }
    int listed = driver_gpu_count();
    if (listed == 0) {
        snprintf(why, len, "no NVIDIA GPU on this machine (no /dev/nvidia0, nothing in "
                 "/proc/driver/nvidia/gpus)");
        return 0;
    }
    int drv = 0, rt = 0;
    (void)cudaDriverGetVersion(&drv);
    (void)cudaRuntimeGetVersion(&rt);
    (void)cudaGetLastError();
    snprintf(why, len, "the NVIDIA driver lists %d GPU%s but CUDA reports none: "
             "cudaGetDeviceCount: %s (%s); the driver supports CUDA %d.%d, this program's CUDA "
             "runtime is %d.%d%s", listed, listed == 1 ? "" : "s",
             e == cudaSuccess ? "0 devices" : cudaGetErrorString(e),
             e == cudaSuccess ? "cudaSuccess" : cudaGetErrorName(e), drv / 1000, drv % 1000 / 10,
             rt / 1000, rt % 1000 / 10,
             drv && rt > drv ? " (a runtime newer than the driver: use a CUDA build no newer "
                               "than the driver, or the driver's compatibility package)" : "");
    return -1;
}

int kcuda_device_count(void) {
    char why[16];
    int n = kcuda_device_status(why, sizeof why);
    return n > 0 ? n : 0;
}

/* The cuBLAS math mode of every GEMM.  CUBLAS_DEFAULT_MATH keeps SGEMM in exact fp32, which
 * is what the CPU comparison tests expect.  Returning CUBLAS_TF32_TENSOR_OP_MATH here lets
 * cuBLAS use TF32 tensor cores (7-8x the fp32 rate on A100/H100; inputs rounded to 10 bits);
 * wire it to an option when the trainer wants that trade. */
static cublasMath_t kcuda_gemm_math_mode(void) { return CUBLAS_DEFAULT_MATH; }

/* The precision of GEMM inputs: exact fp32, or tensor cores with inputs rounded to TF32 or
 * BF16 (fp32 accumulation and fp32 storage either way). */
static cublasComputeType_t gemm_compute_type(kern_precision p) {
    switch (p) {
    case KERN_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case KERN_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    default: return CUBLAS_COMPUTE_32F;
    }
}

/* The convolutions' math.  fp32: CUDNN_FMA_MATH, plain fp32 FMA kernels (CUDNN_DEFAULT_MATH
 * would let cuDNN use TF32 tensor cores on Ampere and later, as PyTorch's allow_tf32 does).
 * TF32 and BF16: CUDNN_TENSOR_OP_MATH, i.e. TF32 tensor cores; fp32 tensors in cuDNN's legacy
 * API get no BF16 mode (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION converts to FP16, whose range
 * is too small for activations and gradients), so BF16 runs convolutions in TF32. */
static cudnnMathType_t conv_math_type(kern_precision p) {
    return p == KERN_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

void kcuda_sgemm(kcuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    c->launches++;
    KCUBLAS_CALL(c, cublasGemmEx(c->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B,
                                 CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc, c->gemm_compute,
                                 CUBLAS_GEMM_DEFAULT));
}

void *kcuda_alloc_host(void *ctx, size_t bytes) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    void *p = NULL;
    if (!KCUDA_CALL(c, cudaMallocHost(&p, bytes ? bytes : 64))) return NULL;
    memset(p, 0, bytes);
    return p;
}

void kcuda_free_host(void *ctx, void *p) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (p) KCUDA_CALL(c, cudaFreeHost(p));
}

void *kcuda_native_stream(void *c) { return (void *)((kcuda_ctx *)c)->stream; }

int kcuda_memory_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    *free_bytes = *total_bytes = 0;
    if (!KCUDA_CALL(c, cudaSetDevice(c->device)) ||
        !KCUDA_CALL(c, cudaMemGetInfo(free_bytes, total_bytes)))
        return -1;
    return 0;
}

/* Copy the recorded error into err and release the half-built context. */
static int create_failed(kcuda_ctx *c, char *err, size_t errlen) {
    snprintf(err, errlen, "%s", c->has_error ? c->error : "CUDA backend: context creation failed");
    kcuda_destroy(c);
    return -1;
}

int kcuda_create(const kern_options *opt, void **out, char *err, size_t errlen) {
    *out = NULL;
    char why[400];
    int count = kcuda_device_status(why, sizeof why);
    if (count <= 0) {
        snprintf(err, errlen, "CUDA backend: no usable CUDA device: %s", why);
        return -1;
    }
    if (opt->device < 0 || opt->device >= count) {
        snprintf(err, errlen, "CUDA backend: device %d does not exist (this node has %d)",
                 opt->device, count);
        return -1;
    }
    kcuda_ctx *c = (kcuda_ctx *)calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "CUDA backend: out of memory creating the context");
        return -1;
    }
    c->device = opt->device;
    c->gemm_compute = gemm_compute_type(opt->precision);
    c->conv_math = conv_math_type(opt->precision);
    c->separate_epilogues = opt->separate_epilogues;
    c->upload_delay_ms = opt->upload_delay_ms;
    c->download_delay_ms = opt->download_delay_ms;
    if (!KCUDA_CALL(c, cudaSetDevice(c->device))) return create_failed(c, err, errlen);
    if (!KCUDA_CALL(c, cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount,
                                              c->device)))
        return create_failed(c, err, errlen);
    if (c->sm_count < 1) c->sm_count = 1;
    if (!KCUDA_CALL(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)))
        return create_failed(c, err, errlen);

    /* cuBLAS: bound to our stream; the workspace is set after the stream because
     * cublasSetStream resets it to the library's default pool. */
    if (!KCUBLAS_CALL(c, cublasCreate(&c->cublas))) {
        c->cublas = NULL;
        return create_failed(c, err, errlen);
    }
    if (!KCUBLAS_CALL(c, cublasSetStream(c->cublas, c->stream)) ||
        !KCUDA_CALL(c, cudaMalloc(&c->cublas_workspace, KCUDA_CUBLAS_WORKSPACE_BYTES)) ||
        !KCUBLAS_CALL(c, cublasSetWorkspace(c->cublas, c->cublas_workspace,
                                            KCUDA_CUBLAS_WORKSPACE_BYTES)) ||
        !KCUBLAS_CALL(c, cublasSetMathMode(c->cublas, kcuda_gemm_math_mode())) ||
        !KCUBLAS_CALL(c, cublasSetPointerMode(c->cublas, CUBLAS_POINTER_MODE_HOST)))
        return create_failed(c, err, errlen);

    /* reduction scratch: per-block partials on the device, the result on both sides */
    if (!KCUDA_CALL(c, cudaMalloc((void **)&c->part_sum, KCUDA_MAX_PARTIALS * sizeof(double))) ||
        !KCUDA_CALL(c, cudaMalloc((void **)&c->part_count,
                                  KCUDA_MAX_PARTIALS * sizeof(long long))) ||
        !KCUDA_CALL(c, cudaMalloc((void **)&c->result_dev, sizeof(kcuda_result))) ||
        !KCUDA_CALL(c, cudaMallocHost((void **)&c->result_host, sizeof(kcuda_result))) ||
        !KCUDA_CALL(c, cudaMalloc((void **)&c->bn_partials, KCUDA_BN_PARTIALS * sizeof(double))) ||
        !KCUDA_CALL(c, cudaMalloc((void **)&c->ticket, sizeof(unsigned int))) ||
        !KCUDA_OP(c, cudaMemsetAsync(c->ticket, 0, sizeof(unsigned int), c->stream)))
        return create_failed(c, err, errlen);

    /* cuDNN: loaded and its handle made by the first convolution (cuda_cudnn.cu), so that a
     * model without one never needs libcudnn; the convolutions' descriptors and algorithms
     * are cached per shape (cuda_conv.cu), their workspace comes from the caller */
    if (kcuda_conv_cache_create(c) != 0) return create_failed(c, err, errlen);
    if (kcuda_lt_create(c) != 0 || kcuda_graph_create(c) != 0)
        return create_failed(c, err, errlen);
    /* what start-up queued is not a step's work */
    c->launches = c->host_syncs = 0;
    *out = c;
    return 0;
}

void kcuda_destroy(void *ctx) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!c) return;
    /* Teardown: errors here have no one to be reported to, so they are ignored. */
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    kcuda_conv_cache_destroy(c);
    kcuda_lt_destroy(c);
    kcuda_graph_release(c);
    if (c->cudnn) (void)kcuda_dnn.Destroy(c->cudnn);
    if (c->cublas) (void)cublasDestroy(c->cublas);
    if (c->cublas_workspace) (void)cudaFree(c->cublas_workspace);
    if (c->part_sum) (void)cudaFree(c->part_sum);
    if (c->part_count) (void)cudaFree(c->part_count);
    if (c->result_dev) (void)cudaFree(c->result_dev);
    if (c->result_host) (void)cudaFreeHost(c->result_host);
    if (c->bn_partials) (void)cudaFree(c->bn_partials);
    if (c->ticket) (void)cudaFree(c->ticket);
    kcuda_step_destroy(c);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

/* ---- memory and copies ---- */

void *kcuda_alloc(void *ctx, size_t bytes) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    void *p = NULL;
    /* cudaMalloc(0) succeeds with NULL, which kern_alloc callers read as failure. */
    if (!KCUDA_CALL(c, cudaMalloc(&p, bytes ? bytes : 1))) return NULL;
    /* Zero on our stream, then wait: the buffer may next be used on another stream (the
     * trainer's copy or comm streams), which must not race with the memset.  Start-up only. */
    if (!KCUDA_OP(c, cudaMemsetAsync(p, 0, bytes, c->stream)) ||
        !KCUDA_WAIT(c, cudaStreamSynchronize(c->stream))) {
        (void)cudaFree(p);
        return NULL;
    }
    return p;
}

void kcuda_free(void *ctx, void *p) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (p) KCUDA_CALL(c, cudaFree(p));
}

/* Asynchronous on the stream.  From pageable memory the runtime stages the data before it
 * returns, so host_src may be reused at once; from pinned memory (cudaMallocHost) the copy
 * really is asynchronous and host_src must stay untouched until the stream has passed it. */
void kcuda_to_device(void *ctx, void *dst, const void *host_src, size_t bytes) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (bytes == 0) return;
    KCUDA_OP(c, cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
}

/* Synchronous: queued after all earlier work on the stream, returns when host_dst is filled.
 * (A plain cudaMemcpy would run on the legacy default stream, which a non-blocking stream does
 * not synchronise with, and could read src before our kernels wrote it.) */
void kcuda_to_host(void *ctx, void *host_dst, const void *src, size_t bytes) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (bytes == 0) return;
    if (KCUDA_OP(c, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream)))
        KCUDA_WAIT(c, cudaStreamSynchronize(c->stream));
}

void kcuda_get_counters(void *ctx, kern_counters *out) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    out->launches = c->launches;
    out->host_syncs = c->host_syncs;
    out->fused_gemms = c->fused_gemms;
    out->epilogue_fallbacks = c->epilogue_fallbacks;
    out->relu_epilogue_keeps_nan = c->relu_nan_probe == 0 ? -1 : c->relu_nan_probe > 0;
    out->gemm_plans = kcuda_lt_plan_count(c);
}

int kcuda_check(void *ctx, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    /* also pick up a launch error or sticky fault that no checked call has seen yet */
    kcuda_cuda_ok(c, cudaGetLastError(), "an earlier CUDA operation (seen by cudaGetLastError)",
                  __FILE__, __LINE__);
    if (!c->has_error) return 0;
    snprintf(err, errlen, "%s", c->error);
    c->has_error = 0;
    c->error[0] = '\0';
    return -1;
}

int kcuda_sync(void *ctx, char *err, size_t errlen) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    KCUDA_WAIT(c, cudaStreamSynchronize(c->stream));
    return kcuda_check(c, err, errlen);
}

/* ---- reductions: per-block partials -> one result -> host ---- */

/* One block of KCUDA_THREADS threads.  Thread t sums partials t, t+T, ... in order, then the
 * block sums the threads in a fixed tree: the same partials always give the same bits.
 * part_count may be NULL (count 0); counts are integers, exact in any order. */
__global__ static void finish_reduction_kernel(kcuda_result *out, const double *part_sum,
                                               const long long *part_count, unsigned int nparts) {
    __shared__ long long warp_counts[KCUDA_THREADS / 32];
    double s = 0.0;
    long long n = 0;
    for (unsigned int i = threadIdx.x; i < nparts; i += blockDim.x) {
        s += part_sum[i];
        if (part_count) n += part_count[i];
    }
    s = kcuda_block_sum_f64(s);
    n = kcuda_warp_sum_i64(n);
    if (threadIdx.x % 32 == 0) warp_counts[threadIdx.x / 32] = n;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long total = 0;
        for (int w = 0; w < KCUDA_THREADS / 32; w++) total += warp_counts[w];
        out->sum = s;
        out->count = total;
        out->flag = 0;
    }
}

int kcuda_finish_reduction(kcuda_ctx *c, unsigned int nparts, int with_count) {
    finish_reduction_kernel<<<1, KCUDA_THREADS, 0, c->stream>>>(
        c->result_dev, c->part_sum, with_count ? c->part_count : NULL, nparts);
    if (!KCUDA_LAUNCHED(c, "finish_reduction_kernel") ||
        !KCUDA_OP(c, cudaMemcpyAsync(c->result_host, c->result_dev, sizeof(kcuda_result),
                                       cudaMemcpyDeviceToHost, c->stream)) ||
        !KCUDA_WAIT(c, cudaStreamSynchronize(c->stream))) {
        c->result_host->sum = __builtin_nan("");
        c->result_host->count = 0;
        c->result_host->flag = 0;
        return -1;
    }
    return 0;
}
