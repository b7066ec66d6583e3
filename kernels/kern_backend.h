/* kern_backend.h: what a backend gives the dispatcher (internal to kernels/; callers use
 * kernels.h).
 *
 * A backend is one const table of functions, kern_backend_ops: cpu/ defines kcpu_ops
 * (cpu_ops.c), cuda/ defines kcuda_ops (cuda_ops.cu).  kern_create picks the table and keeps
 * the backend's own context (`be`, created by the table's `create`); every kern_* call of
 * kernels.h is then k->ops->op(k->be, ...) in kernels.c.  Each entry has the arguments of the
 * kern_* function of the same name, with the backend's context in place of kern_ctx; their
 * meaning (shapes, accumulate or overwrite, ...) is documented once, in kernels.h.
 *
 * The type of each entry is named (kern_X_fn for kern_X; ops with the same arguments share
 * one, e.g. relu and gelu) so that a backend declares its function in one line,
 * `kern_fill_fn kcpu_fill;`, and the compiler checks the definition against it.
 * Entries for what only some backends have may be NULL; kernels.c then does what kernels.h
 * promises for a backend without it (the list is at the table).  Marks (trace timestamps) are
 * a backend's own object, `void *`, that kernels.c wraps in kern_marks. */
#ifndef HARNESS_KERN_BACKEND_H
#define HARNESS_KERN_BACKEND_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* context, memory and copies */
typedef int kern_create_fn(const kern_options *opt, void **be, char *err, size_t errlen);
typedef void kern_destroy_fn(void *be);
typedef void *kern_alloc_fn(void *be, size_t bytes);
typedef void kern_free_fn(void *be, void *p);
typedef int kern_memory_info_fn(void *be, size_t *free_bytes, size_t *total_bytes);
typedef int kern_device_name_fn(void *be, char *buf, size_t len);
typedef void *kern_native_stream_fn(void *be);
typedef void kern_to_device_fn(void *be, void *dst, const void *host_src, size_t bytes);
typedef void kern_to_host_fn(void *be, void *host_dst, const void *src, size_t bytes);
typedef int kern_upload_reserve_fn(void *be, size_t bytes, char *err, size_t errlen);
typedef void kern_upload_fn(void *be, int n, void *const dst[], const void *const host_src[],
                            const size_t bytes[]);
typedef void kern_upload_settle_fn(void *be);
typedef void kern_download_fn(void *be, int n, void *const host_dst[], const void *const src[],
                              const size_t bytes[]);
typedef void kern_download_fence_fn(void *be);
typedef int kern_sync_fn(void *be, char *err, size_t errlen);
typedef void kern_get_counters_fn(void *be, kern_counters *out);
typedef int kern_graph_begin_fn(void *be, char *err, size_t errlen);
typedef void kern_graph_set_values_fn(void *be, const kern_step_values *v);
typedef void kern_graph_launch_fn(void *be);
typedef void *kern_marks_create_fn(void *be, int n);
typedef void kern_mark_fn(void *be, void *marks, int i);
typedef int kern_marks_read_fn(void *be, void *marks, int n, double *seconds);
typedef void kern_marks_free_fn(void *be, void *marks);

/* element-wise, conversions, random numbers, activations, dropout */
typedef void kern_fill_fn(void *be, float *x, float value, int64_t n);
typedef void kern_copy_fn(void *be, float *dst, const float *src, int64_t n);
typedef void kern_scale_fn(void *be, float *x, float alpha, int64_t n);
typedef void kern_axpy_fn(void *be, float *y, float alpha, const float *x, int64_t n);
typedef void kern_u8_to_f32_fn(void *be, float *dst, const uint8_t *src, int64_t n,
                               float in_scale, float mean, float std);
typedef void kern_f32_normalize_fn(void *be, float *dst, const float *src, int64_t n,
                                   float mean, float std);
typedef void kern_init_uniform_fn(void *be, float *x, int64_t n, float lo, float hi,
                                  uint64_t seed, uint64_t stream_id);
typedef void kern_init_normal_fn(void *be, float *x, int64_t n, float mean, float std,
                                 uint64_t seed, uint64_t stream_id);
typedef void kern_act_forward_fn(void *be, float *out, const float *in, int64_t n);
typedef void kern_act_backward_fn(void *be, float *din, const float *dout, const float *in,
                                  int64_t n);
typedef void kern_dropout_forward_fn(void *be, float *out, uint8_t *mask, const float *in,
                                     int64_t n, float p, uint64_t seed, uint64_t stream_id);
typedef void kern_dropout_backward_fn(void *be, float *din, const float *dout,
                                      const uint8_t *mask, int64_t n, float p);
typedef void kern_dropout_forward_rows_fn(void *be, float *out, uint8_t *mask, const float *in,
                                          int64_t rows, int64_t row_elems, float p,
                                          uint64_t seed, uint64_t step_id, int64_t first_row,
                                          int layer);

/* linear layers */
typedef void kern_linear_forward_fn(void *be, float *out, const float *in, const float *w,
                                    const float *b, int B, int I, int O);
typedef void kern_linear_backward_fn(void *be, float *din, float *dw, float *db,
                                     const float *dout, const float *in, const float *w, int B,
                                     int I, int O);
typedef void kern_linear_backward_ex_fn(void *be, float *din, float *dw, float *db,
                                        const float *dout, const float *in, const float *w,
                                        int B, int I, int O, int overwrite);
typedef void kern_linear_act_forward_fn(void *be, float *pre, float *out, const float *in,
                                        const float *w, const float *b, int B, int I, int O,
                                        kern_act act);

/* loss, reductions, optimizer updates and their device-side verdict */
typedef double kern_softmax_xent_fn(void *be, float *losses, float *dlogits, int64_t *correct,
                                    const float *logits, const int32_t *labels, int B, int C,
                                    float grad_scale);
typedef void kern_softmax_xent_acc_fn(void *be, float *losses, float *dlogits, double *acc,
                                      const float *logits, const int32_t *labels, int B, int C,
                                      int ld, float grad_scale);
typedef double kern_sumsq_fn(void *be, const float *x, int64_t n);
typedef int kern_has_nonfinite_fn(void *be, const float *x, int64_t n);
typedef void kern_sgd_update_fn(void *be, float *param, float *buf, const float *grad,
                                int64_t n, float lr, float momentum, float weight_decay,
                                int nesterov, int first);
typedef void kern_adamw_update_fn(void *be, float *param, float *m, float *v,
                                  const float *grad, int64_t n, float lr, float beta1,
                                  float beta2, float eps, float weight_decay, int64_t t);
typedef void kern_grad_stats_fn(void *be, double *gstate, const float *grads, int64_t n,
                                float clip_norm, int max_run, int64_t step);
typedef void kern_sumsq_to_fn(void *be, double *sumsq, const float *grads, int64_t n);
typedef void kern_grad_verdict_from_fn(void *be, double *gstate, const double *sumsq,
                                       float clip_norm, int max_run, int64_t step);
typedef void kern_sgd_update_guarded_fn(void *be, float *param, float *buf, const float *grad,
                                        int64_t n, float lr, float momentum,
                                        float weight_decay, int nesterov, const double *gstate,
                                        int64_t t_plus);
typedef void kern_adamw_update_guarded_fn(void *be, float *param, float *m, float *v,
                                          const float *grad, int64_t n, float lr, float beta1,
                                          float beta2, float eps, float weight_decay,
                                          const double *gstate, int64_t t_plus);

/* convolution and pooling */
typedef size_t kern_conv2d_workspace_fn(void *be, const kern_conv_shape *s);
typedef int kern_conv2d_library_fn(void *be, const kern_conv_shape *s);
typedef void kern_conv2d_forward_fn(void *be, float *out, const float *in, const float *w,
                                    const float *b, const kern_conv_shape *s, void *workspace);
typedef void kern_conv2d_backward_fn(void *be, float *din, float *dw, float *db,
                                     const float *dout, const float *in, const float *w,
                                     const kern_conv_shape *s, void *workspace);
typedef void kern_maxpool2d_forward_fn(void *be, float *out, int32_t *argmax, const float *in,
                                       const kern_conv_shape *s);
typedef void kern_maxpool2d_backward_fn(void *be, float *din, const float *dout,
                                        const int32_t *argmax, const kern_conv_shape *s);
typedef void kern_avgpool2d_forward_fn(void *be, float *out, const float *in,
                                       const kern_conv_shape *s);
typedef void kern_avgpool2d_backward_fn(void *be, float *din, const float *dout,
                                        const kern_conv_shape *s);

/* batch norm */
typedef void kern_batchnorm_stats_fn(void *be, double *sums, const float *x, int B, int C,
                                     int HW);
typedef void kern_batchnorm_forward_fn(void *be, float *out, float *mean_invstd,
                                       const float *x, const float *gamma, const float *beta,
                                       const double *sums, double count, float eps,
                                       float *running_mean, float *running_var,
                                       float momentum, int B, int C, int HW);
typedef void kern_batchnorm_forward_eval_fn(void *be, float *out, const float *x,
                                            const float *gamma, const float *beta,
                                            const float *running_mean,
                                            const float *running_var, float eps, int B, int C,
                                            int HW);
typedef void kern_batchnorm_backward_reduce_fn(void *be, double *red, const float *dout,
                                               const float *x, const float *mean_invstd, int B,
                                               int C, int HW);
typedef void kern_batchnorm_backward_fn(void *be, float *din, const float *dout,
                                        const float *x, const float *mean_invstd,
                                        const float *gamma, const double *red, double count,
                                        int B, int C, int HW);
typedef void kern_batchnorm_param_grads_fn(void *be, float *dgamma, float *dbeta,
                                           const double *red, int C);

/* language models */
typedef size_t kern_gpt_workspace_fn(void *be, int B, int T, int C, int NH, int V);
typedef void kern_embedding_forward_fn(void *be, float *out, const int32_t *tokens,
                                       const float *wte, const float *wpe, int B, int T, int C);
typedef void kern_embedding_backward_fn(void *be, float *dwte, float *dwpe, const float *dout,
                                        const int32_t *tokens, int B, int T, int C, int V,
                                        void *workspace);
typedef void kern_layernorm_forward_fn(void *be, float *out, float *mean_rstd, const float *x,
                                       const float *w, const float *b, int N, int C, float eps);
typedef void kern_layernorm_backward_fn(void *be, float *din, float *dw, float *db,
                                        const float *dout, const float *x,
                                        const float *mean_rstd, const float *w, int N, int C,
                                        void *workspace);
typedef void kern_attention_forward_fn(void *be, float *out, float *lse, const float *qkv,
                                       int B, int T, int C, int NH, void *workspace);
typedef void kern_attention_backward_fn(void *be, float *dqkv, const float *dout,
                                        const float *qkv, const float *out, const float *lse,
                                        int B, int T, int C, int NH, void *workspace);
typedef void kern_attention_decode_fn(void *be, float *out, const float *q, const float *kcache,
                                      const float *vcache, int B, int t, int Tmax, int C, int NH,
                                      void *workspace);

/* One backend.  NULL is allowed only where marked; kernels.c's answer for a NULL entry is
 * given in brackets (it is what kernels.h documents for the CPU). */
typedef struct {
    kern_backend backend;
    kern_create_fn *create;
    kern_destroy_fn *destroy;
    kern_alloc_fn *alloc;
    kern_free_fn *free;
    kern_alloc_fn *alloc_host;
    kern_free_fn *free_host;
    kern_memory_info_fn *memory_info;       /* NULL: [-1, zero bytes] */
    kern_device_name_fn *device_name;       /* NULL: [-1, empty name] */
    kern_native_stream_fn *native_stream;   /* NULL: [no stream] */
    kern_to_device_fn *to_device;
    kern_to_host_fn *to_host;
    kern_upload_reserve_fn *upload_reserve; /* NULL: [nothing to reserve, 0] */
    kern_upload_fn *upload;
    kern_upload_settle_fn *upload_settle;   /* NULL: [nothing to wait for] */
    kern_download_fn *download;
    kern_download_fence_fn *download_fence; /* NULL: [nothing to order] */
    kern_sync_fn *download_wait;            /* NULL: [0 at once]; any thread */
    kern_sync_fn *sync;
    kern_sync_fn *check;
    kern_get_counters_fn *get_counters;     /* NULL: [all zero] */
    /* CUDA graphs: all four NULL or none [begin/end fail].  graph_replays: 1 when a launch
     * replays the recording (CUDA; kern_graph_available), 0 when the entries only emulate
     * the contract and each launch needs a recording of its own (CPU, for tests) */
    int graph_replays;
    kern_graph_begin_fn *graph_begin;
    kern_graph_begin_fn *graph_end;
    kern_graph_set_values_fn *graph_set_values;
    kern_graph_launch_fn *graph_launch;
    kern_marks_create_fn *marks_create;
    kern_mark_fn *mark;
    kern_marks_read_fn *marks_read;
    kern_marks_free_fn *marks_free;

    kern_fill_fn *fill;
    kern_copy_fn *copy;
    kern_scale_fn *scale;
    kern_axpy_fn *axpy;
    kern_u8_to_f32_fn *u8_to_f32;
    kern_f32_normalize_fn *f32_normalize;
    kern_init_uniform_fn *init_uniform;
    kern_init_normal_fn *init_normal;
    kern_act_forward_fn *relu_forward;
    kern_act_backward_fn *relu_backward;
    kern_act_forward_fn *gelu_forward;
    kern_act_backward_fn *gelu_backward;
    kern_dropout_forward_fn *dropout_forward;
    kern_dropout_backward_fn *dropout_backward;
    kern_dropout_forward_rows_fn *dropout_forward_rows;

    kern_linear_forward_fn *linear_forward;
    kern_linear_backward_fn *linear_backward;
    kern_linear_backward_ex_fn *linear_backward_ex;
    kern_linear_act_forward_fn *linear_act_forward;

    kern_softmax_xent_fn *softmax_xent;
    kern_softmax_xent_acc_fn *softmax_xent_acc;
    kern_sumsq_fn *sumsq;
    kern_has_nonfinite_fn *has_nonfinite;
    kern_sgd_update_fn *sgd_update;
    kern_adamw_update_fn *adamw_update;
    kern_grad_stats_fn *grad_stats;
    kern_sumsq_to_fn *sumsq_to;
    kern_grad_verdict_from_fn *grad_verdict_from;
    kern_sgd_update_guarded_fn *sgd_update_guarded;
    kern_adamw_update_guarded_fn *adamw_update_guarded;

    kern_conv2d_workspace_fn *conv2d_workspace;
    kern_conv2d_library_fn *conv2d_library;   /* NULL: always the library's (cuDNN) */
    kern_conv2d_forward_fn *conv2d_forward;
    kern_conv2d_backward_fn *conv2d_backward;
    kern_maxpool2d_forward_fn *maxpool2d_forward;
    kern_maxpool2d_backward_fn *maxpool2d_backward;
    kern_avgpool2d_forward_fn *avgpool2d_forward;
    kern_avgpool2d_backward_fn *avgpool2d_backward;

    kern_batchnorm_stats_fn *batchnorm_stats;
    kern_batchnorm_forward_fn *batchnorm_forward;
    kern_batchnorm_forward_eval_fn *batchnorm_forward_eval;
    kern_batchnorm_backward_reduce_fn *batchnorm_backward_reduce;
    kern_batchnorm_backward_fn *batchnorm_backward;
    kern_batchnorm_param_grads_fn *batchnorm_param_grads;

    kern_gpt_workspace_fn *gpt_workspace;
    kern_embedding_forward_fn *embedding_forward;
    kern_embedding_backward_fn *embedding_backward;
    kern_layernorm_forward_fn *layernorm_forward;
    kern_layernorm_backward_fn *layernorm_backward;
    kern_attention_forward_fn *attention_forward;
    kern_attention_backward_fn *attention_backward;
    kern_attention_decode_fn *attention_decode;
} kern_backend_ops;

#ifdef __cplusplus
}
#endif

#endif
