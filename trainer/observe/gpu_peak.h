/* gpu_peak: the dense bf16 tensor-core peak of known GPUs, for model FLOP utilisation (MFU).
 * Numbers are the vendors' published dense (not sparse) bf16 figures at boost clock. */
#ifndef HARNESS_GPU_PEAK_H
#define HARNESS_GPU_PEAK_H

/* FLOP/s of the GPU whose name is given ("NVIDIA H200", "NVIDIA H100 80GB HBM3", ...), or 0
 * when it is not in the table. */
double gpu_peak_bf16_flops(const char *device_name);

#endif
