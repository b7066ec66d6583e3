/* cpu_context.c: the CPU backend's context (BLAS thread count), its host memory and copies,
 * and trace marks read from the host's clock (the CPU runs every op before it returns). */
#include "cpu_internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int threads;
} kcpu_ctx;

int kcpu_create(const kern_options *opt, void **out, char *err, size_t errlen) {
    *out = NULL;
    if (opt->threads < 1) {
        snprintf(err, errlen, "kernels: threads must be >= 1 (got %d)", opt->threads);
        return -1;
    }
    kcpu_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "kernels: out of memory creating the CPU context");
        return -1;
    }
    c->threads = opt->threads;
    /* OpenBLAS would otherwise start one thread per core in every rank.  The setting is
     * process-wide: the last context created wins. */
    openblas_set_num_threads(opt->threads);
    *out = c;
    return 0;
}

void kcpu_destroy(void *c) { free(c); }

void *kcpu_alloc(void *c, size_t bytes) {
    void *p = NULL;
    /* 64 bytes: a cache line, and the widest SIMD register (AVX-512). */
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

void kcpu_free(void *c, void *p) { free(p); }

void kcpu_to_device(void *c, void *dst, const void *host_src, size_t bytes) {
    if (bytes) memcpy(dst, host_src, bytes);
}

void kcpu_to_host(void *c, void *host_dst, const void *src, size_t bytes) {
    if (bytes) memcpy(host_dst, src, bytes);
}

/* Batch uploads: plain copies; the host buffers may be reused at once (no settle step). */
void kcpu_upload(void *c, int n, void *const dst[], const void *const host_src[],
                 const size_t bytes[]) {
    for (int i = 0; i < n; i++) kcpu_to_device(c, dst[i], host_src[i], bytes[i]);
}

int kcpu_sync(void *c, char *err, size_t errlen) { return 0; }

int kcpu_check(void *c, char *err, size_t errlen) { return 0; }

const char *kcpu_blas_coretype_hint(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    const char *core = openblas_get_corename();
    if (!core) return NULL;
    /* AVX2-era kernels on a CPU with the AVX-512 subsets OpenBLAS's SkylakeX kernels use */
    int generic = !strcmp(core, "Haswell") || !strcmp(core, "Zen") || !strcmp(core, "Sandybridge");
    __builtin_cpu_init();
    if (generic && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
#endif
    return NULL;
}

/* Trace marks: slot i holds the host's monotonic clock when kcpu_mark stamped it. */
typedef struct {
    double *host;   /* [n] seconds */
} kcpu_marks;

static double host_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *kcpu_marks_create(void *c, int n) {
    kcpu_marks *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (!(m->host = calloc((size_t)n, sizeof *m->host))) {
        free(m);
        return NULL;
    }
    return m;
}

void kcpu_mark(void *c, void *marks, int i) {
    kcpu_marks *m = marks;
    m->host[i] = host_now();
}

int kcpu_marks_read(void *c, void *marks, int n, double *seconds) {
    kcpu_marks *m = marks;
    for (int i = 0; i < n; i++) seconds[i] = m->host[i];
    return 0;
}

void kcpu_marks_free(void *c, void *marks) {
    kcpu_marks *m = marks;
    free(m->host);
    free(m);
}
