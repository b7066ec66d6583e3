/* cuda_lt.cu: GEMMs with fused epilogues through cuBLASLt.
 *
 * cuBLAS's cublasGemmEx cannot add a bias or apply an activation on its way out, so a linear
 * layer costs a GEMM plus one element-wise pass per epilogue (bias, relu/gelu) and, backward,
 * a column sum for the bias gradient.  cuBLASLt fuses them into the GEMM's epilogue:
 *   BIAS           D = A B + bias                (forward, no activation)
 *   RELU_BIAS      D = relu(A B + bias)          (forward, linear + relu)
 *   GELU_AUX_BIAS  aux = A B + bias, D = gelu(aux)  (forward, linear + gelu; aux is what
 *                  gelu's backward reads); RELU and GELU_AUX: the same without a bias
 *   BGRADB         D = A B, bias = sum of op(B) over k  (the weight-gradient GEMM also
 *                  writes the bias gradient; it is written, never accumulated)
 *
 * A plan (operation descriptor, matrix layouts, algorithm from the heuristic) is made once per
 * shape, epilogue and pointer alignment and kept in a small open-addressing table; pointers
 * are set on the descriptor at each call (cheap host calls, no device work).  When cuBLASLt
 * has no algorithm for a combination (layout, alignment, epilogue on this GPU), the plan says
 * so and the caller runs the separate kernels: same results up to rounding, counted in
 * kern_counters.epilogue_fallbacks.
 *
 * The GELU epilogue is cuBLASLt's tanh approximation, the GPT-2 form that kern_gelu_* compute
 * (elementwise.h); the last bits can differ from our kernel (its tanh), which the GPU tests
 * bound.  The workspace is the cuBLAS one: both run on the context's stream, in turn. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

/* Initial slots of the plan table; it doubles whenever it would be more than half full, so a
 * model with many GEMM shapes keeps every plan (issue 22: past 256 shapes the old table
 * rebuilt one slot's plan on every call).  Growing happens only when a new shape is first
 * seen - the first step, which builds every plan, never a recorded or later one. */
#define LT_CACHE_SLOTS 256

typedef struct {
    int used;
    /* key */
    int ta, tb, m, n, k, lda, ldb, ldd;
    unsigned int epilogue;
    int beta_nonzero;
    int align;   /* smallest alignment of the pointers, 4..16 bytes */
    /* plan */
    int ok;      /* an algorithm exists */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

struct kcuda_lt_cache {
    lt_plan *slot;   /* [cap], open addressing with linear probing */
    int cap, used;
};

#define KLT_CALL(c, call) kcuda_cublas_ok((c), (call), #call, __FILE__, __LINE__)

int kcuda_lt_create(kcuda_ctx *c) {
    c->lt_cache = (struct kcuda_lt_cache *)calloc(1, sizeof(struct kcuda_lt_cache));
    if (!c->lt_cache) {
        kcuda_fail(c, "cuBLASLt plan cache", __FILE__, __LINE__, "out of memory");
        return -1;
    }
    c->lt_cache->slot = (lt_plan *)calloc(LT_CACHE_SLOTS, sizeof(lt_plan));
    c->lt_cache->cap = LT_CACHE_SLOTS;
    if (!c->lt_cache->slot) {
        kcuda_fail(c, "cuBLASLt plan cache", __FILE__, __LINE__, "out of memory");
        return -1;
    }
    cublasLtHandle_t h = NULL;
    if (!KLT_CALL(c, cublasLtCreate(&h))) return -1;
    c->lt = h;
    return 0;
}

static void plan_release(lt_plan *p) {
    if (p->desc) (void)cublasLtMatmulDescDestroy(p->desc);
    if (p->a) (void)cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) (void)cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) (void)cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

void kcuda_lt_destroy(kcuda_ctx *c) {
    if (c->lt_cache) {
        for (int i = 0; c->lt_cache->slot && i < c->lt_cache->cap; i++)
            if (c->lt_cache->slot[i].used) plan_release(&c->lt_cache->slot[i]);
        free(c->lt_cache->slot);
        free(c->lt_cache);
        c->lt_cache = NULL;
    }
    if (c->lt) (void)cublasLtDestroy(c->lt);
    c->lt = NULL;
}

static int ptr_align(const void *p) {
    uintptr_t v = (uintptr_t)p;
    if (v % 16 == 0) return 16;
    if (v % 8 == 0) return 8;
    return 4;
}

static int min_int(int a, int b) { return a < b ? a : b; }

static unsigned int plan_hash(const lt_plan *q) {
    unsigned int h = 2166136261u;
    int v[11] = {q->ta, q->tb, q->m, q->n, q->k, q->lda, q->ldb, q->ldd, (int)q->epilogue,
                 q->beta_nonzero, q->align};
    for (int i = 0; i < 11; i++) h = (h ^ (unsigned int)v[i]) * 16777619u;
    return h;
}

static int same_key(const lt_plan *a, const lt_plan *b) {
    return a->ta == b->ta && a->tb == b->tb && a->m == b->m && a->n == b->n && a->k == b->k &&
           a->lda == b->lda && a->ldb == b->ldb && a->ldd == b->ldd &&
           a->epilogue == b->epilogue && a->beta_nonzero == b->beta_nonzero &&
           a->align == b->align;
}

/* Builds the descriptor, layouts and algorithm of key q into p (p->ok = 0 when cuBLASLt has
 * none).  -1 on an error (recorded). */
static int plan_build(kcuda_ctx *c, lt_plan *p, const lt_plan *q) {
    *p = *q;
    p->used = 1;
    p->ok = 0;
    cublasOperation_t ta = (cublasOperation_t)q->ta, tb = (cublasOperation_t)q->tb;
    cublasLtEpilogue_t epi = (cublasLtEpilogue_t)q->epilogue;
    if (!KLT_CALL(c, cublasLtMatmulDescCreate(&p->desc, c->gemm_compute, CUDA_R_32F)) ||
        !KLT_CALL(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                    sizeof ta)) ||
        !KLT_CALL(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                    sizeof tb)) ||
        !KLT_CALL(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                    sizeof epi)))
        return -1;
    /* stored (before op) shapes, column-major */
    int a_rows = ta == CUBLAS_OP_N ? q->m : q->k, a_cols = ta == CUBLAS_OP_N ? q->k : q->m;
    int b_rows = tb == CUBLAS_OP_N ? q->k : q->n, b_cols = tb == CUBLAS_OP_N ? q->n : q->k;
    if (!KLT_CALL(c, cublasLtMatrixLayoutCreate(&p->a, CUDA_R_32F, a_rows, a_cols, q->lda)) ||
        !KLT_CALL(c, cublasLtMatrixLayoutCreate(&p->b, CUDA_R_32F, b_rows, b_cols, q->ldb)) ||
        !KLT_CALL(c, cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, q->m, q->n, q->ldd)))
        return -1;
    if (epi == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || epi == CUBLASLT_EPILOGUE_GELU_AUX) {
        int64_t ld = q->ldd;
        if (!KLT_CALL(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                        &ld, sizeof ld)))
            return -1;
    }
    cublasLtMatmulPreference_t pref = NULL;
    if (!KLT_CALL(c, cublasLtMatmulPreferenceCreate(&pref))) return -1;
    uint64_t ws = KCUDA_CUBLAS_WORKSPACE_BYTES;
    uint32_t al = (uint32_t)q->align;
    int st = KLT_CALL(c, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws)) &&
             KLT_CALL(c, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al)) &&
             KLT_CALL(c, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al)) &&
             KLT_CALL(c, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al)) &&
             KLT_CALL(c, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    if (!st) {
        (void)cublasLtMatmulPreferenceDestroy(pref);
        return -1;
    }
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof res);
    /* "not supported" is an answer here, not an error: the caller falls back */
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a,
                                                       p->b, p->d, p->d, pref, 1, &res, &found);
    (void)cublasLtMatmulPreferenceDestroy(pref);
    if (hs == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
        p->algo = res.algo;
        p->ok = 1;
    }
    return 0;
}

/* Doubles the table, moving every plan (its handles move with it) to its slot in the new one.
 * 0, or -1 with the error recorded. */
static int cache_grow(kcuda_ctx *c) {
    struct kcuda_lt_cache *lc = c->lt_cache;
    int cap = lc->cap * 2;
    lt_plan *slot = (lt_plan *)calloc((size_t)cap, sizeof(lt_plan));
    if (!slot) {
        kcuda_fail(c, "cuBLASLt plan cache", __FILE__, __LINE__, "out of memory growing it");
        return -1;
    }
    for (int i = 0; i < lc->cap; i++) {
        if (!lc->slot[i].used) continue;
        unsigned int h = plan_hash(&lc->slot[i]);
        int j = (int)(h % (unsigned int)cap);
        while (slot[j].used) j = (j + 1) % cap;
        slot[j] = lc->slot[i];
    }
    free(lc->slot);
    lc->slot = slot;
    lc->cap = cap;
    return 0;
}

static lt_plan *get_plan(kcuda_ctx *c, const lt_plan *q) {
    struct kcuda_lt_cache *lc = c->lt_cache;
    unsigned int h = plan_hash(q);
    /* at most half full, so the probe always ends at the key or at a free slot */
    for (int probe = 0;; probe++) {
        lt_plan *p = &lc->slot[(h + (unsigned int)probe) % (unsigned int)lc->cap];
        if (p->used && same_key(p, q)) return p;
        if (p->used) continue;
        if (2 * (lc->used + 1) > lc->cap) {
            if (cache_grow(c) != 0) return NULL;
            return get_plan(c, q);
        }
        if (plan_build(c, p, q) != 0) {
            plan_release(p);
            return NULL;
        }
        lc->used++;
        return p;
    }
}

/* Plans in the table (tests: the cache keeps every shape). */
int kcuda_lt_plan_count(const kcuda_ctx *c) { return c->lt_cache ? c->lt_cache->used : 0; }

int kcuda_lt_matmul(kcuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const float *A, int lda, const float *B, int ldb, float beta,
                    float *D, int ldd, unsigned int epilogue, void *bias, float *aux) {
    if (c->separate_epilogues || !c->lt || m <= 0 || n <= 0 || k <= 0) {
        c->epilogue_fallbacks++;
        return 0;
    }
    /* GELU's aux leading dimension must be a multiple of 8 (cublasLt.h) */
    if ((epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || epilogue == CUBLASLT_EPILOGUE_GELU_AUX) &&
        (ldd % 8 != 0 || !aux)) {
        c->epilogue_fallbacks++;
        return 0;
    }
    lt_plan q;
    memset(&q, 0, sizeof q);
    q.ta = (int)ta;
    q.tb = (int)tb;
    q.m = m;
    q.n = n;
    q.k = k;
    q.lda = lda;
    q.ldb = ldb;
    q.ldd = ldd;
    q.epilogue = epilogue;
    q.beta_nonzero = beta != 0.0f;
    q.align = min_int(min_int(ptr_align(A), ptr_align(B)), ptr_align(D));
    if (bias) q.align = min_int(q.align, ptr_align(bias));
    if (aux) q.align = min_int(q.align, ptr_align(aux));
    lt_plan *p = get_plan(c, &q);
    if (!p) return -1;
    if (!p->ok) {
        c->epilogue_fallbacks++;
        return 0;
    }
    if (bias && !KLT_CALL(c, cublasLtMatmulDescSetAttribute(
                                 p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias)))
        return -1;
    if (aux && !KLT_CALL(c, cublasLtMatmulDescSetAttribute(
                                p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                sizeof aux)))
        return -1;
    const float alpha = 1.0f;
    cublasStatus_t st = cublasLtMatmul(c->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D, p->d,
                                       D, p->d, &p->algo, c->cublas_workspace,
                                       KCUDA_CUBLAS_WORKSPACE_BYTES, c->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        /* the heuristic offered an algorithm that the call then refuses (nothing was queued):
         * this plan is unusable from now on, and the caller runs the separate kernels, as for
         * a shape with no algorithm - training goes on */
        p->ok = 0;
        c->epilogue_fallbacks++;
        return 0;
    }
    c->launches++;
    if (!KLT_CALL(c, st)) return -1;
    c->fused_gemms++;
    return 1;
}
