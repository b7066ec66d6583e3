/* gemm_bench.c: the GEMMs of a training step through each candidate CPU library, side by side.
 *
 *   gemm_bench LIBRARY [REPEAT]
 *   LIBRARY: openblas     cblas_sgemm of libopenblas.so.0 (OPENBLAS_CORETYPE picks its kernels)
 *            blis         cblas_sgemm of libblis.so.4 (BLIS's CPU-feature dispatch)
 *            dnnl_sgemm   oneDNN's dnnl_sgemm (fp32, dispatch by CPUID)
 *            dnnl_matmul  oneDNN's matmul primitive, fp32, created once per shape
 *            dnnl_bf16    oneDNN's matmul primitive, bf16 inputs, fp32 output (AMX where found)
 *   Threads: OMP_NUM_THREADS (oneDNN, BLIS) and OPENBLAS_NUM_THREADS, set by the caller.
 *
 * Prints GFLOP/s of forward / backward-data / backward-weights for the MLP's first layer
 * (batch 128, 784 -> 256) and GPT-2's qkv projection (256 tokens, 768 -> 2304), best of REPEAT
 * timed loops, and the seconds all GEMMs of one GPT-2 124M step at 256 tokens take (12 layers of
 * qkv, attention projection, MLP up and down, plus the 50257-wide tied head; 190 GFLOP).
 * The two BLAS libraries are opened with dlopen so one binary measures all of them.
 * A benchmark: prints numbers, exits non-zero only when a library fails to load or run. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static const char *lib;
static cblas_sgemm_fn blas_sgemm;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void check(dnnl_status_t s, const char *what) {
    if (s != dnnl_success) {
        fprintf(stderr, "gemm_bench: %s failed (oneDNN status %d)\n", what, (int)s);
        exit(1);
    }
}

/* One row-major GEMM C[M,N] = op(A)[M,K] @ op(B)[K,N] as a oneDNN matmul primitive: the
 * transposes become strides, the primitive is created here once and executed many times. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} matmul;

static matmul matmul_create(int ta, int tb, int M, int N, int K, dnnl_data_type_t in_type,
                            void *A, void *B, float *C) {
    matmul m;
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t adims = {M, K}, bdims = {K, N}, cdims = {M, N};
    dnnl_dims_t as = {ta ? 1 : K, ta ? M : 1}, bs = {tb ? 1 : N, tb ? K : 1}, cs = {N, 1};
    check(dnnl_memory_desc_init_by_strides(&ad, 2, adims, in_type, as), "A desc");
    check(dnnl_memory_desc_init_by_strides(&bd, 2, bdims, in_type, bs), "B desc");
    check(dnnl_memory_desc_init_by_strides(&cd, 2, cdims, dnnl_f32, cs), "C desc");
    dnnl_matmul_desc_t md;
    check(dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd), "matmul desc");
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &md, NULL, engine, NULL), "matmul primitive desc");
    check(dnnl_primitive_create(&m.prim, pd), "matmul primitive");
    dnnl_primitive_desc_destroy(pd);
    check(dnnl_memory_create(&m.a, &ad, engine, A), "A memory");
    check(dnnl_memory_create(&m.b, &bd, engine, B), "B memory");
    check(dnnl_memory_create(&m.c, &cd, engine, C), "C memory");
    return m;
}

static void matmul_run(matmul *m) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b},
                               {DNNL_ARG_DST, m->c}};
    check(dnnl_primitive_execute(m->prim, stream, 3, args), "matmul execute");
    check(dnnl_stream_wait(stream), "stream wait");
}

static void matmul_destroy(matmul *m) {
    dnnl_primitive_destroy(m->prim);
    dnnl_memory_destroy(m->a);
    dnnl_memory_destroy(m->b);
    dnnl_memory_destroy(m->c);
}

/* Seconds of one GEMM, best of `repeat` loops of `iters` calls (after one untimed call, which
 * for the primitives also pays the creation). ta/tb: A, B stored transposed. */
static double time_gemm(int ta, int tb, int M, int N, int K, int iters, int repeat) {
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C = malloc(sizeof(float) * M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)((i * 5) % 11) * 0.01f;
    int is_matmul = !strcmp(lib, "dnnl_matmul") || !strcmp(lib, "dnnl_bf16");
    int bf16 = !strcmp(lib, "dnnl_bf16");
    uint16_t *A16 = NULL, *B16 = NULL;
    if (bf16) { /* inputs already in bf16 (truncated); the conversion is not timed */
        A16 = malloc(2 * (size_t)M * K);
        B16 = malloc(2 * (size_t)K * N);
        /* A packed as [M,K] even when stored transposed, as harness's kcpu_gemm does */
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                uint32_t u;
                memcpy(&u, A + (ta ? (size_t)k * M + m : (size_t)m * K + k), 4);
                A16[(size_t)m * K + k] = u >> 16;
            }
        for (size_t i = 0; i < (size_t)K * N; i++) {
            uint32_t u;
            memcpy(&u, B + i, 4);
            B16[i] = u >> 16;
        }
    }
    matmul m;
    if (is_matmul)
        m = matmul_create(bf16 ? 0 : ta, tb, M, N, K, bf16 ? dnnl_bf16 : dnnl_f32,
                          bf16 ? (void *)A16 : A, bf16 ? (void *)B16 : B, C);
    int lda = ta ? M : K, ldb = tb ? K : N;
    double best = 1e30;
    for (int r = -1; r < repeat; r++) {
        int n = r < 0 ? 1 : iters;
        double t0 = now();
        for (int i = 0; i < n; i++) {
            if (is_matmul) matmul_run(&m);
            else if (blas_sgemm)
                blas_sgemm(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, M, N, K, 1.0f,
                           A, lda, B, ldb, 0.0f, C, N);
            else
                check(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb,
                                 0.0f, C, N), "dnnl_sgemm");
        }
        double t = (now() - t0) / n;
        if (r >= 0 && t < best) best = t;
    }
    if (is_matmul) matmul_destroy(&m);
    free(A); free(B); free(C); free(A16); free(B16);
    return best;
}

/* forward out[M,O] = in[M,I] @ w[O,I]^T; backward-data din[M,I] = dout[M,O] @ w[O,I];
 * backward-weights dw[O,I] = dout^T[O,M] @ in[M,I].  Returns the three times in t[3]. */
static void time_layer(int M, int I, int O, int iters, int repeat, double t[3]) {
    t[0] = time_gemm(0, 1, M, O, I, iters, repeat);
    t[1] = time_gemm(0, 0, M, I, O, iters, repeat);
    t[2] = time_gemm(1, 0, O, I, M, iters, repeat);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gemm_bench openblas|blis|dnnl_sgemm|dnnl_matmul|dnnl_bf16 "
                        "[REPEAT]\n");
        return 2;
    }
    lib = argv[1];
    int repeat = argc > 2 ? atoi(argv[2]) : 3;
    if (!strcmp(lib, "openblas") || !strcmp(lib, "blis")) {
        const char *so = !strcmp(lib, "openblas") ? "libopenblas.so.0" : "libblis.so.4";
        void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "gemm_bench: %s\n", dlerror()); return 1; }
        blas_sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
        if (!blas_sgemm) { fprintf(stderr, "gemm_bench: no cblas_sgemm in %s\n", so); return 1; }
        const char *(*corename)(void);
        *(void **)&corename = dlsym(h, "openblas_get_corename");
        if (corename) printf("# openblas core: %s\n", corename());
    } else if (strcmp(lib, "dnnl_sgemm") && strcmp(lib, "dnnl_matmul") &&
               strcmp(lib, "dnnl_bf16")) {
        fprintf(stderr, "gemm_bench: unknown library '%s'\n", lib);
        return 2;
    }
    check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine");
    check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream");
    if (!strncmp(lib, "dnnl", 4)) {
        const dnnl_version_t *v = dnnl_version();
        printf("# oneDNN %d.%d.%d, effective isa 0x%x\n", v->major, v->minor, v->patch,
               (unsigned)dnnl_get_effective_cpu_isa());
    }
    double t[3];
    time_layer(128, 784, 256, 200, repeat, t);
    double f = 2.0 * 128 * 784 * 256 * 1e-9;
    printf("%s\tmlp_128x784x256\t%.0f/%.0f/%.0f GFLOP/s\n", lib, f / t[0], f / t[1], f / t[2]);
    time_layer(256, 768, 2304, 20, repeat, t);
    f = 2.0 * 256 * 768 * 2304 * 1e-9;
    printf("%s\tqkv_256x768x2304\t%.0f/%.0f/%.0f GFLOP/s\n", lib, f / t[0], f / t[1], f / t[2]);
    /* one GPT-2 124M step at 256 tokens: 12 x (qkv, attn proj, fc, fc proj) + the head */
    int shapes[5][3] = {{768, 2304, 12}, {768, 768, 12}, {768, 3072, 12}, {3072, 768, 12},
                        {768, 50257, 1}};
    double step = 0, flops = 0;
    for (int s = 0; s < 5; s++) {
        time_layer(256, shapes[s][0], shapes[s][1], 2, repeat, t);
        step += shapes[s][2] * (t[0] + t[1] + t[2]);
        flops += shapes[s][2] * 6.0 * 256 * shapes[s][0] * shapes[s][1];
    }
    printf("%s\tgpt2_step_gemms\t%.3f s (%.0f GFLOP, %.0f GFLOP/s)\n", lib, step, flops * 1e-9,
           flops * 1e-9 / step);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
