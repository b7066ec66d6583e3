/* cuda_info.cu: what the trainer may ask about the device (its name, for the MFU table). */
#include <stdio.h>

#include "cuda_internal.h"

int kcuda_device_name(kcuda_ctx *c, char *buf, size_t len) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, c->device) != cudaSuccess) {
        if (len) buf[0] = '\0';
        return -1;
    }
    snprintf(buf, len, "%s", p.name);
    return 0;
}
