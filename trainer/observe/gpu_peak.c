/* gpu_peak: the table behind MFU.  Matched by substring of the CUDA device name, first match
 * wins (so the more specific names come first). */
#include "gpu_peak.h"

#include <string.h>

static const struct {
    const char *name;
    double tflops;
} peaks[] = {
    {"GH200", 989.4},       /* Hopper, as H100 SXM */
    {"H200", 989.4},        /* H200 SXM: same tensor cores and clocks as H100 SXM */
    {"H100 PCIe", 756.0},
    {"H100 NVL", 835.0},
    {"H100", 989.4},        /* H100 SXM5 */
    {"H800", 989.4},
    {"B200", 2250.0},
    {"A100", 312.0},
    {"A800", 312.0},
    {"A10G", 70.0},
    {"A10", 125.0},
    {"L40S", 362.05},
    {"L40", 181.05},
    {"L4", 121.0},
    {"RTX 4090", 165.2},
    {"RTX 3090", 71.0},
};

double gpu_peak_bf16_flops(const char *device_name) {
    if (!device_name || !*device_name) return 0.0;
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
        if (strstr(device_name, peaks[i].name)) return peaks[i].tflops * 1e12;
    return 0.0;
}
