/* comm_gpu_choose: NCCL or MPI staged, by GPU UUID (comm_gpu_choose.h). */
#include "comm_gpu_choose.h"

#include <string.h>

comm_gpu_backend comm_gpu_choose(comm_gpu_backend asked, int nccl_built,
                                 const unsigned char *uuids, int world, int *a, int *b) {
    *a = *b = -1;
    for (int j = 1; j < world && *a < 0; j++)
        for (int i = 0; i < j; i++)
            if (memcmp(uuids + 16 * i, uuids + 16 * j, 16) == 0) {
                *a = i;
                *b = j;
                break;
            }
    int shared = *a >= 0;
    switch (asked) {
    case COMM_GPU_AUTO: return nccl_built && !shared ? COMM_GPU_NCCL : COMM_GPU_MPI_STAGED;
    case COMM_GPU_NCCL: return shared ? COMM_GPU_NONE : COMM_GPU_NCCL;
    case COMM_GPU_MPI_STAGED: return COMM_GPU_MPI_STAGED;
    default: return COMM_GPU_NONE;
    }
}
