/* cuda_info.cu: what the trainer may ask about the device (its name, for the MFU table). */
#include <stdio.h>

#include "cuda_internal.h"

int kcuda_device_name(void *ctx, char *buf, size_t len) {
    kcuda_ctx *c = (kcuda_ctx *)ctx;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, c->device) != cudaSuccess) {
        if (len) buf[0] = '\0';
        return -1;
    }
    snprintf(buf, len, "%s", p.name);
    return 0;
}
