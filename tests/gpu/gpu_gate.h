/* gpu_gate.h: how a GPU test starts.  gpu_gate() returns 0 when a CUDA device is usable;
 * otherwise it prints why and returns the exit status the test must end with: 77 (skipped)
 * when the machine has no GPU, 1 (failed) when a GPU is there but CUDA cannot use it (for
 * example a CUDA 13 runtime on an older driver) - that is never a skip. */
#ifndef HARNESS_TESTS_GPU_GATE_H
#define HARNESS_TESTS_GPU_GATE_H

int gpu_gate(void);

#endif
