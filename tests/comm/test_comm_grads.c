/* The bucketed gradient all-reduce on N ranks: random per-rank gradients (seeded by rank, so
 * every rank can recompute all of them), odd sizes (1, 101, 1000, 100003 floats), bucket sizes below one element, exactly
 * dividing and not dividing, several patterns of comm_grads_ready calls, two steps in a row.
 * The result must equal the average computed in double, within float rounding, on every rank.
 * COMM_TEST_NODE_MEMORY=1: the same through node shared memory (all ranks on one node);
 * COMM_TEST_HIERARCHY=1: hierarchically (comm_grads_use_hierarchy; run across nodes, as
 * tests/cluster/comm_hier.sh does); both also require the same bits on every rank.
 * COMM_TEST_IN_WINDOW=1 with either: the gradients are then written straight into this rank's
 * segment of the window (comm_grads_node_buffer), which must be offered exactly when the
 * window holds whole buffers, the averages read where they stay, in the window
 * (comm_grads_averaged), and a second comm_grads_use_* must then refuse.
 * Usage: mpirun -np N test_comm_grads */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_buckets.h"
#include "comm_test_util.h"

static comm *g_comm;

enum ready_pattern {
    READY_ONCE_AT_ZERO,    /* backward done, one call */
    READY_PER_LAYER,       /* one call per layer boundary, random layer sizes */
    READY_PER_ELEMENT,     /* n, n-1, ..., 0 (small n only) */
    READY_NONE,            /* wait alone must start everything */
    READY_PARTIAL_REPEATS, /* empty range, a repeat, a larger offset (no-op), then wait */
    NUM_PATTERNS
};

/* 0 when every rank holds the same bits in grads[n] (two 31-bit FNV-1a hashes, compared by
 * all-reduces of max(h) and max(INT32_MAX - h)); collective. */
static int64_t ranks_disagree(comm *c, const float *grads, int64_t n, int *errors) {
    uint32_t h1 = 2166136261u, h2 = 2166136261u ^ 0x5bd1e995u;
    const unsigned char *p = (const unsigned char *)grads;
    for (size_t i = 0; i < (size_t)n * sizeof(float); i++) {
        h1 = (h1 ^ p[i]) * 16777619u;
        h2 = (h2 ^ p[(size_t)n * sizeof(float) - 1 - i]) * 16777619u;
    }
    int32_t v[4] = {(int32_t)(h1 & INT32_MAX), (int32_t)(h2 & INT32_MAX), 0, 0};
    v[2] = INT32_MAX - v[0];
    v[3] = INT32_MAX - v[1];
    char err[256];
    if (comm_allreduce_max_i32(c, v, 4, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_allreduce_max_i32: %s\n", comm_rank(c), err);
        (*errors)++;
        return 1;
    }
    return v[0] != INT32_MAX - v[2] || v[1] != INT32_MAX - v[3];
}

static uint64_t data_seed(int rank, int step, int case_id) {
    return 0x1234567ull + (uint64_t)rank * 1000003ull + (uint64_t)step * 7919ull +
           (uint64_t)case_id * 104729ull;
}

/* Buckets that lie entirely in [offset, n): what ready(offset) must have started by now. */
static int64_t buckets_started_by(const comm_bucket *plan, int64_t count, int64_t offset) {
    int64_t k = 0;
    while (k < count && plan[k].start >= offset) k++;
    return k;
}

/* Calls comm_grads_ready in the given pattern; counts calls whose effect on the sequence
 * number disagrees with the bucket plan (the number of buckets started). */
static int issue_ready_calls(comm *c, int64_t n, enum ready_pattern pattern, const comm_bucket *plan,
                             int64_t count, int *errors) {
    char err[256];
    uint64_t seq0 = comm_sequence(c);
    int bad = 0;
#define READY(off)                                                                           \
    do {                                                                                     \
        int64_t o_ = (off);                                                                  \
        if (comm_grads_ready(c, o_, err, sizeof err) != 0) {                                 \
            fprintf(stderr, "rank %d: comm_grads_ready(%lld): %s\n", comm_rank(c), (long long)o_, err); \
            (*errors)++;                                                                     \
        }                                                                                    \
        if (o_ < lowest) lowest = o_;                                                        \
        bad += comm_sequence(c) - seq0 != (uint64_t)buckets_started_by(plan, count, lowest); \
    } while (0)
    int64_t lowest = n;
    switch (pattern) {
    case READY_ONCE_AT_ZERO:
        READY(0);
        break;
    case READY_PER_LAYER: {
        uint64_t layers = 99;  /* same layer sizes on every rank */
        int64_t max_layer = n / 5 > 1 ? n / 5 : 1;
        for (int64_t off = n; off > 0;) {
            off -= 1 + (int64_t)(comm_test_next_u64(&layers) % (uint64_t)max_layer);
            if (off < 0) off = 0;
            READY(off);
        }
        if (n == 0) READY(0);
        break;
    }
    case READY_PER_ELEMENT:
        for (int64_t off = n; off >= 0; off--) READY(off);
        break;
    case READY_NONE:
        break;
    case READY_PARTIAL_REPEATS:
        READY(n);
        READY(n / 2);
        READY(n / 2);
        READY(n);  /* larger than before: starts nothing */
        READY(n / 3);
        break;
    default:
        break;
    }
#undef READY
    return bad;
}

/* One (n, bucket_bytes) case: every pattern, two steps each, without re-registering between
 * steps.  Returns the number of wrong elements plus wrong bucket starts; errors counts API
 * errors. */
static int64_t run_case(int64_t n, size_t bucket_bytes, int case_id, int *errors) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    char err[256];
    float *own = malloc((size_t)(n > 0 ? n : 1) * sizeof *own), *grads = own;
    double *sum = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum);
    double *sum_abs = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
    int64_t count = comm_bucket_count(n, bucket_bytes, INT_MAX);
    comm_bucket *plan = malloc((size_t)(count > 0 ? count : 1) * sizeof *plan);
    if (!grads || !sum || !sum_abs || !plan) {
        (*errors)++;
        free(own), free(sum), free(sum_abs), free(plan);
        return 0;
    }
    comm_bucket_plan(n, bucket_bytes, INT_MAX, plan);

    int64_t wrong = 0;
    if (comm_grads_register(c, grads, n, bucket_bytes, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_grads_register: %s\n", rank, err);
        (*errors)++;
    }
    /* COMM_TEST_WINDOW_BYTES: the window's limit for the two paths below (default 1 GiB; a
     * small one makes the larger buffers go through the window in rounds) */
    size_t window = getenv("COMM_TEST_WINDOW_BYTES")
                        ? (size_t)strtoull(getenv("COMM_TEST_WINDOW_BYTES"), NULL, 10) : (size_t)1 << 30;
    /* COMM_TEST_NODE_MEMORY=1: the same checks on the shared-memory path (one node) */
    if (getenv("COMM_TEST_NODE_MEMORY")) {
        int used = comm_grads_use_node_memory(c, window, err, sizeof err);
        if (used != (world > 1 && n > 0)) {
            fprintf(stderr, "rank %d: comm_grads_use_node_memory: %d (%s)\n", rank, used,
                    used < 0 ? err : "expected in use with several ranks");
            (*errors)++;
        }
    }
    /* COMM_TEST_HIERARCHY=1: hierarchically across the nodes (several nodes, 2+ ranks each) */
    int same_bits = getenv("COMM_TEST_NODE_MEMORY") != NULL;
    if (getenv("COMM_TEST_HIERARCHY")) {
        char why[256] = "";
        int used = comm_grads_use_hierarchy(c, window, why, sizeof why, err, sizeof err);
        if (used != (n > 0)) {
            fprintf(stderr, "rank %d: comm_grads_use_hierarchy: %d (%s%s)\n", rank, used,
                    used < 0 ? err : why, used < 0 ? "" : "; expected in use across nodes");
            (*errors)++;
        }
        same_bits = 1;
    }
    if (getenv("COMM_TEST_IN_WINDOW") && world > 1 && n > 0) {
        int64_t rounds = 0;
        comm_grads_node_window(c, &rounds);
        for (int64_t i = 0; i < n; i++) grads[i] = (float)i;
        float *in = comm_grads_node_buffer(c);
        if ((in != NULL) != (rounds == 1)) {
            fprintf(stderr, "rank %d: n=%lld: comm_grads_node_buffer %s with %lld rounds\n", rank,
                    (long long)n, in ? "offered a segment" : "offered none", (long long)rounds);
            (*errors)++;
        }
        for (int64_t i = 0; in && i < n; i++)
            if (in[i] != (float)i) {
                fprintf(stderr, "rank %d: the segment does not hold the registered values\n", rank);
                (*errors)++;
                break;
            }
        if (in) {
            grads = in;   /* from here on written in the window, the averages read there */
            char why[256];
            int again = getenv("COMM_TEST_HIERARCHY")
                            ? comm_grads_use_hierarchy(c, window, why, sizeof why, err, sizeof err)
                            : comm_grads_use_node_memory(c, window, err, sizeof err);
            if (again != -1) {
                fprintf(stderr, "rank %d: comm_grads_use_* with the gradients in the window: %d, "
                        "expected a refusal\n", rank, again);
                (*errors)++;
            }
        }
    }
    for (int pattern = 0; pattern < NUM_PATTERNS; pattern++) {
        if (pattern == READY_PER_ELEMENT && n > 1000) continue;
        for (int step = 0; step < 2; step++) {
            int id = case_id * NUM_PATTERNS + pattern;
            uint64_t s = data_seed(rank, step, id);
            for (int64_t i = 0; i < n; i++) grads[i] = comm_test_uniform(&s);

            uint64_t seq_step = comm_sequence(c);
            wrong += issue_ready_calls(c, n, pattern, plan, count, errors);
            if (comm_grads_wait(c, err, sizeof err) != 0) {
                fprintf(stderr, "rank %d: comm_grads_wait: %s\n", rank, err);
                (*errors)++;
            }
            /* the averages: in grads, or kept in the window (COMM_TEST_IN_WINDOW) */
            const float *avg = comm_grads_averaged(c);
            if (!avg) avg = grads;
            else if (!getenv("COMM_TEST_IN_WINDOW")) {
                fprintf(stderr, "rank %d: comm_grads_averaged: not asked to keep them\n", rank);
                (*errors)++;
            }
            /* After wait every bucket has been started exactly once this step. */
            wrong += comm_sequence(c) - seq_step != (uint64_t)count;
            /* (after the count above: this check is a collective of its own) */
            if (same_bits && ranks_disagree(c, avg, n, errors)) {
                fprintf(stderr, "rank %d: n=%lld bucket_bytes=%zu pattern=%d step=%d: the ranks' "
                        "averages differ in their bits\n", rank, (long long)n, bucket_bytes,
                        pattern, step);
                wrong++;
            }

            memset(sum, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum);
            memset(sum_abs, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
            for (int r = 0; r < world; r++) {
                uint64_t sr = data_seed(r, step, id);
                for (int64_t i = 0; i < n; i++) {
                    float x = comm_test_uniform(&sr);
                    /* kept in the window: the registered buffer still holds this rank's own */
                    if (r == rank && avg != grads && grads[i] != x && wrong++ < 5)
                        fprintf(stderr, "rank %d: n=%lld: grads[%lld] = %.9g is not this rank's "
                                "own %.9g\n", rank, (long long)n, (long long)i, grads[i], x);
                    sum[i] += x;
                    sum_abs[i] += fabs(x);
                }
            }
            for (int64_t i = 0; i < n; i++) {
                double expected = sum[i] / world;
                /* float sums of world terms, then one multiply: a few ulps of the magnitudes */
                double tol = 4.0 * FLT_EPSILON * (sum_abs[i] / world) + 1e-30;
                if (!(fabs((double)avg[i] - expected) <= tol)) {
                    if (wrong < 5)
                        fprintf(stderr, "rank %d: n=%lld bucket_bytes=%zu pattern=%d step=%d: "
                                "grads[%lld] = %.9g, expected %.9g\n", rank, (long long)n,
                                bucket_bytes, pattern, step, (long long)i, avg[i], expected);
                    wrong++;
                }
            }
        }
    }
    free(own), free(sum), free(sum_abs), free(plan);
    return wrong;
}

static void run_sizes(int64_t n, const size_t *bucket_bytes, int num_buckets) {
    int errors = 0;
    int64_t wrong = 0;
    for (int b = 0; b < num_buckets; b++) wrong += run_case(n, bucket_bytes[b], b, &errors);
    /* Asserts only after every collective, so a failing rank does not leave the others hanging. */
    assert_int_equal(errors, 0);
    assert_int_equal(wrong, 0);
}

/* Bucket sizes: below one element, one element, exactly dividing, the whole buffer, not
 * dividing (and not a multiple of 4), far larger than the buffer. */
static void test_grads_one_element(void **state) {
    const size_t b[] = {1, 4, 12345, (size_t)1 << 20};
    run_sizes(1, b, 4);
}

static void test_grads_101(void **state) {
    /* One bucket per element: 101 tiny all-reduces per step, kept small because thousands of
     * them cost seconds on oversubscribed cores. */
    const size_t b[] = {1, 4, 12};
    run_sizes(101, b, 3);
}

static void test_grads_1000(void **state) {
    const size_t b[] = {400, 4000, 12345, 1001, (size_t)1 << 20};
    run_sizes(1000, b, 5);
}

static void test_grads_100003(void **state) {
    /* 100003 is prime: only one element and the whole buffer divide it.  One-element buckets
     * are covered at n = 1000 (100003 of them would take seconds per step here). */
    const size_t b[] = {4 * 100003, 4096, 65537, (size_t)1 << 30};
    run_sizes(100003, b, 4);
}

static void test_grads_empty(void **state) {
    const size_t b[] = {1, 4096};
    run_sizes(0, b, 2);
}

static void test_grads_bad_arguments(void **state) {
    comm *c = g_comm;
    char err[256];
    float g[10] = {0};
    uint64_t seq = comm_sequence(c);
    assert_int_not_equal(comm_grads_register(c, g, -1, 64, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_register(c, NULL, 10, 64, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_register(c, g, 10, 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "bucket_bytes"));
    assert_int_equal(comm_grads_register(c, g, 10, 8, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_ready(c, 11, err, sizeof err), 0);
    assert_non_null(strstr(err, "offset"));
    assert_int_not_equal(comm_grads_ready(c, -1, err, sizeof err), 0);
    assert_int_equal(comm_sequence(c), seq);
    /* Still usable after refused calls: all ones average to all ones. */
    for (int i = 0; i < 10; i++) g[i] = 1.0f;
    assert_int_equal(comm_grads_ready(c, 4, err, sizeof err), 0);
    assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    for (int i = 0; i < 10; i++) assert_true(g[i] == 1.0f);
}

static void test_grads_wait_seconds(void **state) {
    comm *c = g_comm;
    char err[256];
    float g[1000];
    assert_int_equal(comm_grads_register(c, g, 1000, 256, err, sizeof err), 0);
    (void)comm_grads_wait_seconds(c);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 1000; i++) g[i] = (float)i;
        assert_int_equal(comm_grads_ready(c, 0, err, sizeof err), 0);
        assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    }
    double s = comm_grads_wait_seconds(c);
    assert_true(s >= 0.0 && s < 30.0);
    assert_true(comm_grads_wait_seconds(c) == 0.0);  /* read resets */
    for (int i = 0; i < 1000; i++) assert_true(g[i] == (float)i);
}

int main(int argc, char **argv) {
    char err[256];
    if (comm_init(&argc, &argv, &g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grads_one_element),
        cmocka_unit_test(test_grads_101),
        cmocka_unit_test(test_grads_1000),
        cmocka_unit_test(test_grads_100003),
        cmocka_unit_test(test_grads_empty),
        cmocka_unit_test(test_grads_bad_arguments),
        cmocka_unit_test(test_grads_wait_seconds),
    };
    int failed = comm_test_run_group(g_comm, "comm_grads", tests, sizeof tests / sizeof tests[0]);
    comm_finalize(g_comm);
    return failed != 0;
}
