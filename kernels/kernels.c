/* kernels.c: the kern_* API of kernels.h, dispatched through the context's backend table
 * (kern_backend.h): the CPU's kcpu_ops, or in builds with HARNESS_HAVE_CUDA the CUDA
 * backend's kcuda_ops.  No math here, and no backend named past kern_create: each kern_X calls
 * k->ops->X(k->be, ...), and answers for the entries a backend leaves NULL (CUDA-only
 * features on the CPU) as kernels.h documents. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_backend.h"
#ifdef HARNESS_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

struct kern_ctx {
    const kern_backend_ops *ops;
    void *be;   /* the backend's own context, created by ops->create */
};

int kern_cuda_device_count(void) {
#ifdef HARNESS_HAVE_CUDA
    return kcuda_device_count();
#else
    return 0;
#endif
}

int kern_cuda_device_status(char *why, size_t len) {
#ifdef HARNESS_HAVE_CUDA
    return kcuda_device_status(why, len);
#else
    snprintf(why, len, "this build has no CUDA backend");
    return 0;
#endif
}

const char *kern_blas_coretype_hint(void) { return kcpu_blas_coretype_hint(); }
void kern_cpu_describe(char *buf, size_t len) {
    kcpu_gemm_describe(buf, len);
    size_t n = strlen(buf);
    if (n < len) snprintf(buf + n, len - n, ", %s", kcpu_simd_level());
}
int kern_cpu_bf16_fast(void) { return kcpu_gemm_bf16_fast(); }

/* The table of a backend, or NULL (err says why). */
static const kern_backend_ops *backend_table(kern_backend backend, char *err, size_t errlen) {
    switch (backend) {
    case KERN_CPU: return &kcpu_ops;
    case KERN_CUDA:
#ifdef HARNESS_HAVE_CUDA
        return &kcuda_ops;
#else
        snprintf(err, errlen, "this build has no CUDA backend");
        return NULL;
#endif
    default:
        snprintf(err, errlen, "unknown kernel backend %d", (int)backend);
        return NULL;
    }
}

int kern_create(const kern_options *opt, kern_ctx **out, char *err, size_t errlen) {
    *out = NULL;
    kern_ctx *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory creating the kernel context");
        return -1;
    }
    k->ops = backend_table(opt->backend, err, errlen);
    if (!k->ops || k->ops->create(opt, &k->be, err, errlen) != 0) {
        free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void kern_destroy(kern_ctx *k) {
    if (!k) return;
    k->ops->destroy(k->be);
    free(k);
}

kern_backend kern_get_backend(const kern_ctx *k) { return k->ops->backend; }

/* ---- memory, copies, uploads, waits ---- */

void *kern_alloc(kern_ctx *k, size_t bytes) { return k->ops->alloc(k->be, bytes); }
void kern_free(kern_ctx *k, void *p) { k->ops->free(k->be, p); }
void *kern_alloc_host(kern_ctx *k, size_t bytes) { return k->ops->alloc_host(k->be, bytes); }
void kern_free_host(kern_ctx *k, void *p) { k->ops->free_host(k->be, p); }

int kern_memory_info(kern_ctx *k, size_t *free_bytes, size_t *total_bytes) {
    if (k->ops->memory_info) return k->ops->memory_info(k->be, free_bytes, total_bytes);
    *free_bytes = *total_bytes = 0;
    return -1;
}

int kern_device_name(kern_ctx *k, char *buf, size_t len) {
    if (k->ops->device_name) return k->ops->device_name(k->be, buf, len);
    if (len) buf[0] = '\0';
    return -1;
}

void *kern_native_stream(kern_ctx *k) {
    return k->ops->native_stream ? k->ops->native_stream(k->be) : NULL;
}

void kern_to_device(kern_ctx *k, void *dst, const void *host_src, size_t bytes) {
    k->ops->to_device(k->be, dst, host_src, bytes);
}

void kern_to_host(kern_ctx *k, void *host_dst, const void *src, size_t bytes) {
    k->ops->to_host(k->be, host_dst, src, bytes);
}

int kern_upload_reserve(kern_ctx *k, size_t bytes, char *err, size_t errlen) {
    /* a backend without staging copies straight from the host buffer */
    return k->ops->upload_reserve ? k->ops->upload_reserve(k->be, bytes, err, errlen) : 0;
}

void kern_upload(kern_ctx *k, int n, void *const dst[], const void *const host_src[],
                 const size_t bytes[]) {
    k->ops->upload(k->be, n, dst, host_src, bytes);
}

void kern_upload_settle(kern_ctx *k) {
    if (k->ops->upload_settle) k->ops->upload_settle(k->be);
}

void kern_download(kern_ctx *k, int n, void *const host_dst[], const void *const src[],
                   const size_t bytes[]) {
    k->ops->download(k->be, n, host_dst, src, bytes);
}

void kern_download_fence(kern_ctx *k) {
    if (k->ops->download_fence) k->ops->download_fence(k->be);
}

int kern_download_wait(kern_ctx *k, char *err, size_t errlen) {
    return k->ops->download_wait ? k->ops->download_wait(k->be, err, errlen) : 0;
}

int kern_sync(kern_ctx *k, char *err, size_t errlen) { return k->ops->sync(k->be, err, errlen); }
int kern_check(kern_ctx *k, char *err, size_t errlen) { return k->ops->check(k->be, err, errlen); }

void kern_get_counters(kern_ctx *k, kern_counters *out) {
    memset(out, 0, sizeof *out);
    if (k->ops->get_counters) k->ops->get_counters(k->be, out);
}

/* ---- CUDA graphs ---- */

int kern_graph_available(kern_ctx *k) { return k->ops->graph_replays; }

int kern_graph_begin(kern_ctx *k, char *err, size_t errlen) {
    if (k->ops->graph_begin) return k->ops->graph_begin(k->be, err, errlen);
    snprintf(err, errlen, "CUDA graphs need the CUDA backend");
    return -1;
}

int kern_graph_end(kern_ctx *k, char *err, size_t errlen) {
    if (k->ops->graph_end) return k->ops->graph_end(k->be, err, errlen);
    snprintf(err, errlen, "CUDA graphs need the CUDA backend");
    return -1;
}

void kern_graph_set_values(kern_ctx *k, const kern_step_values *v) {
    if (k->ops->graph_set_values) k->ops->graph_set_values(k->be, v);
}

void kern_graph_launch(kern_ctx *k) {
    if (k->ops->graph_launch) k->ops->graph_launch(k->be);
}

/* ---- trace marks: the slot count and range checks here, the clock in the backend ---- */

struct kern_marks {
    int n;
    void *be_marks;   /* the backend's marks object (ops->marks_create) */
};

kern_marks *kern_marks_create(kern_ctx *k, int n) {
    if (n < 1) return NULL;
    kern_marks *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n = n;
    if (!(m->be_marks = k->ops->marks_create(k->be, n))) {
        free(m);
        return NULL;
    }
    return m;
}

void kern_mark(kern_ctx *k, kern_marks *m, int i) {
    if (!m || i < 0 || i >= m->n) return;
    k->ops->mark(k->be, m->be_marks, i);
}

int kern_marks_read(kern_ctx *k, kern_marks *m, int n, double *seconds) {
    if (!m || n < 1) return 0;
    if (n > m->n) n = m->n;
    return k->ops->marks_read(k->be, m->be_marks, n, seconds);
}

void kern_marks_free(kern_ctx *k, kern_marks *m) {
    if (!m) return;
    k->ops->marks_free(k->be, m->be_marks);
    free(m);
}

/* ---- element-wise, conversions, random numbers, activations, dropout ---- */

void kern_fill(kern_ctx *k, float *x, float value, int64_t n) {
    k->ops->fill(k->be, x, value, n);
}

void kern_copy(kern_ctx *k, float *dst, const float *src, int64_t n) {
    k->ops->copy(k->be, dst, src, n);
}

void kern_scale(kern_ctx *k, float *x, float alpha, int64_t n) {
    k->ops->scale(k->be, x, alpha, n);
}

void kern_axpy(kern_ctx *k, float *y, float alpha, const float *x, int64_t n) {
    k->ops->axpy(k->be, y, alpha, x, n);
}

void kern_u8_to_f32(kern_ctx *k, float *dst, const uint8_t *src, int64_t n, float in_scale,
                    float mean, float std) {
    k->ops->u8_to_f32(k->be, dst, src, n, in_scale, mean, std);
}

void kern_f32_normalize(kern_ctx *k, float *dst, const float *src, int64_t n, float mean,
                        float std) {
    k->ops->f32_normalize(k->be, dst, src, n, mean, std);
}

void kern_init_uniform(kern_ctx *k, float *x, int64_t n, float lo, float hi, uint64_t seed,
                       uint64_t stream_id) {
    k->ops->init_uniform(k->be, x, n, lo, hi, seed, stream_id);
}

void kern_init_normal(kern_ctx *k, float *x, int64_t n, float mean, float std, uint64_t seed,
                      uint64_t stream_id) {
    k->ops->init_normal(k->be, x, n, mean, std, seed, stream_id);
}

void kern_relu_forward(kern_ctx *k, float *out, const float *in, int64_t n) {
    k->ops->relu_forward(k->be, out, in, n);
}

void kern_relu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n) {
    k->ops->relu_backward(k->be, din, dout, in, n);
}

void kern_gelu_forward(kern_ctx *k, float *out, const float *in, int64_t n) {
    k->ops->gelu_forward(k->be, out, in, n);
}

void kern_gelu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n) {
    k->ops->gelu_backward(k->be, din, dout, in, n);
}

void kern_dropout_forward(kern_ctx *k, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id) {
    k->ops->dropout_forward(k->be, out, mask, in, n, p, seed, stream_id);
}

void kern_dropout_backward(kern_ctx *k, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p) {
    k->ops->dropout_backward(k->be, din, dout, mask, n, p);
}

void kern_dropout_forward_rows(kern_ctx *k, float *out, uint8_t *mask, const float *in,
                               int64_t rows, int64_t row_elems, float p, uint64_t seed,
                               uint64_t step_id, int64_t first_row, int layer) {
    k->ops->dropout_forward_rows(k->be, out, mask, in, rows, row_elems, p, seed, step_id,
                                 first_row, layer);
}

/* ---- linear layers ---- */

void kern_linear_forward(kern_ctx *k, float *out, const float *in, const float *w, const float *b,
                         int B, int I, int O) {
    k->ops->linear_forward(k->be, out, in, w, b, B, I, O);
}

void kern_linear_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int B, int I, int O) {
    k->ops->linear_backward(k->be, din, dw, db, dout, in, w, B, I, O);
}

void kern_linear_backward_ex(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                             const float *in, const float *w, int B, int I, int O,
                             int overwrite) {
    k->ops->linear_backward_ex(k->be, din, dw, db, dout, in, w, B, I, O, overwrite);
}

void kern_linear_act_forward(kern_ctx *k, float *pre, float *out, const float *in,
                             const float *w, const float *b, int B, int I, int O, kern_act act) {
    k->ops->linear_act_forward(k->be, pre, out, in, w, b, B, I, O, act);
}

/* ---- losses, reductions, optimizer updates and their verdict ---- */

double kern_softmax_xent(kern_ctx *k, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale) {
    return k->ops->softmax_xent(k->be, losses, dlogits, correct, logits, labels, B, C,
                                grad_scale);
}

void kern_softmax_xent_acc(kern_ctx *k, float *losses, float *dlogits, double *acc,
                           const float *logits, const int32_t *labels, int B, int C, int ld,
                           float grad_scale) {
    k->ops->softmax_xent_acc(k->be, losses, dlogits, acc, logits, labels, B, C, ld, grad_scale);
}

double kern_sumsq(kern_ctx *k, const float *x, int64_t n) { return k->ops->sumsq(k->be, x, n); }

int kern_has_nonfinite(kern_ctx *k, const float *x, int64_t n) {
    return k->ops->has_nonfinite(k->be, x, n);
}

void kern_sgd_update(kern_ctx *k, float *param, float *buf, const float *grad, int64_t n, float lr,
                     float momentum, float weight_decay, int nesterov, int first) {
    k->ops->sgd_update(k->be, param, buf, grad, n, lr, momentum, weight_decay, nesterov, first);
}

void kern_adamw_update(kern_ctx *k, float *param, float *m, float *v, const float *grad, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay,
                       int64_t t) {
    k->ops->adamw_update(k->be, param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, t);
}

void kern_grad_stats(kern_ctx *k, double *gstate, const float *grads, int64_t n,
                     float clip_norm, int max_run, int64_t step) {
    k->ops->grad_stats(k->be, gstate, grads, n, clip_norm, max_run, step);
}

void kern_sumsq_to(kern_ctx *k, double *sumsq, const float *grads, int64_t n) {
    k->ops->sumsq_to(k->be, sumsq, grads, n);
}

void kern_grad_verdict_from(kern_ctx *k, double *gstate, const double *sumsq, float clip_norm,
                            int max_run, int64_t step) {
    k->ops->grad_verdict_from(k->be, gstate, sumsq, clip_norm, max_run, step);
}

void kern_sgd_update_guarded(kern_ctx *k, float *param, float *buf, const float *grad,
                             int64_t n, float lr, float momentum, float weight_decay,
                             int nesterov, const double *gstate, int64_t t_plus) {
    k->ops->sgd_update_guarded(k->be, param, buf, grad, n, lr, momentum, weight_decay, nesterov,
                               gstate, t_plus);
}

void kern_adamw_update_guarded(kern_ctx *k, float *param, float *m, float *v,
                               const float *grad, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay,
                               const double *gstate, int64_t t_plus) {
    k->ops->adamw_update_guarded(k->be, param, m, v, grad, n, lr, beta1, beta2, eps,
                                 weight_decay, gstate, t_plus);
}

/* ---- convolution and pooling ---- */

size_t kern_conv2d_workspace(kern_ctx *k, const kern_conv_shape *s) {
    return k->ops->conv2d_workspace(k->be, s);
}

int kern_conv2d_library(kern_ctx *k, const kern_conv_shape *s) {
    return k->ops->conv2d_library ? k->ops->conv2d_library(k->be, s) : 1;
}

void kern_conv2d_forward(kern_ctx *k, float *out, const float *in, const float *w,
                         const float *b, const kern_conv_shape *s, void *workspace) {
    k->ops->conv2d_forward(k->be, out, in, w, b, s, workspace);
}

void kern_conv2d_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, const kern_conv_shape *s,
                          void *workspace) {
    k->ops->conv2d_backward(k->be, din, dw, db, dout, in, w, s, workspace);
}

void kern_maxpool2d_forward(kern_ctx *k, float *out, int32_t *argmax, const float *in,
                            const kern_conv_shape *s) {
    k->ops->maxpool2d_forward(k->be, out, argmax, in, s);
}

void kern_maxpool2d_backward(kern_ctx *k, float *din, const float *dout, const int32_t *argmax,
                             const kern_conv_shape *s) {
    k->ops->maxpool2d_backward(k->be, din, dout, argmax, s);
}

void kern_avgpool2d_forward(kern_ctx *k, float *out, const float *in, const kern_conv_shape *s) {
    k->ops->avgpool2d_forward(k->be, out, in, s);
}

void kern_avgpool2d_backward(kern_ctx *k, float *din, const float *dout,
                             const kern_conv_shape *s) {
    k->ops->avgpool2d_backward(k->be, din, dout, s);
}

/* ---- batch norm ---- */

void kern_batchnorm_stats(kern_ctx *k, double *sums, const float *x, int B, int C, int HW) {
    k->ops->batchnorm_stats(k->be, sums, x, B, C, HW);
}

void kern_batchnorm_forward(kern_ctx *k, float *out, float *mean_invstd, const float *x,
                            const float *gamma, const float *beta, const double *sums,
                            double count, float eps, float *running_mean, float *running_var,
                            float momentum, int B, int C, int HW) {
    k->ops->batchnorm_forward(k->be, out, mean_invstd, x, gamma, beta, sums, count, eps,
                              running_mean, running_var, momentum, B, C, HW);
}

void kern_batchnorm_forward_eval(kern_ctx *k, float *out, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float eps, int B, int C, int HW) {
    k->ops->batchnorm_forward_eval(k->be, out, x, gamma, beta, running_mean, running_var, eps,
                                   B, C, HW);
}

void kern_batchnorm_backward_reduce(kern_ctx *k, double *red, const float *dout, const float *x,
                                    const float *mean_invstd, int B, int C, int HW) {
    k->ops->batchnorm_backward_reduce(k->be, red, dout, x, mean_invstd, B, C, HW);
}

void kern_batchnorm_backward(kern_ctx *k, float *din, const float *dout, const float *x,
                             const float *mean_invstd, const float *gamma, const double *red,
                             double count, int B, int C, int HW) {
    k->ops->batchnorm_backward(k->be, din, dout, x, mean_invstd, gamma, red, count, B, C, HW);
}

void kern_batchnorm_param_grads(kern_ctx *k, float *dgamma, float *dbeta, const double *red,
                                int C) {
    k->ops->batchnorm_param_grads(k->be, dgamma, dbeta, red, C);
}

/* ---- language models ---- */

size_t kern_gpt_workspace(kern_ctx *k, int B, int T, int C, int NH, int V) {
    return k->ops->gpt_workspace(k->be, B, T, C, NH, V);
}

void kern_embedding_forward(kern_ctx *k, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C) {
    k->ops->embedding_forward(k->be, out, tokens, wte, wpe, B, T, C);
}

void kern_embedding_backward(kern_ctx *k, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V,
                             void *workspace) {
    k->ops->embedding_backward(k->be, dwte, dwpe, dout, tokens, B, T, C, V, workspace);
}

void kern_layernorm_forward(kern_ctx *k, float *out, float *mean_rstd, const float *x,
                            const float *w, const float *b, int N, int C, float eps) {
    k->ops->layernorm_forward(k->be, out, mean_rstd, x, w, b, N, C, eps);
}

void kern_layernorm_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                             const float *x, const float *mean_rstd, const float *w, int N,
                             int C, void *workspace) {
    k->ops->layernorm_backward(k->be, din, dw, db, dout, x, mean_rstd, w, N, C, workspace);
}

void kern_attention_forward(kern_ctx *k, float *out, float *lse, const float *qkv, int B,
                            int T, int C, int NH, void *workspace) {
    k->ops->attention_forward(k->be, out, lse, qkv, B, T, C, NH, workspace);
}

void kern_attention_backward(kern_ctx *k, float *dqkv, const float *dout, const float *qkv,
                             const float *out, const float *lse, int B, int T, int C, int NH,
                             void *workspace) {
    k->ops->attention_backward(k->be, dqkv, dout, qkv, out, lse, B, T, C, NH, workspace);
}

void kern_attention_decode(kern_ctx *k, float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int t, int Tmax, int C, int NH,
                           void *workspace) {
    k->ops->attention_decode(k->be, out, q, kcache, vcache, B, t, Tmax, C, NH, workspace);
}
