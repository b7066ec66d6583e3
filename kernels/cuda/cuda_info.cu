/* cuda_info.cu: what the trainer may ask about the device (its name, for the MFU table). */
#include <stdio.h>

#include "cuda_internal.h"

int kcuda_device_name(void *ctx, char *buf, size_t len) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, c->device);
    if (e != cudaSuccess) {
        /* the name is optional (the MFU table falls back to none), but the failure must not
         * stay the runtime's last error, where the next kernel's launch check would report it
         * as that kernel's: cleared, and its reason given in buf instead of a name */
        (void)cudaGetLastError();
        if (len) snprintf(buf, len, "(unknown: cudaGetDeviceProperties: %s)", cudaGetErrorString(e));
        return -1;
    }
    snprintf(buf, len, "%s", p.name);
    return 0;
}
