/* comm_gpu_wire.cu: fp32 <-> bf16 conversions of device gradient buckets on a stream (comm
 * internal).  Both return the launch's cudaError_t; n <= 0 launches nothing. */
#ifndef HARNESS_COMM_GPU_WIRE_H
#define HARNESS_COMM_GPU_WIRE_H

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* dst[i] = src[i] rounded to bf16 (nearest even; NaN stays NaN) */
cudaError_t comm_wire_to_bf16(const float *src, uint16_t *dst, int64_t n, cudaStream_t stream);
/* dst[i] = float(src[i]) / divisor */
cudaError_t comm_wire_from_bf16(const uint16_t *src, float *dst, int64_t n, float divisor,
                                cudaStream_t stream);
#ifdef __cplusplus
}
#endif

#endif
