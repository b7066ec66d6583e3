/* cuda_conv.cu: 2-D convolution on the GPU with cuDNN (legacy API, NCHW fp32).
 *
 * Deprecation: cuDNN 9 deprecates this legacy convolution API (cudnnConvolutionForward,
 * cudnnConvolutionBackwardData / Filter, cudnnGetConvolution*Algorithm_v7, the
 * cudnnConvolutionDescriptor_t calls); it still works in 9.x and is kept here.  Its
 * replacement is the cuDNN graph (backend) API: an operation graph of
 * CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR (or _BACKWARD_DATA / _FILTER) nodes
 * over tensor descriptors, engine heuristics (CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR), a finalized
 * execution plan per shape (the plan cache below would hold those) and cudnnBackendExecute
 * with a variant pack; it also fuses the bias add and activation into the convolution and has
 * bf16 I/O, which this API lacks.
 *
 * Shapes (PyTorch nn.Conv2d), with Cg = C/groups:
 *   in[B,C,H,W]  w[K,Cg,R,S]  b[K]  out[B,K,P,Q]
 *   forward   out = conv(in, w) (+ b, a broadcast add after cuDNN)
 *   backward  din = conv_transpose(dout, w)   (overwritten: cuDNN beta 0)
 *             dw += wgrad(in, dout)           (accumulated: cuDNN beta 1)
 *             db += sum over B,P,Q of dout    (own deterministic kernels, several blocks
 *                                               per channel)
 * The bias stays a pass of its own after cuDNN: the legacy API's fused form,
 * cudnnConvolutionBiasActivationForward, is deprecated in cuDNN 9 and, with no activation
 * (CUDNN_ACTIVATION_IDENTITY), is documented to run only with the IMPLICIT_PRECOMP_GEMM
 * algorithm - it would override the deterministic algorithm chosen below; the fused bias
 * belongs to the graph API (see above).
 *
 * Plans.  Everything cuDNN needs for one shape (tensor, filter and convolution descriptors, the
 * forward / backward-data / backward-filter algorithms and their workspace bytes) is a plan,
 * kept in a fixed table of the context keyed by the whole kern_conv_shape, batch included.
 * A shape's first call builds its plan (host-side descriptor objects and cuDNN's heuristics,
 * no device memory); later calls with that shape only look it up, so a training step allocates
 * nothing.  When the table is full, the least recently used plan is re-keyed (its descriptors
 * are reused, not re-created).
 *
 * Algorithms come from cudnnGetConvolution*Algorithm_v7 (heuristics, fastest first; no
 * benchmarking, which would allocate and time): the first candidate that is deterministic,
 * runs in the context's math mode, and fits the workspace limit.  Only when no deterministic
 * one fits does a nondeterministic one (backward-data ALGO_0, backward-filter ALGO_0 / ALGO_3:
 * atomics) get picked.
 *
 * Workspace.  kern_conv2d_workspace(s) picks the plan of s with a limit of
 * CONV_WORKSPACE_CAP and returns the most that its three algorithms need: the caller promises
 * to pass that much with s.  A shape that was never asked about (the same layer with another
 * batch size: the last, smaller evaluation batch) is limited to the smallest promise made for
 * its geometry at any batch size, which the caller's buffer for that layer holds, or to 0
 * (algorithms without workspace) when there is none; a new promise re-chooses such plans.
 * A caller that asks with its largest batch size thus gets the heuristics' first choice for
 * it, and algorithms that fit the same buffer for the smaller batches. */
#include "cuda_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plans kept per context (a network has a few dozen distinct conv shapes, each at one or two
 * batch sizes). */
#define CONV_PLANS 128
/* Most workspace a promise may ask for, per shape (the FFT algorithms would like gigabytes). */
#define CONV_WORKSPACE_CAP ((size_t)256 << 20)

typedef struct {
    int in_use;
    int promised;                 /* kern_conv2d_workspace returned `workspace` for this key */
    kern_conv_shape key;          /* normalised (see normalise): every field, B included */
    unsigned long long last_use;  /* for LRU replacement */
    size_t workspace;             /* max of the three algorithms' bytes */
    int has_desc;                 /* descriptors created (kept for the slot's lifetime) */
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    /* one convolution descriptor per direction: each carries the math type its algorithm was
     * chosen with */
    cudnnConvolutionDescriptor_t conv_fwd, conv_bwd_data, conv_bwd_filter;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_bytes, bwd_data_bytes, bwd_filter_bytes;
} conv_plan;

struct kcuda_conv_cache {
    conv_plan plans[CONV_PLANS];
    unsigned long long clock;
};

int kcuda_conv_cache_create(kcuda_ctx *c) {
    c->conv_cache = (struct kcuda_conv_cache *)calloc(1, sizeof(struct kcuda_conv_cache));
    if (!c->conv_cache) {
        kcuda_fail(c, "kcuda_conv_cache_create", __FILE__, __LINE__, "out of host memory");
        return -1;
    }
    return 0;
}

void kcuda_conv_cache_destroy(kcuda_ctx *c) {
    if (!c->conv_cache) return;
    for (int i = 0; i < CONV_PLANS; i++) {
        conv_plan *p = &c->conv_cache->plans[i];
        if (!p->has_desc) continue;
        (void)kcuda_dnn.DestroyTensorDescriptor(p->x);
        (void)kcuda_dnn.DestroyTensorDescriptor(p->y);
        (void)kcuda_dnn.DestroyFilterDescriptor(p->w);
        (void)kcuda_dnn.DestroyConvolutionDescriptor(p->conv_fwd);
        (void)kcuda_dnn.DestroyConvolutionDescriptor(p->conv_bwd_data);
        (void)kcuda_dnn.DestroyConvolutionDescriptor(p->conv_bwd_filter);
    }
    free(c->conv_cache);
    c->conv_cache = NULL;
}

/* ---- plan lookup ---- */

/* The shape as a key: dilation 0 means 1 (as in kern_conv_out_h), groups <= 0 means 1, and
 * every byte of the struct is defined so that keys compare with memcmp. */
static kern_conv_shape normalise(const kern_conv_shape *s) {
    kern_conv_shape k;
    memset(&k, 0, sizeof k);
    k.B = s->B;
    k.C = s->C;
    k.H = s->H;
    k.W = s->W;
    k.K = s->K;
    k.R = s->R;
    k.S = s->S;
    k.stride_h = s->stride_h;
    k.stride_w = s->stride_w;
    k.pad_h = s->pad_h;
    k.pad_w = s->pad_w;
    k.dil_h = s->dil_h > 0 ? s->dil_h : 1;
    k.dil_w = s->dil_w > 0 ? s->dil_w : 1;
    k.groups = s->groups > 0 ? s->groups : 1;
    return k;
}

static int same_geometry(const kern_conv_shape *a, const kern_conv_shape *b) {
    kern_conv_shape x = *a, y = *b;
    x.B = y.B = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

static void shape_text(char *buf, size_t len, const kern_conv_shape *s) {
    snprintf(buf, len,
             "conv2d B=%d C=%d H=%d W=%d K=%d R=%d S=%d stride=%d,%d pad=%d,%d dil=%d,%d "
             "groups=%d",
             s->B, s->C, s->H, s->W, s->K, s->R, s->S, s->stride_h, s->stride_w, s->pad_h,
             s->pad_w, s->dil_h, s->dil_w, s->groups);
}

/* fp32 mode accepts only candidates that run in FMA math (the descriptor then says FMA);
 * tensor-op mode accepts FMA or TF32 candidates, never a conversion to FP16. */
static int math_acceptable(const kcuda_ctx *c, cudnnMathType_t m) {
    if (c->conv_math == CUDNN_FMA_MATH) return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
    return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

static cudnnMathType_t math_to_run(const kcuda_ctx *c, cudnnMathType_t candidate) {
    return c->conv_math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : candidate;
}

/* The workspace bytes that algorithm `algo` needs with convolution descriptor `conv` (whose
 * math type is set) on plan p's tensors: one overload per direction, chosen by the type of
 * algo. */
static cudnnStatus_t workspace_bytes(kcuda_ctx *c, const conv_plan *p,
                                     cudnnConvolutionDescriptor_t conv,
                                     cudnnConvolutionFwdAlgo_t algo, size_t *bytes) {
    return kcuda_dnn.GetConvolutionForwardWorkspaceSize(c->cudnn, p->x, p->w, conv, p->y, algo, bytes);
}

static cudnnStatus_t workspace_bytes(kcuda_ctx *c, const conv_plan *p,
                                     cudnnConvolutionDescriptor_t conv,
                                     cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes) {
    return kcuda_dnn.GetConvolutionBackwardDataWorkspaceSize(c->cudnn, p->w, p->y, conv, p->x, algo,
                                                        bytes);
}

static cudnnStatus_t workspace_bytes(kcuda_ctx *c, const conv_plan *p,
                                     cudnnConvolutionDescriptor_t conv,
                                     cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes) {
    return kcuda_dnn.GetConvolutionBackwardFilterWorkspaceSize(c->cudnn, p->x, p->y, conv, p->w, algo,
                                                          bytes);
}

/* The rule of the three pickers, for the n candidates perf[] of the heuristics (Perf: the
 * direction's cudnnConvolution*AlgoPerf_t): the first acceptable candidate (pass 0:
 * deterministic only, pass 1: any) whose workspace, asked of cuDNN with the math type it will
 * run with (left set on conv), is at most limit.  1 with *algo and *algo_bytes set; 0 when
 * none fits (nothing recorded: the caller says why). */
template <typename Perf, typename Algo>
static int pick_first_fit(kcuda_ctx *c, const conv_plan *p, cudnnConvolutionDescriptor_t conv,
                          const Perf *perf, int n, size_t limit, Algo *algo, size_t *algo_bytes) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            size_t bytes = 0;
            if (perf[i].status != CUDNN_STATUS_SUCCESS || !math_acceptable(c, perf[i].mathType))
                continue;
            if (pass == 0 && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (kcuda_dnn.SetConvolutionMathType(conv, math_to_run(c, perf[i].mathType)) !=
                    CUDNN_STATUS_SUCCESS ||
                workspace_bytes(c, p, conv, perf[i].algo, &bytes) != CUDNN_STATUS_SUCCESS ||
                bytes > limit)
                continue;
            *algo = perf[i].algo;
            *algo_bytes = bytes;
            return 1;
        }
    return 0;
}

/* The three pickers: the heuristics' candidates for one direction (fastest first), then
 * pick_first_fit.  1 on success; 0 when the heuristics fail (the error recorded) or when none
 * fits (nothing recorded). */
static int pick_forward(kcuda_ctx *c, conv_plan *p, size_t limit) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    if (!KCUDNN_CALL(c, kcuda_dnn.GetConvolutionForwardAlgorithm_v7(
                            c->cudnn, p->x, p->w, p->conv_fwd, p->y,
                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf)))
        return 0;
    return pick_first_fit(c, p, p->conv_fwd, perf, n, limit, &p->fwd, &p->fwd_bytes);
}

static int pick_backward_data(kcuda_ctx *c, conv_plan *p, size_t limit) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    if (!KCUDNN_CALL(c, kcuda_dnn.GetConvolutionBackwardDataAlgorithm_v7(
                            c->cudnn, p->w, p->y, p->conv_bwd_data, p->x,
                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf)))
        return 0;
    return pick_first_fit(c, p, p->conv_bwd_data, perf, n, limit, &p->bwd_data,
                          &p->bwd_data_bytes);
}

static int pick_backward_filter(kcuda_ctx *c, conv_plan *p, size_t limit) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    if (!KCUDNN_CALL(c, kcuda_dnn.GetConvolutionBackwardFilterAlgorithm_v7(
                            c->cudnn, p->x, p->y, p->conv_bwd_filter, p->w,
                            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf)))
        return 0;
    return pick_first_fit(c, p, p->conv_bwd_filter, perf, n, limit, &p->bwd_filter,
                          &p->bwd_filter_bytes);
}

/* Describe plan p's shape to cuDNN (creating its descriptors on the slot's first use) and
 * check that cuDNN's output size is ours.  1 on success, 0 with the error recorded. */
static int describe(kcuda_ctx *c, conv_plan *p, int P, int Q) {
    const kern_conv_shape *s = &p->key;
    if (!p->has_desc) {
        if (!KCUDNN_CALL(c, kcuda_dnn.CreateTensorDescriptor(&p->x))) return 0;
        if (!KCUDNN_CALL(c, kcuda_dnn.CreateTensorDescriptor(&p->y))) {
            (void)kcuda_dnn.DestroyTensorDescriptor(p->x);
            return 0;
        }
        if (!KCUDNN_CALL(c, kcuda_dnn.CreateFilterDescriptor(&p->w))) {
            (void)kcuda_dnn.DestroyTensorDescriptor(p->x);
            (void)kcuda_dnn.DestroyTensorDescriptor(p->y);
            return 0;
        }
        cudnnConvolutionDescriptor_t d[3] = {NULL, NULL, NULL};
        for (int i = 0; i < 3; i++)
            if (!KCUDNN_CALL(c, kcuda_dnn.CreateConvolutionDescriptor(&d[i]))) {
                for (int j = 0; j < i; j++) (void)kcuda_dnn.DestroyConvolutionDescriptor(d[j]);
                (void)kcuda_dnn.DestroyTensorDescriptor(p->x);
                (void)kcuda_dnn.DestroyTensorDescriptor(p->y);
                (void)kcuda_dnn.DestroyFilterDescriptor(p->w);
                return 0;
            }
        p->conv_fwd = d[0];
        p->conv_bwd_data = d[1];
        p->conv_bwd_filter = d[2];
        p->has_desc = 1;
    }
    if (!KCUDNN_CALL(c, kcuda_dnn.SetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->B,
                                                   s->C, s->H, s->W)) ||
        !KCUDNN_CALL(c, kcuda_dnn.SetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->B,
                                                   s->K, P, Q)) ||
        !KCUDNN_CALL(c, kcuda_dnn.SetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->K,
                                                   s->C / s->groups, s->R, s->S)))
        return 0;
    cudnnConvolutionDescriptor_t d[3] = {p->conv_fwd, p->conv_bwd_data, p->conv_bwd_filter};
    for (int i = 0; i < 3; i++)
        if (!KCUDNN_CALL(c, kcuda_dnn.SetConvolution2dDescriptor(d[i], s->pad_h, s->pad_w, s->stride_h,
                                                            s->stride_w, s->dil_h, s->dil_w,
                                                            CUDNN_CROSS_CORRELATION,
                                                            CUDNN_DATA_FLOAT)) ||
            !KCUDNN_CALL(c, kcuda_dnn.SetConvolutionGroupCount(d[i], s->groups)) ||
            !KCUDNN_CALL(c, kcuda_dnn.SetConvolutionMathType(d[i], c->conv_math)))
            return 0;
    int n, k, h, w;
    if (!KCUDNN_CALL(c, kcuda_dnn.GetConvolution2dForwardOutputDim(p->conv_fwd, p->x, p->w, &n, &k, &h,
                                                              &w)))
        return 0;
    if (n != s->B || k != s->K || h != P || w != Q) {
        char text[200], reason[320];
        shape_text(text, sizeof text, s);
        snprintf(reason, sizeof reason, "%s: cuDNN computes output [%d,%d,%d,%d], expected "
                 "[%d,%d,%d,%d]", text, n, k, h, w, s->B, s->K, P, Q);
        kcuda_fail(c, "cudnnGetConvolution2dForwardOutputDim", __FILE__, __LINE__, reason);
        return 0;
    }
    return 1;
}

/* Choose the three algorithms of p within limit bytes of workspace.  1 on success. */
static int choose_algorithms(kcuda_ctx *c, conv_plan *p, size_t limit) {
    const char *failed = NULL;
    if (!pick_forward(c, p, limit)) failed = "forward";
    else if (!pick_backward_data(c, p, limit)) failed = "backward-data";
    else if (!pick_backward_filter(c, p, limit)) failed = "backward-filter";
    if (failed) {
        char text[200], reason[400];
        shape_text(text, sizeof text, &p->key);
        snprintf(reason, sizeof reason, "%s: no %s algorithm fits in %zu bytes of workspace%s",
                 text, failed, limit,
                 p->promised ? "" : " (call kern_conv2d_workspace with this shape, batch "
                                    "size included, and pass that much)");
        kcuda_fail(c, "cudnnGetConvolution*Algorithm_v7", __FILE__, __LINE__, reason);
        return 0;
    }
    size_t most = p->fwd_bytes;
    if (p->bwd_data_bytes > most) most = p->bwd_data_bytes;
    if (p->bwd_filter_bytes > most) most = p->bwd_filter_bytes;
    p->workspace = most;
    return 1;
}

/* The workspace a shape never promised may use: the smallest promise for its geometry. */
static size_t safe_limit(const struct kcuda_conv_cache *cache, const kern_conv_shape *key) {
    size_t limit = 0;
    int found = 0;
    for (int i = 0; i < CONV_PLANS; i++) {
        const conv_plan *p = &cache->plans[i];
        if (!p->in_use || !p->promised || !same_geometry(&p->key, key)) continue;
        if (!found || p->workspace < limit) limit = p->workspace;
        found = 1;
    }
    return limit;
}

/* A free slot, else the least recently used plan that carries no promise, else the least
 * recently used one. */
static conv_plan *free_slot(struct kcuda_conv_cache *cache) {
    conv_plan *lru = NULL, *lru_unpromised = NULL;
    for (int i = 0; i < CONV_PLANS; i++) {
        conv_plan *p = &cache->plans[i];
        if (!p->in_use) return p;
        if (!lru || p->last_use < lru->last_use) lru = p;
        if (!p->promised && (!lru_unpromised || p->last_use < lru_unpromised->last_use))
            lru_unpromised = p;
    }
    return lru_unpromised ? lru_unpromised : lru;
}

/* The plan of shape s (P, Q > 0, C, R, S > 0), built on first use.  promise: the call is
 * kern_conv2d_workspace, which may choose algorithms up to CONV_WORKSPACE_CAP.  NULL with the
 * error recorded when cuDNN rejects the shape. */
static conv_plan *get_plan(kcuda_ctx *c, const kern_conv_shape *s, int P, int Q, int promise) {
    if (kcuda_cudnn_open(c) != 0) return NULL;   /* the first convolution loads cuDNN */
    struct kcuda_conv_cache *cache = c->conv_cache;
    kern_conv_shape key = normalise(s);
    conv_plan *p = NULL;
    for (int i = 0; i < CONV_PLANS && !p; i++)
        if (cache->plans[i].in_use && memcmp(&cache->plans[i].key, &key, sizeof key) == 0)
            p = &cache->plans[i];
    if (p && (p->promised || !promise)) {
        p->last_use = ++cache->clock;
        return p;
    }
    size_t limit = promise ? CONV_WORKSPACE_CAP : safe_limit(cache, &key);
    if (promise) {
        /* a new promise may lower the safe limit of the geometry's other batch sizes: their
         * plans are chosen again when next used */
        for (int i = 0; i < CONV_PLANS; i++) {
            conv_plan *o = &cache->plans[i];
            if (o != p && o->in_use && !o->promised && same_geometry(&o->key, &key)) o->in_use = 0;
        }
    }
    if (!p) {
        p = free_slot(cache);
        p->in_use = 0;
        p->promised = 0;
        p->key = key;
        if (!describe(c, p, P, Q)) return NULL;
    }
    p->promised = promise;
    if (!choose_algorithms(c, p, limit)) {
        p->in_use = 0;
        return NULL;
    }
    p->in_use = 1;
    p->last_use = ++cache->clock;
    return p;
}

/* cuDNN has no use for a convolution without input channels or taps: the output is the bias
 * alone, and there is no weight or input gradient.  (K, P, Q <= 0 mean no output at all.) */
static int no_taps(const kern_conv_shape *s) { return s->C <= 0 || s->R <= 0 || s->S <= 0; }

size_t kcuda_conv2d_workspace(void *ctx, const kern_conv_shape *s) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P = kcuda_conv_out_size(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
    int Q = kcuda_conv_out_size(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
    if (s->B <= 0 || s->K <= 0 || P <= 0 || Q <= 0 || no_taps(s)) return 0;
    conv_plan *p = get_plan(c, s, P, Q, 1);
    return p ? p->workspace : 0;
}

/* ---- bias ---- */

/* out[B,K,PQ] = (accumulate ? out : 0) + (b ? b[K] : 0), broadcast over B and PQ.  Index
 * type I: 32-bit where the tensor allows (its divisions are several times cheaper). */
template <typename I>
__global__ static void channel_bias_kernel(float *out, const float *b, I n, I K, I PQ,
                                           int accumulate) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)blockDim.x * gridDim.x) {
        float v = b ? b[(i / PQ) % K] : 0.0f;
        out[i] = accumulate ? out[i] + v : v;
    }
}

static void channel_bias(kcuda_ctx *c, float *out, const float *b, int64_t n, int K, int64_t PQ,
                         int accumulate) {
    unsigned int grid = kcuda_grid_1d(c, n);
    if (n <= (int64_t)UINT32_MAX - (int64_t)grid * KCUDA_THREADS)
        channel_bias_kernel<uint32_t><<<grid, KCUDA_THREADS, 0, c->stream>>>(
            out, b, (uint32_t)n, (uint32_t)K, (uint32_t)PQ, accumulate);
    else
        channel_bias_kernel<int64_t><<<grid, KCUDA_THREADS, 0, c->stream>>>(out, b, n, K, PQ,
                                                                           accumulate);
    KCUDA_LAUNCHED(c, "channel_bias_kernel");
}

/* db[k] += sum over b, pq of dout[b,k,pq] (n = B*PQ values per channel, n < 2^31), in two
 * launches so that a layer with few channels still fills the GPU (one block per channel used
 * 32-64 of an H100's 132 multiprocessors):
 *   1. grid (splits, K): block (s, k) sums its contiguous share [s*n/splits, (s+1)*n/splits) of
 *      channel k in double (strided over its threads, then the block's fixed-order sum) into
 *      part[k * splits + s];
 *   2. one thread per channel adds its splits' partials in split order.
 * splits depends on the shape only (never on the device), so the bits are the same on every
 * GPU and every run.  Deterministic, no atomics. */
#define BIAS_GRAD_SPLIT_VALUES 8192   /* values per block at least: a split's work */
#define BIAS_GRAD_MAX_SPLITS 64

static unsigned int bias_grad_splits(int K, unsigned int n) {
    unsigned int splits = (n + BIAS_GRAD_SPLIT_VALUES - 1) / BIAS_GRAD_SPLIT_VALUES;
    if (splits > BIAS_GRAD_MAX_SPLITS) splits = BIAS_GRAD_MAX_SPLITS;
    /* the partials live in the batch-norm scratch (free between ops on the one stream) */
    unsigned int cap = (unsigned int)(KCUDA_BN_PARTIALS / (size_t)(K > 0 ? K : 1));
    if (splits > cap) splits = cap;
    return splits > 0 ? splits : 1;
}

__global__ static void bias_grad_partials_kernel(double *part, const float *dout, int K,
                                                 unsigned int PQ, unsigned int n,
                                                 unsigned int splits) {
    unsigned int s = blockIdx.x;
    int k = (int)blockIdx.y;
    unsigned int lo = (unsigned int)((unsigned long long)n * s / splits);
    unsigned int hi = (unsigned int)((unsigned long long)n * (s + 1) / splits);
    double acc = 0.0;
    for (unsigned int e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        unsigned int b = e / PQ, i = e - b * PQ;
        acc += (double)dout[((size_t)b * K + k) * PQ + i];
    }
    acc = kcuda_block_sum_f64(acc);
    if (threadIdx.x == 0) part[(size_t)k * splits + s] = acc;
}

__global__ static void bias_grad_finish_kernel(float *db, const double *part, int K,
                                               unsigned int splits) {
    KCUDA_GRID_STRIDE_LOOP(k, K) {
        double acc = 0.0;
        for (unsigned int s = 0; s < splits; s++) acc += part[(size_t)k * splits + s];
        db[k] += (float)acc;
    }
}

static int conv_bias_grad(kcuda_ctx *c, float *db, const float *dout, int K, unsigned int PQ,
                          unsigned int n) {
    unsigned int splits = bias_grad_splits(K, n);
    for (int k0 = 0; k0 < K; k0 += 65535) {   /* gridDim.y is at most 65535 */
        int kn = K - k0 < 65535 ? K - k0 : 65535;
        dim3 grid(splits, (unsigned int)kn);
        /* channels k0.. as a tensor of their own: dout offset by k0 channels, stride K */
        bias_grad_partials_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(
            c->bn_partials, dout + (size_t)k0 * PQ, K, PQ, n, splits);
        if (!KCUDA_LAUNCHED(c, "bias_grad_partials_kernel")) return -1;
        bias_grad_finish_kernel<<<kcuda_grid_1d(c, kn), KCUDA_THREADS, 0, c->stream>>>(
            db + k0, c->bn_partials, kn, splits);
        if (!KCUDA_LAUNCHED(c, "bias_grad_finish_kernel")) return -1;
    }
    return 0;
}

/* ---- the ops ---- */

void kcuda_conv2d_forward(void *ctx, float *out, const float *in, const float *w,
                          const float *b, const kern_conv_shape *s, void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P = kcuda_conv_out_size(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
    int Q = kcuda_conv_out_size(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
    if (s->B <= 0 || s->K <= 0 || P <= 0 || Q <= 0) return;
    const int64_t PQ = (int64_t)P * Q, n = (int64_t)s->B * s->K * PQ;
    if (no_taps(s)) {
        channel_bias(c, out, b, n, s->K, PQ, 0);
        return;
    }
    conv_plan *p = get_plan(c, s, P, Q, 0);
    if (!p) return;
    const float one = 1.0f, zero = 0.0f;
    c->launches++;
    if (!KCUDNN_CALL(c, kcuda_dnn.ConvolutionForward(c->cudnn, &one, p->x, in, p->w, w, p->conv_fwd,
                                                p->fwd, workspace, p->fwd_bytes, &zero, p->y,
                                                out)))
        return;
    if (b) channel_bias(c, out, b, n, s->K, PQ, 1);
}

void kcuda_conv2d_backward(void *ctx, float *din, float *dw, float *db, const float *dout,
                           const float *in, const float *w, const kern_conv_shape *s,
                           void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int P = kcuda_conv_out_size(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
    int Q = kcuda_conv_out_size(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
    if (s->B <= 0) return;
    const size_t in_bytes = (size_t)s->B * s->C * s->H * s->W * sizeof(float);
    if (s->K <= 0 || P <= 0 || Q <= 0) {
        /* no output: nothing flows back */
        if (din && in_bytes) KCUDA_OP(c, cudaMemsetAsync(din, 0, in_bytes, c->stream));
        return;
    }
    if (db) {
        const int64_t per_channel = (int64_t)s->B * P * Q;
        if (per_channel > INT_MAX) {
            kcuda_fail(c, "kcuda_conv2d_backward", __FILE__, __LINE__,
                       "bias gradient over more than 2^31 values per channel");
            return;
        }
        if (conv_bias_grad(c, db, dout, s->K, (unsigned int)(P * Q), (unsigned int)per_channel))
            return;
    }
    if (no_taps(s)) {
        if (din && in_bytes) KCUDA_OP(c, cudaMemsetAsync(din, 0, in_bytes, c->stream));
        return;
    }
    conv_plan *p = get_plan(c, s, P, Q, 0);
    if (!p) return;
    const float one = 1.0f, zero = 0.0f;
    c->launches += (dw != NULL) + (din != NULL);
    if (dw && !KCUDNN_CALL(c, kcuda_dnn.ConvolutionBackwardFilter(
                                  c->cudnn, &one, p->x, in, p->y, dout, p->conv_bwd_filter,
                                  p->bwd_filter, workspace, p->bwd_filter_bytes, &one, p->w, dw)))
        return;
    if (din)
        KCUDNN_CALL(c, kcuda_dnn.ConvolutionBackwardData(c->cudnn, &one, p->w, w, p->y, dout,
                                                    p->conv_bwd_data, p->bwd_data, workspace,
                                                    p->bwd_data_bytes, &zero, p->x, din));
}
