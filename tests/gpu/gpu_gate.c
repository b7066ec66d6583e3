/* gpu_gate.c: see gpu_gate.h. */
#include "gpu_gate.h"

#include <stdio.h>

#include "kernels.h"

int gpu_gate(void) {
    char why[512];
    int devices = kern_cuda_device_status(why, sizeof why);
    if (devices < 0) {
        fprintf(stderr, "FAIL: %s\n", why);
        return 1;
    }
    if (devices == 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    return 0;
}
