/* cuda_batchnorm.cu: batch norm on the GPU, in the steps of kernels.h so that the statistics
 * (sums, red: DEVICE memory) can be all-reduced between them (synchronised batch norm).
 *
 *   x, out, dout, din [B,C,HW];  gamma, beta, running_* [C];
 *   sums[2C] = {sum x, sum x^2},  mean_invstd[2C] = {mean, invstd},
 *   red[2C] = {sum dy, sum dy*xhat}, every sum over the n = B*HW values of a channel.
 *
 * Every kernel walks channels: block (i, c) of a grid (blocks per channel, channels) takes the
 * i-th contiguous chunk of channel c's values e in [0, n), element (b, hw) = (e / HW, e % HW),
 * so a warp reads consecutive addresses within an image row.  (Channels beyond the grid's
 * 65535 rows are taken by the same blocks in turn.)
 *
 * Reductions are in double and deterministic: each block sums its chunk in a fixed tree
 * (kcuda_block_sum_f64) and writes a partial to the context's scratch; a second kernel adds a
 * channel's partials in block order.  The number of blocks per channel depends only on (n, C),
 * never on the device, so the same inputs give the same bits on every GPU.  With one block per
 * channel the block writes the result itself.
 *
 * The per-channel arithmetic (mean, invstd, running statistics, the backward constants) and
 * the per-element expressions are cpu_batchnorm.c's, in the same order, in double where it
 * uses double; with --fmad=false (no contraction, as the CPU build) they round the same way,
 * so only the order of the double sums differs from the CPU. */
#include "cuda_internal.h"
#include "elementwise.h"

#include <limits.h>
#include <math.h>

/* A reduction block takes about this many values of its channel, up to this many blocks per
 * channel (and as many as the partials scratch holds: 2 * C * blocks <= KCUDA_BN_PARTIALS). */
#define BN_REDUCE_VALUES 8192
#define BN_REDUCE_MAX_BLOCKS 64
/* An element-wise block takes about this many values (16 per thread). */
#define BN_ELEMENTWISE_VALUES 4096
/* gridDim.y limit */
#define BN_MAX_CHANNEL_ROWS 65535

/* Launch geometry of one pass over the [B,C,HW] tensor, channel by channel. */
typedef struct {
    int C;
    unsigned int HW, n;   /* values per image row, per channel (n = B*HW < 2^31) */
    unsigned int chunk;   /* values per block */
    dim3 grid;            /* (blocks per channel, channel rows) */
} bn_walk;

static bn_walk make_walk(int B, int C, int HW, int64_t per_block, int64_t max_blocks) {
    bn_walk w;
    int64_t n = (int64_t)B * HW;
    int64_t blocks = (n + per_block - 1) / per_block;
    if (blocks > max_blocks) blocks = max_blocks;
    if (blocks < 1) blocks = 1;
    w.C = C;
    w.HW = (unsigned int)HW;
    w.n = (unsigned int)n;
    w.chunk = (unsigned int)((n + blocks - 1) / blocks);
    int rows = C < BN_MAX_CHANNEL_ROWS ? C : BN_MAX_CHANNEL_ROWS;
    w.grid = dim3((unsigned int)blocks, (unsigned int)rows);
    return w;
}

/* Blocks per channel of the reductions: a function of (n, C) only. */
static bn_walk reduce_walk(int B, int C, int HW) {
    int64_t max_blocks = BN_REDUCE_MAX_BLOCKS;
    int64_t fit = (int64_t)(KCUDA_BN_PARTIALS / 2) / C;
    if (fit < max_blocks) max_blocks = fit;
    return make_walk(B, C, HW, BN_REDUCE_VALUES, max_blocks);
}

static bn_walk elementwise_walk(int B, int C, int HW) {
    return make_walk(B, C, HW, BN_ELEMENTWISE_VALUES, INT_MAX);
}

/* Shapes the walk handles: C > 0, B*HW below 2^31 (per channel: a 8 GiB channel).  0 and an
 * error recorded for a larger one; 0 silently for an empty one. */
static int walkable(kcuda_ctx *c, const char *op, int B, int C, int HW) {
    if (B < 0 || C <= 0 || HW < 0) return 0;
    if ((int64_t)B * HW > INT_MAX) {
        kcuda_fail(c, op, __FILE__, __LINE__, "more than 2^31 values per channel");
        return 0;
    }
    return 1;
}

/* Offset of channel c's value e (image e / HW, position e % HW) */
__device__ static inline size_t bn_offset(unsigned int e, int c, int C, unsigned int HW) {
    unsigned int b = e / HW, i = e - b * HW;
    return ((size_t)b * C + c) * HW + i;
}

/* Thread 0 of a block: the block's two sums, as the result (one block per channel: out[c],
 * out[C+c], the second scaled by scale2[c] when given) or as partials in
 * part[(j*C + c) * blocks + block] for j = 0, 1. */
__device__ static inline void bn_store(double *out, double *part, int c, int C, double a,
                                       double b, const float *scale2) {
    if (gridDim.x == 1) {
        out[c] = a;
        out[C + c] = scale2 ? b * (double)scale2[c] : b;
    } else {
        part[(size_t)c * gridDim.x + blockIdx.x] = a;
        part[((size_t)C + c) * gridDim.x + blockIdx.x] = b;
    }
}

/* {sum x, sum x^2} per channel */
__global__ static void bn_sums_kernel(double *out, double *part, const float *x, bn_walk w) {
    for (int c = blockIdx.y; c < w.C; c += gridDim.y) {
        unsigned int begin = blockIdx.x * w.chunk;
        unsigned int end = begin + w.chunk < w.n ? begin + w.chunk : w.n;
        double s = 0.0, q = 0.0;
        for (unsigned int e = begin + threadIdx.x; e < end; e += blockDim.x) {
            double v = (double)x[bn_offset(e, c, w.C, w.HW)];
            s += v;
            q += v * v;
        }
        s = kcuda_block_sum_f64(s);
        q = kcuda_block_sum_f64(q);
        if (threadIdx.x == 0) bn_store(out, part, c, w.C, s, q, NULL);
    }
}

/* {sum dy, invstd * sum dy*(x - mean)} per channel */
__global__ static void bn_dsums_kernel(double *out, double *part, const float *dout,
                                       const float *x, const float *mean_invstd, bn_walk w) {
    for (int c = blockIdx.y; c < w.C; c += gridDim.y) {
        unsigned int begin = blockIdx.x * w.chunk;
        unsigned int end = begin + w.chunk < w.n ? begin + w.chunk : w.n;
        const double mean = (double)mean_invstd[c];
        double s = 0.0, d = 0.0;
        for (unsigned int e = begin + threadIdx.x; e < end; e += blockDim.x) {
            size_t off = bn_offset(e, c, w.C, w.HW);
            double g = (double)dout[off];
            s += g;
            d += g * ((double)x[off] - mean);
        }
        s = kcuda_block_sum_f64(s);
        d = kcuda_block_sum_f64(d);
        if (threadIdx.x == 0) bn_store(out, part, c, w.C, s, d, mean_invstd + w.C);
    }
}

/* out[j] = sum of part[j*blocks + i] over i in order, j in [0, 2C); the second half scaled by
 * scale2[j - C] when given */
__global__ static void bn_finish_kernel(double *out, const double *part, int C,
                                        unsigned int blocks, const float *scale2) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= 2 * C) return;
    double acc = 0.0;
    for (unsigned int i = 0; i < blocks; i++) acc += part[(size_t)j * blocks + i];
    if (scale2 && j >= C) acc *= (double)scale2[j - C];
    out[j] = acc;
}

/* The two-kernel reduction of a walk whose first kernel has run. */
static void bn_finish(kcuda_ctx *c, double *out, const bn_walk *w, const float *scale2) {
    if (w->grid.x == 1) return;
    unsigned int grid = (unsigned int)((2 * (int64_t)w->C + KCUDA_THREADS - 1) / KCUDA_THREADS);
    bn_finish_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(out, c->bn_partials, w->C,
                                                            w->grid.x, scale2);
    KCUDA_LAUNCHED(c, "bn_finish_kernel");
}

/* mean, invstd and the running statistics per channel, as cpu_batchnorm.c */
__global__ static void bn_mean_invstd_kernel(float *mean_invstd, float *running_mean,
                                             float *running_var, const double *sums,
                                             double count, float eps, float momentum, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    kern_bn_channel_stats(mean_invstd, running_mean, running_var, sums, count, eps, momentum, C,
                          c);
}

/* out = (x - mean) * (invstd * gamma) + beta */
__global__ static void bn_forward_kernel(float *out, const float *x, const float *mean_invstd,
                                         const float *gamma, const float *beta, bn_walk w) {
    for (int c = blockIdx.y; c < w.C; c += gridDim.y) {
        const float mean = mean_invstd[c];
        const float scale = mean_invstd[w.C + c] * gamma[c], shift = beta[c];
        unsigned int begin = blockIdx.x * w.chunk;
        unsigned int end = begin + w.chunk < w.n ? begin + w.chunk : w.n;
        for (unsigned int e = begin + threadIdx.x; e < end; e += blockDim.x) {
            size_t off = bn_offset(e, c, w.C, w.HW);
            out[off] = (x[off] - mean) * scale + shift;
        }
    }
}

/* out = (x - running_mean) * (gamma / sqrt(running_var + eps)) + beta */
__global__ static void bn_forward_eval_kernel(float *out, const float *x, const float *gamma,
                                              const float *beta, const float *running_mean,
                                              const float *running_var, float eps, bn_walk w) {
    for (int c = blockIdx.y; c < w.C; c += gridDim.y) {
        const float mean = running_mean[c];
        const float scale = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
        const float shift = beta[c];
        unsigned int begin = blockIdx.x * w.chunk;
        unsigned int end = begin + w.chunk < w.n ? begin + w.chunk : w.n;
        for (unsigned int e = begin + threadIdx.x; e < end; e += blockDim.x) {
            size_t off = bn_offset(e, c, w.C, w.HW);
            out[off] = (x[off] - mean) * scale + shift;
        }
    }
}

/* din = a*dy + k1*(x - mean) + k0 with a = gamma*invstd, k0 = -a*red_dy/count,
 * k1 = -a*red_dyxhat*invstd/count (cpu_batchnorm.c's constants) */
__global__ static void bn_backward_kernel(float *din, const float *dout, const float *x,
                                          const float *mean_invstd, const float *gamma,
                                          const double *red, double count, bn_walk w) {
    for (int c = blockIdx.y; c < w.C; c += gridDim.y) {
        const double invstd = mean_invstd[w.C + c];
        const double a = (double)gamma[c] * invstd;
        const float fa = (float)a;
        const float k0 = (float)(-a * red[c] / count);
        const float k1 = (float)(-a * red[w.C + c] * invstd / count);
        const float mean = mean_invstd[c];
        unsigned int begin = blockIdx.x * w.chunk;
        unsigned int end = begin + w.chunk < w.n ? begin + w.chunk : w.n;
        for (unsigned int e = begin + threadIdx.x; e < end; e += blockDim.x) {
            size_t off = bn_offset(e, c, w.C, w.HW);
            din[off] = fa * dout[off] + k1 * (x[off] - mean) + k0;
        }
    }
}

void kcuda_batchnorm_stats(void *ctx, double *sums, const float *x, int B, int C, int HW) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!walkable(c, "kcuda_batchnorm_stats", B, C, HW)) return;
    bn_walk w = reduce_walk(B, C, HW);
    bn_sums_kernel<<<w.grid, KCUDA_THREADS, 0, c->stream>>>(sums, c->bn_partials, x, w);
    if (KCUDA_LAUNCHED(c, "bn_sums_kernel")) bn_finish(c, sums, &w, NULL);
}

void kcuda_batchnorm_forward(void *ctx, float *out, float *mean_invstd, const float *x,
                             const float *gamma, const float *beta, const double *sums,
                             double count, float eps, float *running_mean, float *running_var,
                             float momentum, int B, int C, int HW) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!walkable(c, "kcuda_batchnorm_forward", B, C, HW)) return;
    unsigned int grid = (unsigned int)(((int64_t)C + KCUDA_THREADS - 1) / KCUDA_THREADS);
    bn_mean_invstd_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(
        mean_invstd, running_mean, running_var, sums, count, eps, momentum, C);
    if (!KCUDA_LAUNCHED(c, "bn_mean_invstd_kernel") || (int64_t)B * HW == 0) return;
    bn_walk w = elementwise_walk(B, C, HW);
    bn_forward_kernel<<<w.grid, KCUDA_THREADS, 0, c->stream>>>(out, x, mean_invstd, gamma, beta,
                                                               w);
    KCUDA_LAUNCHED(c, "bn_forward_kernel");
}

void kcuda_batchnorm_forward_eval(void *ctx, float *out, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, int B, int C, int HW) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!walkable(c, "kcuda_batchnorm_forward_eval", B, C, HW) || (int64_t)B * HW == 0) return;
    bn_walk w = elementwise_walk(B, C, HW);
    bn_forward_eval_kernel<<<w.grid, KCUDA_THREADS, 0, c->stream>>>(
        out, x, gamma, beta, running_mean, running_var, eps, w);
    KCUDA_LAUNCHED(c, "bn_forward_eval_kernel");
}

void kcuda_batchnorm_backward_reduce(void *ctx, double *red, const float *dout, const float *x,
                                     const float *mean_invstd, int B, int C, int HW) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!walkable(c, "kcuda_batchnorm_backward_reduce", B, C, HW)) return;
    bn_walk w = reduce_walk(B, C, HW);
    bn_dsums_kernel<<<w.grid, KCUDA_THREADS, 0, c->stream>>>(red, c->bn_partials, dout, x,
                                                             mean_invstd, w);
    if (KCUDA_LAUNCHED(c, "bn_dsums_kernel")) bn_finish(c, red, &w, mean_invstd + C);
}

void kcuda_batchnorm_backward(void *ctx, float *din, const float *dout, const float *x,
                              const float *mean_invstd, const float *gamma, const double *red,
                              double count, int B, int C, int HW) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (!walkable(c, "kcuda_batchnorm_backward", B, C, HW) || (int64_t)B * HW == 0) return;
    bn_walk w = elementwise_walk(B, C, HW);
    bn_backward_kernel<<<w.grid, KCUDA_THREADS, 0, c->stream>>>(din, dout, x, mean_invstd, gamma,
                                                                red, count, w);
    KCUDA_LAUNCHED(c, "bn_backward_kernel");
}
