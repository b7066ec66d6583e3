/* comm_gpu_choose: the GPU backend from every rank's GPU UUID (no MPI, no GPU needed).
 * The layouts are the ones people launch: Slurm's --gpus-per-task=1 (each rank sees one GPU,
 * device 0, but a different one), several ranks on one GPU, one node with all GPUs visible,
 * and a mix.  The old rule (local ranks > visible GPUs => MPI staged) got the first wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "comm_gpu_choose.h"

/* uuids[rank] = the GPU with id gpu[rank] on node node[rank] (a made-up but unique UUID) */
static void make_uuids(unsigned char *uuids, const int *node, const int *gpu, int world) {
    for (int r = 0; r < world; r++) {
        unsigned char *u = uuids + 16 * r;
        memset(u, 0, 16);
        u[0] = 0x47;   /* "GPU-" */
        u[5] = (unsigned char)node[r];
        u[9] = (unsigned char)gpu[r];
        u[15] = (unsigned char)(node[r] * 31 + gpu[r]);
    }
}

static void gpus_per_task_one(void **state) {
    (void)state;
    /* 2 nodes x 4 ranks; every rank sees only "device 0", each its own physical GPU */
    int node[8] = {0, 0, 0, 0, 1, 1, 1, 1}, gpu[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    unsigned char u[16 * 8];
    make_uuids(u, node, gpu, 8);
    int a, b;
    assert_int_equal(comm_gpu_choose(COMM_GPU_AUTO, 1, u, 8, &a, &b), COMM_GPU_NCCL);
    assert_int_equal(a, -1);
    assert_int_equal(b, -1);
    /* the same GPU index on another node is another GPU */
    assert_int_equal(comm_gpu_choose(COMM_GPU_NCCL, 1, u, 8, &a, &b), COMM_GPU_NCCL);
}

static void ranks_share_a_gpu(void **state) {
    (void)state;
    int node[2] = {0, 0}, gpu[2] = {0, 0};
    unsigned char u[32];
    make_uuids(u, node, gpu, 2);
    int a, b;
    assert_int_equal(comm_gpu_choose(COMM_GPU_AUTO, 1, u, 2, &a, &b), COMM_GPU_MPI_STAGED);
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    /* NCCL asked for explicitly is refused (NCCL cannot put two ranks on one GPU) */
    assert_int_equal(comm_gpu_choose(COMM_GPU_NCCL, 1, u, 2, &a, &b), COMM_GPU_NONE);
    assert_int_equal(comm_gpu_choose(COMM_GPU_MPI_STAGED, 1, u, 2, &a, &b), COMM_GPU_MPI_STAGED);
}

static void mixed_layout_names_first_pair(void **state) {
    (void)state;
    /* node 0 has ranks on GPUs 0,1,2; node 1 puts ranks 4 and 5 on its GPU 1 */
    int node[6] = {0, 0, 0, 1, 1, 1}, gpu[6] = {0, 1, 2, 0, 1, 1};
    unsigned char u[16 * 6];
    make_uuids(u, node, gpu, 6);
    int a, b;
    assert_int_equal(comm_gpu_choose(COMM_GPU_AUTO, 1, u, 6, &a, &b), COMM_GPU_MPI_STAGED);
    assert_int_equal(a, 4);
    assert_int_equal(b, 5);
}

static void without_nccl_and_single_rank(void **state) {
    (void)state;
    int node[4] = {0, 0, 0, 0}, gpu[4] = {0, 1, 2, 3};
    unsigned char u[16 * 4];
    make_uuids(u, node, gpu, 4);
    int a, b;
    /* a build without NCCL averages through MPI even with a GPU per rank */
    assert_int_equal(comm_gpu_choose(COMM_GPU_AUTO, 0, u, 4, &a, &b), COMM_GPU_MPI_STAGED);
    assert_int_equal(a, -1);
    assert_int_equal(comm_gpu_choose(COMM_GPU_AUTO, 1, u, 1, &a, &b), COMM_GPU_NCCL);
    assert_int_equal(comm_gpu_choose(COMM_GPU_NONE, 1, u, 4, &a, &b), COMM_GPU_NONE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpus_per_task_one),
        cmocka_unit_test(ranks_share_a_gpu),
        cmocka_unit_test(mixed_layout_names_first_pair),
        cmocka_unit_test(without_nccl_and_single_rank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
