/* KERN_HD marks per-element math that both the CPU compiler and nvcc build: the same source,
 * so both backends round the same way. */
#ifndef HARNESS_KERN_HD_H
#define HARNESS_KERN_HD_H

#ifndef KERN_HD
#ifdef __CUDACC__
#define KERN_HD __host__ __device__
#else
#define KERN_HD
#endif
#endif

#endif
