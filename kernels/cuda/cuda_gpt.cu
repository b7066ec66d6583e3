/* cuda_gpt.cu: the language-model ops on the GPU - embeddings, layer norm, one-token attention
 * against a key-value cache, and the padded-vocabulary loss that keeps its sums on the device
 * (the fused causal attention of training is cuda_attention.cu).
 *
 * Same arithmetic as the CPU (cpu_embedding.c, cpu_layernorm.c, cpu_attention.c,
 * cpu_softmax_xent.c); every reduction runs in a fixed order (no floating-point
 * atomics), so the results are the same bits on every run:
 *   - embedding backward sorts (token, position) pairs with CUB's stable radix sort and sums
 *     each token's rows in position order; positions: a loop over the batch in order;
 *   - layer-norm dw/db: per-chunk partial sums in the workspace, then a fixed-order sum;
 *   - the loss: per-block partials over a grid that depends on the row count only.
 * Scratch comes from the workspace the caller sized with kcuda_gpt_workspace. */
#include "cuda_internal.h"

#include <limits.h>
#include <math.h>
#include <math_constants.h>

#include <cub/device/device_radix_sort.cuh>

#define LN_CHUNK 256   /* rows per partial sum of the layer-norm parameter gradients */

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

/* Bytes of CUB's radix-sort temporary storage for n pairs (int32 keys and values). */
static size_t sort_temp_bytes(int64_t n) {
    size_t bytes = 0;
    cub::DeviceRadixSort::SortPairs(NULL, bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                    (const int32_t *)NULL, (int32_t *)NULL, (int)n);
    return bytes;
}

size_t kcuda_gpt_workspace(void *c, int B, int T, int C, int NH, int V) {
    (void)c;
    size_t BT = (size_t)B * T;
    /* attention backward: D = rowsum(dout * out) per (b, h, t), [B, NH, T] (cuda_attention.cu) */
    size_t attn = kcuda_attention_workspace(B, T, NH);
    /* embedding backward: keys out, values in and out, CUB's temporary storage */
    size_t emb = 3 * align256(BT * 4) + align256(sort_temp_bytes((int64_t)BT));
    /* layer norm: partials [chunks, 2, C] */
    size_t ln = align256(((BT + LN_CHUNK - 1) / LN_CHUNK) * 2 * (size_t)C * 4);
    size_t m = attn > emb ? attn : emb;
    (void)V;
    return m > ln ? m : ln;
}

/* ---- embeddings ---- */

__global__ static void embedding_forward_kernel(float *out, const int32_t *tokens,
                                                const float *wte, const float *wpe, int64_t BT,
                                                int T, int C) {
    KCUDA_GRID_STRIDE_LOOP(i, BT * C) {
        int64_t row = i / C;
        int ch = (int)(i % C);
        float v = wte[(int64_t)tokens[row] * C + ch];
        if (wpe) v += wpe[(int64_t)(row % T) * C + ch];
        out[i] = v;
    }
}

void kcuda_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                             const float *wpe, int B, int T, int C) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int64_t n = (int64_t)B * T * C;
    if (n <= 0) return;
    embedding_forward_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        out, tokens, wte, wpe, (int64_t)B * T, T, C);
    KCUDA_LAUNCHED(c, "embedding_forward_kernel");
}

/* Key bits that hold every token id in [0, V): the radix sort's passes cover those bits only
 * (16 for vocabularies up to 65,536 such as GPT-2's 50,257: half the passes of 32 bits). */
static int token_key_bits(int V) {
    int bits = 1;
    while (bits < 31 && (1LL << bits) < (long long)V) bits++;
    return V > 0 ? bits : 32;
}

__global__ static void iota_kernel(int32_t *x, int64_t n) {
    KCUDA_GRID_STRIDE_LOOP(i, n) x[i] = (int32_t)i;
}

/* One block per sorted position i that starts a run of equal tokens: adds the rows of that
 * token's positions (ascending) into dwte[token]. */
__global__ static void embedding_rows_kernel(float *dwte, const float *dout,
                                             const int32_t *keys, const int32_t *pos,
                                             int64_t BT, int C) {
    for (int64_t i = blockIdx.x; i < BT; i += gridDim.x) {
        int32_t tok = keys[i];
        if (i > 0 && keys[i - 1] == tok) continue;
        int64_t end = i + 1;
        while (end < BT && keys[end] == tok) end++;
        for (int ch = threadIdx.x; ch < C; ch += blockDim.x) {
            float acc = 0.0f;
            for (int64_t j = i; j < end; j++) acc += dout[(int64_t)pos[j] * C + ch];
            dwte[(int64_t)tok * C + ch] += acc;
        }
    }
}

__global__ static void embedding_positions_kernel(float *dwpe, const float *dout, int B, int T,
                                                  int C) {
    KCUDA_GRID_STRIDE_LOOP(i, (int64_t)T * C) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++) acc += dout[(int64_t)b * T * C + i];
        dwpe[i] += acc;
    }
}

void kcuda_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                              const int32_t *tokens, int B, int T, int C, int V,
                              void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    int64_t BT = (int64_t)B * T;
    if (BT <= 0) return;
    char *w = (char *)workspace;
    int32_t *keys = (int32_t *)w;
    int32_t *pos_in = (int32_t *)(w + align256(BT * 4));
    int32_t *pos = (int32_t *)(w + 2 * align256(BT * 4));
    void *temp = w + 3 * align256(BT * 4);
    size_t temp_bytes = sort_temp_bytes(BT);
    iota_kernel<<<kcuda_grid_1d(c, BT), KCUDA_THREADS, 0, c->stream>>>(pos_in, BT);
    KCUDA_LAUNCHED(c, "iota_kernel");
    /* tokens are in [0, V) (non-negative: CUB's flip of the int32 sign bit leaves bits
     * 0..end_bit-1 as they are) */
    KCUDA_CALL(c, cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, keys, pos_in, pos,
                                                  (int)BT, 0, token_key_bits(V), c->stream));
    unsigned int blocks = (unsigned int)(BT < 65536 ? BT : 65536);
    embedding_rows_kernel<<<blocks, KCUDA_THREADS, 0, c->stream>>>(dwte, dout, keys, pos, BT, C);
    KCUDA_LAUNCHED(c, "embedding_rows_kernel");
    if (dwpe) {
        embedding_positions_kernel<<<kcuda_grid_1d(c, (int64_t)T * C), KCUDA_THREADS, 0,
                                     c->stream>>>(dwpe, dout, B, T, C);
        KCUDA_LAUNCHED(c, "embedding_positions_kernel");
    }
}

/* ---- layer norm: one warp per row ---- */

__global__ static void layernorm_forward_kernel(float *out, float *mean_rstd, const float *x,
                                                const float *w, const float *b, int N, int C,
                                                float eps) {
    int lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    const float *xr = x + row * C;
    double s = 0.0;
    for (int i = lane; i < C; i += 32) s += xr[i];
    s = kcuda_warp_sum_f64(s);
    float mean = (float)(s / C);
    double ss = 0.0;
    for (int i = lane; i < C; i += 32) {
        float d = xr[i] - mean;
        ss += (double)d * d;
    }
    ss = kcuda_warp_sum_f64(ss);
    float rstd = (float)(1.0 / sqrt(ss / C + (double)eps));
    float *o = out + row * C;
    for (int i = lane; i < C; i += 32) o[i] = (xr[i] - mean) * rstd * w[i] + (b ? b[i] : 0.0f);
    if (lane == 0) {
        mean_rstd[row] = mean;
        mean_rstd[N + row] = rstd;
    }
}

void kcuda_layernorm_forward(void *ctx, float *out, float *mean_rstd, const float *x,
                             const float *w, const float *b, int N, int C, float eps) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (N <= 0) return;
    int rows = KCUDA_THREADS / 32;
    layernorm_forward_kernel<<<(N + rows - 1) / rows, KCUDA_THREADS, 0, c->stream>>>(
        out, mean_rstd, x, w, b, N, C, eps);
    KCUDA_LAUNCHED(c, "layernorm_forward_kernel");
}

__global__ static void layernorm_din_kernel(float *din, const float *dout, const float *x,
                                            const float *mean_rstd, const float *w, int N,
                                            int C) {
    int lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    const float *xr = x + row * C, *g = dout + row * C;
    float mean = mean_rstd[row], rstd = mean_rstd[N + row];
    double a = 0.0, bs = 0.0;
    for (int i = lane; i < C; i += 32) {
        float xhat = (xr[i] - mean) * rstd, dxhat = g[i] * w[i];
        a += dxhat;
        bs += (double)dxhat * xhat;
    }
    a = kcuda_warp_sum_f64(a);
    bs = kcuda_warp_sum_f64(bs);
    float ma = (float)(a / C), mb = (float)(bs / C);
    float *d = din + row * C;
    for (int i = lane; i < C; i += 32) {
        float xhat = (xr[i] - mean) * rstd;
        d[i] = rstd * (g[i] * w[i] - ma - xhat * mb);
    }
}

/* partial[chunk][0][c] = sum over the chunk's rows of dout * xhat, [1][c] of dout */
__global__ static void layernorm_partials_kernel(float *partial, const float *dout,
                                                 const float *x, const float *mean_rstd, int N,
                                                 int C, int chunks) {
    KCUDA_GRID_STRIDE_LOOP(i, (int64_t)chunks * C) {
        int chunk = (int)(i / C), ch = (int)(i % C);
        int r0 = chunk * LN_CHUNK, r1 = r0 + LN_CHUNK < N ? r0 + LN_CHUNK : N;
        float dw = 0.0f, db = 0.0f;
        for (int r = r0; r < r1; r++) {
            float g = dout[(int64_t)r * C + ch];
            dw += g * (x[(int64_t)r * C + ch] - mean_rstd[r]) * mean_rstd[N + r];
            db += g;
        }
        partial[((int64_t)chunk * 2) * C + ch] = dw;
        partial[((int64_t)chunk * 2 + 1) * C + ch] = db;
    }
}

__global__ static void layernorm_sum_kernel(float *dw, float *db, const float *partial, int C,
                                            int chunks) {
    KCUDA_GRID_STRIDE_LOOP(ch, (int64_t)C) {
        double a = 0.0, b = 0.0;
        for (int k = 0; k < chunks; k++) {
            a += partial[((int64_t)k * 2) * C + ch];
            b += partial[((int64_t)k * 2 + 1) * C + ch];
        }
        dw[ch] += (float)a;
        if (db) db[ch] += (float)b;
    }
}

void kcuda_layernorm_backward(void *ctx, float *din, float *dw, float *db, const float *dout,
                              const float *x, const float *mean_rstd, const float *w, int N,
                              int C, void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (N <= 0) return;
    int rows = KCUDA_THREADS / 32;
    if (din) {
        layernorm_din_kernel<<<(N + rows - 1) / rows, KCUDA_THREADS, 0, c->stream>>>(
            din, dout, x, mean_rstd, w, N, C);
        KCUDA_LAUNCHED(c, "layernorm_din_kernel");
    }
    int chunks = (N + LN_CHUNK - 1) / LN_CHUNK;
    float *partial = (float *)workspace;
    layernorm_partials_kernel<<<kcuda_grid_1d(c, (int64_t)chunks * C), KCUDA_THREADS, 0,
                                c->stream>>>(partial, dout, x, mean_rstd, N, C, chunks);
    KCUDA_LAUNCHED(c, "layernorm_partials_kernel");
    layernorm_sum_kernel<<<kcuda_grid_1d(c, C), KCUDA_THREADS, 0, c->stream>>>(dw, db, partial,
                                                                               C, chunks);
    KCUDA_LAUNCHED(c, "layernorm_sum_kernel");
}

/* ---- attention: training passes in cuda_attention.cu; decode ---- */

/* One block per (b, h): scores of the new position against positions [0, t], softmax, the
 * weighted sum of the values.  w: [B * NH, Tmax] scratch. */
__global__ static void attention_decode_kernel(float *out, const float *q, const float *kc,
                                               const float *vc, float *w, int t, int Tmax, int C,
                                               int NH, float scale) {
    int bh = blockIdx.x, b = bh / NH, h = bh % NH, HS = C / NH;
    const float *qh = q + (int64_t)b * C + h * HS;
    const float *kb = kc + (int64_t)b * Tmax * C + h * HS;
    const float *vb = vc + (int64_t)b * Tmax * C + h * HS;
    float *wr = w + (int64_t)bh * Tmax;
    __shared__ float red[KCUDA_THREADS];
    float m = -CUDART_INF_F;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float dot = 0.0f;
        for (int i = 0; i < HS; i++) dot += qh[i] * kb[(int64_t)s * C + i];
        wr[s] = dot;
        m = fmaxf(m, dot);
    }
    red[threadIdx.x] = m;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + k]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    double sum = 0.0;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float e = expf((wr[s] - m) * scale);
        wr[s] = e;
        sum += e;
    }
    sum = kcuda_block_sum_f64(sum);
    __shared__ float inv;
    if (threadIdx.x == 0) inv = (float)(1.0 / sum);
    __syncthreads();
    for (int i = threadIdx.x; i < HS; i += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s <= t; s++) acc += wr[s] * vb[(int64_t)s * C + i];
        out[(int64_t)b * C + h * HS + i] = acc * inv;
    }
}

void kcuda_attention_decode(void *ctx, float *out, const float *q, const float *kcache,
                            const float *vcache, int B, int t, int Tmax, int C, int NH,
                            void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0) return;
    int HS = C / NH;
    attention_decode_kernel<<<B * NH, KCUDA_THREADS, 0, c->stream>>>(
        out, q, kcache, vcache, (float *)workspace, t, Tmax, C, NH, 1.0f / sqrtf((float)HS));
    KCUDA_LAUNCHED(c, "attention_decode_kernel");
}

/* ---- the loss over rows of ld floats, sums kept on the device ---- */

/* (value, index) max over a block: larger value, then lower index. */
__device__ static void block_argmax(float *v, int *idx) {
    __shared__ float sv[KCUDA_THREADS];
    __shared__ int si[KCUDA_THREADS];
    sv[threadIdx.x] = *v;
    si[threadIdx.x] = *idx;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            float v2 = sv[threadIdx.x + k];
            int i2 = si[threadIdx.x + k];
            float v1 = sv[threadIdx.x];
            int i1 = si[threadIdx.x];
            if (i2 != INT_MAX && (i1 == INT_MAX || v2 > v1 || (v2 == v1 && i2 < i1))) {
                sv[threadIdx.x] = v2;
                si[threadIdx.x] = i2;
            }
        }
        __syncthreads();
    }
    *v = sv[0];
    *idx = si[0];
    __syncthreads();
}

/* One block per row (grid-stride); per-block partial loss sums and correct counts. */
__global__ static void xent_rows_kernel(float *losses, float *dlogits, const float *logits,
                                        const int32_t *labels, int B, int C, int ld,
                                        float grad_scale, double *part_sum,
                                        long long *part_count) {
    double loss_acc = 0.0;
    long long right = 0;
    for (int64_t row = blockIdx.x; row < B; row += gridDim.x) {
        const float *z = logits + row * ld;
        float *d = dlogits ? dlogits + row * ld : NULL;
        int label = labels[row];
        float loss;
        if (label < 0 || label >= C) {
            if (d)
                for (int j = threadIdx.x; j < ld; j += blockDim.x) d[j] = j < C ? CUDART_NAN_F : 0.0f;
            loss = CUDART_NAN_F;
        } else {
            float zlabel = z[label];
            float zmax = -CUDART_INF_F;
            int amax = INT_MAX;
            for (int j = threadIdx.x; j < C; j += blockDim.x)
                if (amax == INT_MAX || z[j] > zmax) {
                    zmax = z[j];
                    amax = j;
                }
            block_argmax(&zmax, &amax);
            double sum = 0.0;
            for (int j = threadIdx.x; j < C; j += blockDim.x) sum += (double)expf(z[j] - zmax);
            sum = kcuda_block_sum_f64(sum);
            __shared__ double total;
            if (threadIdx.x == 0) total = sum;
            __syncthreads();   /* every thread has read z[label]; d may alias z below */
            sum = total;
            loss = (float)(log(sum) - ((double)zlabel - (double)zmax));   /* as the CPU */
            right += amax == label;
            if (d) {
                float inv = (float)(grad_scale / sum);
                for (int j = threadIdx.x; j < ld; j += blockDim.x) {
                    float g = j < C ? expf(z[j] - zmax) * inv : 0.0f;
                    if (j == label) g -= grad_scale;
                    d[j] = g;
                }
            }
            __syncthreads();   /* `total` is rewritten by the next row */
        }
        if (threadIdx.x == 0) {
            if (losses) losses[row] = loss;
            loss_acc += loss;
        }
    }
    if (threadIdx.x == 0) {
        part_sum[blockIdx.x] = loss_acc;
        part_count[blockIdx.x] = right;
    }
}

__global__ static void xent_finish_kernel(double *acc, const double *part_sum,
                                          const long long *part_count, int nparts) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    long long r = 0;
    for (int i = 0; i < nparts; i++) {
        s += part_sum[i];
        r += part_count[i];
    }
    acc[0] += s;
    acc[1] += (double)r;
}

void kcuda_softmax_xent_acc(void *ctx, float *losses, float *dlogits, double *acc,
                            const float *logits, const int32_t *labels, int B, int C, int ld,
                            float grad_scale) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0) return;
    int blocks = B < KCUDA_MAX_PARTIALS ? B : KCUDA_MAX_PARTIALS;
    xent_rows_kernel<<<blocks, KCUDA_THREADS, 0, c->stream>>>(
        losses, dlogits, logits, labels, B, C, ld, grad_scale, c->part_sum, c->part_count);
    KCUDA_LAUNCHED(c, "xent_rows_kernel");
    xent_finish_kernel<<<1, 32, 0, c->stream>>>(acc, c->part_sum, c->part_count, blocks);
    KCUDA_LAUNCHED(c, "xent_finish_kernel");
}
