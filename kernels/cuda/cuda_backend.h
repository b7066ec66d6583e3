/* cuda_backend.h: the CUDA backend as kernels.c sees it (in builds with HARNESS_HAVE_CUDA):
 * its table of functions (kcuda_ops, defined in cuda_ops.cu) and the device count, which needs
 * no context.
 *
 * The context holds the device, the compute stream every op runs on, the cuBLAS, cuBLASLt
 * and cuDNN handles and the first recorded error; all pointers the ops take are device memory
 * unless kernels.h says otherwise.  Ops are asynchronous on the stream; errors are recorded
 * and reported by kern_check / kern_sync.  The per-element math comes from elementwise.h and
 * philox.h (KERN_HD functions) so that CPU and CUDA agree; kern_init_* reproduce the CPU's
 * bits.  The ops themselves are internal to cuda/ (cuda_internal.h).  Extern "C" so that the
 * .cu files (compiled as C++) define C-callable symbols. */
#ifndef HARNESS_KERNELS_CUDA_BACKEND_H
#define HARNESS_KERNELS_CUDA_BACKEND_H

#include "kern_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every entry set. */
extern const kern_backend_ops kcuda_ops;

/* Number of usable CUDA devices (0 when there is no driver or device). */
int kcuda_device_count(void);
/* kern_cuda_device_status (kernels.h): the count, or 0 / -1 with why there is none. */
int kcuda_device_status(char *why, size_t len);

#ifdef __cplusplus
}
#endif

#endif
