/* cpu_linear.c: fully connected layer on the CPU, GEMMs in OpenBLAS (row-major).
 *   forward   out[B,O] = in[B,I] @ w[O,I]^T + b[O]
 *   backward  din[B,I] = dout[B,O] @ w[O,I];  dw[O,I] += dout^T @ in;  db[O] += sum_b dout */
#include "cpu_backend.h"

#include <cblas.h>
#undef I   /* complex.h's imaginary unit, pulled in by cblas.h; here I is the input width */

void kcpu_linear_forward(kcpu_ctx *c, float *restrict out, const float *restrict in,
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, I, 1.0f, in, I, w, I, beta, out,
                O);
}

void kcpu_linear_backward(kcpu_ctx *c, float *restrict din, float *restrict dw,
                          float *restrict db, const float *restrict dout,
                          const float *restrict in, const float *restrict w, int B, int I, int O) {
    /* BLAS rejects empty matrices (leading dimension 0), so empty shapes are done by hand */
    int empty = B <= 0 || I <= 0 || O <= 0;
    if (din) {
        if (empty) {
            for (size_t i = 0; i < (size_t)(B > 0 ? B : 0) * (size_t)(I > 0 ? I : 0); i++)
                din[i] = 0.0f;
        } else {
            /* din[B,I] = dout[B,O] @ w[O,I] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, I, O, 1.0f, dout, O, w, I,
                        0.0f, din, I);
        }
    }
    if (!empty) {
        /* dw[O,I] += dout^T[O,B] @ in[B,I] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, B, 1.0f, dout, O, in, I, 1.0f,
                    dw, I);
    }
    if (db) {
        for (int r = 0; r < B; r++) {
            const float *restrict row = dout + (size_t)r * O;
            for (int o = 0; o < O; o++) db[o] += row[o];
        }
    }
}
