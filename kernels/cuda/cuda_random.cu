/* cuda_random.cu: Philox-based initialisation and dropout on the GPU.
 *
 * A thread owns whole Philox blocks: block `blk` of the stream (seed, stream_id) gives the
 * elements 4*blk .. 4*blk+3, word i%4 for element i, exactly as cpu_random.c walks them
 * (philox.h).  The float transforms are philox.h's too, so kcuda_init_* and the dropout masks
 * are the CPU's bit for bit, for any n and any launch geometry. */
#include "cuda_internal.h"

#include "philox.h"

/* x[n] = lo + (hi-lo) * u, u uniform in [0,1) with 24 bits; evaluated in double, rounded once */
__global__ static void init_uniform_kernel(float *x, int64_t n, float lo, double width,
                                           uint64_t seed, uint64_t stream_id) {
    int64_t nblocks = (n + 3) / 4;
    KCUDA_GRID_STRIDE_LOOP(blk, nblocks) {
        kern_philox_block r = kern_philox_stream_block(seed, stream_id, (uint64_t)blk);
        for (int lane = 0; lane < 4 && blk * 4 + lane < n; lane++) {
            double u = kern_u32_to_uniform01(r.v[lane]);
            x[blk * 4 + lane] = (float)kern_affine_rn(lo, width, u);
        }
    }
}

/* x[n] = mean + std * z, z standard normal (Box-Muller on word pairs), in double */
__global__ static void init_normal_kernel(float *x, int64_t n, float mean, float std,
                                          uint64_t seed, uint64_t stream_id) {
    int64_t nblocks = (n + 3) / 4;
    KCUDA_GRID_STRIDE_LOOP(blk, nblocks) {
        kern_philox_block r = kern_philox_stream_block(seed, stream_id, (uint64_t)blk);
        for (int lane = 0; lane < 4 && blk * 4 + lane < n; lane++) {
            double z = kern_philox_block_normal(r, lane);
            x[blk * 4 + lane] = (float)kern_affine_rn(mean, std, z);
        }
    }
}

/* out[i] = keep ? in[i] * scale : 0,  keep = mask[i] = (uniform_i >= p).  out == in is fine:
 * each element is read before it is written, by the thread that writes it. */
__global__ static void dropout_forward_kernel(float *out, uint8_t *mask, const float *in,
                                              int64_t n, float p, float scale, uint64_t seed,
                                              uint64_t stream_id) {
    int64_t nblocks = (n + 3) / 4;
    KCUDA_GRID_STRIDE_LOOP(blk, nblocks) {
        kern_philox_block r = kern_philox_stream_block(seed, stream_id, (uint64_t)blk);
        for (int lane = 0; lane < 4 && blk * 4 + lane < n; lane++) {
            int64_t i = blk * 4 + lane;
            uint8_t keep = kern_u32_to_uniform01(r.v[lane]) >= p;
            mask[i] = keep;
            out[i] = keep ? in[i] * scale : 0.0f;
        }
    }
}

/* p <= 0 or p >= 1: no random numbers, every mask byte is `keep` */
__global__ static void dropout_constant_kernel(float *out, uint8_t *mask, const float *in,
                                               int64_t n, uint8_t keep) {
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        mask[i] = keep;
        out[i] = keep ? in[i] : 0.0f;
    }
}

__global__ static void dropout_backward_kernel(float *din, const float *dout, const uint8_t *mask,
                                               int64_t n, float scale) {
    KCUDA_GRID_STRIDE_LOOP(i, n) din[i] = mask[i] ? dout[i] * scale : 0.0f;
}

void kcuda_init_uniform(void *ctx, float *x, int64_t n, float lo, float hi, uint64_t seed,
                        uint64_t stream_id) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    double width = (double)hi - (double)lo;
    init_uniform_kernel<<<kcuda_grid_1d(c, (n + 3) / 4), KCUDA_THREADS, 0, c->stream>>>(
        x, n, lo, width, seed, stream_id);
    KCUDA_LAUNCHED(c, "init_uniform_kernel");
}

void kcuda_init_normal(void *ctx, float *x, int64_t n, float mean, float std, uint64_t seed,
                       uint64_t stream_id) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    init_normal_kernel<<<kcuda_grid_1d(c, (n + 3) / 4), KCUDA_THREADS, 0, c->stream>>>(
        x, n, mean, std, seed, stream_id);
    KCUDA_LAUNCHED(c, "init_normal_kernel");
}

void kcuda_dropout_forward(void *ctx, float *out, uint8_t *mask, const float *in, int64_t n,
                           float p, uint64_t seed, uint64_t stream_id) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    if (p <= 0.0f || p >= 1.0f) {
        dropout_constant_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
            out, mask, in, n, p <= 0.0f ? 1 : 0);
        KCUDA_LAUNCHED(c, "dropout_constant_kernel");
        return;
    }
    float scale = 1.0f / (1.0f - p);
    dropout_forward_kernel<<<kcuda_grid_1d(c, (n + 3) / 4), KCUDA_THREADS, 0, c->stream>>>(
        out, mask, in, n, p, scale, seed, stream_id);
    KCUDA_LAUNCHED(c, "dropout_forward_kernel");
}

void kcuda_dropout_backward(void *ctx, float *din, const float *dout, const uint8_t *mask,
                            int64_t n, float p) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    if (p >= 1.0f) {
        kcuda_fill(c, din, 0.0f, n);
        return;
    }
    float scale = p <= 0.0f ? 1.0f : 1.0f / (1.0f - p);
    dropout_backward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(din, dout, mask,
                                                                                  n, scale);
    KCUDA_LAUNCHED(c, "dropout_backward_kernel");
}
