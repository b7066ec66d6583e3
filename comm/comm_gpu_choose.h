/* Which GPU backend a job uses, decided from the GPUs themselves: every rank's device UUID
 * (cudaDeviceProp.uuid), gathered by comm_gpu_init.  Pure, no MPI and no CUDA, so the decision
 * is tested on the CPU with any layout (tests/comm/test_comm_gpu_choose.c).
 *
 * Counting visible devices cannot decide it: under Slurm's --gpus-per-task=1 (or
 * CUDA_VISIBLE_DEVICES per rank) every rank sees one GPU, device 0, yet each has its own;
 * and two ranks that see four GPUs may still pick the same one.  A UUID names the physical
 * GPU (or MIG instance) whatever a process can see. */
#ifndef HARNESS_COMM_GPU_CHOOSE_H
#define HARNESS_COMM_GPU_CHOOSE_H

#include "comm.h"

/* uuids[16 * world]: rank r's at uuids + 16*r.
 *   asked AUTO:       NCCL when nccl_built and no two ranks share a UUID, else MPI_STAGED
 *   asked NCCL:       NCCL, or COMM_GPU_NONE (refused) when two ranks share a GPU
 *   asked MPI_STAGED: MPI_STAGED
 * *a < *b receive the first pair of ranks (in rank order of *b) that share a GPU, or -1. */
comm_gpu_backend comm_gpu_choose(comm_gpu_backend asked, int nccl_built,
                                 const unsigned char *uuids, int world, int *a, int *b);

#endif
