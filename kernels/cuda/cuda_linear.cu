/* cuda_linear.cu: fully connected layer on the GPU, GEMMs in cuBLAS (fp32 SGEMM).
 *   forward   out[B,O] = in[B,I] @ w[O,I]^T + b[O]
 *   backward  din[B,I] = dout[B,O] @ w[O,I];  dw[O,I] += dout^T @ in;  db[O] += sum_b dout
 *
 * cuBLAS is column-major.  A row-major matrix X[r,c] (leading dimension c) is, byte for byte,
 * the column-major matrix X^T[c,r] with the same leading dimension.  So each row-major product
 * is computed as its transpose, (A B)^T = B^T A^T, on the same memory:
 *
 *   forward:  out^T[O,B] = w[O,I] @ in^T[I,B]
 *             w's memory is col-major w^T[I,O] (ld I) -> op T;  in's is in^T[I,B] (ld I) -> N
 *             sgemm(T, N, m=O, n=B, k=I, A=w lda=I, B=in ldb=I, C=out ldc=O), beta 0
 *   din:      din^T[I,B] = w^T[I,O] @ dout^T[O,B]
 *             w^T[I,O] is w's memory as is (ld I) -> N;  dout^T[O,B] is dout's (ld O) -> N
 *             sgemm(N, N, m=I, n=B, k=O, A=w lda=I, B=dout ldb=O, C=din ldc=I), beta 0
 *   dw:       dw^T[I,O] += in^T[I,B] @ dout[B,O]
 *             in^T is in's memory (ld I) -> N;  dout[B,O] is the transpose of dout^T (ld O) -> T
 *             sgemm(N, T, m=I, n=O, k=B, A=in lda=I, B=dout ldb=O, C=dw ldc=I), beta 1
 *
 * Epilogues (cuda_lt.cu): the forward adds the bias (and applies a following relu / gelu)
 * in the GEMM's epilogue, and a backward that overwrites its gradients gets db from the dW
 * GEMM's BGRADB epilogue.  Where cuBLASLt has no algorithm for the shape, and for a backward
 * that accumulates (BGRADB writes, it cannot add), the bias is a separate element-wise pass
 * and db a column sum of dout by a small deterministic kernel (no ones vector, so no size
 * limit on B); run.gemm_epilogues=separate forces those everywhere. */
#include "cuda_internal.h"

/* out[B,O] += b[O], broadcast over rows */
__global__ static void add_bias_kernel(float *out, const float *b, int64_t rows, int cols) {
    int64_t n = rows * cols;
    KCUDA_GRID_STRIDE_LOOP(i, n) out[i] += b[i % cols];
}

/* db[O] += sum_b dout[b, :] for dout[B,O] (= with overwrite).  Block (32, COLSUM_ROWS): a block owns 32 adjacent
 * columns (one coalesced 128-byte read per warp and row); thread (x, y) sums rows y, y+ROWS, ...
 * of column x, then thread (x, 0) adds the ROWS partial sums in order.  Deterministic. */
#define COLSUM_ROWS 32
__global__ static void column_sum_kernel(float *db, const float *dout, int rows, int cols,
                                         int overwrite) {
    __shared__ float partial[COLSUM_ROWS][33];   /* +1: no bank conflicts on the column read */
    int col = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (col < cols)
        for (int r = threadIdx.y; r < rows; r += COLSUM_ROWS) acc += dout[(int64_t)r * cols + col];
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float sum = 0.0f;
        for (int y = 0; y < COLSUM_ROWS; y++) sum += partial[y][threadIdx.x];
        db[col] = overwrite ? sum : db[col] + sum;
    }
}

void kcuda_linear_forward(void *ctx, float *out, const float *in, const float *w,
                          const float *b, int B, int I, int O) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0 || O <= 0) return;
    if (I > 0 && b) {
        int st = kcuda_lt_matmul(c, CUBLAS_OP_T, CUBLAS_OP_N, O, B, I, w, I, in, I, 0.0f, out, O,
                                 CUBLASLT_EPILOGUE_BIAS, (void *)b, NULL);
        if (st != 0) return;   /* fused, or an error recorded */
    }
    if (I <= 0) {
        /* empty product: out = b (or 0); cuBLAS rejects lda = 0 */
        KCUDA_OP(c, cudaMemsetAsync(out, 0, (size_t)B * O * sizeof(float), c->stream));
    } else {
        kcuda_sgemm(c, CUBLAS_OP_T, CUBLAS_OP_N, O, B, I, 1.0f, w, I, in, I, 0.0f, out, O);
    }
    if (b) {
        int64_t n = (int64_t)B * O;
        add_bias_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(out, b, B, O);
        KCUDA_LAUNCHED(c, "add_bias_kernel");
    }
}

/* Whether cuBLASLt's ReLU epilogue keeps a NaN: cuBLASLt does not document it, and a max(x, 0)
 * would turn NaN into 0, hiding it from the non-finite report (which would then name a later
 * layer).  Measured once per context, at its first linear+relu (the first step, which builds
 * the GEMM plans and may wait; never while recording a CUDA graph): an 8x8x8 GEMM of NaN
 * inputs through the RELU epilogue, in the context's precision, its first output read back.
 * NaN: the fused ReLU is used; 0: ReLU runs as its own kernel (which keeps NaN, as PyTorch's
 * relu does) for the rest of the run.  The operands live in the reduction scratch (8 KiB,
 * free between ops).  tests/gpu/test_gpu_kernels.c prints the result. */
static int relu_epilogue_keeps_nan(kcuda_ctx *c) {
    if (c->relu_nan_probe != 0) return c->relu_nan_probe > 0;
    if (c->capturing || c->separate_epilogues) return 0;   /* not measurable now: separate */
    float *a = (float *)c->part_sum, *d = a + 128;   /* a: [8,8] NaN (A and B), d: [8,8] */
    float got = 0.0f;
    if (!KCUDA_OP(c, cudaMemsetAsync(a, 0xFF, 64 * sizeof(float), c->stream))) return 0;
    int st = kcuda_lt_matmul(c, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, a, 8, a, 8, 0.0f, d, 8,
                             CUBLASLT_EPILOGUE_RELU, NULL, NULL);
    if (st < 0) return 0;   /* an error, recorded */
    if (st == 0) {
        c->relu_nan_probe = -1;   /* no fused ReLU for this context's math at all */
        return 0;
    }
    if (!KCUDA_OP(c, cudaMemcpyAsync(&got, d, sizeof got, cudaMemcpyDeviceToHost, c->stream)) ||
        !KCUDA_WAIT(c, cudaStreamSynchronize(c->stream)))
        return 0;
    c->relu_nan_probe = got != got ? 1 : -1;
    return c->relu_nan_probe > 0;
}

void kcuda_linear_act_forward(void *ctx, float *pre, float *out, const float *in,
                              const float *w, const float *b, int B, int I, int O, kern_act act) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (B <= 0 || O <= 0) return;
    if (I > 0 && act != KERN_ACT_NONE && (act != KERN_ACT_RELU || relu_epilogue_keeps_nan(c))) {
        /* relu: D = relu(in w^T + b) straight into out (pre is not needed: relu's backward
         * reads out); gelu: aux = in w^T + b into pre, D = gelu(aux) into out */
        unsigned int epi = act == KERN_ACT_RELU ? (b ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU)
                           : (b ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX);
        int st = kcuda_lt_matmul(c, CUBLAS_OP_T, CUBLAS_OP_N, O, B, I, w, I, in, I, 0.0f, out, O,
                                 epi, (void *)b, act == KERN_ACT_GELU ? pre : NULL);
        if (st != 0) return;   /* fused, or an error recorded */
    }
    float *z = pre ? pre : out;
    int64_t n = (int64_t)B * O;
    kcuda_linear_forward(c, z, in, w, b, B, I, O);
    if (act == KERN_ACT_RELU) kcuda_relu_forward(c, out, z, n);
    else if (act == KERN_ACT_GELU) kcuda_gelu_forward(c, out, z, n);
    else if (z != out) kcuda_copy(c, out, z, n);
}

void kcuda_linear_backward(void *ctx, float *din, float *dw, float *db, const float *dout,
                           const float *in, const float *w, int B, int I, int O) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    kcuda_linear_backward_ex(c, din, dw, db, dout, in, w, B, I, O, 0);
}

void kcuda_linear_backward_ex(void *ctx, float *din, float *dw, float *db, const float *dout,
                              const float *in, const float *w, int B, int I, int O,
                              int overwrite) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (I <= 0 || O <= 0) return;   /* din and dw have no elements; db keeps its value */
    if (B <= 0) {
        /* nothing to accumulate: an overwriting backward still owes zeros */
        if (overwrite) {
            KCUDA_OP(c, cudaMemsetAsync(dw, 0, (size_t)O * I * sizeof(float), c->stream));
            if (db) KCUDA_OP(c, cudaMemsetAsync(db, 0, (size_t)O * sizeof(float), c->stream));
        }
        return;
    }
    if (din) kcuda_sgemm(c, CUBLAS_OP_N, CUBLAS_OP_N, I, B, O, 1.0f, w, I, dout, O, 0.0f, din, I);
    float beta = overwrite ? 0.0f : 1.0f;
    if (db && overwrite) {
        /* dw^T[I,O] = in^T[I,B] @ dout[B,O]; BGRADB sums op(B) = dout over k = B: db[O] */
        int st = kcuda_lt_matmul(c, CUBLAS_OP_N, CUBLAS_OP_T, I, O, B, in, I, dout, O, 0.0f, dw,
                                 I, CUBLASLT_EPILOGUE_BGRADB, db, NULL);
        if (st != 0) return;
    }
    kcuda_sgemm(c, CUBLAS_OP_N, CUBLAS_OP_T, I, O, B, 1.0f, in, I, dout, O, beta, dw, I);
    if (db) {
        dim3 block(32, COLSUM_ROWS);
        unsigned int grid = (unsigned int)(((int64_t)O + 31) / 32);
        column_sum_kernel<<<grid, block, 0, c->stream>>>(db, dout, B, O, overwrite);
        KCUDA_LAUNCHED(c, "column_sum_kernel");
    }
}
