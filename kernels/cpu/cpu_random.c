/* cpu_random.c: Philox-based initialisation and dropout on the CPU.
 *
 * Element i of a stream always comes from word i%4 of Philox block i/4 (philox.h), so the
 * numbers do not depend on how the work is split.  Work goes in chunks of CHUNK elements:
 * first the chunk's random words (a loop over Philox blocks that gcc vectorises), then the
 * transform (another simple loop). */
#include "cpu_internal.h"

#include "philox.h"

#define CHUNK 1024   /* elements per chunk, a multiple of 4: 4 KiB of random words on the stack */

/* words[0 .. 4*nblocks) = blocks first_block .. first_block+nblocks-1 of the stream */
KCPU_SIMD static void philox_words(uint32_t *restrict words, uint64_t seed, uint64_t stream_id,
                         uint64_t first_block, int64_t nblocks) {
    for (int64_t b = 0; b < nblocks; b++) {
        kern_philox_block r = kern_philox_stream_block(seed, stream_id, first_block + (uint64_t)b);
        words[4 * b + 0] = r.v[0];
        words[4 * b + 1] = r.v[1];
        words[4 * b + 2] = r.v[2];
        words[4 * b + 3] = r.v[3];
    }
}

/* The random words for elements [start, start+len) of the stream, start a multiple of 4. */
KCPU_SIMD static void chunk_words(uint32_t words[CHUNK], uint64_t seed, uint64_t stream_id, int64_t start,
                        int64_t len) {
    philox_words(words, seed, stream_id, (uint64_t)(start / 4), (len + 3) / 4);
}

void kcpu_init_uniform(void *c, float *x, int64_t n, float lo, float hi, uint64_t seed,
                       uint64_t stream_id) {
    uint32_t words[CHUNK];
    double width = (double)hi - (double)lo;
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t len = n - start < CHUNK ? n - start : CHUNK;
        chunk_words(words, seed, stream_id, start, len);
        for (int64_t j = 0; j < len; j++) {
            double u = kern_u32_to_uniform01(words[j]);
            x[start + j] = (float)kern_affine_rn(lo, width, u);
        }
    }
}

void kcpu_init_normal(void *c, float *x, int64_t n, float mean, float std, uint64_t seed,
                      uint64_t stream_id) {
    uint32_t words[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t len = n - start < CHUNK ? n - start : CHUNK;
        chunk_words(words, seed, stream_id, start, len);
        /* element j uses the pair of words (j & ~1, j | 1): pairs never straddle a block */
        for (int64_t j = 0; j < len; j += 2) {
            double z0, z1;
            kern_box_muller(words[j], words[j + 1], &z0, &z1);
            x[start + j] = (float)kern_affine_rn(mean, std, z0);
            if (j + 1 < len) x[start + j + 1] = (float)kern_affine_rn(mean, std, z1);
        }
    }
}

/* keep element j when its uniform is >= p: drops with probability p */
KCPU_SIMD static void dropout_apply(float *restrict out, uint8_t *restrict mask, const float *restrict in,
                          const uint32_t *restrict words, int64_t len, float p, float scale) {
    for (int64_t j = 0; j < len; j++) {
        uint8_t keep = kern_u32_to_uniform01(words[j]) >= p;
        float x = in[j];
        mask[j] = keep;
        out[j] = keep ? x * scale : 0.0f;
    }
}

KCPU_SIMD static void dropout_apply_inplace(float *restrict x, uint8_t *restrict mask,
                                  const uint32_t *restrict words, int64_t len, float p,
                                  float scale) {
    for (int64_t j = 0; j < len; j++) {
        uint8_t keep = kern_u32_to_uniform01(words[j]) >= p;
        float v = x[j];
        mask[j] = keep;
        x[j] = keep ? v * scale : 0.0f;
    }
}

KCPU_SIMD void kcpu_dropout_forward(void *c, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id) {
    if (p <= 0.0f) {
        for (int64_t i = 0; i < n; i++) mask[i] = 1;
        kcpu_copy(c, out, in, n);
        return;
    }
    if (p >= 1.0f) {
        for (int64_t i = 0; i < n; i++) mask[i] = 0;
        kcpu_fill(c, out, 0.0f, n);
        return;
    }
    float scale = 1.0f / (1.0f - p);
    uint32_t words[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t len = n - start < CHUNK ? n - start : CHUNK;
        chunk_words(words, seed, stream_id, start, len);
        if (out == in)
            dropout_apply_inplace(out + start, mask + start, words, len, p, scale);
        else
            dropout_apply(out + start, mask + start, in + start, words, len, p, scale);
    }
}

KCPU_SIMD static void dropout_backward_inplace(float *restrict d, const uint8_t *restrict mask, int64_t n,
                                     float scale) {
    for (int64_t i = 0; i < n; i++) {
        float g = d[i];
        d[i] = mask[i] ? g * scale : 0.0f;
    }
}

KCPU_SIMD void kcpu_dropout_backward(void *c, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p) {
    if (p >= 1.0f) {
        kcpu_fill(c, din, 0.0f, n);
        return;
    }
    float scale = p <= 0.0f ? 1.0f : 1.0f / (1.0f - p);
    if (din == dout) {
        dropout_backward_inplace(din, mask, n, scale);
        return;
    }
    float *restrict dx = din;
    const float *restrict dy = dout;
    const uint8_t *restrict m = mask;
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i];
        dx[i] = m[i] ? g * scale : 0.0f;
    }
}
