/* cpu_backend.h: the CPU backend as kernels.c sees it: its table of functions (kcpu_ops,
 * defined in cpu_ops.c) and what the CPU answers without a context.
 *
 * Memory is ordinary host memory; GEMMs go to oneDNN (cpu_gemm.c; OpenBLAS in a build without
 * it), element-wise loops are plain C that gcc vectorises, every op has finished when it returns.  The ops
 * themselves are internal to cpu/ (cpu_internal.h). */
#ifndef HARNESS_KERNELS_CPU_BACKEND_H
#define HARNESS_KERNELS_CPU_BACKEND_H

#include "kern_backend.h"

/* Every entry set except the CUDA-only ones (memory_info, device_name, native_stream,
 * upload_reserve, upload_settle, get_counters, graph_*): NULL. */
extern const kern_backend_ops kcpu_ops;

/* kern_blas_coretype_hint (kernels.h): the OPENBLAS_CORETYPE worth setting, or NULL. */
const char *kcpu_blas_coretype_hint(void);
/* kern_cpu_describe and kern_cpu_bf16_fast (kernels.h), from cpu_gemm.c */
void kcpu_gemm_describe(char *buf, size_t len);
/* Which clone of the element-wise loops this CPU runs (KCPU_SIMD, cpu_internal.h), e.g.
 * "loops x86-64-v4 (AVX-512)"; from cpu_elementwise.c */
const char *kcpu_simd_level(void);
int kcpu_gemm_bf16_fast(void);

#endif
