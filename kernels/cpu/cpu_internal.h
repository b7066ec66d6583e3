/* cpu_internal.h: the CPU backend's ops, shared by the files of cpu/ and its table
 * (cpu_ops.c); nobody else sees them.
 *
 * One op per line, typed by kern_backend.h (kern_X_fn: the arguments of kernels.h's kern_X with
 * the context as `void *`: the context holds the thread count, set process-wide at creation,
 * and the GEMM library's state that kcpu_gemm reads).  Nothing here allocates except kcpu_create,
 * kcpu_alloc and kcpu_marks_create. */
#ifndef HARNESS_KERNELS_CPU_INTERNAL_H
#define HARNESS_KERNELS_CPU_INTERNAL_H

#include "cpu_backend.h"

/* KCPU_SIMD on a hot element-wise loop: gcc compiles it three times - for AVX-512
 * (x86-64-v4), AVX2 (x86-64-v3) and the x86-64 baseline - and the loader picks one by the
 * CPU's features (function multiversioning, an ifunc): the loops run as wide as the CPU
 * allows without a -march that would exclude older CPUs, and without a table of CPU models.
 * Every clone computes the same bits: kernels/CMakeLists.txt builds with -ffp-contract=off
 * (no fma contraction) and without reassociation (reductions keep the order written), so the
 * vector width changes only how many elements go at once.  Other compilers (clang builds the
 * sanitizer and fuzzing targets) and other architectures get the plain function. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define KCPU_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KCPU_SIMD
#endif

/* context, memory, copies, trace marks (cpu_context.c) */
kern_create_fn kcpu_create;
kern_destroy_fn kcpu_destroy;
kern_alloc_fn kcpu_alloc;   /* 64-byte aligned, zeroed; also kern_alloc_host */
kern_free_fn kcpu_free;
kern_to_device_fn kcpu_to_device;
kern_to_host_fn kcpu_to_host;
kern_upload_fn kcpu_upload;
kern_download_fn kcpu_download;
kern_download_fence_fn kcpu_download_fence;
kern_sync_fn kcpu_download_wait;
kern_sync_fn kcpu_sync;
kern_sync_fn kcpu_check;
/* the CUDA graph's contract emulated (cpu_context.c): ops queued between begin and end run at
 * once but take their step-varying values from what kcpu_graph_set_values set (at any time
 * before, also before begin); launch consumes the recording (one per step) */
kern_graph_begin_fn kcpu_graph_begin;
kern_graph_begin_fn kcpu_graph_end;
kern_graph_set_values_fn kcpu_graph_set_values;
kern_graph_launch_fn kcpu_graph_launch;
/* the values a recorded op reads: the slot while recording, else NULL (use the arguments) */
const kern_step_values *kcpu_step_values(const void *c);
kern_marks_create_fn kcpu_marks_create;
kern_mark_fn kcpu_mark;
kern_marks_read_fn kcpu_marks_read;
kern_marks_free_fn kcpu_marks_free;

/* element-wise, fills, conversions, activations (cpu_elementwise.c) */
kern_fill_fn kcpu_fill;
kern_copy_fn kcpu_copy;
kern_scale_fn kcpu_scale;
kern_axpy_fn kcpu_axpy;
kern_u8_to_f32_fn kcpu_u8_to_f32;
kern_f32_normalize_fn kcpu_f32_normalize;
kern_act_forward_fn kcpu_relu_forward;
kern_act_backward_fn kcpu_relu_backward;
kern_act_forward_fn kcpu_gelu_forward;
kern_act_backward_fn kcpu_gelu_backward;

/* random numbers and dropout (cpu_random.c) */
kern_init_uniform_fn kcpu_init_uniform;
kern_init_normal_fn kcpu_init_normal;
kern_dropout_forward_fn kcpu_dropout_forward;
kern_dropout_backward_fn kcpu_dropout_backward;

/* linear layer (cpu_linear.c) */
kern_linear_forward_fn kcpu_linear_forward;
kern_linear_backward_fn kcpu_linear_backward;
kern_linear_backward_ex_fn kcpu_linear_backward_ex;
kern_linear_act_forward_fn kcpu_linear_act_forward;

/* losses (cpu_softmax_xent.c) */
kern_softmax_xent_fn kcpu_softmax_xent;
kern_softmax_xent_acc_fn kcpu_softmax_xent_acc;

/* reductions and optimizers (cpu_optim.c) */
kern_sumsq_fn kcpu_sumsq;
kern_has_nonfinite_fn kcpu_has_nonfinite;
kern_sgd_update_fn kcpu_sgd_update;
kern_adamw_update_fn kcpu_adamw_update;

/* convolution: im2col + GEMM per image and group, or oneDNN's convolution (cpu_conv.c) */
kern_conv2d_workspace_fn kcpu_conv2d_workspace;
kern_conv2d_library_fn kcpu_conv2d_library;
kern_conv2d_forward_fn kcpu_conv2d_forward;
kern_conv2d_backward_fn kcpu_conv2d_backward;

/* convolution through oneDNN's convolution primitives where they are faster than im2col
 * (cpu_conv_dnnl.c, builds with oneDNN only).  The state (engine, the primitives kept per
 * shape, the workspace promised per geometry) belongs to the context.  cpu_conv.c asks first:
 * kcpu_conv_dnnl_workspace answers the bytes for s (at least `im2col`), the passes return 0
 * when they ran the shape, -1 when it is im2col's. */
typedef struct kcpu_conv_lib kcpu_conv_lib;
int kcpu_conv_lib_create(kcpu_conv_lib **out, kern_cpu_conv mode, int bf16, char *err,
                         size_t errlen);
void kcpu_conv_lib_destroy(kcpu_conv_lib *l);
kcpu_conv_lib *kcpu_conv_state(void *c);
size_t kcpu_conv_dnnl_workspace(kcpu_conv_lib *l, const kern_conv_shape *s, size_t im2col);
int kcpu_conv_dnnl_routes(kcpu_conv_lib *l, const kern_conv_shape *s);   /* 1: oneDNN runs s */
int kcpu_conv_dnnl_forward(kcpu_conv_lib *l, float *out, const float *in, const float *w,
                           const float *b, const kern_conv_shape *s, void *workspace);
int kcpu_conv_dnnl_backward(kcpu_conv_lib *l, float *din, float *dw, float *db,
                            const float *dout, const float *in, const float *w,
                            const kern_conv_shape *s, void *workspace);

/* max and average pooling (cpu_pool.c) */
kern_maxpool2d_forward_fn kcpu_maxpool2d_forward;
kern_maxpool2d_backward_fn kcpu_maxpool2d_backward;
kern_avgpool2d_forward_fn kcpu_avgpool2d_forward;
kern_avgpool2d_backward_fn kcpu_avgpool2d_backward;

/* batch norm in synchronisable steps (cpu_batchnorm.c) */
kern_batchnorm_stats_fn kcpu_batchnorm_stats;
kern_batchnorm_forward_fn kcpu_batchnorm_forward;
kern_batchnorm_forward_eval_fn kcpu_batchnorm_forward_eval;
kern_batchnorm_backward_reduce_fn kcpu_batchnorm_backward_reduce;
kern_batchnorm_backward_fn kcpu_batchnorm_backward;

/* the GPU step's device-side forms (cpu_step.c): dropout over rows, the optimizer's verdict
 * and guarded updates, batch-norm parameter gradients */
kern_dropout_forward_rows_fn kcpu_dropout_forward_rows;
kern_grad_stats_fn kcpu_grad_stats;
kern_sumsq_to_fn kcpu_sumsq_to;
kern_grad_verdict_from_fn kcpu_grad_verdict_from;
kern_sgd_update_guarded_fn kcpu_sgd_update_guarded;
kern_adamw_update_guarded_fn kcpu_adamw_update_guarded;
kern_batchnorm_param_grads_fn kcpu_batchnorm_param_grads;

/* language models (cpu_embedding.c, cpu_layernorm.c, cpu_attention.c with the workspace size) */
kern_gpt_workspace_fn kcpu_gpt_workspace;
kern_embedding_forward_fn kcpu_embedding_forward;
kern_embedding_backward_fn kcpu_embedding_backward;
kern_layernorm_forward_fn kcpu_layernorm_forward;
kern_layernorm_backward_fn kcpu_layernorm_backward;
kern_attention_forward_fn kcpu_attention_forward;
kern_attention_backward_fn kcpu_attention_backward;
kern_attention_decode_fn kcpu_attention_decode;

/* GEMMs (cpu_gemm.c), row-major, ta/tb: A/B stored transposed.  kcpu_gemm follows the
 * context's precision (bf16 inputs with fp32 accumulation when run.precision=bf16 and the CPU
 * has AMX; alpha = 1, beta 0 or 1): linear and convolution.  kcpu_sgemm is always fp32.
 * The state (oneDNN engine, kept primitives, bf16 buffers) belongs to the context. */
typedef struct kcpu_gemm_lib kcpu_gemm_lib;
int kcpu_gemm_create(kcpu_gemm_lib **out, int threads, int bf16, char *err, size_t errlen);
void kcpu_gemm_destroy(kcpu_gemm_lib *g);
kcpu_gemm_lib *kcpu_gemm_state(void *c);
void kcpu_gemm(void *c, int ta, int tb, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
void kcpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);

#endif
