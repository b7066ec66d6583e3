/* cpu_gemm.c: the CPU backend's GEMMs, row-major, through oneDNN.
 *
 * oneDNN picks its kernels from the CPU's features (CPUID: AVX2, AVX-512, AVX512-BF16, AMX),
 * not from a table of CPU models: Debian's OpenBLAS 0.3.21 runs its SSE3 "Prescott" kernels on
 * CPUs newer than it knows (Sapphire Rapids), 4-6x slower than oneDNN there (tests/perf/
 * gemm_bench.sh).  A build without oneDNN (HARNESS_HAVE_DNNL undefined) uses OpenBLAS.
 *
 *   fp32:  C[M,N] = alpha op(A)[M,K] @ op(B)[K,N] + beta C   dnnl_sgemm (no primitive to keep)
 *   bf16:  A and B rounded to bf16 (nearest even) into the context's buffers, then a oneDNN
 *          matmul primitive (AMX tiles where found) with fp32 accumulation and fp32 C; beta = 1
 *          is a sum post-op.  Each primitive is created once per shape and kept: creating one
 *          costs 0.1-2 ms, more than a small GEMM.
 * Both are deterministic for a given shape and thread count (the resume and data-parallel
 * tests compare bit for bit). */
#include "cpu_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HARNESS_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#else
#include <cblas.h>
#undef I
#endif

#ifdef HARNESS_HAVE_DNNL
/* One kept bf16 matmul: its shape (the key) and the memory objects whose data handles are
 * pointed at each call's buffers. */
typedef struct {
    int tb, M, N, K, ldc, accumulate;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} bf16_matmul;

enum { MAX_MATMULS = 512 };   /* distinct GEMM shapes of a model: a few per layer type */

struct kcpu_gemm_lib {
    int bf16;   /* 1: linear and convolution GEMMs take bf16 inputs */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    bf16_matmul matmuls[MAX_MATMULS];
    int n_matmuls;
    uint16_t *a16, *b16;   /* bf16 copies of A and B, grown to the largest GEMM seen */
    size_t a16_cap, b16_cap;
};

/* The oneDNN instruction set as the name oneDNN's documentation uses. */
static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
    }
}

int kcpu_gemm_bf16_fast(void) {
    /* bf16 beats fp32 only with AMX tiles: with AVX512-BF16 alone oneDNN's bf16 matmul ran at
     * 0.4-0.5x its fp32 sgemm here (gemm_bench.sh with the AMX dispatch capped) */
    return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_amx) ==
           dnnl_cpu_isa_avx512_core_amx;
}

void kcpu_gemm_describe(char *buf, size_t len) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, len, "%s, oneDNN %d.%d.%d%s", isa_name(dnnl_get_effective_cpu_isa()),
             v->major, v->minor, v->patch, kcpu_gemm_bf16_fast() ? " (bf16 on AMX)" : "");
}

int kcpu_gemm_create(kcpu_gemm_lib **out, int threads, int bf16, char *err, size_t errlen) {
    *out = NULL;
    kcpu_gemm_lib *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errlen, "kernels: out of memory creating the oneDNN state");
        return -1;
    }
    /* oneDNN runs on OpenMP: its team size is this thread's OpenMP setting */
    omp_set_num_threads(threads);
    g->bf16 = bf16;
    if (dnnl_engine_create(&g->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(err, errlen, "kernels: oneDNN could not create its CPU engine");
        kcpu_gemm_destroy(g);
        return -1;
    }
    *out = g;
    return 0;
}

void kcpu_gemm_destroy(kcpu_gemm_lib *g) {
    if (!g) return;
    for (int i = 0; i < g->n_matmuls; i++) {
        bf16_matmul *m = &g->matmuls[i];
        dnnl_primitive_destroy(m->prim);
        dnnl_memory_destroy(m->a);
        dnnl_memory_destroy(m->b);
        dnnl_memory_destroy(m->c);
    }
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    free(g->a16);
    free(g->b16);
    free(g);
}

/* bf16 of x, rounded to nearest even like the GPU's __float2bfloat16; a NaN stays a NaN (the
 * rounding add could carry its payload into the exponent, so it is truncated and made quiet) */
static inline uint16_t bf16_of(uint32_t u) {
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    int nan = (u & 0x7fffffffu) > 0x7f800000u;
    return (uint16_t)(nan ? (u >> 16) | 0x40u : rounded);
}

/* dst[rows, cols] (packed) = bf16 of src[rows, cols] with leading dimension ld */
static void to_bf16(uint16_t *restrict dst, const float *restrict src, int rows, int cols,
                    int ld) {
    for (int r = 0; r < rows; r++) {
        const uint32_t *restrict s = (const uint32_t *)(src + (size_t)r * ld);
        uint16_t *restrict d = dst + (size_t)r * cols;
        for (int i = 0; i < cols; i++) d[i] = bf16_of(s[i]);
    }
}

/* dst[cols, rows] (packed) = bf16 of src[rows, cols]^T: AMX's matmul ran a transposed A at
 * a quarter of its speed (backward-weights, dout^T), a packed one at full speed; the copy is
 * needed anyway.  In 32 x 32 tiles so that both sides stay in cache. */
static void to_bf16_transposed(uint16_t *restrict dst, const float *restrict src, int rows,
                               int cols, int ld) {
    const uint32_t *restrict s = (const uint32_t *)src;
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32) {
            int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++)
                    dst[(size_t)c * rows + r] = bf16_of(s[(size_t)r * ld + c]);
        }
}

static int grow(uint16_t **buf, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    uint16_t *p = NULL;
    if (posix_memalign((void **)&p, 64, n * sizeof(uint16_t)) != 0) return -1;
    free(*buf);
    *buf = p;
    *cap = n;
    return 0;
}

/* The kept matmul for this shape, created on first use; NULL when oneDNN has none (the caller
 * then computes in fp32). A and B are the packed bf16 copies, so their strides follow from
 * the shape: A[M,K] always (transposed while copied), op(B)[K,N] stored [K,N] (tb = 0) or
 * [N,K] (tb = 1). */
static bf16_matmul *find_matmul(kcpu_gemm_lib *g, int tb, int M, int N, int K, int ldc,
                                int accumulate) {
    for (int i = 0; i < g->n_matmuls; i++) {
        bf16_matmul *m = &g->matmuls[i];
        if (m->tb == tb && m->M == M && m->N == N && m->K == K && m->ldc == ldc &&
            m->accumulate == accumulate)
            return m;
    }
    if (g->n_matmuls == MAX_MATMULS) return NULL;
    bf16_matmul m = {.tb = tb, .M = M, .N = N, .K = K, .ldc = ldc, .accumulate = accumulate};
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t adims = {M, K}, bdims = {K, N}, cdims = {M, N};
    dnnl_dims_t as = {K, 1}, bs = {tb ? 1 : N, tb ? K : 1}, cs = {ldc, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&ad, 2, adims, dnnl_bf16, as) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dnnl_bf16, bs) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&cd, 2, cdims, dnnl_f32, cs) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && accumulate)
        ok = dnnl_post_ops_create(&ops) == dnnl_success &&
             dnnl_post_ops_append_sum(ops, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &md, attr, g->engine, NULL) == dnnl_success &&
         dnnl_primitive_create(&m.prim, pd) == dnnl_success;
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (pd) dnnl_primitive_desc_destroy(pd);
    ok = ok && dnnl_memory_create(&m.a, &ad, g->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&m.b, &bd, g->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&m.c, &cd, g->engine, DNNL_MEMORY_NONE) == dnnl_success;
    if (!ok) return NULL;
    g->matmuls[g->n_matmuls] = m;
    return &g->matmuls[g->n_matmuls++];
}

/* 0 when done in bf16; -1: not possible here (shape, memory), the caller does it in fp32 */
static int gemm_bf16(kcpu_gemm_lib *g, int ta, int tb, int M, int N, int K, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (beta != 0.0f && beta != 1.0f) return -1;
    if (grow(&g->a16, &g->a16_cap, (size_t)M * K) != 0 ||
        grow(&g->b16, &g->b16_cap, (size_t)K * N) != 0)
        return -1;
    bf16_matmul *m = find_matmul(g, tb, M, N, K, ldc, beta != 0.0f);
    if (!m) return -1;
    if (ta) to_bf16_transposed(g->a16, A, K, M, lda);
    else to_bf16(g->a16, A, M, K, lda);
    if (tb) to_bf16(g->b16, B, N, K, ldb);
    else to_bf16(g->b16, B, K, N, ldb);
    dnnl_memory_set_data_handle(m->a, g->a16);
    dnnl_memory_set_data_handle(m->b, g->b16);
    dnnl_memory_set_data_handle(m->c, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b},
                               {DNNL_ARG_DST, m->c}};
    if (dnnl_primitive_execute(m->prim, g->stream, 3, args) != dnnl_success) return -1;
    dnnl_stream_wait(g->stream);
    return 0;
}
#else
int kcpu_gemm_bf16_fast(void) { return 0; }

void kcpu_gemm_describe(char *buf, size_t len) {
    snprintf(buf, len, "OpenBLAS %s (built without oneDNN)", openblas_get_corename());
}

int kcpu_gemm_create(kcpu_gemm_lib **out, int threads, int bf16, char *err, size_t errlen) {
    /* OpenBLAS would otherwise start one thread per core in every rank (process-wide) */
    openblas_set_num_threads(threads);
    *out = NULL;
    return 0;
}

void kcpu_gemm_destroy(kcpu_gemm_lib *g) {}
#endif

void kcpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef HARNESS_HAVE_DNNL
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void kcpu_gemm(void *c, int ta, int tb, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef HARNESS_HAVE_DNNL
    kcpu_gemm_lib *g = kcpu_gemm_state(c);
    if (g && g->bf16 && gemm_bf16(g, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc) == 0) return;
#endif
    kcpu_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
