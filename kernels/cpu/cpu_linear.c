/* cpu_linear.c: fully connected layer on the CPU, GEMMs through kcpu_gemm (cpu_gemm.c).
 *   forward   out[B,O] = in[B,I] @ w[O,I]^T + b[O]
 *   backward  din[B,I] = dout[B,O] @ w[O,I];  dw[O,I] += dout^T @ in;  db[O] += sum_b dout */
#include "cpu_internal.h"


void kcpu_linear_forward(void *c, float *restrict out, const float *restrict in,
                         const float *restrict w, const float *restrict b, int B, int I, int O) {
    if (B <= 0 || O <= 0) return;
    float beta = 0.0f;
    if (b) {
        /* seed every row with the bias and let the GEMM accumulate onto it (beta = 1) */
        for (int r = 0; r < B; r++) {
            float *restrict row = out + (size_t)r * O;
            for (int o = 0; o < O; o++) row[o] = b[o];
        }
        beta = 1.0f;
    } else if (I <= 0) {
        for (size_t i = 0; i < (size_t)B * O; i++) out[i] = 0.0f;
    }
    if (I <= 0) return;
    kcpu_gemm(c, 0, 1, B, O, I, in, I, w, I, beta, out, O);
}

void kcpu_linear_backward(void *c, float *restrict din, float *restrict dw,
                          float *restrict db, const float *restrict dout,
                          const float *restrict in, const float *restrict w, int B, int I, int O) {
    kcpu_linear_backward_ex(c, din, dw, db, dout, in, w, B, I, O, 0);
}

void kcpu_linear_act_forward(void *c, float *pre, float *out, const float *in,
                             const float *w, const float *b, int B, int I, int O, kern_act act) {
    /* one pass per op here; with no pre buffer (relu) the GEMM writes out and relu runs in
     * place, as the CUDA epilogue leaves it */
    float *z = pre ? pre : out;
    kcpu_linear_forward(c, z, in, w, b, B, I, O);
    int64_t n = (int64_t)(B > 0 ? B : 0) * (O > 0 ? O : 0);
    if (act == KERN_ACT_RELU) kcpu_relu_forward(c, out, z, n);
    else if (act == KERN_ACT_GELU) kcpu_gelu_forward(c, out, z, n);
    else if (z != out) kcpu_copy(c, out, z, n);
}

KCPU_SIMD void kcpu_linear_backward_ex(void *c, float *restrict din, float *restrict dw,
                             float *restrict db, const float *restrict dout,
                             const float *restrict in, const float *restrict w, int B, int I,
                             int O, int overwrite) {
    /* BLAS libraries reject empty matrices (leading dimension 0), so empty shapes are done by hand */
    int empty = B <= 0 || I <= 0 || O <= 0;
    if (din) {
        if (empty) {
            for (size_t i = 0; i < (size_t)(B > 0 ? B : 0) * (size_t)(I > 0 ? I : 0); i++)
                din[i] = 0.0f;
        } else {
            /* din[B,I] = dout[B,O] @ w[O,I] */
            kcpu_gemm(c, 0, 0, B, I, O, dout, O, w, I, 0.0f, din, I);
        }
    }
    if (!empty) {
        /* dw[O,I] += dout^T[O,B] @ in[B,I]  (= with overwrite) */
        kcpu_gemm(c, 1, 0, O, I, B, dout, O, in, I, overwrite ? 0.0f : 1.0f, dw, I);
    } else if (overwrite && O > 0 && I > 0) {
        for (size_t i = 0; i < (size_t)O * I; i++) dw[i] = 0.0f;
    }
    if (db && overwrite)
        for (int o = 0; o < O; o++) db[o] = 0.0f;
    if (db) {
        for (int r = 0; r < B; r++) {
            const float *restrict row = dout + (size_t)r * O;
            for (int o = 0; o < O; o++) db[o] += row[o];
        }
    }
}
