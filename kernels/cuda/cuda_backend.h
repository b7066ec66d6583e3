/* cuda_backend.h: the CUDA backend of kernels.h (internal; callers use kern_*).
 *
 * Declared here, implemented in the kernels/cuda .cu files; kernels.c calls these
 * when the library is built with HARNESS_HAVE_CUDA.  Same ops and argument order as kernels.h
 * and cpu_backend.h, with the backend's own context (device, stream, cuBLAS handle, first
 * recorded error) in place of kern_ctx.  All pointers are device memory except where noted.
 * Ops are asynchronous on the context's stream; errors are recorded and reported by
 * kcuda_check / kcuda_sync.  The per-element math must come from elementwise.h and philox.h
 * (KERN_HD functions) so that CPU and CUDA agree; kcuda_init_* must reproduce the CPU's bits.
 * Extern "C" so that .cu files (compiled as C++) define C-callable symbols. */
#ifndef HARNESS_KERNELS_CUDA_BACKEND_H
#define HARNESS_KERNELS_CUDA_BACKEND_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kcuda_ctx kcuda_ctx;

/* context and memory (cuda_context.cu) */
/* Number of usable CUDA devices (0 when there is no driver or device). */
int kcuda_device_count(void);
int kcuda_device_status(char *why, size_t len);   /* kern_cuda_device_status */
int kcuda_create(const kern_options *opt, kcuda_ctx **out, char *err, size_t errlen);
void kcuda_destroy(kcuda_ctx *c);
void *kcuda_alloc(kcuda_ctx *c, size_t bytes);   /* cudaMalloc, zeroed */
void kcuda_free(kcuda_ctx *c, void *p);
void *kcuda_alloc_host(kcuda_ctx *c, size_t bytes);   /* cudaMallocHost (pinned) */
void kcuda_free_host(kcuda_ctx *c, void *p);
void *kcuda_native_stream(kcuda_ctx *c);
int kcuda_memory_info(kcuda_ctx *c, size_t *free_bytes, size_t *total_bytes);  /* cudaMemGetInfo */               /* the cudaStream_t all ops run on */
void kcuda_to_device(kcuda_ctx *c, void *dst, const void *host_src, size_t bytes);
void kcuda_to_host(kcuda_ctx *c, void *host_dst, const void *src, size_t bytes);   /* synchronous */
int kcuda_sync(kcuda_ctx *c, char *err, size_t errlen);
/* Trace marks (kern_marks): events on the compute stream; slot 0 anchors them to the host's
 * monotonic clock (cuda_marks.cu). */
typedef struct kcuda_marks kcuda_marks;
kcuda_marks *kcuda_marks_create(kcuda_ctx *c, int n);
void kcuda_mark(kcuda_ctx *c, kcuda_marks *m, int i);
int kcuda_marks_read(kcuda_ctx *c, kcuda_marks *m, int n, double *seconds);
void kcuda_marks_free(kcuda_ctx *c, kcuda_marks *m);
int kcuda_check(kcuda_ctx *c, char *err, size_t errlen);

/* element-wise, fills, conversions, activations (cuda_elementwise.cu) */
void kcuda_fill(kcuda_ctx *c, float *x, float value, int64_t n);
void kcuda_copy(kcuda_ctx *c, float *dst, const float *src, int64_t n);
void kcuda_scale(kcuda_ctx *c, float *x, float alpha, int64_t n);
void kcuda_axpy(kcuda_ctx *c, float *y, float alpha, const float *x, int64_t n);
void kcuda_u8_to_f32(kcuda_ctx *c, float *dst, const uint8_t *src, int64_t n,
                    float in_scale, float mean, float std);
void kcuda_f32_normalize(kcuda_ctx *c, float *dst, const float *src, int64_t n,
                        float mean, float std);
void kcuda_relu_forward(kcuda_ctx *c, float *out, const float *in, int64_t n);
void kcuda_relu_backward(kcuda_ctx *c, float *din, const float *dout, const float *in, int64_t n);
void kcuda_gelu_forward(kcuda_ctx *c, float *out, const float *in, int64_t n);
void kcuda_gelu_backward(kcuda_ctx *c, float *din, const float *dout, const float *in, int64_t n);

/* random numbers and dropout (cuda_random.cu) */
void kcuda_init_uniform(kcuda_ctx *c, float *x, int64_t n, float lo, float hi,
                       uint64_t seed, uint64_t stream_id);
void kcuda_init_normal(kcuda_ctx *c, float *x, int64_t n, float mean, float std,
                      uint64_t seed, uint64_t stream_id);
void kcuda_dropout_forward(kcuda_ctx *c, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id);
void kcuda_dropout_backward(kcuda_ctx *c, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p);

/* linear layer (cuda_linear.cu) */
void kcuda_linear_forward(kcuda_ctx *c, float *out, const float *in, const float *w,
                         const float *b, int B, int I, int O);
void kcuda_linear_backward(kcuda_ctx *c, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int B, int I, int O);
void kcuda_linear_backward_ex(kcuda_ctx *c, float *din, float *dw, float *db, const float *dout,
                              const float *in, const float *w, int B, int I, int O,
                              int overwrite);
void kcuda_linear_act_forward(kcuda_ctx *c, float *pre, float *out, const float *in,
                              const float *w, const float *b, int B, int I, int O, kern_act act);
void kcuda_get_counters(kcuda_ctx *c, kern_counters *out);
void kcuda_upload_settle(kcuda_ctx *c);
int kcuda_graph_begin(kcuda_ctx *c, char *err, size_t errlen);
int kcuda_graph_end(kcuda_ctx *c, char *err, size_t errlen);
void kcuda_graph_set_values(kcuda_ctx *c, const kern_step_values *v);
void kcuda_graph_launch(kcuda_ctx *c);

/* loss (cuda_softmax_xent.cu) */
double kcuda_softmax_xent(kcuda_ctx *c, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale);   /* losses: device, correct: host memory; syncs */

/* reductions and optimizers (cuda_optim.cu) */
double kcuda_sumsq(kcuda_ctx *c, const float *x, int64_t n);            /* syncs */
int kcuda_has_nonfinite(kcuda_ctx *c, const float *x, int64_t n);       /* syncs */
void kcuda_sgd_update(kcuda_ctx *c, float *param, float *buf, const float *grad, int64_t n,
                     float lr, float momentum, float weight_decay, int nesterov, int first);
void kcuda_adamw_update(kcuda_ctx *c, float *param, float *m, float *v, const float *grad,
                       int64_t n, float lr, float beta1, float beta2, float eps,
                       float weight_decay, int64_t t);

/* convolution with cuDNN (cuda_conv.cu): plans (descriptors, algorithms) cached per shape */
size_t kcuda_conv2d_workspace(kcuda_ctx *c, const kern_conv_shape *s);
void kcuda_conv2d_forward(kcuda_ctx *c, float *out, const float *in, const float *w,
                          const float *b, const kern_conv_shape *s, void *workspace);
void kcuda_conv2d_backward(kcuda_ctx *c, float *din, float *dw, float *db, const float *dout,
                           const float *in, const float *w, const kern_conv_shape *s,
                           void *workspace);

/* pooling (cuda_pool.cu) */
void kcuda_maxpool2d_forward(kcuda_ctx *c, float *out, int32_t *argmax, const float *in,
                             const kern_conv_shape *s);
void kcuda_maxpool2d_backward(kcuda_ctx *c, float *din, const float *dout, const int32_t *argmax,
                              const kern_conv_shape *s);
void kcuda_avgpool2d_forward(kcuda_ctx *c, float *out, const float *in, const kern_conv_shape *s);
void kcuda_avgpool2d_backward(kcuda_ctx *c, float *din, const float *dout,
                              const kern_conv_shape *s);

/* batch norm (cuda_batchnorm.cu); sums, red: device memory */
void kcuda_batchnorm_stats(kcuda_ctx *c, double *sums, const float *x, int B, int C, int HW);
void kcuda_batchnorm_forward(kcuda_ctx *c, float *out, float *mean_invstd, const float *x,
                             const float *gamma, const float *beta, const double *sums,
                             double count, float eps, float *running_mean, float *running_var,
                             float momentum, int B, int C, int HW);
void kcuda_batchnorm_forward_eval(kcuda_ctx *c, float *out, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, int B, int C, int HW);
void kcuda_batchnorm_backward_reduce(kcuda_ctx *c, double *red, const float *dout, const float *x,
                                     const float *mean_invstd, int B, int C, int HW);
void kcuda_batchnorm_backward(kcuda_ctx *c, float *din, const float *dout, const float *x,
                              const float *mean_invstd, const float *gamma, const double *red,
                              double count, int B, int C, int HW);

/* the GPU step without host round trips (cuda_step.cu): batch uploads on the copy stream,
 * dropout over rows, the optimizer's verdict and guarded updates, batch-norm parameter
 * gradients */
int kcuda_upload_reserve(kcuda_ctx *c, size_t bytes, char *err, size_t errlen);
void kcuda_upload(kcuda_ctx *c, int n, void *const dst[], const void *const host_src[],
                  const size_t bytes[]);
void kcuda_dropout_forward_rows(kcuda_ctx *c, float *out, uint8_t *mask, const float *in,
                                int64_t rows, int64_t row_elems, float p, uint64_t seed,
                                uint64_t step_id, int64_t first_row, int layer);
void kcuda_grad_stats(kcuda_ctx *c, double *gstate, const float *grads, int64_t n,
                      float clip_norm, int max_run, int64_t step);
void kcuda_sumsq_to(kcuda_ctx *c, double *sumsq, const float *grads, int64_t n);
void kcuda_grad_verdict_from(kcuda_ctx *c, double *gstate, const double *sumsq, float clip_norm,
                             int max_run, int64_t step);
void kcuda_sgd_update_guarded(kcuda_ctx *c, float *param, float *buf, const float *grad,
                              int64_t n, float lr, float momentum, float weight_decay,
                              int nesterov, const double *gstate, int64_t t_plus);
void kcuda_adamw_update_guarded(kcuda_ctx *c, float *param, float *m, float *v,
                                const float *grad, int64_t n, float lr, float beta1,
                                float beta2, float eps, float weight_decay,
                                const double *gstate, int64_t t_plus);
void kcuda_batchnorm_param_grads(kcuda_ctx *c, float *dgamma, float *dbeta, const double *red,
                                 int C);

/* device information (cuda_info.cu) */
int kcuda_device_name(kcuda_ctx *c, char *buf, size_t len);

/* language models (cuda_gpt.cu): same arguments as the kern_ functions of kernels.h */
size_t kcuda_gpt_workspace(kcuda_ctx *c, int B, int T, int C, int NH, int V);
void kcuda_embedding_forward(kcuda_ctx *c, float *out, const int32_t *tokens, const float *wte,
                             const float *wpe, int B, int T, int C);
void kcuda_embedding_backward(kcuda_ctx *c, float *dwte, float *dwpe, const float *dout,
                              const int32_t *tokens, int B, int T, int C, int V,
                              void *workspace);
void kcuda_layernorm_forward(kcuda_ctx *c, float *out, float *mean_rstd, const float *x,
                             const float *w, const float *b, int N, int C, float eps);
void kcuda_layernorm_backward(kcuda_ctx *c, float *din, float *dw, float *db, const float *dout,
                              const float *x, const float *mean_rstd, const float *w, int N,
                              int C, void *workspace);
void kcuda_attention_forward(kcuda_ctx *c, float *out, float *att, const float *qkv, int B,
                             int T, int C, int NH, void *workspace);
void kcuda_attention_backward(kcuda_ctx *c, float *dqkv, const float *dout, const float *qkv,
                              const float *att, int B, int T, int C, int NH, void *workspace);
void kcuda_attention_decode(kcuda_ctx *c, float *out, const float *q, const float *kcache,
                            const float *vcache, int B, int t, int Tmax, int C, int NH,
                            void *workspace);
void kcuda_softmax_xent_acc(kcuda_ctx *c, float *losses, float *dlogits, double *acc,
                            const float *logits, const int32_t *labels, int B, int C, int ld,
                            float grad_scale);

#ifdef __cplusplus
}
#endif


#endif
