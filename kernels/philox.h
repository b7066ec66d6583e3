/* philox.h: Philox4x32-10 counter-based random numbers, shared by the CPU and CUDA backends.
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) maps a
 * 128-bit counter and a 64-bit key to 128 random bits with 10 rounds of multiply/xor; the
 * constants are the standard ones of Random123.  A stream (seed, stream_id) is laid out as:
 *
 *   element i  ->  word i%4 of philox(counter = {lo(i/4), hi(i/4), lo(stream_id), hi(stream_id)},
 *                                     key     = {lo(seed), hi(seed)})
 *
 * so element i is a pure function of (seed, stream_id, i): any split of [0,n) across threads,
 * chunks, ranks or backends draws the same numbers.
 *
 * Transforms to float give the same bits on every IEEE machine: uniforms use the top 24 bits
 * (exact in float) and one rounded double affine map; normals use Box-Muller with log, sin
 * and cos written here from + - * / and sqrt alone (all correctly rounded in IEEE 754,
 * unlike libm's or CUDA's transcendental functions, which differ between libraries, CPUs and
 * GPUs in the last bit), evaluated in a fixed order without fma contraction, then rounded
 * once to float.  So kern_init_normal is bit-for-bit identical on the CPU and the GPU. */
#ifndef HARNESS_KERNELS_PHILOX_H
#define HARNESS_KERNELS_PHILOX_H

#include <stdint.h>
#include <math.h>

#include "kern_hd.h"

#define KERN_PHILOX_M0 0xD2511F53u
#define KERN_PHILOX_M1 0xCD9E8D57u
#define KERN_PHILOX_W0 0x9E3779B9u   /* golden ratio */
#define KERN_PHILOX_W1 0xBB67AE85u   /* sqrt(3) - 1 */

typedef struct { uint32_t v[4]; } kern_philox_block;

KERN_HD static inline void kern_philox_round(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)KERN_PHILOX_M0 * ctr[0];
    uint64_t p1 = (uint64_t)KERN_PHILOX_M1 * ctr[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
}

/* The raw generator: 4 counter words and 2 key words in, 4 random words out. */
KERN_HD static inline kern_philox_block kern_philox4x32_10(const uint32_t counter[4],
                                                          const uint32_t key[2]) {
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        kern_philox_round(c, k0, k1);
        k0 += KERN_PHILOX_W0;
        k1 += KERN_PHILOX_W1;
    }
    kern_philox_block out = {{c[0], c[1], c[2], c[3]}};
    return out;
}

/* Block `block` (= element index / 4) of the stream (seed, stream_id). */
KERN_HD static inline kern_philox_block kern_philox_stream_block(uint64_t seed, uint64_t stream_id,
                                                                uint64_t block) {
    uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32),
                           (uint32_t)stream_id, (uint32_t)(stream_id >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    return kern_philox4x32_10(counter, key);
}

/* Word i of the stream (seed, stream_id). */
KERN_HD static inline uint32_t kern_philox_u32(uint64_t seed, uint64_t stream_id, uint64_t i) {
    return kern_philox_stream_block(seed, stream_id, i / 4).v[i % 4];
}

/* Uniform in [0,1) with 24 random bits: exact in float, identical everywhere. */
KERN_HD static inline float kern_u32_to_uniform01(uint32_t x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

/* ---- double arithmetic that is the same everywhere ----
 * nvcc contracts a*b+c into an fma by default (gcc in ISO C mode does not, and the kernels
 * library is built with -ffp-contract=off): on the device these force separately rounded
 * operations. */
KERN_HD static inline double kern_dmul(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

KERN_HD static inline double kern_dadd(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

/* offset + scale*z in double, rounded once per operation */
KERN_HD static inline double kern_affine_rn(double offset, double scale, double z) {
    return kern_dadd(offset, kern_dmul(scale, z));
}

/* Uniform in (0,1] with 24 random bits, for logarithms (exact). */
KERN_HD static inline double kern_u32_to_uniform01_open0(uint32_t x) {
    return ((double)(x >> 8) + 1.0) * (1.0 / 16777216.0);
}

/* log(u) for u in (0, 1], about 1e-16 relative.  u = m 2^e with m in [sqrt(1/2), sqrt(2))
 * (frexp is exact), log m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^21/21), s = (m-1)/(m+1),
 * |s| <= 0.172, so the first omitted term is below 1e-18. */
KERN_HD static inline double kern_log_det(double u) {
    int e;
    double m = frexp(u, &e);   /* m in [0.5, 1) */
    if (m < 0x1.6a09e667f3bcdp-1) {   /* sqrt(1/2) */
        m = m * 2.0;
        e = e - 1;
    }
    double s = (m - 1.0) / (m + 1.0);
    double s2 = kern_dmul(s, s);
    double p = 0x1.8618618618618p-4;   /* 2/21 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.af286bca1af28p-4);   /* 2/19 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.e1e1e1e1e1e1ep-4);   /* 2/17 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.1111111111111p-3);   /* 2/15 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.3b13b13b13b14p-3);   /* 2/13 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.745d1745d1746p-3);   /* 2/11 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.c71c71c71c71cp-3);   /* 2/9 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.2492492492492p-2);   /* 2/7 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.999999999999ap-2);   /* 2/5 */
    p = kern_dadd(kern_dmul(p, s2), 0x1.5555555555555p-1);   /* 2/3 */
    p = kern_dadd(kern_dmul(p, s2), 2.0);
    return kern_dadd(kern_dmul((double)e, 0x1.62e42fefa39efp-1), kern_dmul(s, p));   /* e ln2 */
}

/* sin(x) and cos(x) for x in [0, pi/4]: Taylor series to x^15 and x^16, whose first omitted
 * terms are below 1e-16 there. */
KERN_HD static inline double kern_sin_small(double x) {
    double x2 = kern_dmul(x, x);
    double p = -0x1.ae7f3e733b81fp-41;                        /* -1/15! */
    p = kern_dadd(kern_dmul(p, x2), 0x1.6124613a86d09p-33);   /*  1/13! */
    p = kern_dadd(kern_dmul(p, x2), -0x1.ae64567f544e4p-26);  /* -1/11! */
    p = kern_dadd(kern_dmul(p, x2), 0x1.71de3a556c734p-19);   /*  1/9!  */
    p = kern_dadd(kern_dmul(p, x2), -0x1.a01a01a01a01ap-13);  /* -1/7!  */
    p = kern_dadd(kern_dmul(p, x2), 0x1.1111111111111p-7);    /*  1/5!  */
    p = kern_dadd(kern_dmul(p, x2), -0x1.5555555555555p-3);   /* -1/3!  */
    return kern_dadd(x, kern_dmul(kern_dmul(x, x2), p));
}

KERN_HD static inline double kern_cos_small(double x) {
    double x2 = kern_dmul(x, x);
    double p = 0x1.ae7f3e733b81fp-45;                         /*  1/16! */
    p = kern_dadd(kern_dmul(p, x2), -0x1.93974a8c07c9dp-37);  /* -1/14! */
    p = kern_dadd(kern_dmul(p, x2), 0x1.1eed8eff8d898p-29);   /*  1/12! */
    p = kern_dadd(kern_dmul(p, x2), -0x1.27e4fb7789f5cp-22);  /* -1/10! */
    p = kern_dadd(kern_dmul(p, x2), 0x1.a01a01a01a01ap-16);   /*  1/8!  */
    p = kern_dadd(kern_dmul(p, x2), -0x1.6c16c16c16c17p-10);  /* -1/6!  */
    p = kern_dadd(kern_dmul(p, x2), 0x1.5555555555555p-5);    /*  1/4!  */
    p = kern_dadd(kern_dmul(p, x2), -0.5);                    /* -1/2!  */
    return kern_dadd(1.0, kern_dmul(x2, p));
}

/* sin and cos of 2 pi u for u = k 2^-24 in [0, 1).  The reduction is exact: 8u = o + f with
 * octant o = 0..7 and f in [0, 1) (both exact for a 24-bit u); the angle within the octant is
 * f pi/4 (even o) or (1 - f) pi/4 (odd o, measured back from the octant's end), both in
 * [0, pi/4], and the octant's symmetry gives the signs. */
KERN_HD static inline void kern_sincos_2pi(double u, double *sin_out, double *cos_out) {
    const double pi_4 = 0x1.921fb54442d18p-1;
    double t = u * 8.0;
    int o = (int)t;
    double f = t - (double)o;
    double x = kern_dmul((o & 1) ? 1.0 - f : f, pi_4);
    double sx = kern_sin_small(x), cx = kern_cos_small(x);
    switch (o) {
    case 0: *sin_out = sx; *cos_out = cx; break;     /* x          */
    case 1: *sin_out = cx; *cos_out = sx; break;     /* pi/2 - x   */
    case 2: *sin_out = cx; *cos_out = -sx; break;    /* pi/2 + x   */
    case 3: *sin_out = sx; *cos_out = -cx; break;    /* pi - x     */
    case 4: *sin_out = -sx; *cos_out = -cx; break;   /* pi + x     */
    case 5: *sin_out = -cx; *cos_out = -sx; break;   /* 3pi/2 - x  */
    case 6: *sin_out = -cx; *cos_out = sx; break;    /* 3pi/2 + x  */
    default: *sin_out = -sx; *cos_out = cx; break;   /* 2pi - x    */
    }
}

/* Box-Muller on the pair of words (a, b): two independent standard normals,
 * z0 = r cos(theta) and z1 = r sin(theta), r = sqrt(-2 log u1), theta = 2 pi u2,
 * u1 in (0, 1] and u2 in [0, 1) each with 24 random bits.  |z| <= sqrt(2 * 24 ln 2) = 5.77. */
KERN_HD static inline void kern_box_muller(uint32_t a, uint32_t b, double *z0, double *z1) {
    double u1 = kern_u32_to_uniform01_open0(a);
    double u2 = (double)(b >> 8) * (1.0 / 16777216.0);
    double r = sqrt(-2.0 * kern_log_det(u1));
    double s, c;
    kern_sincos_2pi(u2, &s, &c);
    *z0 = kern_dmul(r, c);
    *z1 = kern_dmul(r, s);
}

/* Standard normal for lane 0..3 of a block: words (v0,v1) give lanes 0,1 and (v2,v3) 2,3. */
KERN_HD static inline double kern_philox_block_normal(kern_philox_block blk, int lane) {
    int pair = lane >> 1;
    double z0, z1;
    kern_box_muller(blk.v[2 * pair], blk.v[2 * pair + 1], &z0, &z1);
    return (lane & 1) ? z1 : z0;
}

#endif
