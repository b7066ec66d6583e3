/* kernels.c: the kern_* API, dispatched to the CPU backend (cpu/) or, in builds with
 * HARNESS_HAVE_CUDA, the CUDA backend (cuda/).  No math here: one switch per op. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_backend.h"
#ifdef HARNESS_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

struct kern_ctx {
    kern_backend backend;
    kcpu_ctx *cpu;       /* set when backend == KERN_CPU */
#ifdef HARNESS_HAVE_CUDA
    kcuda_ctx *cuda;     /* set when backend == KERN_CUDA */
#endif
};

int kern_cuda_device_count(void) {
#ifdef HARNESS_HAVE_CUDA
    return kcuda_device_count();
#else
    return 0;
#endif
}

int kern_create(const kern_options *opt, kern_ctx **out, char *err, size_t errlen) {
    *out = NULL;
    kern_ctx *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory creating the kernel context");
        return -1;
    }
    k->backend = opt->backend;
    int rc;
    switch (opt->backend) {
    case KERN_CPU:
        rc = kcpu_create(opt, &k->cpu, err, errlen);
        break;
    case KERN_CUDA:
#ifdef HARNESS_HAVE_CUDA
        rc = kcuda_create(opt, &k->cuda, err, errlen);
#else
        snprintf(err, errlen, "this build has no CUDA backend");
        rc = -1;
#endif
        break;
    default:
        snprintf(err, errlen, "unknown kernel backend %d", (int)opt->backend);
        rc = -1;
        break;
    }
    if (rc != 0) {
        free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void kern_destroy(kern_ctx *k) {
    if (!k) return;
    switch (k->backend) {
    case KERN_CPU: kcpu_destroy(k->cpu); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_destroy(k->cuda); break;
#endif
    default: break;
    }
    free(k);
}

kern_backend kern_get_backend(const kern_ctx *k) { return k->backend; }

void *kern_alloc(kern_ctx *k, size_t bytes) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_alloc(k->cpu, bytes);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_alloc(k->cuda, bytes);
#endif
    default: return NULL;
    }
}

const char *kern_blas_coretype_hint(void) { return kcpu_blas_coretype_hint(); }
void kern_cpu_describe(char *buf, size_t len) { kcpu_gemm_describe(buf, len); }
int kern_cpu_bf16_fast(void) { return kcpu_gemm_bf16_fast(); }

void *kern_alloc_host(kern_ctx *k, size_t bytes) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_alloc(k->cpu, bytes);   /* host memory is all there is */
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_alloc_host(k->cuda, bytes);
#endif
    default: return NULL;
    }
}

void kern_free_host(kern_ctx *k, void *p) {
    switch (k->backend) {
    case KERN_CPU: kcpu_free(k->cpu, p); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_free_host(k->cuda, p); break;
#endif
    default: break;
    }
}

int kern_memory_info(kern_ctx *k, size_t *free_bytes, size_t *total_bytes) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_memory_info(k->cuda, free_bytes, total_bytes);
#endif
    (void)k;
    *free_bytes = *total_bytes = 0;
    return -1;
}

int kern_device_name(kern_ctx *k, char *buf, size_t len) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_device_name(k->cuda, buf, len);
#endif
    (void)k;
    if (len) buf[0] = '\0';
    return -1;
}

void *kern_native_stream(kern_ctx *k) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_native_stream(k->cuda);
#endif
    return NULL;
}

void kern_free(kern_ctx *k, void *p) {
    switch (k->backend) {
    case KERN_CPU: kcpu_free(k->cpu, p); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_free(k->cuda, p); break;
#endif
    default: break;
    }
}

void kern_to_device(kern_ctx *k, void *dst, const void *host_src, size_t bytes) {
    switch (k->backend) {
    case KERN_CPU: kcpu_to_device(k->cpu, dst, host_src, bytes); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_to_device(k->cuda, dst, host_src, bytes); break;
#endif
    default: break;
    }
}

void kern_to_host(kern_ctx *k, void *host_dst, const void *src, size_t bytes) {
    switch (k->backend) {
    case KERN_CPU: kcpu_to_host(k->cpu, host_dst, src, bytes); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_to_host(k->cuda, host_dst, src, bytes); break;
#endif
    default: break;
    }
}

int kern_sync(kern_ctx *k, char *err, size_t errlen) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_sync(k->cpu, err, errlen);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_sync(k->cuda, err, errlen);
#endif
    default:
        snprintf(err, errlen, "invalid kernel context");
        return -1;
    }
}

int kern_check(kern_ctx *k, char *err, size_t errlen) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_check(k->cpu, err, errlen);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_check(k->cuda, err, errlen);
#endif
    default:
        snprintf(err, errlen, "invalid kernel context");
        return -1;
    }
}

void kern_fill(kern_ctx *k, float *x, float value, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_fill(k->cpu, x, value, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_fill(k->cuda, x, value, n); break;
#endif
    default: break;
    }
}

void kern_copy(kern_ctx *k, float *dst, const float *src, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_copy(k->cpu, dst, src, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_copy(k->cuda, dst, src, n); break;
#endif
    default: break;
    }
}

void kern_scale(kern_ctx *k, float *x, float alpha, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_scale(k->cpu, x, alpha, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_scale(k->cuda, x, alpha, n); break;
#endif
    default: break;
    }
}

void kern_axpy(kern_ctx *k, float *y, float alpha, const float *x, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_axpy(k->cpu, y, alpha, x, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_axpy(k->cuda, y, alpha, x, n); break;
#endif
    default: break;
    }
}

void kern_u8_to_f32(kern_ctx *k, float *dst, const uint8_t *src, int64_t n, float in_scale,
                    float mean, float std) {
    switch (k->backend) {
    case KERN_CPU: kcpu_u8_to_f32(k->cpu, dst, src, n, in_scale, mean, std); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_u8_to_f32(k->cuda, dst, src, n, in_scale, mean, std); break;
#endif
    default: break;
    }
}

void kern_f32_normalize(kern_ctx *k, float *dst, const float *src, int64_t n, float mean,
                        float std) {
    switch (k->backend) {
    case KERN_CPU: kcpu_f32_normalize(k->cpu, dst, src, n, mean, std); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_f32_normalize(k->cuda, dst, src, n, mean, std); break;
#endif
    default: break;
    }
}

void kern_init_uniform(kern_ctx *k, float *x, int64_t n, float lo, float hi, uint64_t seed,
                       uint64_t stream_id) {
    switch (k->backend) {
    case KERN_CPU: kcpu_init_uniform(k->cpu, x, n, lo, hi, seed, stream_id); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_init_uniform(k->cuda, x, n, lo, hi, seed, stream_id); break;
#endif
    default: break;
    }
}

void kern_init_normal(kern_ctx *k, float *x, int64_t n, float mean, float std, uint64_t seed,
                      uint64_t stream_id) {
    switch (k->backend) {
    case KERN_CPU: kcpu_init_normal(k->cpu, x, n, mean, std, seed, stream_id); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_init_normal(k->cuda, x, n, mean, std, seed, stream_id); break;
#endif
    default: break;
    }
}

void kern_linear_forward(kern_ctx *k, float *out, const float *in, const float *w, const float *b,
                         int B, int I, int O) {
    switch (k->backend) {
    case KERN_CPU: kcpu_linear_forward(k->cpu, out, in, w, b, B, I, O); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_linear_forward(k->cuda, out, in, w, b, B, I, O); break;
#endif
    default: break;
    }
}

void kern_linear_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int B, int I, int O) {
    switch (k->backend) {
    case KERN_CPU: kcpu_linear_backward(k->cpu, din, dw, db, dout, in, w, B, I, O); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_linear_backward(k->cuda, din, dw, db, dout, in, w, B, I, O); break;
#endif
    default: break;
    }
}

void kern_linear_backward_ex(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                             const float *in, const float *w, int B, int I, int O,
                             int overwrite) {
    switch (k->backend) {
    case KERN_CPU: kcpu_linear_backward_ex(k->cpu, din, dw, db, dout, in, w, B, I, O, overwrite); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_linear_backward_ex(k->cuda, din, dw, db, dout, in, w, B, I, O, overwrite);
        break;
#endif
    default: break;
    }
}

void kern_linear_act_forward(kern_ctx *k, float *pre, float *out, const float *in,
                             const float *w, const float *b, int B, int I, int O, kern_act act) {
    switch (k->backend) {
    case KERN_CPU: kcpu_linear_act_forward(k->cpu, pre, out, in, w, b, B, I, O, act); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_linear_act_forward(k->cuda, pre, out, in, w, b, B, I, O, act); break;
#endif
    default: break;
    }
}

void kern_get_counters(kern_ctx *k, kern_counters *out) {
    memset(out, 0, sizeof *out);
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) kcuda_get_counters(k->cuda, out);
#else
    (void)k;
#endif
}

void kern_upload_settle(kern_ctx *k) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) kcuda_upload_settle(k->cuda);
#else
    (void)k;
#endif
}

int kern_graph_available(kern_ctx *k) { return k->backend == KERN_CUDA; }

int kern_graph_begin(kern_ctx *k, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_graph_begin(k->cuda, err, errlen);
#endif
    snprintf(err, errlen, "CUDA graphs need the CUDA backend");
    return -1;
}

int kern_graph_end(kern_ctx *k, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_graph_end(k->cuda, err, errlen);
#endif
    snprintf(err, errlen, "CUDA graphs need the CUDA backend");
    return -1;
}

void kern_graph_set_values(kern_ctx *k, const kern_step_values *v) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) kcuda_graph_set_values(k->cuda, v);
#else
    (void)k; (void)v;
#endif
}

void kern_graph_launch(kern_ctx *k) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) kcuda_graph_launch(k->cuda);
#else
    (void)k;
#endif
}

void kern_relu_forward(kern_ctx *k, float *out, const float *in, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_relu_forward(k->cpu, out, in, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_relu_forward(k->cuda, out, in, n); break;
#endif
    default: break;
    }
}

void kern_relu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_relu_backward(k->cpu, din, dout, in, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_relu_backward(k->cuda, din, dout, in, n); break;
#endif
    default: break;
    }
}

void kern_gelu_forward(kern_ctx *k, float *out, const float *in, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_gelu_forward(k->cpu, out, in, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_gelu_forward(k->cuda, out, in, n); break;
#endif
    default: break;
    }
}

void kern_gelu_backward(kern_ctx *k, float *din, const float *dout, const float *in, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: kcpu_gelu_backward(k->cpu, din, dout, in, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_gelu_backward(k->cuda, din, dout, in, n); break;
#endif
    default: break;
    }
}

void kern_dropout_forward(kern_ctx *k, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id) {
    switch (k->backend) {
    case KERN_CPU: kcpu_dropout_forward(k->cpu, out, mask, in, n, p, seed, stream_id); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_dropout_forward(k->cuda, out, mask, in, n, p, seed, stream_id);
        break;
#endif
    default: break;
    }
}

void kern_dropout_backward(kern_ctx *k, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p) {
    switch (k->backend) {
    case KERN_CPU: kcpu_dropout_backward(k->cpu, din, dout, mask, n, p); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_dropout_backward(k->cuda, din, dout, mask, n, p); break;
#endif
    default: break;
    }
}

double kern_softmax_xent(kern_ctx *k, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale) {
    switch (k->backend) {
    case KERN_CPU:
        return kcpu_softmax_xent(k->cpu, losses, dlogits, correct, logits, labels, B, C,
                                 grad_scale);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        return kcuda_softmax_xent(k->cuda, losses, dlogits, correct, logits, labels, B, C,
                                  grad_scale);
#endif
    default: return 0;
    }
}

double kern_sumsq(kern_ctx *k, const float *x, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_sumsq(k->cpu, x, n);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_sumsq(k->cuda, x, n);
#endif
    default: return 0;
    }
}

int kern_has_nonfinite(kern_ctx *k, const float *x, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_has_nonfinite(k->cpu, x, n);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_has_nonfinite(k->cuda, x, n);
#endif
    default: return 0;
    }
}

void kern_sgd_update(kern_ctx *k, float *param, float *buf, const float *grad, int64_t n, float lr,
                     float momentum, float weight_decay, int nesterov, int first) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_sgd_update(k->cpu, param, buf, grad, n, lr, momentum, weight_decay, nesterov, first);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_sgd_update(k->cuda, param, buf, grad, n, lr, momentum, weight_decay, nesterov,
                         first);
        break;
#endif
    default: break;
    }
}

void kern_adamw_update(kern_ctx *k, float *param, float *m, float *v, const float *grad, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay,
                       int64_t t) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_adamw_update(k->cpu, param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, t);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_adamw_update(k->cuda, param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay,
                           t);
        break;
#endif
    default: break;
    }
}

/* ---- convolutional layers ---- */

/* floor((in + 2*pad - dil*(win-1) - 1) / stride) + 1, or <= 0 when the window does not fit;
 * dilation 0 (a zero-initialised pooling shape) counts as 1 */
static int conv_out_size(int in, int pad, int dil, int win, int stride) {
    int span = in + 2 * pad - (dil > 0 ? dil : 1) * (win - 1) - 1;
    if (span < 0 || stride <= 0) return 0;
    return span / stride + 1;
}

int kern_conv_out_h(const kern_conv_shape *s) {
    return conv_out_size(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
}

int kern_conv_out_w(const kern_conv_shape *s) {
    return conv_out_size(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
}

size_t kern_conv2d_workspace(kern_ctx *k, const kern_conv_shape *s) {
    switch (k->backend) {
    case KERN_CPU: return kcpu_conv2d_workspace(k->cpu, s);
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: return kcuda_conv2d_workspace(k->cuda, s);
#endif
    default: return 0;
    }
}

void kern_conv2d_forward(kern_ctx *k, float *out, const float *in, const float *w,
                         const float *b, const kern_conv_shape *s, void *workspace) {
    switch (k->backend) {
    case KERN_CPU: kcpu_conv2d_forward(k->cpu, out, in, w, b, s, workspace); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_conv2d_forward(k->cuda, out, in, w, b, s, workspace); break;
#endif
    default: break;
    }
}

void kern_conv2d_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, const kern_conv_shape *s,
                          void *workspace) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_conv2d_backward(k->cpu, din, dw, db, dout, in, w, s, workspace);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_conv2d_backward(k->cuda, din, dw, db, dout, in, w, s, workspace);
        break;
#endif
    default: break;
    }
}

void kern_maxpool2d_forward(kern_ctx *k, float *out, int32_t *argmax, const float *in,
                            const kern_conv_shape *s) {
    switch (k->backend) {
    case KERN_CPU: kcpu_maxpool2d_forward(k->cpu, out, argmax, in, s); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_maxpool2d_forward(k->cuda, out, argmax, in, s); break;
#endif
    default: break;
    }
}

void kern_maxpool2d_backward(kern_ctx *k, float *din, const float *dout, const int32_t *argmax,
                             const kern_conv_shape *s) {
    switch (k->backend) {
    case KERN_CPU: kcpu_maxpool2d_backward(k->cpu, din, dout, argmax, s); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_maxpool2d_backward(k->cuda, din, dout, argmax, s); break;
#endif
    default: break;
    }
}

void kern_avgpool2d_forward(kern_ctx *k, float *out, const float *in, const kern_conv_shape *s) {
    switch (k->backend) {
    case KERN_CPU: kcpu_avgpool2d_forward(k->cpu, out, in, s); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_avgpool2d_forward(k->cuda, out, in, s); break;
#endif
    default: break;
    }
}

void kern_avgpool2d_backward(kern_ctx *k, float *din, const float *dout,
                             const kern_conv_shape *s) {
    switch (k->backend) {
    case KERN_CPU: kcpu_avgpool2d_backward(k->cpu, din, dout, s); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_avgpool2d_backward(k->cuda, din, dout, s); break;
#endif
    default: break;
    }
}

void kern_batchnorm_stats(kern_ctx *k, double *sums, const float *x, int B, int C, int HW) {
    switch (k->backend) {
    case KERN_CPU: kcpu_batchnorm_stats(k->cpu, sums, x, B, C, HW); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_batchnorm_stats(k->cuda, sums, x, B, C, HW); break;
#endif
    default: break;
    }
}

void kern_batchnorm_forward(kern_ctx *k, float *out, float *mean_invstd, const float *x,
                            const float *gamma, const float *beta, const double *sums,
                            double count, float eps, float *running_mean, float *running_var,
                            float momentum, int B, int C, int HW) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_batchnorm_forward(k->cpu, out, mean_invstd, x, gamma, beta, sums, count, eps,
                               running_mean, running_var, momentum, B, C, HW);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_batchnorm_forward(k->cuda, out, mean_invstd, x, gamma, beta, sums, count, eps,
                                running_mean, running_var, momentum, B, C, HW);
        break;
#endif
    default: break;
    }
}

void kern_batchnorm_forward_eval(kern_ctx *k, float *out, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float eps, int B, int C, int HW) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_batchnorm_forward_eval(k->cpu, out, x, gamma, beta, running_mean, running_var, eps,
                                    B, C, HW);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_batchnorm_forward_eval(k->cuda, out, x, gamma, beta, running_mean, running_var,
                                     eps, B, C, HW);
        break;
#endif
    default: break;
    }
}

void kern_batchnorm_backward_reduce(kern_ctx *k, double *red, const float *dout, const float *x,
                                    const float *mean_invstd, int B, int C, int HW) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_batchnorm_backward_reduce(k->cpu, red, dout, x, mean_invstd, B, C, HW);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_batchnorm_backward_reduce(k->cuda, red, dout, x, mean_invstd, B, C, HW);
        break;
#endif
    default: break;
    }
}

void kern_batchnorm_backward(kern_ctx *k, float *din, const float *dout, const float *x,
                             const float *mean_invstd, const float *gamma, const double *red,
                             double count, int B, int C, int HW) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_batchnorm_backward(k->cpu, din, dout, x, mean_invstd, gamma, red, count, B, C, HW);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_batchnorm_backward(k->cuda, din, dout, x, mean_invstd, gamma, red, count, B, C,
                                 HW);
        break;
#endif
    default: break;
    }
}

/* ---- batch uploads, dropout over rows, the optimizer's device-side verdict, batch-norm
 * parameter gradients (the GPU step without host round trips) ---- */

int kern_upload_reserve(kern_ctx *k, size_t bytes, char *err, size_t errlen) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_upload_reserve(k->cuda, bytes, err, errlen);
#endif
    (void)k; (void)bytes; (void)err; (void)errlen;
    return 0;   /* the CPU copies straight from the host buffer */
}

void kern_upload(kern_ctx *k, int n, void *const dst[], const void *const host_src[],
                 const size_t bytes[]) {
    switch (k->backend) {
    case KERN_CPU:
        for (int i = 0; i < n; i++) kcpu_to_device(k->cpu, dst[i], host_src[i], bytes[i]);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_upload(k->cuda, n, dst, host_src, bytes); break;
#endif
    default: break;
    }
}

void kern_dropout_forward_rows(kern_ctx *k, float *out, uint8_t *mask, const float *in,
                               int64_t rows, int64_t row_elems, float p, uint64_t seed,
                               uint64_t step_id, int64_t first_row, int layer) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_dropout_forward_rows(k->cpu, out, mask, in, rows, row_elems, p, seed, step_id,
                                  first_row, layer);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_dropout_forward_rows(k->cuda, out, mask, in, rows, row_elems, p, seed, step_id,
                                   first_row, layer);
        break;
#endif
    default: break;
    }
}

void kern_grad_stats(kern_ctx *k, double *gstate, const float *grads, int64_t n,
                     float clip_norm, int max_run, int64_t step) {
    switch (k->backend) {
    case KERN_CPU: kcpu_grad_stats(k->cpu, gstate, grads, n, clip_norm, max_run, step); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_grad_stats(k->cuda, gstate, grads, n, clip_norm, max_run, step); break;
#endif
    default: break;
    }
}

void kern_sumsq_to(kern_ctx *k, double *sumsq, const float *grads, int64_t n) {
    switch (k->backend) {
    case KERN_CPU: *sumsq = kcpu_sumsq(k->cpu, grads, n); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_sumsq_to(k->cuda, sumsq, grads, n); break;
#endif
    default: break;
    }
}

void kern_grad_verdict_from(kern_ctx *k, double *gstate, const double *sumsq, float clip_norm,
                            int max_run, int64_t step) {
    switch (k->backend) {
    case KERN_CPU: kcpu_grad_verdict_from(k->cpu, gstate, sumsq, clip_norm, max_run, step); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_grad_verdict_from(k->cuda, gstate, sumsq, clip_norm, max_run, step); break;
#endif
    default: break;
    }
}

void kern_sgd_update_guarded(kern_ctx *k, float *param, float *buf, const float *grad,
                             int64_t n, float lr, float momentum, float weight_decay,
                             int nesterov, const double *gstate, int64_t t_plus) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_sgd_update_guarded(k->cpu, param, buf, grad, n, lr, momentum, weight_decay,
                                nesterov, gstate, t_plus);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_sgd_update_guarded(k->cuda, param, buf, grad, n, lr, momentum, weight_decay,
                                 nesterov, gstate, t_plus);
        break;
#endif
    default: break;
    }
}

void kern_adamw_update_guarded(kern_ctx *k, float *param, float *m, float *v,
                               const float *grad, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay,
                               const double *gstate, int64_t t_plus) {
    switch (k->backend) {
    case KERN_CPU:
        kcpu_adamw_update_guarded(k->cpu, param, m, v, grad, n, lr, beta1, beta2, eps,
                                  weight_decay, gstate, t_plus);
        break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA:
        kcuda_adamw_update_guarded(k->cuda, param, m, v, grad, n, lr, beta1, beta2, eps,
                                   weight_decay, gstate, t_plus);
        break;
#endif
    default: break;
    }
}

void kern_batchnorm_param_grads(kern_ctx *k, float *dgamma, float *dbeta, const double *red,
                                int C) {
    switch (k->backend) {
    case KERN_CPU: kcpu_batchnorm_param_grads(k->cpu, dgamma, dbeta, red, C); break;
#ifdef HARNESS_HAVE_CUDA
    case KERN_CUDA: kcuda_batchnorm_param_grads(k->cuda, dgamma, dbeta, red, C); break;
#endif
    default: break;
    }
}

/* ---- language models ---- */

size_t kern_gpt_workspace(kern_ctx *k, int B, int T, int C, int NH, int V) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { return kcuda_gpt_workspace(k->cuda, B, T, C, NH, V); }
#endif
    return kcpu_gpt_workspace(k->cpu, B, T, C, NH, V);
}

void kern_embedding_forward(kern_ctx *k, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_embedding_forward(k->cuda, out, tokens, wte, wpe, B, T, C); return; }
#endif
    kcpu_embedding_forward(k->cpu, out, tokens, wte, wpe, B, T, C);
}

void kern_embedding_backward(kern_ctx *k, float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C, int V, void *workspace) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_embedding_backward(k->cuda, dwte, dwpe, dout, tokens, B, T, C, V, workspace); return; }
#endif
    kcpu_embedding_backward(k->cpu, dwte, dwpe, dout, tokens, B, T, C, V, workspace);
}

void kern_layernorm_forward(kern_ctx *k, float *out, float *mean_rstd, const float *x, const float *w, const float *b, int N, int C, float eps) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_layernorm_forward(k->cuda, out, mean_rstd, x, w, b, N, C, eps); return; }
#endif
    kcpu_layernorm_forward(k->cpu, out, mean_rstd, x, w, b, N, C, eps);
}

void kern_layernorm_backward(kern_ctx *k, float *din, float *dw, float *db, const float *dout, const float *x, const float *mean_rstd, const float *w, int N, int C, void *workspace) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_layernorm_backward(k->cuda, din, dw, db, dout, x, mean_rstd, w, N, C, workspace); return; }
#endif
    kcpu_layernorm_backward(k->cpu, din, dw, db, dout, x, mean_rstd, w, N, C, workspace);
}

void kern_attention_forward(kern_ctx *k, float *out, float *att, const float *qkv, int B, int T, int C, int NH, void *workspace) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_attention_forward(k->cuda, out, att, qkv, B, T, C, NH, workspace); return; }
#endif
    kcpu_attention_forward(k->cpu, out, att, qkv, B, T, C, NH, workspace);
}

void kern_attention_backward(kern_ctx *k, float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int C, int NH, void *workspace) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_attention_backward(k->cuda, dqkv, dout, qkv, att, B, T, C, NH, workspace); return; }
#endif
    kcpu_attention_backward(k->cpu, dqkv, dout, qkv, att, B, T, C, NH, workspace);
}

void kern_attention_decode(kern_ctx *k, float *out, const float *q, const float *kcache, const float *vcache, int B, int t, int Tmax, int C, int NH, void *workspace) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_attention_decode(k->cuda, out, q, kcache, vcache, B, t, Tmax, C, NH, workspace); return; }
#endif
    kcpu_attention_decode(k->cpu, out, q, kcache, vcache, B, t, Tmax, C, NH, workspace);
}

void kern_softmax_xent_acc(kern_ctx *k, float *losses, float *dlogits, double *acc, const float *logits, const int32_t *labels, int B, int C, int ld, float grad_scale) {
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_softmax_xent_acc(k->cuda, losses, dlogits, acc, logits, labels, B, C, ld, grad_scale); return; }
#endif
    kcpu_softmax_xent_acc(k->cpu, losses, dlogits, acc, logits, labels, B, C, ld, grad_scale);
}

/* ---- trace marks ---- */

struct kern_marks {
    int n;
    double *host;          /* CPU: [n] host times */
#ifdef HARNESS_HAVE_CUDA
    kcuda_marks *cuda;     /* CUDA: events */
#endif
};

kern_marks *kern_marks_create(kern_ctx *k, int n) {
    if (n < 1) return NULL;
    kern_marks *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n = n;
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) {
        if (!(m->cuda = kcuda_marks_create(k->cuda, n))) { free(m); return NULL; }
        return m;
    }
#endif
    if (!(m->host = calloc((size_t)n, sizeof *m->host))) { free(m); return NULL; }
    return m;
}

void kern_mark(kern_ctx *k, kern_marks *m, int i) {
    if (!m || i < 0 || i >= m->n) return;
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) { kcuda_mark(k->cuda, m->cuda, i); return; }
#endif
    (void)k;
    m->host[i] = kcpu_now();
}

int kern_marks_read(kern_ctx *k, kern_marks *m, int n, double *seconds) {
    if (!m || n < 1) return 0;
    if (n > m->n) n = m->n;
#ifdef HARNESS_HAVE_CUDA
    if (k->backend == KERN_CUDA) return kcuda_marks_read(k->cuda, m->cuda, n, seconds);
#endif
    (void)k;
    for (int i = 0; i < n; i++) seconds[i] = m->host[i];
    return 0;
}

void kern_marks_free(kern_ctx *k, kern_marks *m) {
    if (!m) return;
#ifdef HARNESS_HAVE_CUDA
    if (m->cuda) kcuda_marks_free(k->cuda, m->cuda);
#endif
    (void)k;
    free(m->host);
    free(m);
}
