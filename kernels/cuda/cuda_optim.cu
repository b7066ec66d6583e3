/* cuda_optim.cu: reductions over flat parameter buffers and the fused optimizer updates.
 *
 * The updates are one grid-stride pass each, per element through elementwise.h (the CPU's
 * code, and --fmad=false, so the same bits); the per-step scalars of AdamW are computed on the
 * host exactly as cpu_optim.c does.  The reductions write one partial per block into the
 * context's scratch and kcuda_finish_reduction sums those in a fixed order and copies the
 * result back: one small D2H transfer and a wait, no allocation. */
#include "cuda_internal.h"

#include <math.h>

#include "elementwise.h"

/* part_sum[block] = sum of x^2 over this block's grid-stride share of x[n], in double */
__global__ static void sumsq_kernel(double *part_sum, const float *x, int64_t n) {
    double acc = 0.0;
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        double v = (double)x[i];
        acc += v * v;   /* exact: a float's square fits in a double */
    }
    acc = kcuda_block_sum_f64(acc);
    if (threadIdx.x == 0) part_sum[blockIdx.x] = acc;
}

/* part_count[block] = 1 if this block saw a NaN or Inf (exponent bits all ones), else 0 */
__global__ static void nonfinite_kernel(double *part_sum, long long *part_count, const float *x,
                                        int64_t n) {
    int bad = 0;
    KCUDA_GRID_STRIDE_LOOP(i, n) bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
    int any = __syncthreads_or(bad);
    if (threadIdx.x == 0) {
        part_sum[blockIdx.x] = 0.0;
        part_count[blockIdx.x] = any != 0;
    }
}

__global__ static void sgd_plain_kernel(float *param, const float *grad, int64_t n, float lr,
                                        float wd) {
    KCUDA_GRID_STRIDE_LOOP(i, n) param[i] = kern_sgd_plain(param[i], grad[i], lr, wd);
}

__global__ static void sgd_momentum_kernel(float *param, float *buf, const float *grad, int64_t n,
                                           float lr, float momentum, float wd, int nesterov,
                                           int first) {
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        float b = buf[i];
        param[i] = kern_sgd_momentum(param[i], &b, grad[i], lr, momentum, wd, nesterov, first);
        buf[i] = b;
    }
}

__global__ static void adamw_kernel(float *param, float *m, float *v, const float *grad,
                                    int64_t n, float beta1, float beta2, float eps, float decay,
                                    float step_size, float bc2_sqrt) {
    KCUDA_GRID_STRIDE_LOOP(i, n) {
        float mi = m[i], vi = v[i];
        param[i] = kern_adamw(param[i], &mi, &vi, grad[i], beta1, beta2, eps, decay, step_size,
                              bc2_sqrt);
        m[i] = mi;
        v[i] = vi;
    }
}

double kcuda_sumsq(void *ctx, const float *x, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return 0.0;
    unsigned int grid = kcuda_grid_reduce(n);
    sumsq_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(c->part_sum, x, n);
    if (!KCUDA_LAUNCHED(c, "sumsq_kernel")) return NAN;
    if (kcuda_finish_reduction(c, grid, 0) != 0) return NAN;
    return c->result_host->sum;
}

/* On a CUDA error the answer is "non-finite" (1): the caller then skips the step or stops,
 * and kern_check tells it why. */
int kcuda_has_nonfinite(void *ctx, const float *x, int64_t n) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return 0;
    unsigned int grid = kcuda_grid_reduce(n);
    nonfinite_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(c->part_sum, c->part_count, x, n);
    if (!KCUDA_LAUNCHED(c, "nonfinite_kernel")) return 1;
    if (kcuda_finish_reduction(c, grid, 1) != 0) return 1;
    return c->result_host->count != 0;
}

void kcuda_sgd_update(void *ctx, float *param, float *buf, const float *grad, int64_t n,
                      float lr, float momentum, float weight_decay, int nesterov, int first) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    if (momentum == 0.0f) {
        sgd_plain_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(param, grad, n, lr,
                                                                               weight_decay);
        KCUDA_LAUNCHED(c, "sgd_plain_kernel");
        return;
    }
    sgd_momentum_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        param, buf, grad, n, lr, momentum, weight_decay, nesterov, first);
    KCUDA_LAUNCHED(c, "sgd_momentum_kernel");
}

void kcuda_adamw_update(void *ctx, float *param, float *m, float *v, const float *grad,
                        int64_t n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t t) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (n <= 0) return;
    /* per-step scalars in double, as PyTorch computes them in Python (and cpu_optim.c here) */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    adamw_kernel<<<kcuda_grid_1d(c, n), KCUDA_THREADS, 0, c->stream>>>(
        param, m, v, grad, n, beta1, beta2, eps, decay, step_size, bc2_sqrt);
    KCUDA_LAUNCHED(c, "adamw_kernel");
}
