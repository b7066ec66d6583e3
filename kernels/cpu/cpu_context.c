/* cpu_context.c: the CPU backend's context (threads, GEMM library state), its host memory and copies,
 * and trace marks read from the host's clock (the CPU runs every op before it returns). */
#include "cpu_internal.h"

#ifndef HARNESS_HAVE_DNNL
#include <cblas.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KCPU_DOWNLOAD_PARTS 8

typedef struct {
    int threads;
    /* The emulated CUDA graph (kcpu_graph_*): the step's values, from creation on as
     * c->step_scalars on the GPU, so values set before a recording reach its first run;
     * recording now; a recording not yet launched; the first misuse, for kcpu_check. */
    kern_step_values step_values;
    int capturing, recorded;
    char error[160];
    kcpu_gemm_lib *gemm;   /* NULL in a build without oneDNN */
    kcpu_conv_lib *conv;   /* oneDNN convolutions; NULL in a build without oneDNN */
    /* kern_download deferred by download_delay_ms (a transfer that has not run yet): the
     * copies still to make, under dl_lock (kern_download_wait comes from another thread) */
    int dl_delay_ms, dl_n;
    pthread_mutex_t dl_lock;
    void *dl_dst[KCPU_DOWNLOAD_PARTS];
    const void *dl_src[KCPU_DOWNLOAD_PARTS];
    size_t dl_bytes[KCPU_DOWNLOAD_PARTS];
} kcpu_ctx;

static void graph_clear_values(kcpu_ctx *c);

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
    c->dl_delay_ms = opt->download_delay_ms;
    pthread_mutex_init(&c->dl_lock, NULL);
    graph_clear_values(c);
    /* bf16 GEMM inputs only where they are faster than fp32 (AMX); the caller has said so */
    int bf16 = opt->precision == KERN_BF16 && kcpu_gemm_bf16_fast();
    /* the thread count is process-wide (OpenMP, OpenBLAS): the last context created wins */
    if (kcpu_gemm_create(&c->gemm, opt->threads, bf16, err, errlen) != 0) {
        free(c);
        return -1;
    }
#ifdef HARNESS_HAVE_DNNL
    if (kcpu_conv_lib_create(&c->conv, opt->cpu_conv, bf16, err, errlen) != 0) {
        kcpu_gemm_destroy(c->gemm);
        free(c);
        return -1;
    }
#endif
    *out = c;
    return 0;
}

void kcpu_destroy(void *ctx) {
    kcpu_ctx *c = ctx;
    if (!c) return;
#ifdef HARNESS_HAVE_DNNL
    kcpu_conv_lib_destroy(c->conv);
#endif
    kcpu_gemm_destroy(c->gemm);
    pthread_mutex_destroy(&c->dl_lock);
    free(c);
}

kcpu_gemm_lib *kcpu_gemm_state(void *c) { return ((kcpu_ctx *)c)->gemm; }

kcpu_conv_lib *kcpu_conv_state(void *c) { return c ? ((kcpu_ctx *)c)->conv : NULL; }

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

/* Snapshot downloads (kernels.h): plain copies, or with download_delay_ms kept until the fence
 * or the wait asks for them - so a caller that writes the source before its fence, or reads
 * the copy before its wait, gets the wrong bits on the CPU too. */
static void download_settle(kcpu_ctx *c) {   /* under dl_lock */
    for (int i = 0; i < c->dl_n; i++) kcpu_to_host(c, c->dl_dst[i], c->dl_src[i], c->dl_bytes[i]);
    c->dl_n = 0;
}

void kcpu_download(void *be, int n, void *const host_dst[], const void *const src[],
                   const size_t bytes[]) {
    kcpu_ctx *c = be;
    pthread_mutex_lock(&c->dl_lock);
    download_settle(c);   /* at most one download at a time */
    if (c->dl_delay_ms <= 0 || n > KCPU_DOWNLOAD_PARTS) {
        for (int i = 0; i < n; i++) kcpu_to_host(c, host_dst[i], src[i], bytes[i]);
    } else {
        for (int i = 0; i < n; i++) {
            c->dl_dst[i] = host_dst[i];
            c->dl_src[i] = src[i];
            c->dl_bytes[i] = bytes[i];
        }
        c->dl_n = n;
    }
    pthread_mutex_unlock(&c->dl_lock);
}

void kcpu_download_fence(void *be) {
    kcpu_ctx *c = be;
    pthread_mutex_lock(&c->dl_lock);
    download_settle(c);
    pthread_mutex_unlock(&c->dl_lock);
}

int kcpu_download_wait(void *be, char *err, size_t errlen) {
    kcpu_ctx *c = be;
    (void)err;
    (void)errlen;
    pthread_mutex_lock(&c->dl_lock);
    int pending = c->dl_n > 0;
    pthread_mutex_unlock(&c->dl_lock);
    if (pending) {   /* the transfer's delay, while the step loop goes on */
        struct timespec ts = {c->dl_delay_ms / 1000, (c->dl_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    kcpu_download_fence(c);
    return 0;
}

int kcpu_sync(void *c, char *err, size_t errlen) { return kcpu_check(c, err, errlen); }

int kcpu_check(void *be, char *err, size_t errlen) {
    kcpu_ctx *c = be;
    if (!c->error[0]) return 0;
    snprintf(err, errlen, "%s", c->error);
    c->error[0] = '\0';
    return -1;
}

/* ---- the CUDA graph's contract, emulated (kernels.h, "CUDA graphs") ----
 *
 * The CPU cannot replay recorded work, so a "recording" runs the ops as they are queued and
 * each step is recorded again (begin, ops, end, launch).  What is emulated is where a recorded
 * op takes its step-varying values from: the slot that kcpu_graph_set_values fills, not the
 * op's arguments - the slot the GPU's first replay reads. */

static void graph_clear_values(kcpu_ctx *c) {
    /* values never set: a replay gets NaN parameters (AdamW's t = 0 is 0/0), as it would from
     * uninitialised device memory, so a lost kern_graph_set_values cannot go unnoticed */
    c->step_values.lr = NAN;
    c->step_values.t_plus = 0;
    c->step_values.step = 0;
    c->step_values.step_id = 0;
}

static void graph_misuse(kcpu_ctx *c, const char *what) {
    if (!c->error[0]) snprintf(c->error, sizeof c->error, "CPU backend: %s", what);
}

int kcpu_graph_begin(void *be, char *err, size_t errlen) {
    kcpu_ctx *c = be;
    if (c->capturing) {
        snprintf(err, errlen, "CPU backend: kern_graph_begin while already recording");
        return -1;
    }
    c->capturing = 1;
    return 0;
}

int kcpu_graph_end(void *be, char *err, size_t errlen) {
    kcpu_ctx *c = be;
    if (!c->capturing) {
        snprintf(err, errlen, "CPU backend: kern_graph_end without kern_graph_begin");
        return -1;
    }
    c->capturing = 0;
    c->recorded = 1;
    return 0;
}

void kcpu_graph_set_values(void *be, const kern_step_values *v) {
    ((kcpu_ctx *)be)->step_values = *v;
}

void kcpu_graph_launch(void *be) {
    kcpu_ctx *c = be;
    /* the recording already ran its ops: this launch is that first replay; a second launch of
     * the same recording would need a replay the CPU cannot do */
    if (!c->recorded)
        graph_misuse(c, "kern_graph_launch without a new recording (the CPU emulation runs "
                        "the ops while recording, so each step is recorded again)");
    c->recorded = 0;
}

const kern_step_values *kcpu_step_values(const void *be) {
    const kcpu_ctx *c = be;
    return c && c->capturing ? &c->step_values : NULL;
}

const char *kcpu_blas_coretype_hint(void) {
    /* With oneDNN (dispatch by CPU features) OpenBLAS does no GEMM of a step: nothing to
     * gain.  Without it, the OpenBLAS model-table workaround stays as the fallback. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HARNESS_HAVE_DNNL)
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
