/* cpu_backend.h: the CPU backend of kernels.h (internal; callers use kern_*).
 *
 * Same ops and argument order as kernels.h, with the backend's own context in place of
 * kern_ctx.  Memory is ordinary host memory; GEMMs go to oneDNN (cpu_gemm.c; OpenBLAS in a
 * build without it), element-wise loops are plain C that gcc vectorises.  Nothing here allocates except
 * kcpu_alloc and kcpu_create. */
#ifndef HARNESS_KERNELS_CPU_BACKEND_H
#define HARNESS_KERNELS_CPU_BACKEND_H

#include "kernels.h"

typedef struct kcpu_ctx kcpu_ctx;

/* context and memory (cpu_context.c) */
int kcpu_create(const kern_options *opt, kcpu_ctx **out, char *err, size_t errlen);
void kcpu_destroy(kcpu_ctx *c);
void *kcpu_alloc(kcpu_ctx *c, size_t bytes);   /* 64-byte aligned, zeroed */
void kcpu_free(kcpu_ctx *c, void *p);
const char *kcpu_blas_coretype_hint(void);
void kcpu_to_device(kcpu_ctx *c, void *dst, const void *host_src, size_t bytes);
void kcpu_to_host(kcpu_ctx *c, void *host_dst, const void *src, size_t bytes);
int kcpu_sync(kcpu_ctx *c, char *err, size_t errlen);
int kcpu_check(kcpu_ctx *c, char *err, size_t errlen);
/* The host's monotonic clock in seconds (trace marks). */
double kcpu_now(void);

/* element-wise, fills, conversions, activations (cpu_elementwise.c) */
void kcpu_fill(kcpu_ctx *c, float *x, float value, int64_t n);
void kcpu_copy(kcpu_ctx *c, float *dst, const float *src, int64_t n);
void kcpu_scale(kcpu_ctx *c, float *x, float alpha, int64_t n);
void kcpu_axpy(kcpu_ctx *c, float *y, float alpha, const float *x, int64_t n);
void kcpu_u8_to_f32(kcpu_ctx *c, float *dst, const uint8_t *src, int64_t n,
                    float in_scale, float mean, float std);
void kcpu_f32_normalize(kcpu_ctx *c, float *dst, const float *src, int64_t n,
                        float mean, float std);
void kcpu_relu_forward(kcpu_ctx *c, float *out, const float *in, int64_t n);
void kcpu_relu_backward(kcpu_ctx *c, float *din, const float *dout, const float *in, int64_t n);
void kcpu_gelu_forward(kcpu_ctx *c, float *out, const float *in, int64_t n);
void kcpu_gelu_backward(kcpu_ctx *c, float *din, const float *dout, const float *in, int64_t n);

/* random numbers and dropout (cpu_random.c) */
void kcpu_init_uniform(kcpu_ctx *c, float *x, int64_t n, float lo, float hi,
                       uint64_t seed, uint64_t stream_id);
void kcpu_init_normal(kcpu_ctx *c, float *x, int64_t n, float mean, float std,
                      uint64_t seed, uint64_t stream_id);
void kcpu_dropout_forward(kcpu_ctx *c, float *out, uint8_t *mask, const float *in, int64_t n,
                          float p, uint64_t seed, uint64_t stream_id);
void kcpu_dropout_backward(kcpu_ctx *c, float *din, const float *dout, const uint8_t *mask,
                           int64_t n, float p);

/* linear layer (cpu_linear.c) */
void kcpu_linear_forward(kcpu_ctx *c, float *out, const float *in, const float *w,
                         const float *b, int B, int I, int O);
void kcpu_linear_backward(kcpu_ctx *c, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int B, int I, int O);
void kcpu_linear_backward_ex(kcpu_ctx *c, float *din, float *dw, float *db, const float *dout,
                             const float *in, const float *w, int B, int I, int O, int overwrite);
void kcpu_linear_act_forward(kcpu_ctx *c, float *pre, float *out, const float *in,
                             const float *w, const float *b, int B, int I, int O, kern_act act);

/* loss (cpu_softmax_xent.c) */
double kcpu_softmax_xent(kcpu_ctx *c, float *losses, float *dlogits, int64_t *correct,
                         const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale);

/* reductions and optimizers (cpu_optim.c) */
double kcpu_sumsq(kcpu_ctx *c, const float *x, int64_t n);
int kcpu_has_nonfinite(kcpu_ctx *c, const float *x, int64_t n);
void kcpu_sgd_update(kcpu_ctx *c, float *param, float *buf, const float *grad, int64_t n,
                     float lr, float momentum, float weight_decay, int nesterov, int first);
void kcpu_adamw_update(kcpu_ctx *c, float *param, float *m, float *v, const float *grad,
                       int64_t n, float lr, float beta1, float beta2, float eps,
                       float weight_decay, int64_t t);

/* convolution: im2col + GEMM per image and group (cpu_conv.c) */
size_t kcpu_conv2d_workspace(kcpu_ctx *c, const kern_conv_shape *s);
void kcpu_conv2d_forward(kcpu_ctx *c, float *out, const float *in, const float *w,
                         const float *b, const kern_conv_shape *s, void *workspace);
void kcpu_conv2d_backward(kcpu_ctx *c, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, const kern_conv_shape *s,
                          void *workspace);

/* max and average pooling (cpu_pool.c) */
void kcpu_maxpool2d_forward(kcpu_ctx *c, float *out, int32_t *argmax, const float *in,
                            const kern_conv_shape *s);
void kcpu_maxpool2d_backward(kcpu_ctx *c, float *din, const float *dout, const int32_t *argmax,
                             const kern_conv_shape *s);
void kcpu_avgpool2d_forward(kcpu_ctx *c, float *out, const float *in, const kern_conv_shape *s);
void kcpu_avgpool2d_backward(kcpu_ctx *c, float *din, const float *dout,
                             const kern_conv_shape *s);

/* batch norm in synchronisable steps (cpu_batchnorm.c) */
void kcpu_batchnorm_stats(kcpu_ctx *c, double *sums, const float *x, int B, int C, int HW);
void kcpu_batchnorm_forward(kcpu_ctx *c, float *out, float *mean_invstd, const float *x,
                            const float *gamma, const float *beta, const double *sums,
                            double count, float eps, float *running_mean, float *running_var,
                            float momentum, int B, int C, int HW);
void kcpu_batchnorm_forward_eval(kcpu_ctx *c, float *out, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float eps, int B, int C, int HW);
void kcpu_batchnorm_backward_reduce(kcpu_ctx *c, double *red, const float *dout, const float *x,
                                    const float *mean_invstd, int B, int C, int HW);
void kcpu_batchnorm_backward(kcpu_ctx *c, float *din, const float *dout, const float *x,
                             const float *mean_invstd, const float *gamma, const double *red,
                             double count, int B, int C, int HW);

/* the GPU step's device-side forms (cpu_step.c): dropout over rows, the optimizer's verdict and
 * guarded updates, batch-norm parameter gradients */
void kcpu_dropout_forward_rows(kcpu_ctx *c, float *out, uint8_t *mask, const float *in,
                               int64_t rows, int64_t row_elems, float p, uint64_t seed,
                               uint64_t step_id, int64_t first_row, int layer);
void kcpu_grad_stats(kcpu_ctx *c, double *gstate, const float *grads, int64_t n, float clip_norm,
                     int max_run, int64_t step);
void kcpu_grad_verdict_from(kcpu_ctx *c, double *gstate, const double *sumsq, float clip_norm,
                            int max_run, int64_t step);
void kcpu_sgd_update_guarded(kcpu_ctx *c, float *param, float *buf, const float *grad, int64_t n,
                             float lr, float momentum, float weight_decay, int nesterov,
                             const double *gstate, int64_t t_plus);
void kcpu_adamw_update_guarded(kcpu_ctx *c, float *param, float *m, float *v, const float *grad,
                               int64_t n, float lr, float beta1, float beta2, float eps,
                               float weight_decay, const double *gstate, int64_t t_plus);
void kcpu_batchnorm_param_grads(kcpu_ctx *c, float *dgamma, float *dbeta, const double *red,
                                int C);

/* language models: same arguments as the kern_ functions of kernels.h (cpu_embedding.c,
 * cpu_layernorm.c, cpu_attention.c with the workspace size; the loss in cpu_softmax_xent.c) */
size_t kcpu_gpt_workspace(kcpu_ctx *c, int B, int T, int C, int NH, int V);
void kcpu_embedding_forward(kcpu_ctx *c, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C);
void kcpu_embedding_backward(kcpu_ctx *c, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V, void *workspace);
void kcpu_layernorm_forward(kcpu_ctx *c, float *out, float *mean_rstd, const float *x,
                            const float *w, const float *b, int N, int C, float eps);
void kcpu_layernorm_backward(kcpu_ctx *c, float *din, float *dw, float *db, const float *dout,
                             const float *x, const float *mean_rstd, const float *w, int N,
                             int C, void *workspace);
void kcpu_attention_forward(kcpu_ctx *c, float *out, float *att, const float *qkv, int B,
                            int T, int C, int NH, void *workspace);
void kcpu_attention_backward(kcpu_ctx *c, float *dqkv, const float *dout, const float *qkv,
                             const float *att, int B, int T, int C, int NH, void *workspace);
void kcpu_attention_decode(kcpu_ctx *c, float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int t, int Tmax, int C, int NH,
                           void *workspace);
void kcpu_softmax_xent_acc(kcpu_ctx *c, float *losses, float *dlogits, double *acc,
                           const float *logits, const int32_t *labels, int B, int C, int ld,
                           float grad_scale);


/* GEMMs (cpu_gemm.c), row-major, ta/tb: A/B stored transposed.  kcpu_gemm follows the
 * context's precision (bf16 inputs with fp32 accumulation when run.precision=bf16 and the CPU
 * has AMX; alpha = 1, beta 0 or 1): linear and convolution.  kcpu_sgemm is always fp32.
 * The state (oneDNN engine, kept primitives, bf16 buffers) belongs to the context. */
typedef struct kcpu_gemm_lib kcpu_gemm_lib;
int kcpu_gemm_create(kcpu_gemm_lib **out, int threads, int bf16, char *err, size_t errlen);
void kcpu_gemm_destroy(kcpu_gemm_lib *g);
kcpu_gemm_lib *kcpu_gemm_state(kcpu_ctx *c);
int kcpu_gemm_bf16_fast(void);
void kcpu_gemm_describe(char *buf, size_t len);
void kcpu_gemm(kcpu_ctx *c, int ta, int tb, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
void kcpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);

#endif
