/* cuda_attention.cu: fused causal self-attention for training, FlashAttention's tiling.
 *
 * Reads q, k, v straight from the fused projection qkv[B,T,3C] (head h of position t: columns
 * h*HS, C + h*HS, 2C + h*HS of row b*T + t) and writes out[B,T,C] with the heads side by side
 * (nanoGPT's layout) - no permutes.  Nothing of size T x T is ever in memory:
 *   forward   one block per (query tile, b, h) walks the key tiles up to the diagonal with an
 *             online softmax (running max m and sum l per row, the output rescaled as m
 *             grows) and saves lse = m + log l per row, [B,NH,T];
 *   backward  D = rowsum(dout * out) [B,NH,T] (attention_rowdot_kernel), then two kernels that
 *             recompute the probabilities P = exp(S - lse) tile by tile:
 *             dK/dV: one block per (key tile, b, h) walks the query tiles from the diagonal on,
 *                    dV += P^T dO, dK += dS^T Q with dS = P (dP - D) / sqrt(HS), dP = dO V^T;
 *             dQ:    one block per (query tile, b, h) walks the key tiles, dQ += dS K.
 *             Each output element is summed by one block in a fixed order: no atomics, the
 *             same bits on every run (the price: P and dP are computed twice).
 * Only tiles on or below the diagonal are visited (half the FLOPs of T x T).
 *
 * Precision follows the context: with BF16 GEMM inputs (run.precision: bf16) the tile
 * products run on tensor cores (wmma 16x16x16, bf16 operands, fp32 accumulation; P and dS are
 * rounded to bf16 before their products, as FlashAttention does); otherwise (fp32, TF32) they
 * are fp32 FMAs.  Softmax, lse, D and every accumulator are fp32 either way.
 *
 * Each kernel works on shared-memory tiles: operands [rows][HSP + pad] with the head size
 * padded to HSP = 32, 64 or 128 (zeros beyond HS), fp32 score and accumulator tiles.  The
 * tile products are gemm_tile (one function per element type) writing fp32 tiles; the
 * element-wise steps between them are plain loops over the tile. */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <math_constants.h>
#include <mma.h>

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f

typedef __nv_bfloat16 bf16;

/* Row padding of operand tiles, in elements: fp32 rows of odd length make a column walk
 * (B[n][k] for n across a warp) hit 32 different banks; wmma wants bf16 rows in multiples of
 * 8 elements (16 bytes).  fp32 result tiles: rows in multiples of 4 (wmma's float stores). */
template <typename E> struct att_pad { static const int v = 1; };
template <> struct att_pad<bf16> { static const int v = 8; };
#define ATT_CPAD 4

template <typename E> __device__ static inline E att_to(float x);
template <> __device__ inline float att_to<float>(float x) { return x; }
template <> __device__ inline bf16 att_to<bf16>(float x) { return __float2bfloat16(x); }

/* ---- tile products: C[M][N] (+)= A[M][K] op(B), row-major shared-memory tiles ----
 * op(B)(k, n) = B[n * ldb + k] when TB (B holds the transpose), else B[k * ldb + n]. */

/* fp32: each thread computes outputs tid, tid + 256, ...; a warp shares one row m of A
 * (broadcast reads) and reads 32 consecutive n of B (or, with TB, 32 rows of odd length). */
template <bool TB>
__device__ static void gemm_tile(float *Cm, int ldc, const float *A, int lda, const float *Bm,
                                 int ldb, int M, int N, int K, bool accumulate) {
    for (int e = threadIdx.x; e < M * N; e += ATT_THREADS) {
        int m = e / N, n = e % N;
        const float *a = A + m * lda;
        float acc = accumulate ? Cm[m * ldc + n] : 0.0f;
        if (TB) {
            const float *b = Bm + n * ldb;
            for (int k = 0; k < K; k++) acc = fmaf(a[k], b[k], acc);
        } else {
            for (int k = 0; k < K; k++) acc = fmaf(a[k], Bm[k * ldb + n], acc);
        }
        Cm[m * ldc + n] = acc;
    }
}

/* bf16 on tensor cores: each warp takes 16x16 output tiles in turn.  M, N, K are multiples of
 * 16; every tile base is 32-byte aligned (buffers 128-aligned, rows of 16 x ld elements). */
template <bool TB>
__device__ static void gemm_tile(float *Cm, int ldc, const bf16 *A, int lda, const bf16 *Bm,
                                 int ldb, int M, int N, int K, bool accumulate) {
    using namespace nvcuda;
    int warp = threadIdx.x / 32, tiles_n = N / 16, tiles = (M / 16) * tiles_n;
    for (int t = warp; t < tiles; t += ATT_WARPS) {
        int m0 = (t / tiles_n) * 16, n0 = (t % tiles_n) * 16;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        if (accumulate) wmma::load_matrix_sync(acc, Cm + m0 * ldc + n0, ldc, wmma::mem_row_major);
        else wmma::fill_fragment(acc, 0.0f);
        for (int k0 = 0; k0 < K; k0 += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::load_matrix_sync(a, A + m0 * lda + k0, lda);
            if (TB) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(b, Bm + n0 * ldb + k0, ldb);
                wmma::mma_sync(acc, a, b, acc);
            } else {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(b, Bm + k0 * ldb + n0, ldb);
                wmma::mma_sync(acc, a, b, acc);
            }
        }
        wmma::store_matrix_sync(Cm + m0 * ldc + n0, acc, ldc, wmma::mem_row_major);
    }
}

/* ---- shared-memory layout: buffers at 128-byte boundaries, offsets computed the same way on
 * the host (launch size) and on the device ---- */

__host__ __device__ static inline size_t att_take(size_t *off, size_t bytes) {
    size_t at = *off;
    *off += (bytes + 127) / 128 * 128;
    return at;
}

/* rows x HSP operand tile of E, or rows x cols fp32 tile */
template <typename E, int HSP> struct att_dims {
    static const int lde = HSP + att_pad<E>::v;   /* operand rows [.][HSP] */
    static const int ldo = HSP + ATT_CPAD;         /* fp32 accumulators [.][HSP] */
};

/* Loads rows [r0, r0 + rows) of one head's slice (HS features at `base` + row * ld) into an
 * operand tile, zero beyond T and beyond HS. */
template <typename E, int HSP>
__device__ static void load_rows(E *tile, const float *base, int64_t ld, int r0, int rows, int T,
                                 int HS) {
    const int lde = att_dims<E, HSP>::lde;
    for (int i = threadIdx.x; i < rows * HSP; i += ATT_THREADS) {
        int r = i / HSP, d = i % HSP, t = r0 + r;
        float x = t < T && d < HS ? base[(int64_t)t * ld + d] : 0.0f;
        tile[r * lde + d] = att_to<E>(x);
    }
}

/* ---- forward ---- */

template <typename E, int HSP, int BR, int BC> struct fwd_layout {
    size_t q, k, v, s, p, o, inv, bytes;
    __host__ __device__ fwd_layout() {
        const int lde = att_dims<E, HSP>::lde;
        size_t off = 0;
        q = att_take(&off, (size_t)BR * lde * sizeof(E));
        k = att_take(&off, (size_t)BC * lde * sizeof(E));
        v = att_take(&off, (size_t)BC * lde * sizeof(E));
        s = att_take(&off, (size_t)BR * (BC + ATT_CPAD) * 4);
        p = att_take(&off, (size_t)BR * (BC + att_pad<E>::v) * sizeof(E));
        o = att_take(&off, (size_t)BR * att_dims<E, HSP>::ldo * 4);
        inv = att_take(&off, (size_t)BR * 4);
        bytes = off;
    }
};

/* grid (B * NH, query tiles): tiles in reverse, so the longest rows start first */
template <typename E, int HSP, int BR, int BC>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH,
                         float scale_log2) {
    extern __shared__ __align__(128) unsigned char smem[];
    const fwd_layout<E, HSP, BR, BC> L;
    const int lde = att_dims<E, HSP>::lde, ldo = att_dims<E, HSP>::ldo;
    const int lds = BC + ATT_CPAD, ldp = BC + att_pad<E>::v;
    E *Q = (E *)(smem + L.q), *K = (E *)(smem + L.k), *V = (E *)(smem + L.v);
    E *P = (E *)(smem + L.p);
    float *S = (float *)(smem + L.s), *O = (float *)(smem + L.o), *inv = (float *)(smem + L.inv);
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH, HS = C / NH;
    const int q0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * BR;
    const int64_t ld = 3 * (int64_t)C;
    const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * HS;
    load_rows<E, HSP>(Q, base, ld, q0, BR, T, HS);
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) O[(i / HSP) * ldo + i % HSP] = 0.0f;

    /* the row pass: TPR threads per query row, lanes of one warp */
    const int TPR = ATT_THREADS / BR, r = threadIdx.x / TPR, part = threadIdx.x % TPR;
    const int t = q0 + r;
    float m = -CUDART_INF_F, l = 0.0f;
    const int kend = q0 + BR < T ? q0 + BR : T;
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();   /* the previous tile's K, V, P are consumed */
        load_rows<E, HSP>(K, base + C, ld, k0, BC, T, HS);
        load_rows<E, HSP>(V, base + 2 * C, ld, k0, BC, T, HS);
        __syncthreads();
        gemm_tile<true>(S, lds, Q, lde, K, lde, BR, BC, HSP, false);   /* S = Q K^T */
        __syncthreads();
        float tmax = -CUDART_INF_F;
        for (int j = part; j < BC; j += TPR) {
            int key = k0 + j;
            float s = key <= t && key < T ? S[r * lds + j] * scale_log2 : -CUDART_INF_F;
            S[r * lds + j] = s;
            tmax = fmaxf(tmax, s);
        }
        for (int off = TPR / 2; off > 0; off >>= 1)
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
        /* key 0 <= t is in the first tile, so m_new is finite from the first tile on */
        float m_new = fmaxf(m, tmax), corr = exp2f(m - m_new), sum = 0.0f;
        for (int j = part; j < BC; j += TPR) {
            float p = exp2f(S[r * lds + j] - m_new);
            sum += p;
            P[r * ldp + j] = att_to<E>(p);
        }
        for (int off = TPR / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        l = l * corr + sum;
        m = m_new;
        for (int d = part; d < HSP; d += TPR) O[r * ldo + d] *= corr;
        __syncthreads();
        gemm_tile<false>(O, ldo, P, ldp, V, lde, BR, HSP, BC, true);   /* O += P V */
    }
    if (part == 0) {
        inv[r] = 1.0f / l;
        if (t < T) lse[(int64_t)bh * T + t] = (m + log2f(l)) * ATT_LN2;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) {
        int rr = i / HSP, d = i % HSP, tt = q0 + rr;
        if (tt < T && d < HS) out[((int64_t)b * T + tt) * C + h * HS + d] = O[rr * ldo + d] * inv[rr];
    }
}

/* ---- backward ---- */

/* D[b,h,t] = dout[b,t,h,:] . out[b,t,h,:]: one warp per (b, h, t) */
__global__ static void attention_rowdot_kernel(float *D, const float *dout, const float *out,
                                               int64_t rows, int T, int C, int NH) {
    int64_t row = (int64_t)blockIdx.x * ATT_WARPS + threadIdx.x / 32;
    if (row >= rows) return;
    int lane = threadIdx.x % 32, HS = C / NH;
    int64_t bh = row / T, t = row % T, b = bh / NH, h = bh % NH;
    const float *g = dout + (b * T + t) * C + h * HS, *o = out + (b * T + t) * C + h * HS;
    float acc = 0.0f;
    for (int d = lane; d < HS; d += 32) acc = fmaf(g[d], o[d], acc);
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) D[row] = acc;
}

template <typename E, int HSP, int BR, int BC> struct dq_layout {
    size_t q, g, k, v, s, dp, ds, dq, lse, d, bytes;
    __host__ __device__ dq_layout() {
        const int lde = att_dims<E, HSP>::lde;
        size_t off = 0;
        q = att_take(&off, (size_t)BR * lde * sizeof(E));
        g = att_take(&off, (size_t)BR * lde * sizeof(E));
        k = att_take(&off, (size_t)BC * lde * sizeof(E));
        v = att_take(&off, (size_t)BC * lde * sizeof(E));
        s = att_take(&off, (size_t)BR * (BC + ATT_CPAD) * 4);
        dp = att_take(&off, (size_t)BR * (BC + ATT_CPAD) * 4);
        ds = att_take(&off, (size_t)BR * (BC + att_pad<E>::v) * sizeof(E));
        dq = att_take(&off, (size_t)BR * att_dims<E, HSP>::ldo * 4);
        lse = att_take(&off, (size_t)BR * 4);
        d = att_take(&off, (size_t)BR * 4);
        bytes = off;
    }
};

/* dq of one query tile: grid (B * NH, query tiles), tiles in reverse (longest first) */
template <typename E, int HSP, int BR, int BC>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_dq_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                    const float *D, int T, int C, int NH, float scale, float scale_log2) {
    extern __shared__ __align__(128) unsigned char smem[];
    const dq_layout<E, HSP, BR, BC> L;
    const int lde = att_dims<E, HSP>::lde, ldo = att_dims<E, HSP>::ldo;
    const int lds = BC + ATT_CPAD, ldd = BC + att_pad<E>::v;
    E *Q = (E *)(smem + L.q), *G = (E *)(smem + L.g), *K = (E *)(smem + L.k);
    E *V = (E *)(smem + L.v), *dS = (E *)(smem + L.ds);
    float *S = (float *)(smem + L.s), *dP = (float *)(smem + L.dp), *dQ = (float *)(smem + L.dq);
    float *lse2 = (float *)(smem + L.lse), *Dr = (float *)(smem + L.d);
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH, HS = C / NH;
    const int q0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * BR;
    const int64_t ld = 3 * (int64_t)C;
    const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * HS;
    load_rows<E, HSP>(Q, base, ld, q0, BR, T, HS);
    load_rows<E, HSP>(G, dout + (int64_t)b * T * C + (int64_t)h * HS, C, q0, BR, T, HS);
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) dQ[(i / HSP) * ldo + i % HSP] = 0.0f;
    for (int r = threadIdx.x; r < BR; r += ATT_THREADS) {
        int t = q0 + r;
        lse2[r] = t < T ? lse[(int64_t)bh * T + t] * ATT_LOG2E : 0.0f;
        Dr[r] = t < T ? D[(int64_t)bh * T + t] : 0.0f;
    }
    const int kend = q0 + BR < T ? q0 + BR : T;
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();
        load_rows<E, HSP>(K, base + C, ld, k0, BC, T, HS);
        load_rows<E, HSP>(V, base + 2 * C, ld, k0, BC, T, HS);
        __syncthreads();
        gemm_tile<true>(S, lds, Q, lde, K, lde, BR, BC, HSP, false);    /* S = Q K^T */
        gemm_tile<true>(dP, lds, G, lde, V, lde, BR, BC, HSP, false);   /* dP = dO V^T */
        __syncthreads();
        for (int i = threadIdx.x; i < BR * BC; i += ATT_THREADS) {
            int r = i / BC, j = i % BC, t = q0 + r, key = k0 + j;
            float p = key <= t && t < T ? exp2f(S[r * lds + j] * scale_log2 - lse2[r]) : 0.0f;
            dS[r * ldd + j] = att_to<E>(p * (dP[r * lds + j] - Dr[r]) * scale);
        }
        __syncthreads();
        gemm_tile<false>(dQ, ldo, dS, ldd, K, lde, BR, HSP, BC, true);   /* dQ += dS K */
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) {
        int r = i / HSP, d = i % HSP, t = q0 + r;
        if (t < T && d < HS) dqkv[((int64_t)b * T + t) * ld + h * HS + d] = dQ[r * ldo + d];
    }
}

template <typename E, int HSP, int BR, int BC> struct dkv_layout {
    size_t k, v, q, g, st, dpt, pt, dst, dk, dv, lse, d, bytes;
    __host__ __device__ dkv_layout() {
        const int lde = att_dims<E, HSP>::lde, ldo = att_dims<E, HSP>::ldo;
        size_t off = 0;
        k = att_take(&off, (size_t)BR * lde * sizeof(E));
        v = att_take(&off, (size_t)BR * lde * sizeof(E));
        q = att_take(&off, (size_t)BC * lde * sizeof(E));
        g = att_take(&off, (size_t)BC * lde * sizeof(E));
        st = att_take(&off, (size_t)BR * (BC + ATT_CPAD) * 4);
        dpt = att_take(&off, (size_t)BR * (BC + ATT_CPAD) * 4);
        pt = att_take(&off, (size_t)BR * (BC + att_pad<E>::v) * sizeof(E));
        dst = att_take(&off, (size_t)BR * (BC + att_pad<E>::v) * sizeof(E));
        dk = att_take(&off, (size_t)BR * ldo * 4);
        dv = att_take(&off, (size_t)BR * ldo * 4);
        lse = att_take(&off, (size_t)BC * 4);
        d = att_take(&off, (size_t)BC * 4);
        bytes = off;
    }
};

/* dk, dv of one key tile (BR keys): grid (B * NH, key tiles); the query tiles (BC rows) from
 * the one holding the tile's first key to the end.  Tiles are transposed (keys as rows):
 * S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q. */
template <typename E, int HSP, int BR, int BC>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_dkv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                     const float *D, int T, int C, int NH, float scale, float scale_log2) {
    extern __shared__ __align__(128) unsigned char smem[];
    const dkv_layout<E, HSP, BR, BC> L;
    const int lde = att_dims<E, HSP>::lde, ldo = att_dims<E, HSP>::ldo;
    const int lds = BC + ATT_CPAD, ldp = BC + att_pad<E>::v;
    E *K = (E *)(smem + L.k), *V = (E *)(smem + L.v), *Q = (E *)(smem + L.q);
    E *G = (E *)(smem + L.g), *PT = (E *)(smem + L.pt), *dST = (E *)(smem + L.dst);
    float *ST = (float *)(smem + L.st), *dPT = (float *)(smem + L.dpt);
    float *dK = (float *)(smem + L.dk), *dV = (float *)(smem + L.dv);
    float *lse2 = (float *)(smem + L.lse), *Dq = (float *)(smem + L.d);
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH, HS = C / NH;
    const int k0 = (int)blockIdx.y * BR;
    const int64_t ld = 3 * (int64_t)C;
    const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * HS;
    const float *gbase = dout + (int64_t)b * T * C + (int64_t)h * HS;
    load_rows<E, HSP>(K, base + C, ld, k0, BR, T, HS);
    load_rows<E, HSP>(V, base + 2 * C, ld, k0, BR, T, HS);
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) {
        dK[(i / HSP) * ldo + i % HSP] = 0.0f;
        dV[(i / HSP) * ldo + i % HSP] = 0.0f;
    }
    for (int q0 = k0 / BC * BC; q0 < T; q0 += BC) {
        __syncthreads();
        load_rows<E, HSP>(Q, base, ld, q0, BC, T, HS);
        load_rows<E, HSP>(G, gbase, C, q0, BC, T, HS);
        for (int r = threadIdx.x; r < BC; r += ATT_THREADS) {
            int t = q0 + r;
            lse2[r] = t < T ? lse[(int64_t)bh * T + t] * ATT_LOG2E : 0.0f;
            Dq[r] = t < T ? D[(int64_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        gemm_tile<true>(ST, lds, K, lde, Q, lde, BR, BC, HSP, false);    /* S^T = K Q^T */
        gemm_tile<true>(dPT, lds, V, lde, G, lde, BR, BC, HSP, false);   /* dP^T = V dO^T */
        __syncthreads();
        for (int i = threadIdx.x; i < BR * BC; i += ATT_THREADS) {
            int c = i / BC, r = i % BC, key = k0 + c, t = q0 + r;
            float p = key <= t && t < T ? exp2f(ST[c * lds + r] * scale_log2 - lse2[r]) : 0.0f;
            PT[c * ldp + r] = att_to<E>(p);
            dST[c * ldp + r] = att_to<E>(p * (dPT[c * lds + r] - Dq[r]) * scale);
        }
        __syncthreads();
        gemm_tile<false>(dV, ldo, PT, ldp, G, lde, BR, HSP, BC, true);    /* dV += P^T dO */
        gemm_tile<false>(dK, ldo, dST, ldp, Q, lde, BR, HSP, BC, true);   /* dK += dS^T Q */
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BR * HSP; i += ATT_THREADS) {
        int c = i / HSP, d = i % HSP, key = k0 + c;
        if (key < T && d < HS) {
            float *row = dqkv + ((int64_t)b * T + key) * ld + h * HS + d;
            row[C] = dK[c * ldo + d];
            row[2 * C] = dV[c * ldo + d];
        }
    }
}

/* ---- host side ---- */

size_t kcuda_attention_workspace(int B, int T, int NH) {
    return ((size_t)B * NH * T * 4 + 255) / 256 * 256;   /* D [B, NH, T] */
}

/* Dynamic shared memory above 48 KiB needs the kernel's opt-in (every launch: cheap, and
 * allowed while a graph is being captured). */
static bool att_smem(kcuda_ctx *c, const void *kernel, size_t bytes) {
    return KCUDA_CALL(c, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              (int)bytes));
}

/* Tile sizes per element type: bf16 tiles are half the bytes, so twice the rows fit
 * (fp32 stays under A100's 163 KiB of shared memory per block at HSP = 128). */
template <typename E> struct att_tiles;
template <> struct att_tiles<float> {
    static const int fwd_r = 64, fwd_c = 32, dq_r = 32, dq_c = 32, dkv_r = 32, dkv_c = 32;
};
template <> struct att_tiles<bf16> {
    static const int fwd_r = 64, fwd_c = 64, dq_r = 64, dq_c = 64, dkv_r = 64, dkv_c = 32;
};

template <typename E, int HSP>
static void forward_launch(kcuda_ctx *c, float *out, float *lse, const float *qkv, int B, int T,
                           int C, int NH) {
    const int BR = att_tiles<E>::fwd_r, BC = att_tiles<E>::fwd_c;
    const fwd_layout<E, HSP, BR, BC> L;
    auto kernel = attention_forward_kernel<E, HSP, BR, BC>;
    if (!att_smem(c, (const void *)kernel, L.bytes)) return;
    dim3 grid((unsigned int)(B * NH), (unsigned int)((T + BR - 1) / BR));
    float scale_log2 = ATT_LOG2E / sqrtf((float)(C / NH));
    kernel<<<grid, ATT_THREADS, L.bytes, c->stream>>>(out, lse, qkv, T, C, NH, scale_log2);
    KCUDA_LAUNCHED(c, "attention_forward_kernel");
}

template <typename E, int HSP>
static void backward_launch(kcuda_ctx *c, float *dqkv, const float *dout, const float *qkv,
                            const float *lse, const float *D, int B, int T, int C, int NH) {
    const int QR = att_tiles<E>::dq_r, QC = att_tiles<E>::dq_c;
    const int KR = att_tiles<E>::dkv_r, KC = att_tiles<E>::dkv_c;
    const dq_layout<E, HSP, QR, QC> LQ;
    const dkv_layout<E, HSP, KR, KC> LK;
    auto dq = attention_dq_kernel<E, HSP, QR, QC>;
    auto dkv = attention_dkv_kernel<E, HSP, KR, KC>;
    if (!att_smem(c, (const void *)dq, LQ.bytes) || !att_smem(c, (const void *)dkv, LK.bytes))
        return;
    float scale = 1.0f / sqrtf((float)(C / NH)), scale_log2 = scale * ATT_LOG2E;
    dim3 gk((unsigned int)(B * NH), (unsigned int)((T + KR - 1) / KR));
    dkv<<<gk, ATT_THREADS, LK.bytes, c->stream>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale,
                                                   scale_log2);
    KCUDA_LAUNCHED(c, "attention_dkv_kernel");
    dim3 gq((unsigned int)(B * NH), (unsigned int)((T + QR - 1) / QR));
    dq<<<gq, ATT_THREADS, LQ.bytes, c->stream>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale,
                                                  scale_log2);
    KCUDA_LAUNCHED(c, "attention_dq_kernel");
}

/* The padded head size (32, 64, 128) of this head size, or 0 when the kernels lack one. */
static int padded_head(kcuda_ctx *c, int C, int NH, const char *op) {
    int HS = C / NH;
    if (HS <= 32) return 32;
    if (HS <= 64) return 64;
    if (HS <= 128) return 128;
    kcuda_fail(c, op, __FILE__, __LINE__, "head size (dim / heads) above 128 is not supported");
    return 0;
}

static bool use_bf16(const kcuda_ctx *c) { return c->gemm_compute == CUBLAS_COMPUTE_32F_FAST_16BF; }

void kcuda_attention_forward(void *ctx, float *out, float *lse, const float *qkv, int B,
                             int T, int C, int NH, void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    (void)workspace;
    if (B <= 0 || T <= 0) return;
    int hsp = padded_head(c, C, NH, "attention forward");
    bool bf = use_bf16(c);
    if (hsp == 32) bf ? forward_launch<bf16, 32>(c, out, lse, qkv, B, T, C, NH)
                      : forward_launch<float, 32>(c, out, lse, qkv, B, T, C, NH);
    if (hsp == 64) bf ? forward_launch<bf16, 64>(c, out, lse, qkv, B, T, C, NH)
                      : forward_launch<float, 64>(c, out, lse, qkv, B, T, C, NH);
    if (hsp == 128) bf ? forward_launch<bf16, 128>(c, out, lse, qkv, B, T, C, NH)
                       : forward_launch<float, 128>(c, out, lse, qkv, B, T, C, NH);
}

void kcuda_attention_backward(void *ctx, float *dqkv, const float *dout, const float *qkv,
                              const float *out, const float *lse, int B, int T, int C, int NH,
                              void *workspace) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0 || T <= 0) return;
    int hsp = padded_head(c, C, NH, "attention backward");
    if (!hsp) return;
    float *D = (float *)workspace;   /* [B, NH, T] */
    int64_t rows = (int64_t)B * NH * T;
    attention_rowdot_kernel<<<(unsigned int)((rows + ATT_WARPS - 1) / ATT_WARPS), ATT_THREADS, 0,
                              c->stream>>>(D, dout, out, rows, T, C, NH);
    KCUDA_LAUNCHED(c, "attention_rowdot_kernel");
    bool bf = use_bf16(c);
    if (hsp == 32) bf ? backward_launch<bf16, 32>(c, dqkv, dout, qkv, lse, D, B, T, C, NH)
                      : backward_launch<float, 32>(c, dqkv, dout, qkv, lse, D, B, T, C, NH);
    if (hsp == 64) bf ? backward_launch<bf16, 64>(c, dqkv, dout, qkv, lse, D, B, T, C, NH)
                      : backward_launch<float, 64>(c, dqkv, dout, qkv, lse, D, B, T, C, NH);
    if (hsp == 128) bf ? backward_launch<bf16, 128>(c, dqkv, dout, qkv, lse, D, B, T, C, NH)
                       : backward_launch<float, 128>(c, dqkv, dout, qkv, lse, D, B, T, C, NH);
}
