/* The GPU API where it cannot work: a machine without a GPU (or a build without CUDA or NCCL).
 * comm_gpu_init must fail on every rank with one message naming the cause - the build, the
 * missing device, a bad argument, or the first failing rank - and leave comm usable on the
 * host, the ranks still in step.  On a machine with a GPU the same calls succeed or fail for
 * the arguments alone; the test accepts both and checks the same agreement.
 * Usage: mpirun -np N test_comm_gpu_nodevice */
#include <stdio.h>
#include <string.h>

#include "comm_test_util.h"

static comm *g_comm;

/* 1 when every rank holds the same string (a hash compared with one all-reduce MAX). */
static int same_on_every_rank(comm *c, const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    int32_t v[2] = {(int32_t)(h & 0x7fffffff), ~(int32_t)(h & 0x7fffffff)};
    char err[256];
    if (comm_allreduce_max_i32(c, v, 2, err, sizeof err) != 0) return 0;
    return v[0] == ~v[1];
}

static int ranks_in_step(comm *c) {
    int32_t v[2] = {(int32_t)comm_sequence(c), -(int32_t)comm_sequence(c)};
    char err[256];
    if (comm_allreduce_max_i32(c, v, 2, err, sizeof err) != 0) return 0;
    return v[0] == -v[1];
}

static int names_a_cause(const char *err) {
    static const char *const causes[] = {
        "no CUDA in this build", "this build has no NCCL", "no usable CUDA device",
        "is not a device number", "does not exist", "unknown backend"};
    for (size_t i = 0; i < sizeof causes / sizeof causes[0]; i++)
        if (strstr(err, causes[i])) return 1;
    return 0;
}

/* After a refused comm_gpu_init the host path still averages. */
static void host_grads_still_work(comm *c) {
    char err[256];
    float g[37];
    for (int i = 0; i < 37; i++) g[i] = (float)(comm_rank(c) + i);
    assert_int_equal(comm_grads_register(c, g, 37, 40, err, sizeof err), 0);
    assert_int_equal(comm_grads_ready(c, 20, err, sizeof err), 0);
    assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    float mean_rank = (float)(comm_world(c) - 1) / 2.0f;
    for (int i = 0; i < 37; i++) assert_true(g[i] == mean_rank + (float)i);
}

static void test_names_and_build(void **state) {
    assert_string_equal(comm_gpu_backend_name(COMM_GPU_NCCL), "nccl");
    assert_string_equal(comm_gpu_backend_name(COMM_GPU_MPI_STAGED), "mpi-staged");
    assert_string_equal(comm_gpu_backend_name(COMM_GPU_AUTO), "auto");
    assert_int_equal(comm_gpu_built(COMM_GPU_NONE), 0);
    /* NCCL needs CUDA; AUTO and MPI_STAGED come together */
    if (comm_gpu_built(COMM_GPU_NCCL)) assert_true(comm_gpu_built(COMM_GPU_MPI_STAGED));
    assert_int_equal(comm_gpu_built(COMM_GPU_AUTO), comm_gpu_built(COMM_GPU_MPI_STAGED));
    printf("# this build: CUDA %s, NCCL %s\n", comm_gpu_built(COMM_GPU_AUTO) ? "yes" : "no",
           comm_gpu_built(COMM_GPU_NCCL) ? "yes" : "no");
}

static void test_device_buffer_needs_init(void **state) {
    comm *c = g_comm;
    char err[256] = "";
    float x[4];
    assert_int_equal(comm_gpu_backend_in_use(c), COMM_GPU_NONE);
    assert_int_not_equal(comm_grads_register_device(c, x, 4, 64, err, sizeof err), 0);
    assert_true(strstr(err, "comm_gpu_init") || strstr(err, "no CUDA in this build"));
}

/* Every refused init: the same message everywhere, naming its cause; no backend; in step. */
static int refused(comm *c, int rc, const char *err, const char *expect) {
    int ok = rc != 0 && names_a_cause(err) && (!expect || strstr(err, expect) ||
                                               strstr(err, "no CUDA in this build"));
    if (!ok) fprintf(stderr, "rank %d: rc %d, message \"%s\" (expected \"%s\")\n", comm_rank(c),
                     rc, err, expect ? expect : "a cause");
    ok &= same_on_every_rank(c, err);
    ok &= comm_gpu_backend_in_use(c) == COMM_GPU_NONE;
    ok &= ranks_in_step(c);
    return ok;
}

static void test_bad_arguments(void **state) {
    comm *c = g_comm;
    char err[512];
    int rc = comm_gpu_init(c, 0, NULL, (comm_gpu_backend)42, err, sizeof err);
    assert_true(refused(c, rc, err, "unknown backend"));
    rc = comm_gpu_init(c, -1, NULL, COMM_GPU_AUTO, err, sizeof err);
    assert_true(refused(c, rc, err, "device -1"));
    if (!comm_gpu_built(COMM_GPU_NCCL)) {
        rc = comm_gpu_init(c, 0, NULL, COMM_GPU_NCCL, err, sizeof err);
        assert_true(refused(c, rc, err, "no NCCL"));
    }
    host_grads_still_work(c);
}

/* One rank's bad argument fails every rank, with the lowest failing rank's message. */
static void test_one_rank_fails(void **state) {
    comm *c = g_comm;
    char err[512];
    int last = comm_world(c) - 1;
    int device = comm_rank(c) == last ? -7 : 0;
    int rc = comm_gpu_init(c, device, NULL, COMM_GPU_MPI_STAGED, err, sizeof err);
    assert_true(refused(c, rc, err, NULL));
    /* with CUDA in the build the message names the rank it comes from */
    if (comm_world(c) > 1 && comm_gpu_built(COMM_GPU_AUTO)) assert_non_null(strstr(err, "on rank "));
    host_grads_still_work(c);
}

/* The real thing where it can be had: on this machine the reason it cannot. */
static void test_init_auto(void **state) {
    comm *c = g_comm;
    char err[512] = "";
    int rc = comm_gpu_init(c, comm_local_rank(c), NULL, COMM_GPU_AUTO, err, sizeof err);
    int32_t any_ok = rc == 0;
    char e2[256];
    assert_int_equal(comm_allreduce_max_i32(c, &any_ok, 1, e2, sizeof e2), 0);
    if (any_ok) {   /* a GPU machine: every rank succeeded, or agreement is broken */
        assert_int_equal(rc, 0);
        assert_int_not_equal(comm_gpu_backend_in_use(c), COMM_GPU_NONE);
        printf("# a GPU is here: comm_gpu_init chose %s\n",
               comm_gpu_backend_name(comm_gpu_backend_in_use(c)));
        return;
    }
    printf("# comm_gpu_init refused: %s\n", err);
    assert_true(refused(c, rc, err, NULL));
    host_grads_still_work(c);
}

int main(int argc, char **argv) {
    char err[256];
    if (comm_init(&argc, &argv, &g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_build),
        cmocka_unit_test(test_device_buffer_needs_init),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_one_rank_fails),
        cmocka_unit_test(test_init_auto),   /* last: on a GPU machine it succeeds */
    };
    int failed = comm_test_run_group(g_comm, "comm_gpu_nodevice", tests, sizeof tests / sizeof tests[0]);
    comm_finalize(g_comm);
    return failed != 0;
}
