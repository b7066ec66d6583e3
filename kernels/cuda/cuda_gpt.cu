/* cuda_gpt.cu: the language-model ops on the GPU - embeddings, layer norm, causal attention
 * (cuBLAS strided-batched GEMMs around a fused masked-softmax kernel), one-token attention
 * against a key-value cache, and the padded-vocabulary loss that keeps its sums on the device.
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
    /* attention: q, k, v, y (and in backward dq, dk, dv, dy) [B, NH, T, HS], scores [B, NH, T, T] */
    size_t attn = align256((size_t)B * NH * T * T * 4) + 8 * align256(BT * C * 4);
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
    (void)V;
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
    KCUDA_CALL(c, cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, keys, pos_in, pos,
                                                  (int)BT, 0, 32, c->stream));
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

/* ---- attention ---- */

/* qkv [B, T, 3, NH, HS] <-> q, k, v [B, NH, T, HS] (to_heads) */
__global__ static void split_heads_kernel(float *q, float *k, float *v, const float *qkv, int B,
                                          int T, int C, int NH) {
    int HS = C / NH;
    KCUDA_GRID_STRIDE_LOOP(i, (int64_t)B * T * C) {
        int64_t bt = i / C;
        int ch = (int)(i % C), h = ch / HS, d = ch % HS;
        int64_t b = bt / T, t = bt % T;
        int64_t dst = ((b * NH + h) * T + t) * HS + d;
        const float *src = qkv + bt * 3 * C + ch;
        q[dst] = src[0];
        k[dst] = src[C];
        v[dst] = src[2 * C];
    }
}

__global__ static void merge_heads_kernel(float *qkv, const float *q, const float *k,
                                          const float *v, int B, int T, int C, int NH) {
    int HS = C / NH;
    KCUDA_GRID_STRIDE_LOOP(i, (int64_t)B * T * C) {
        int64_t bt = i / C;
        int ch = (int)(i % C), h = ch / HS, d = ch % HS;
        int64_t b = bt / T, t = bt % T;
        int64_t src = ((b * NH + h) * T + t) * HS + d;
        float *dst = qkv + bt * 3 * C + ch;
        dst[0] = q[src];
        dst[C] = k[src];
        dst[2 * C] = v[src];
    }
}

/* out [B, T, C] <-> y [B, NH, T, HS]; to_heads: out -> y */
__global__ static void permute_out_kernel(float *out, float *y, int B, int T, int C, int NH,
                                          int to_heads) {
    int HS = C / NH;
    KCUDA_GRID_STRIDE_LOOP(i, (int64_t)B * T * C) {
        int64_t bt = i / C;
        int ch = (int)(i % C), h = ch / HS, d = ch % HS;
        int64_t b = bt / T, t = bt % T;
        int64_t yi = ((b * NH + h) * T + t) * HS + d;
        if (to_heads) y[yi] = out[i];
        else out[i] = y[yi];
    }
}

/* One warp per row (b, h, t) of scores [T]: causal softmax of scale * s in place; s > t is 0. */
__global__ static void causal_softmax_kernel(float *att, int64_t rows, int T, float scale) {
    int lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    int t = (int)(row % T);
    float *a = att + row * T;
    float m = -CUDART_INF_F;
    for (int s = lane; s <= t; s += 32) m = fmaxf(m, a[s]);
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    double sum = 0.0;
    for (int s = lane; s <= t; s += 32) {
        float e = expf((a[s] - m) * scale);
        a[s] = e;
        sum += e;
    }
    sum = kcuda_warp_sum_f64(sum);
    float inv = (float)(1.0 / sum);
    for (int s = lane; s < T; s += 32) a[s] = s <= t ? a[s] * inv : 0.0f;
}

/* dS = P * (dP - sum(P * dP)) * scale in place of dP, per row; s > t is 0. */
__global__ static void softmax_backward_kernel(float *datt, const float *att, int64_t rows,
                                               int T, float scale) {
    int lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    int t = (int)(row % T);
    const float *p = att + row * T;
    float *d = datt + row * T;
    double dot = 0.0;
    for (int s = lane; s <= t; s += 32) dot += (double)p[s] * d[s];
    dot = kcuda_warp_sum_f64(dot);
    float dd = (float)dot;
    __syncwarp();
    for (int s = lane; s < T; s += 32) d[s] = s <= t ? p[s] * (d[s] - dd) * scale : 0.0f;
}

/* Column-major C[m,n] = op(A) op(B), batched over `batch` with the given strides. */
static void gemm_batched(kcuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const float *A, int lda, long long sa, const float *B, int ldb,
                         long long sb, float *Cm, int ldc, long long sc, int batch) {
    float alpha = 1.0f, beta = 0.0f;
    c->launches++;
    KCUBLAS_CALL(c, cublasGemmStridedBatchedEx(c->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F,
                                               lda, sa, B, CUDA_R_32F, ldb, sb, &beta, Cm,
                                               CUDA_R_32F, ldc, sc, batch, c->gemm_compute,
                                               CUBLAS_GEMM_DEFAULT));
}

typedef struct {
    float *q, *k, *v, *y, *att_grad, *dq, *dk, *dv, *dy;
} attn_scratch;

static attn_scratch carve(void *workspace, int B, int T, int C, int NH) {
    char *w = (char *)workspace;
    size_t act = align256((size_t)B * T * C * 4);
    attn_scratch s;
    s.att_grad = (float *)w;
    w += align256((size_t)B * NH * T * T * 4);
    float **parts[8] = {&s.q, &s.k, &s.v, &s.y, &s.dq, &s.dk, &s.dv, &s.dy};
    for (int i = 0; i < 8; i++) {
        *parts[i] = (float *)w;
        w += act;
    }
    return s;
}

void kcuda_attention_forward(void *ctx, float *out, float *att, const float *qkv, int B,
                             int T, int C, int NH, void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0 || T <= 0) return;
    int HS = C / NH;
    attn_scratch s = carve(workspace, B, T, C, NH);
    int64_t n = (int64_t)B * T * C, rows = (int64_t)B * NH * T;
    long long sh = (long long)T * HS, st = (long long)T * T;
    split_heads_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(s.q, s.k, s.v, qkv,
                                                                              B, T, C, NH);
    KCUDA_LAUNCHED(c, "split_heads_kernel");
    /* scores (row-major [T,T] = q k^T): column-major S^T = K^T' Q, i.e. op(A) = K as [T,HS] */
    gemm_batched(c, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, s.k, HS, sh, s.q, HS, sh, att, T, st,
                 B * NH);
    int per = KCUDA_THREADS / 32;
    causal_softmax_kernel<<<(unsigned int)((rows + per - 1) / per), KCUDA_THREADS, 0,
                            c->stream>>>(att, rows, T, 1.0f / sqrtf((float)HS));
    KCUDA_LAUNCHED(c, "causal_softmax_kernel");
    /* y [T,HS] = att v: column-major y^T = v^T att^T */
    gemm_batched(c, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, s.v, HS, sh, att, T, st, s.y, HS, sh,
                 B * NH);
    permute_out_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(out, s.y, B, T, C,
                                                                              NH, 0);
    KCUDA_LAUNCHED(c, "permute_out_kernel");
}

void kcuda_attention_backward(void *ctx, float *dqkv, const float *dout, const float *qkv,
                              const float *att, int B, int T, int C, int NH, void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0 || T <= 0) return;
    int HS = C / NH;
    attn_scratch s = carve(workspace, B, T, C, NH);
    int64_t n = (int64_t)B * T * C, rows = (int64_t)B * NH * T;
    long long sh = (long long)T * HS, st = (long long)T * T;
    split_heads_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(s.q, s.k, s.v, qkv,
                                                                              B, T, C, NH);
    KCUDA_LAUNCHED(c, "split_heads_kernel");
    permute_out_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        (float *)dout, s.dy, B, T, C, NH, 1);
    KCUDA_LAUNCHED(c, "permute_out_kernel");
    /* dv [T,HS] = att^T dy: column-major dv^T = dy^T att */
    gemm_batched(c, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, s.dy, HS, sh, att, T, st, s.dv, HS, sh,
                 B * NH);
    /* datt [T,T] = dy v^T: column-major datt^T = v dy^T */
    gemm_batched(c, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, s.v, HS, sh, s.dy, HS, sh, s.att_grad, T,
                 st, B * NH);
    int per = KCUDA_THREADS / 32;
    softmax_backward_kernel<<<(unsigned int)((rows + per - 1) / per), KCUDA_THREADS, 0,
                              c->stream>>>(s.att_grad, att, rows, T, 1.0f / sqrtf((float)HS));
    KCUDA_LAUNCHED(c, "softmax_backward_kernel");
    /* dq [T,HS] = dS k: column-major dq^T = k^T dS^T */
    gemm_batched(c, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, s.k, HS, sh, s.att_grad, T, st, s.dq, HS,
                 sh, B * NH);
    /* dk [T,HS] = dS^T q: column-major dk^T = q^T dS */
    gemm_batched(c, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, s.q, HS, sh, s.att_grad, T, st, s.dk, HS,
                 sh, B * NH);
    merge_heads_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(dqkv, s.dq, s.dk,
                                                                              s.dv, B, T, C, NH);
    KCUDA_LAUNCHED(c, "merge_heads_kernel");
}

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
