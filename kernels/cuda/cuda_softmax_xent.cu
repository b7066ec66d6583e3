/* cuda_softmax_xent.cu: fused softmax + cross-entropy on the GPU, one warp per row.
 *   logits[B,C], labels[B] -> losses[B], dlogits[B,C] = (softmax - onehot) * grad_scale,
 *   and, back on the host, the loss sum (double) and the number of correct rows.
 *
 * Same arithmetic as cpu_softmax_xent.c: subtract the row max before expf, sum the exps in
 * double, loss = (float)log(sum) - (z[label] - max), gradient = expf(z - max) * (float)(scale /
 * sum), minus scale at the label.  Only the order of the double sums differs (and expf may
 * differ by an ulp), so results agree with the CPU to float rounding.  Argmax ties go to the
 * lowest index.  A label outside [0,C) gives a NaN loss and a NaN gradient row, as on the CPU.
 * dlogits may alias logits: each lane reads its own elements before writing them, and the
 * label's logit is read by every lane before the warp passes a __syncwarp.
 *
 * The loss sum and correct count are reduced per block into the context's scratch, then by
 * kcuda_finish_reduction in a fixed order (grid size depends on B only): deterministic. */
#include "cuda_internal.h"

#include <limits.h>
#include <math.h>
#include <math_constants.h>

#define ROWS_PER_BLOCK (KCUDA_THREADS / 32)

/* Does (v2, i2) beat (v1, i1) for the argmax?  Larger value, then lower index; INT_MAX marks
 * "no element" (lanes past the end of a short row). */
__device__ static inline int argmax_beats(float v2, int i2, float v1, int i1) {
    if (i2 == INT_MAX) return 0;
    if (i1 == INT_MAX) return 1;
    return v2 > v1 || (v2 == v1 && i2 < i1);
}

__global__ static void softmax_xent_kernel(float *losses, float *dlogits, const float *logits,
                                           const int32_t *labels, int B, int C, float grad_scale,
                                           double *part_sum, long long *part_count) {
    __shared__ double warp_loss[ROWS_PER_BLOCK];
    __shared__ long long warp_right[ROWS_PER_BLOCK];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    double loss_acc = 0.0;   /* this warp's rows, kept by lane 0 */
    long long right_acc = 0;

    for (int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + warp; row < B;
         row += (int64_t)gridDim.x * ROWS_PER_BLOCK) {
        const float *z = logits + row * C;        /* [C] */
        float *d = dlogits ? dlogits + row * C : NULL;
        int label = labels[row];
        float loss;
        if (label < 0 || label >= C) {
            if (d)
                for (int j = lane; j < C; j += 32) d[j] = CUDART_NAN_F;
            loss = CUDART_NAN_F;
        } else {
            float zlabel = z[label];
            /* max and argmax: per lane in index order (strict >), then across lanes */
            float zmax = -CUDART_INF_F;
            int amax = INT_MAX;
            for (int j = lane; j < C; j += 32) {
                float v = z[j];
                if (amax == INT_MAX || v > zmax) {
                    zmax = v;
                    amax = j;
                }
            }
            for (int off = 16; off > 0; off >>= 1) {
                float v2 = __shfl_xor_sync(0xffffffffu, zmax, off);
                int i2 = __shfl_xor_sync(0xffffffffu, amax, off);
                if (argmax_beats(v2, i2, zmax, amax)) {
                    zmax = v2;
                    amax = i2;
                }
            }
            /* with NaN logits the butterfly can leave lanes disagreeing: take lane 0's */
            zmax = __shfl_sync(0xffffffffu, zmax, 0);
            amax = __shfl_sync(0xffffffffu, amax, 0);

            double sum = 0.0;
            for (int j = lane; j < C; j += 32) sum += (double)expf(z[j] - zmax);
            sum = kcuda_warp_sum_f64(sum);
            loss = (float)log(sum) - (zlabel - zmax);
            if (lane == 0) right_acc += amax == label;
            if (d) {
                __syncwarp();   /* all reads of z[label] are done before d (== z?) is written */
                float inv = (float)((double)grad_scale / sum);
                for (int j = lane; j < C; j += 32) {
                    float g = expf(z[j] - zmax) * inv;
                    if (j == label) g -= grad_scale;
                    d[j] = g;
                }
            }
        }
        if (lane == 0) {
            if (losses) losses[row] = loss;
            loss_acc += loss;
        }
    }

    if (lane == 0) {
        warp_loss[warp] = loss_acc;
        warp_right[warp] = right_acc;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        long long n = 0;
        for (int w = 0; w < ROWS_PER_BLOCK; w++) {
            s += warp_loss[w];
            n += warp_right[w];
        }
        part_sum[blockIdx.x] = s;
        part_count[blockIdx.x] = n;
    }
}

/* losses (may be NULL), dlogits (may be NULL), logits, labels: device memory.
 * correct (may be NULL): HOST memory, like the return value.  Waits for the result. */
double kcuda_softmax_xent(void *ctx, float *losses, float *dlogits, int64_t *correct,
                          const float *logits, const int32_t *labels, int B, int C,
                          float grad_scale) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    if (correct) *correct = 0;
    if (B <= 0) return 0.0;
    int64_t want = ((int64_t)B + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    unsigned int grid = (unsigned int)(want < KCUDA_MAX_PARTIALS ? want : KCUDA_MAX_PARTIALS);
    softmax_xent_kernel<<<grid, KCUDA_THREADS, 0, c->stream>>>(
        losses, dlogits, logits, labels, B, C, grad_scale, c->part_sum, c->part_count);
    if (!KCUDA_LAUNCHED(c, "softmax_xent_kernel")) return NAN;
    if (kcuda_finish_reduction(c, grid, 1) != 0) return NAN;
    if (correct) *correct = (int64_t)c->result_host->count;
    return c->result_host->sum;
}
