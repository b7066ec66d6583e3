/* The sharded exchange (ZeRO-1) and bf16 gradients on N ranks, host memory:
 *   - shard bounds: contiguous, in rank order, cover [0, n), sizes differ by at most one;
 *   - reduce-scatter: odd sizes (1, 7, 1001, 100003 floats; some smaller than the world) and
 *     bucket sizes (one element - up to 1001 floats -, 100, 1024 and 262144 floats), two steps: each rank's
 *     shard equals the average over ranks computed in double within float rounding, and the
 *     registered buffer keeps this rank's own gradients;
 *   - bf16 (all-reduce and reduce-scatter): within bf16 rounding of the exact average, and
 *     really rounded (differs from the fp32 result somewhere);
 *   - all-gather: every rank ends with every shard's values, exactly; overlapped (start, need
 *     range by range, finish), with a blocking collective in flight and settled by the next
 *     step's gradient exchange;
 *   - shard gather (to rank 0) of ranges inside, across and at the ends of shards, empty too,
 *     and shard scatter from rank 0: exact;
 *   - through node shared memory (comm_grads_use_node_memory with a sharded exchange): each
 *     shard is the rank-order float sum / world (the stage-0 window's bits), the parameters'
 *     all-gather is complete when start returns (one collective), over five steps that reuse
 *     both window sets with the ranks out of step; bf16 buckets keep the MPI path.
 * Usage: mpirun -np N test_comm_zero */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_buckets.h"
#include "comm_test_util.h"

static comm *g_comm;

static float value(int rank, int step, int64_t i) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)rank * 1000003ull + (uint64_t)step * 7919ull +
                                         (uint64_t)i * 2654435761ull);
    return comm_test_uniform(&s);
}

static void test_shard_bounds(void **state) {
    (void)state;
    const int64_t sizes[] = {0, 1, 2, 7, 1001, 100003, 234499};
    for (int w = 1; w <= 9; w++)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            int64_t n = sizes[k], prev = 0, small = n, big = 0;
            for (int r = 0; r < w; r++) {
                int64_t lo, hi;
                comm_shard_bounds(n, w, r, &lo, &hi);
                assert_true(lo == prev && hi >= lo);
                if (hi - lo < small) small = hi - lo;
                if (hi - lo > big) big = hi - lo;
                prev = hi;
            }
            assert_true(prev == n && big - small <= 1);
        }
    assert_true(comm_range_overlap(10, 5, 12, 20) == 3);
    assert_true(comm_range_overlap(10, 5, 15, 20) == 0);
    assert_true(comm_range_overlap(10, 5, 0, 100) == 5);
}

/* One registered buffer of n floats, shard or not, fp32 or bf16: two steps of exchange. */
static void check_exchange(int64_t n, size_t bucket_bytes, int shard, comm_grad_dtype dtype) {
    comm *c = g_comm;
    char err[256];
    int rank = comm_rank(c), world = comm_world(c);
    float *g = malloc((size_t)n * sizeof(float) + 4);
    assert_non_null(g);
    assert_int_equal(comm_grads_set_exchange(c, shard, dtype, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, n, bucket_bytes, err, sizeof err), 0);
    int64_t lo, hi;
    comm_grads_shard_range(c, &lo, &hi);
    int64_t want_lo, want_hi;
    comm_shard_bounds(n, shard ? world : 1, shard ? rank : 0, &want_lo, &want_hi);
    assert_true(lo == want_lo && hi == want_hi);
    double bf16_tol = 0.0;
    int differs = 0;
    for (int step = 0; step < 2; step++) {
        for (int64_t i = 0; i < n; i++) g[i] = value(rank, step, i);
        /* backward's order: a few ranges from the end, then the rest */
        int64_t offs[3] = {n - n / 3, n / 2, 0};
        for (int k = 0; k < 3; k++) assert_int_equal(comm_grads_ready(c, offs[k], err, sizeof err), 0);
        assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
        const float *out = shard ? comm_grads_shard(c) : g;
        if (shard) assert_non_null(out);
        int64_t from = shard ? lo : 0, to = shard ? hi : n;
        for (int64_t i = from; i < to; i++) {
            double exact = 0.0;
            for (int r = 0; r < world; r++) exact += (double)value(r, step, i);
            exact /= world;
            double got = out[i - from];
            if (dtype == COMM_GRAD_FP32) {
                assert_true(fabs(got - exact) <= 1e-6 * world);
            } else {
                /* each rank's value and each partial sum rounded to 8 significant bits */
                bf16_tol = (double)world * 1.0 / 256.0;
                assert_true(fabs(got - exact) <= bf16_tol);
                double fp32 = 0.0;
                for (int r = 0; r < world; r++) fp32 += (double)value(r, step, i);
                differs |= fabs(got - fp32 / world) > 1e-6;
            }
        }
        if (shard)   /* the registered buffer keeps this rank's own gradients */
            for (int64_t i = 0; i < n; i++) assert_true(g[i] == value(rank, step, i));
    }
    if (dtype == COMM_GRAD_BF16 && n > 100 && world > 1) assert_true(differs);
    assert_int_equal(comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, 0, 4, err, sizeof err), 0);
    free(g);
}

static const int64_t SIZES[] = {1, 7, 1001, 100003};
static const size_t BUCKETS[] = {4, 400, 4096, 1 << 20};

static void test_reduce_scatter(void **state) {
    (void)state;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            if (SIZES[a] <= 1001 || BUCKETS[b] > 4)   /* 100003 one-element collectives: slow */
                check_exchange(SIZES[a], BUCKETS[b], 1, COMM_GRAD_FP32);
}

static void test_bf16(void **state) {
    (void)state;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 1; b < 4; b++) {
            check_exchange(SIZES[a], BUCKETS[b], 0, COMM_GRAD_BF16);
            check_exchange(SIZES[a], BUCKETS[b], 1, COMM_GRAD_BF16);
        }
}

static void test_allgather_gather_scatter(void **state) {
    (void)state;
    comm *c = g_comm;
    char err[256];
    int rank = comm_rank(c), world = comm_world(c);
    const int64_t n = 100003;
    float *g = malloc(n * sizeof(float)), *buf = malloc(n * sizeof(float));
    float *out = malloc(n * sizeof(float)), *full = malloc(n * sizeof(float));
    assert_true(g && buf && out && full);
    assert_int_equal(comm_grads_set_exchange(c, 1, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, n, 4096 * 4, err, sizeof err), 0);
    int64_t lo, hi;
    comm_grads_shard_range(c, &lo, &hi);
    /* all-gather: own shard true values, the rest garbage */
    for (int64_t i = 0; i < n; i++) buf[i] = i >= lo && i < hi ? value(99, 0, i) : -1000.0f - rank;
    assert_int_equal(comm_shards_allgather(c, buf, err, sizeof err), 0);
    for (int64_t i = 0; i < n; i++) assert_true(buf[i] == value(99, 0, i));
    /* gather ranges of a sharded buffer onto rank 0 */
    float *shard = malloc((size_t)(hi - lo) * sizeof(float) + 4);
    assert_non_null(shard);
    for (int64_t i = lo; i < hi; i++) shard[i - lo] = value(7, 1, i);
    const int64_t ranges[][2] = {{0, n}, {0, 1}, {n - 1, 1}, {n / 3 - 5, 10}, {123, 0},
                                 {n / 2, n / 4}, {1, n - 2}};
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        int64_t off = ranges[k][0], cnt = ranges[k][1];
        memset(out, 0, n * sizeof(float));
        assert_int_equal(comm_shard_gather(c, shard, off, cnt, out, err, sizeof err), 0);
        if (rank == 0)
            for (int64_t i = 0; i < cnt; i++) assert_true(out[i] == value(7, 1, off + i));
    }
    assert_int_not_equal(comm_shard_gather(c, shard, n - 1, 2, out, err, sizeof err), 0);
    /* scatter from rank 0 */
    for (int64_t i = 0; i < n; i++) full[i] = rank == 0 ? value(5, 5, i) : 0.0f;
    assert_int_equal(comm_shard_scatter(c, full, shard, err, sizeof err), 0);
    for (int64_t i = lo; i < hi; i++) assert_true(shard[i - lo] == value(5, 5, i));
    (void)world;
    assert_int_equal(comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, 0, 4, err, sizeof err), 0);
    assert_int_not_equal(comm_shards_allgather(c, buf, err, sizeof err), 0);   /* not sharded */
    free(shard);
    free(g);
    free(buf);
    free(out);
    free(full);
}

/* The all-gather overlapped with a "forward": started, then needed range by range from the
 * start of the buffer (the layers' order) - each needed range holds every rank's values as
 * soon as _need returns, whatever is still in flight -, a blocking collective in the middle
 * (synchronised batch norm, metrics), a range needed twice and an empty one; then the rest by
 * _finish, or by the next step's comm_grads_ready, which must settle it before its buckets
 * reuse the requests.  Several buckets (1000 floats each), shards not aligned to them. */
static void check_allgather_overlapped(int lazy) {
    comm *c = g_comm;
    char err[256];
    int rank = comm_rank(c), world = comm_world(c);
    const int64_t n = 10007;
    float *g = malloc(n * sizeof(float)), *buf = malloc(n * sizeof(float));
    assert_true(g && buf);
    assert_int_equal(comm_grads_set_exchange(c, 1, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, n, 1000 * 4, err, sizeof err), 0);
    assert_int_equal(comm_shards_allgather_lazy(c, lazy), 0);
    int64_t lo, hi;
    comm_grads_shard_range(c, &lo, &hi);
    /* nothing in flight: need and finish are no-ops */
    assert_int_equal(comm_shards_allgather_need(c, 0, n, err, sizeof err), 0);
    assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);
    const int64_t layers[][2] = {{0, 37}, {37, 1500}, {1537, 0}, {1537, 2463}, {0, 37},
                                 {4000, 3001}, {7001, 3006}};
    for (int round = 0; round < 3; round++) {
        for (int64_t i = 0; i < n; i++)
            buf[i] = i >= lo && i < hi ? value(42, round, i) : -1000.0f - rank;
        uint64_t seq0 = comm_sequence(c);
        assert_int_equal(comm_shards_allgather_start(c, buf, err, sizeof err), 0);
        if (world > 1) assert_true(comm_sequence(c) == seq0 + (lazy ? 0 : 11));   /* one per bucket */
        for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
            int64_t off = layers[k][0], cnt = layers[k][1];
            assert_int_equal(comm_shards_allgather_need(c, off, cnt, err, sizeof err), 0);
            for (int64_t i = off; i < off + cnt; i++) assert_true(buf[i] == value(42, round, i));
            if (k == 2) {   /* a blocking collective while buckets are in flight */
                double x = rank + 1.0;
                assert_int_equal(comm_allreduce_sum_f64(c, &x, 1, err, sizeof err), 0);
                assert_true(x == world * (world + 1) / 2.0);
            }
            if (round == 2 && k == 3) break;   /* the rest: settled by the next step's ready */
        }
        if (round == 0) {
            assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);
        } else if (round == 2) {
            for (int64_t i = 0; i < n; i++) g[i] = value(rank, 9, i);
            assert_int_equal(comm_grads_ready(c, n / 2, err, sizeof err), 0);
            assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
            const float *out = comm_grads_shard(c);
            for (int64_t i = lo; i < hi; i++) {
                double exact = 0.0;
                for (int r = 0; r < world; r++) exact += (double)value(r, 9, i);
                assert_true(fabs(out[i - lo] - exact / world) <= 1e-6 * world);
            }
        }
        /* round 1: every range was needed, which completes the gather on its own */
        assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);
        for (int64_t i = 0; i < n; i++) assert_true(buf[i] == value(42, round, i));
    }
    /* a second start settles the first */
    for (int64_t i = 0; i < n; i++) buf[i] = i >= lo && i < hi ? value(43, 0, i) : -7.0f;
    assert_int_equal(comm_shards_allgather_start(c, buf, err, sizeof err), 0);
    assert_int_equal(comm_shards_allgather_start(c, buf, err, sizeof err), 0);
    assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);
    for (int64_t i = 0; i < n; i++) assert_true(buf[i] == value(43, 0, i));
    /* a range outside the buffer is refused while a gather is in flight */
    if (world > 1) {
        assert_int_equal(comm_shards_allgather_start(c, buf, err, sizeof err), 0);
        assert_int_not_equal(comm_shards_allgather_need(c, n - 5, 10, err, sizeof err), 0);
        assert_non_null(strstr(err, "outside"));
        assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);
    }
    assert_int_equal(comm_shards_allgather_lazy(c, 0), 0);
    assert_int_equal(comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, 0, 4, err, sizeof err), 0);
    free(g);
    free(buf);
}

/* lazy: each bucket posted only when first needed, so a _need that did not wait for its
 * buckets would leave the garbage in place */
static void test_allgather_overlapped(void **state) {
    (void)state;
    check_allgather_overlapped(0);
    check_allgather_overlapped(1);
}

/* ZeRO-1 through the node's window: sizes smaller than the world up to many buckets. */
static void pause_20ms(void) {
    struct timespec t = {0, 20 * 1000 * 1000};
    nanosleep(&t, NULL);
}

static void check_node_memory(int64_t n, size_t bucket_bytes, size_t window) {
    comm *c = g_comm;
    char err[256];
    int rank = comm_rank(c), world = comm_world(c);
    float *g = malloc((size_t)n * sizeof(float) + 4), *buf = malloc((size_t)n * sizeof(float) + 4);
    assert_true(g && buf);
    assert_int_equal(comm_grads_set_exchange(c, 1, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, n, bucket_bytes, err, sizeof err), 0);
    int used = comm_grads_use_node_memory(c, window, err, sizeof err);
    assert_int_equal(used, world > 1 ? 1 : 0);
    int64_t lo, hi;
    comm_grads_shard_range(c, &lo, &hi);
    for (int step = 0; step < 5; step++) {
        for (int64_t i = 0; i < n; i++) g[i] = value(rank, step, i);
        int64_t offs[3] = {n - n / 3, n / 2, 0};
        for (int k = 0; k < 3; k++) assert_int_equal(comm_grads_ready(c, offs[k], err, sizeof err), 0);
        if (rank == step % world) pause_20ms();   /* one rank late into the reduction */
        assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
        const float *out = comm_grads_shard(c);
        for (int64_t i = lo; i < hi; i++) {
            float sum = value(0, step, i);
            for (int r = 1; r < world; r++) sum += value(r, step, i);
            assert_true(out[i - lo] == sum / (float)world);
        }
        for (int64_t i = 0; i < n; i++) assert_true(g[i] == value(rank, step, i));
        /* the "optimizer" wrote this rank's shard; the rest is stale */
        for (int64_t i = 0; i < n; i++) buf[i] = i >= lo && i < hi ? value(50, step, i) : -1.0f - rank;
        if (rank == (step + 1) % world) pause_20ms();   /* one rank late into the gather */
        uint64_t seq0 = comm_sequence(c);
        assert_int_equal(comm_shards_allgather_start(c, buf, err, sizeof err), 0);
        if (world > 1) assert_true(comm_sequence(c) == seq0 + 1);
        for (int64_t i = 0; i < n; i++) assert_true(buf[i] == value(50, step, i));
        assert_int_equal(comm_shards_allgather_finish(c, err, sizeof err), 0);   /* nothing left */
    }
    /* bf16 buckets: the window is not used (comm_zero.c's MPI path) */
    assert_int_equal(comm_grads_set_exchange(c, 1, COMM_GRAD_BF16, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, n, bucket_bytes, err, sizeof err), 0);
    assert_int_equal(comm_grads_use_node_memory(c, (size_t)1 << 30, err, sizeof err), 0);
    assert_int_equal(comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_int_equal(comm_grads_register(c, g, 0, 4, err, sizeof err), 0);
    free(g);
    free(buf);
}

static void test_node_memory(void **state) {
    (void)state;
    for (size_t a = 0; a < 4; a++) check_node_memory(SIZES[a], BUCKETS[a == 3 ? 2 : 1], (size_t)1 << 30);
    /* a window of 128 KiB: 100003 floats go through it in rounds of 1024-4096 floats per slice
     * (comm_shm_chunk), the smaller sizes whole */
    for (size_t a = 0; a < 4; a++) check_node_memory(SIZES[a], BUCKETS[a == 3 ? 2 : 1], 131072);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char err[256];
    assert_int_not_equal(comm_grads_set_exchange(g_comm, 2, COMM_GRAD_FP32, err, sizeof err), 0);
    assert_non_null(strstr(err, "shard"));
    assert_int_not_equal(comm_grads_set_exchange(g_comm, 0, (comm_grad_dtype)7, err, sizeof err), 0);
}

int main(int argc, char **argv) {
    char err[256];
    if (comm_init(&argc, &argv, &g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_bounds),
        cmocka_unit_test(test_reduce_scatter),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_allgather_gather_scatter),
        cmocka_unit_test(test_allgather_overlapped),
        cmocka_unit_test(test_node_memory),
        cmocka_unit_test(test_bad_arguments),
    };
    int failed = comm_test_run_group(g_comm, "comm_zero", tests, sizeof tests / sizeof tests[0]);
    comm_finalize(g_comm);
    return failed != 0;
}
