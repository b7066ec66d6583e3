/* cpu_softmax_xent.c: fused softmax + cross-entropy on the CPU, one row at a time.
 *   logits[B,C], labels[B] -> losses[B], dlogits[B,C] = (softmax - onehot) * grad_scale
 * Stable: with m = max_j z_j, loss = log(sum_j exp(z_j - m)) - (z_label - m); every exponent
 * is <= 0, which is what kern_exp_nonpos (vectorisable) takes.  The exponentials are
 * computed twice (for the sum, then for dlogits) rather than stored: recomputing them is
 * cheaper than a scratch buffer and keeps the op allocation-free.
 * dlogits may alias logits: each element is read before it is overwritten.
 * A label outside [0,C) gives a NaN loss and NaN gradients for its row, which the trainer's
 * non-finite check catches, instead of reading out of bounds.
 * kcpu_softmax_xent_acc: the same rows with a stride ld >= C (padding columns, gradient 0,
 * never the argmax), the sums added to acc. */
#include "cpu_internal.h"

#include <math.h>

#include "cpu_rows.h"
#include "elementwise.h"

#define CHUNK 512

/* sum_j exp(z[j] - zmax) in double, in chunks: a vectorised exp loop into a stack buffer,
 * then eight independent accumulators (no reassociation needed to vectorise them).
 * kern_exp_nonpos turns NaN into a tiny number, so NaN and Inf logits are carried into the
 * sum separately as z - z (0 when finite, NaN otherwise): the loss must not hide them. */
KCPU_SIMD static double sum_exp(const float *restrict z, int C, float zmax) {
    float e[CHUNK];
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float poison = 0.0f;
    for (int start = 0; start < C; start += CHUNK) {
        int len = C - start < CHUNK ? C - start : CHUNK;
        const float *restrict zc = z + start;
        for (int j = 0; j < len; j++) {
            e[j] = kern_exp_nonpos(zc[j] - zmax);
            poison += zc[j] - zc[j];
        }
        int j = 0;
        for (; j + 8 <= len; j += 8)
            for (int k = 0; k < 8; k++) acc[k] += e[j + k];
        for (; j < len; j++) acc[0] += e[j];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) +
           poison;
}

KCPU_SIMD static void write_grad(float *restrict d, const float *restrict z, int C, float zmax,
                       float inv) {
    for (int j = 0; j < C; j++) d[j] = kern_exp_nonpos(z[j] - zmax) * inv;
}

KCPU_SIMD static void write_grad_inplace(float *restrict z, int C, float zmax, float inv) {
    for (int j = 0; j < C; j++) z[j] = kern_exp_nonpos(z[j] - zmax) * inv;
}

/* One row: returns its loss (NaN for a label outside [0,C)), writes d[0:C) when d is not
 * NULL (d may be z), and adds 1 to *right when the first argmax is the label. */
KCPU_SIMD static float xent_row(float *d, int64_t *right, const float *z, int label, int C,
                      float grad_scale) {
    if (label < 0 || label >= C) {
        if (d)
            for (int j = 0; j < C; j++) d[j] = NAN;
        return NAN;
    }
    /* argmax: the first index holding the max, so ties go to the lowest index */
    float zmax = kcpu_row_max(z, C);
    int argmax = 0;
    while (argmax < C - 1 && !(z[argmax] == zmax)) argmax++;
    float zlabel = z[label];
    double sum = sum_exp(z, C, zmax);
    float loss = (float)(log(sum) - ((double)zlabel - (double)zmax));
    *right += argmax == label;
    if (d) {
        float inv = (float)(grad_scale / sum);
        if (d == z)
            write_grad_inplace(d, C, zmax, inv);
        else
            write_grad(d, z, C, zmax, inv);
        d[label] -= grad_scale;
    }
    return loss;
}

/* rows of ld >= C floats; the padding columns [C, ld) of dlogits get 0 */
KCPU_SIMD static double xent_rows(float *losses, float *dlogits, int64_t *correct, const float *logits,
                        const int32_t *labels, int B, int C, int ld, float grad_scale) {
    double total = 0.0;
    int64_t right = 0;
    for (int r = 0; r < B; r++) {
        float *d = dlogits ? dlogits + (size_t)r * ld : NULL;
        float loss = xent_row(d, &right, logits + (size_t)r * ld, labels[r], C, grad_scale);
        if (losses) losses[r] = loss;
        total += loss;
        if (d)
            for (int j = C; j < ld; j++) d[j] = 0.0f;
    }
    if (correct) *correct = right;
    return total;
}

double kcpu_softmax_xent(void *c, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale) {
    return xent_rows(losses, dlogits, correct, logits, labels, B, C, C, grad_scale);
}

/* the sums stay in acc (backend memory; on the CPU, host memory) */
void kcpu_softmax_xent_acc(void *c, float *losses, float *dlogits, double *acc,
                           const float *logits, const int32_t *labels, int B, int C, int ld,
                           float grad_scale) {
    int64_t right = 0;
    acc[0] += xent_rows(losses, dlogits, &right, logits, labels, B, C, ld, grad_scale);
    acc[1] += (double)right;
}
