/* bf16 on the wire for device gradients (comm.grad_dtype=bf16): the two conversions around
 * each NCCL bucket, on comm's stream.  Rounding to nearest even with NaN kept NaN, exactly as
 * the host path's f32_to_bf16 (comm_internal.h), so a bucket travels as the same bits whichever
 * backend sends it.  Memory-bound; grid-stride loops, one launch per call. */
#include <stdint.h>

#include "comm_gpu_wire.h"

__device__ static inline uint16_t to_bf16(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__global__ static void k_to_bf16(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = to_bf16(src[i]);
}

/* IEEE division (nvcc's default -prec-div=true), as the host path divides. */
__global__ static void k_from_bf16(const uint16_t *src, float *dst, int64_t n, float divisor) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __uint_as_float((uint32_t)src[i] << 16) / divisor;
}

static unsigned blocks_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : b);
}

extern "C" cudaError_t comm_wire_to_bf16(const float *src, uint16_t *dst, int64_t n,
                                         cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    k_to_bf16<<<blocks_for(n), 256, 0, stream>>>(src, dst, n);
    return cudaGetLastError();
}

extern "C" cudaError_t comm_wire_from_bf16(const uint16_t *src, float *dst, int64_t n,
                                           float divisor, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    k_from_bf16<<<blocks_for(n), 256, 0, stream>>>(src, dst, n, divisor);
    return cudaGetLastError();
}
