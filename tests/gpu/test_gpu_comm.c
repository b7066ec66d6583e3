/* comm's GPU backends on a real GPU: device gradients averaged over ranks, overlapped with a
 * "backward" that produces them bucket by bucket on the compute stream.
 *
 * Every step starts with a host function on the compute stream that sleeps a few milliseconds,
 * then queues the gradients layer by layer (copies from pinned memory, last layer first) and
 * calls comm_grads_ready after each layer: comm must order its work after the compute stream's,
 * or it reduces the previous step's values.  After comm_grads_wait the result is copied back on
 * the compute stream and checked: with one rank it must equal the input bit for bit (the
 * average over one rank); with several, the average computed in double within float rounding.
 * Bucket sizes from one element to more than the buffer, odd sizes, several ready patterns,
 * three steps each; sequence numbers must advance by the bucket plan; the watchdog runs
 * meanwhile (it polls the NCCL queue).
 *
 * Usage (under mpirun):
 *   test_gpu_comm nccl|staged|auto [--share] [--zero] [--bf16]
 *                                             --share: every rank on device 0; --zero: the
 *                                             sharded exchange (reduce-scatter into the shard,
 *                                             all-gather of the parameters, overlapped and in
 *                                             one call) instead; --bf16: gradients travel as
 *                                             bf16 (within bf16 rounding, really rounded, and
 *                                             for 2 ranks staged the host op's exact bits)
 *   test_gpu_comm stall                       one rank, NCCL: the compute stream stalls; the
 *                                             watchdog must end the process (comm_stall.sh)
 *   test_gpu_comm --count                     prints the number of visible GPUs
 * Exits 77 (skipped) without a GPU, without CUDA in the build, or for nccl without NCCL. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "comm_buckets.h"
#include "comm_test_util.h"

#ifdef HARNESS_HAVE_CUDA
#include <cuda_runtime.h>

static comm *g_comm;
static cudaStream_t g_stream;
static int g_device;
static float *g_dev, *g_up, *g_down;     /* [MAX_N] device buffer, pinned upload / download */
#define MAX_N ((int64_t)(1 << 22) + 3)

enum ready_pattern {
    READY_ONCE_AT_ZERO,    /* backward done, one call */
    READY_PER_LAYER,       /* one call per layer, random layer sizes */
    READY_PER_ELEMENT,     /* n, n-1, ..., 0 (small n only) */
    READY_NONE,            /* wait alone must start everything */
    READY_PARTIAL_REPEATS, /* empty range, a repeat, a larger offset (no-op), then wait */
    NUM_PATTERNS
};

#define CHECK_CUDA(call)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "rank %d: %s: %s\n", comm_rank(g_comm), #call, cudaGetErrorString(e_)); \
            (*errors)++;                                                                      \
        }                                                                                     \
    } while (0)

/* --bf16: gradients on the wire as bf16 (comm.grad_dtype=bf16) */
static int g_bf16;
static comm_gpu_backend g_backend;
static uint16_t round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float widen_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* How far the average of world values may be from the exact one: fp32, a few ulps; bf16, each
 * value and each partial sum rounded to 8 significant bits (2^-9 relative each). */
static double average_tolerance(int world, double sum_abs) {
    double t = (world + 3) * FLT_EPSILON * (sum_abs / world) + 1e-30;
    if (g_bf16 && world > 1) t += 2.0 / 512.0 * sum_abs;
    return t;
}

static uint64_t data_seed(int rank, int step, int case_id) {
    return 0x7654321ull + (uint64_t)rank * 1000003ull + (uint64_t)step * 7919ull +
           (uint64_t)case_id * 104729ull;
}

static int64_t buckets_started_by(const comm_bucket *plan, int64_t count, int64_t offset) {
    int64_t k = 0;
    while (k < count && plan[k].start >= offset) k++;
    return k;
}

/* A host function in stream order: the compute stream stands still this long. */
static void CUDART_CB sleep_on_stream(void *ms) {
    long m = (long)(intptr_t)ms;
    struct timespec ts = {m / 1000, (m % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "Backward" of one step: the compute stream sleeps, then gets the gradients of
 * [off, prev) layer by layer with comm_grads_ready after each; returns bad sequence steps. */
static int backward(comm *c, int64_t n, enum ready_pattern pattern, const comm_bucket *plan,
                    int64_t count, int *errors) {
    char err[256];
    uint64_t seq0 = comm_sequence(c);
    int bad = 0;
    int64_t lowest = n, queued = n;   /* gradients [queued, n) are on the compute stream */
    CHECK_CUDA(cudaLaunchHostFunc(g_stream, sleep_on_stream, (void *)(intptr_t)(3 + comm_rank(c))));
#define QUEUE_TO(off)                                                                          \
    do {                                                                                       \
        int64_t o_ = (off);                                                                    \
        if (o_ < queued) {                                                                     \
            CHECK_CUDA(cudaMemcpyAsync(g_dev + o_, g_up + o_, (size_t)(queued - o_) * 4,      \
                                       cudaMemcpyHostToDevice, g_stream));                     \
            queued = o_;                                                                       \
        }                                                                                      \
    } while (0)
#define READY(off)                                                                             \
    do {                                                                                       \
        int64_t r_ = (off);                                                                    \
        QUEUE_TO(r_);                                                                          \
        if (comm_grads_ready(c, r_, err, sizeof err) != 0) {                                   \
            fprintf(stderr, "rank %d: comm_grads_ready(%lld): %s\n", comm_rank(c), (long long)r_, err); \
            (*errors)++;                                                                       \
        }                                                                                      \
        if (r_ < lowest) lowest = r_;                                                          \
        bad += comm_sequence(c) - seq0 != (uint64_t)buckets_started_by(plan, count, lowest);   \
    } while (0)
    switch (pattern) {
    case READY_ONCE_AT_ZERO:
        READY(0);
        break;
    case READY_PER_LAYER: {
        uint64_t layers = 99;   /* same layer sizes on every rank */
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
        QUEUE_TO(0);
        break;
    case READY_PARTIAL_REPEATS:
        READY(n);
        READY(n / 2);
        READY(n / 2);
        READY(n);
        READY(n / 3);
        QUEUE_TO(0);
        break;
    default:
        break;
    }
#undef READY
#undef QUEUE_TO
    return bad;
}

static int64_t run_case(int64_t n, size_t bucket_bytes, int case_id, int *errors) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    char err[256];
    int64_t count = comm_bucket_count(n, bucket_bytes, INT_MAX);
    comm_bucket *plan = malloc((size_t)(count > 0 ? count : 1) * sizeof *plan);
    double *sum = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum);
    double *sum_abs = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
    if (!plan || !sum || !sum_abs) {
        (*errors)++;
        free(plan), free(sum), free(sum_abs);
        return 0;
    }
    comm_bucket_plan(n, bucket_bytes, INT_MAX, plan);
    int64_t wrong = 0;
    float *emu = g_bf16 ? malloc((size_t)(n > 0 ? n : 1) * sizeof *emu) : NULL;
    if (comm_grads_set_exchange(c, 0, g_bf16 ? COMM_GRAD_BF16 : COMM_GRAD_FP32, err, sizeof err) != 0 ||
        comm_grads_register_device(c, g_dev, n, bucket_bytes, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_grads_register_device: %s\n", rank, err);
        (*errors)++;
    }
    int64_t rounded = 0, emu_differs = 0;
    for (int pattern = 0; pattern < NUM_PATTERNS; pattern++) {
        if (pattern == READY_PER_ELEMENT && n > 1000) continue;
        for (int step = 0; step < 3; step++) {
            int id = case_id * NUM_PATTERNS + pattern;
            uint64_t s = data_seed(rank, step, id);
            /* the previous step's download may still be read by nobody: the stream is idle */
            for (int64_t i = 0; i < n; i++) g_up[i] = comm_test_uniform(&s);
            uint64_t seq_step = comm_sequence(c);
            wrong += backward(c, n, (enum ready_pattern)pattern, plan, count, errors);
            if (comm_grads_wait(c, err, sizeof err) != 0) {
                fprintf(stderr, "rank %d: comm_grads_wait: %s\n", rank, err);
                (*errors)++;
            }
            wrong += comm_sequence(c) - seq_step != (uint64_t)count;
            if (n > 0)
                CHECK_CUDA(cudaMemcpyAsync(g_down, g_dev, (size_t)n * 4, cudaMemcpyDeviceToHost, g_stream));
            CHECK_CUDA(cudaStreamSynchronize(g_stream));

            if (world == 1) {   /* the average over one rank: bit for bit the input */
                if (n > 0 && memcmp(g_down, g_up, (size_t)n * 4) != 0) {
                    int64_t i = 0;
                    while (g_down[i] == g_up[i]) i++;
                    fprintf(stderr, "n=%lld bucket_bytes=%zu pattern=%d step=%d: grads[%lld] = %.9g, "
                            "input %.9g\n", (long long)n, bucket_bytes, pattern, step, (long long)i,
                            g_down[i], g_up[i]);
                    wrong++;
                }
                continue;
            }
            memset(sum, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum);
            memset(sum_abs, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
            for (int r = 0; r < world; r++) {
                uint64_t sr = data_seed(r, step, id);
                for (int64_t i = 0; i < n; i++) {
                    float x = comm_test_uniform(&sr);
                    sum[i] += x;
                    sum_abs[i] += fabs(x);
                    /* bf16: the chain r0 + r1 + ... with every partial sum rounded; for two
                     * ranks the only order there is */
                    if (emu)
                        emu[i] = r == 0 ? widen_bf16(round_bf16(x))
                                        : widen_bf16(round_bf16(emu[i] + widen_bf16(round_bf16(x))));
                }
            }
            for (int64_t i = 0; i < n; i++) {
                double expected = sum[i] / world;
                /* float sums of world terms (NCCL may scale first, then sum): a few ulps */
                double tol = average_tolerance(world, sum_abs[i]);
                if (emu) {
                    rounded += fabs((double)g_down[i] - expected) > 1e-6;
                    emu_differs += g_down[i] != emu[i] / (float)world;
                }
                if (!(fabs((double)g_down[i] - expected) <= tol)) {
                    if (wrong < 5)
                        fprintf(stderr, "rank %d: n=%lld bucket_bytes=%zu pattern=%d step=%d: "
                                "grads[%lld] = %.9g, expected %.9g\n", rank, (long long)n,
                                bucket_bytes, pattern, step, (long long)i, g_down[i], expected);
                    wrong++;
                }
            }
        }
    }
    if (emu && world > 1 && n > 100) {
        /* really rounded; two ranks through the host op (MPI staged): its exact bits */
        if (rank == 0)
            printf("# bf16 n=%lld bucket_bytes=%zu: %lld elements off fp32's average, %lld "
                   "differ from the host emulation\n", (long long)n, bucket_bytes,
                   (long long)rounded, (long long)emu_differs);
        if (rounded == 0) {
            fprintf(stderr, "rank %d: n=%lld: bf16 exchange gave fp32's averages\n", rank, (long long)n);
            wrong++;
        }
        if (world == 2 && g_backend == COMM_GPU_MPI_STAGED && emu_differs) wrong++;
    }
    if (comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err) != 0) (*errors)++;
    free(emu);
    free(plan), free(sum), free(sum_abs);
    return wrong;
}

static void run_sizes(int64_t n, const size_t *bucket_bytes, int num) {
    int errors = 0;
    int64_t wrong = 0;
    for (int b = 0; b < num; b++) wrong += run_case(n, bucket_bytes[b], b, &errors);
    assert_int_equal(errors, 0);   /* only after every collective */
    assert_int_equal(wrong, 0);
}

/* ---- --zero: the sharded exchange (ZeRO-1) on device memory ----------------------------
 * Rank r's shard is [floor(n r / world), floor(n (r+1) / world)) as on the host path.  After
 * comm_grads_wait, comm_grads_shard (device) holds the average of the shard, checked against
 * the double-precision reference (one rank: the input bit for bit); the registered buffer
 * keeps this rank's own gradients.  Then comm_shards_allgather: each rank writes its own
 * shard's values and junk elsewhere; afterwards every element holds its owner's value bit for
 * bit. */
static int64_t run_zero_case(int64_t n, size_t bucket_bytes, int case_id, int *errors) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    char err[256];
    int64_t count = comm_bucket_count(n, bucket_bytes, INT_MAX);
    comm_bucket *plan = malloc((size_t)(count > 0 ? count : 1) * sizeof *plan);
    double *sum = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum);
    double *sum_abs = malloc((size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
    if (!plan || !sum || !sum_abs) {
        (*errors)++;
        free(plan), free(sum), free(sum_abs);
        return 0;
    }
    comm_bucket_plan(n, bucket_bytes, INT_MAX, plan);
    int64_t wrong = 0;
    if (comm_grads_set_exchange(c, 1, g_bf16 ? COMM_GRAD_BF16 : COMM_GRAD_FP32, err, sizeof err) != 0 ||
        comm_grads_register_device(c, g_dev, n, bucket_bytes, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: sharded register: %s\n", rank, err);
        (*errors)++;
        free(plan), free(sum), free(sum_abs);
        return 0;
    }
    int64_t lo, hi;
    comm_grads_shard_range(c, &lo, &hi);
    if (lo != n * rank / world || hi != n * (rank + 1) / world) {
        fprintf(stderr, "rank %d: n=%lld: shard [%lld, %lld), expected [%lld, %lld)\n", rank,
                (long long)n, (long long)lo, (long long)hi, (long long)(n * rank / world),
                (long long)(n * (rank + 1) / world));
        wrong++;
    }
    const enum ready_pattern patterns[3] = {READY_ONCE_AT_ZERO, READY_PER_LAYER, READY_NONE};
    int64_t zero_rounded = 0;
    for (int p = 0; p < 3; p++) {
        for (int step = 0; step < 2; step++) {
            int id = 1000 + case_id * 3 + p;
            uint64_t s = data_seed(rank, step, id);
            for (int64_t i = 0; i < n; i++) g_up[i] = comm_test_uniform(&s);
            uint64_t seq_step = comm_sequence(c);
            wrong += backward(c, n, patterns[p], plan, count, errors);
            if (comm_grads_wait(c, err, sizeof err) != 0) {
                fprintf(stderr, "rank %d: comm_grads_wait (sharded): %s\n", rank, err);
                (*errors)++;
            }
            wrong += comm_sequence(c) - seq_step != (uint64_t)count;
            const float *shard = comm_grads_shard(c);
            if (!shard) {
                fprintf(stderr, "rank %d: comm_grads_shard is NULL at shard 1\n", rank);
                wrong++;
                continue;
            }
            if (hi > lo)
                CHECK_CUDA(cudaMemcpyAsync(g_down, shard, (size_t)(hi - lo) * 4,
                                           cudaMemcpyDeviceToHost, g_stream));
            CHECK_CUDA(cudaStreamSynchronize(g_stream));
            memset(sum, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum);
            memset(sum_abs, 0, (size_t)(n > 0 ? n : 1) * sizeof *sum_abs);
            for (int r = 0; r < world; r++) {
                uint64_t sr = data_seed(r, step, id);
                for (int64_t i = 0; i < n; i++) {
                    float x = comm_test_uniform(&sr);
                    sum[i] += x;
                    sum_abs[i] += fabs(x);
                }
            }
            for (int64_t i = lo; i < hi; i++) {
                double expected = sum[i] / world, got = g_down[i - lo];
                double tol = world == 1 ? 0.0 : average_tolerance(world, sum_abs[i]);
                zero_rounded += fabs(got - expected) > 1e-6;
                if (!(fabs(got - expected) <= tol)) {
                    if (wrong < 5)
                        fprintf(stderr, "rank %d: n=%lld bucket_bytes=%zu pattern=%d step=%d: "
                                "shard[%lld] = %.9g, expected %.9g\n", rank, (long long)n,
                                bucket_bytes, (int)patterns[p], step, (long long)i, got, expected);
                    wrong++;
                }
            }
        }
    }
    if (g_bf16 && world > 1 && n > 100 && zero_rounded == 0) {
        fprintf(stderr, "rank %d: n=%lld: bf16 shards equal fp32's averages\n", rank, (long long)n);
        wrong++;
    }
    /* the parameters' all-gather */
    for (int64_t i = 0; i < n; i++)
        g_up[i] = i >= lo && i < hi ? 0.25f * (float)i - 7.0f : -1e30f * (float)(rank + 1);
    if (n > 0) CHECK_CUDA(cudaMemcpyAsync(g_dev, g_up, (size_t)n * 4, cudaMemcpyHostToDevice, g_stream));
    uint64_t seq = comm_sequence(c);
    /* overlapped: started, then needed in three pieces from the start (a forward), each
     * copied out on the compute stream right after its _need, then finished */
    memset(g_down, 0, (size_t)(n > 0 ? n : 1) * 4);
    if (comm_shards_allgather_start(c, g_dev, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_shards_allgather_start: %s\n", rank, err);
        (*errors)++;
    }
    const int64_t cut[4] = {0, n / 3, n / 3 + (n - n / 3) / 2, n};
    for (int k = 0; k < 3; k++) {
        int64_t a = cut[k], len = cut[k + 1] - cut[k];
        if (comm_shards_allgather_need(c, a, len, err, sizeof err) != 0) {
            fprintf(stderr, "rank %d: comm_shards_allgather_need: %s\n", rank, err);
            (*errors)++;
        }
        if (len > 0)
            CHECK_CUDA(cudaMemcpyAsync(g_down + a, g_dev + a, (size_t)len * 4,
                                       cudaMemcpyDeviceToHost, g_stream));
    }
    if (comm_shards_allgather_finish(c, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_shards_allgather_finish: %s\n", rank, err);
        (*errors)++;
    }
    CHECK_CUDA(cudaStreamSynchronize(g_stream));
    for (int64_t i = 0; i < n; i++) {
        if (g_down[i] != 0.25f * (float)i - 7.0f) {
            if (wrong < 5)
                fprintf(stderr, "rank %d: n=%lld: param[%lld] read after its _need = %.9g, "
                        "expected %.9g\n", rank, (long long)n, (long long)i, g_down[i],
                        0.25f * (float)i - 7.0f);
            wrong++;
        }
    }
    /* and once more in one call */
    for (int64_t i = 0; i < n; i++)
        g_up[i] = i >= lo && i < hi ? 0.25f * (float)i - 7.0f : -1e30f * (float)(rank + 1);
    if (n > 0) CHECK_CUDA(cudaMemcpyAsync(g_dev, g_up, (size_t)n * 4, cudaMemcpyHostToDevice, g_stream));
    if (comm_shards_allgather(c, g_dev, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: comm_shards_allgather: %s\n", rank, err);
        (*errors)++;
    }
    if (world > 1 && comm_sequence(c) == seq) {
        fprintf(stderr, "rank %d: the all-gather has no sequence number\n", rank);
        wrong++;
    }
    if (n > 0) CHECK_CUDA(cudaMemcpyAsync(g_down, g_dev, (size_t)n * 4, cudaMemcpyDeviceToHost, g_stream));
    CHECK_CUDA(cudaStreamSynchronize(g_stream));
    for (int64_t i = 0; i < n; i++) {
        if (g_down[i] != 0.25f * (float)i - 7.0f) {
            if (wrong < 5)
                fprintf(stderr, "rank %d: n=%lld: all-gathered param[%lld] = %.9g, expected %.9g\n",
                        rank, (long long)n, (long long)i, g_down[i], 0.25f * (float)i - 7.0f);
            wrong++;
        }
    }
    if (comm_grads_set_exchange(c, 0, COMM_GRAD_FP32, err, sizeof err) != 0) (*errors)++;
    free(plan), free(sum), free(sum_abs);
    return wrong;
}

static void run_zero_sizes(int64_t n, const size_t *bucket_bytes, int num) {
    int errors = 0;
    int64_t wrong = 0;
    for (int b = 0; b < num; b++) wrong += run_zero_case(n, bucket_bytes[b], b, &errors);
    assert_int_equal(errors, 0);
    assert_int_equal(wrong, 0);
}

/* sizes not divisible by 2 or 3 ranks; buckets smaller than a shard, straddling the shard
 * boundary, and one bucket for everything */
static void test_zero_7(void **state) {
    (void)state;
    const size_t b[] = {4, 12, (size_t)1 << 20};
    run_zero_sizes(7, b, 3);
}

static void test_zero_1001(void **state) {
    (void)state;
    const size_t b[] = {4 * 97, 4 * 500, 4 * 501, (size_t)1 << 20};
    run_zero_sizes(1001, b, 4);
}

static void test_zero_100003(void **state) {
    (void)state;
    const size_t b[] = {4 * 4096, (size_t)1 << 20};
    run_zero_sizes(100003, b, 2);
}

static void test_one_element(void **state) {
    const size_t b[] = {1, 4, (size_t)1 << 20};
    run_sizes(1, b, 3);
}

static void test_101(void **state) {
    const size_t b[] = {1, 12, 400};   /* 101 one-element buckets, then 34, then one */
    run_sizes(101, b, 3);
}

static void test_1000(void **state) {
    const size_t b[] = {400, 4000, 1001, (size_t)1 << 20};
    run_sizes(1000, b, 4);
}

static void test_100003(void **state) {
    const size_t b[] = {4096, 65537, 4 * 100003, (size_t)1 << 30};
    run_sizes(100003, b, 4);
}

static void test_large(void **state) {   /* 16 MiB: 1 MiB buckets, and 25 MiB (one) */
    const size_t b[] = {(size_t)1 << 20, (size_t)25 << 20};
    run_sizes(MAX_N, b, 2);
}

static void test_empty(void **state) {
    const size_t b[] = {4096};
    run_sizes(0, b, 1);
}

static void test_wait_seconds(void **state) {
    comm *c = g_comm;
    char err[256];
    assert_int_equal(comm_grads_register_device(c, g_dev, 1 << 20, 1 << 18, err, sizeof err), 0);
    (void)comm_grads_wait_seconds(c);
    double total = 0;
    for (int step = 0; step < 4; step++) {
        assert_int_equal(comm_grads_ready(c, 0, err, sizeof err), 0);
        assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
        double s = comm_grads_wait_seconds(c);
        assert_true(s >= 0.0 && s < 30.0);
        total += s;
    }
    assert_int_equal(cudaStreamSynchronize(g_stream), cudaSuccess);
    double s = comm_grads_wait_seconds(c);   /* the last step's timing, now complete */
    assert_true(s >= 0.0 && s < 30.0);
    assert_true(comm_grads_wait_seconds(c) == 0.0);   /* read resets */
    printf("# exposed communication, 5 steps of 4 MiB: %.3f ms\n", (total + s) * 1e3);
}

static void test_bad_buffers(void **state) {
    comm *c = g_comm;
    char err[256];
    float host[8];
    assert_int_not_equal(comm_grads_register_device(c, host, 8, 64, err, sizeof err), 0);
    assert_non_null(strstr(err, "not device memory"));
    assert_int_not_equal(comm_grads_register_device(c, NULL, 8, 64, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_register_device(c, g_dev, 8, 0, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_register_device(c, g_dev, -1, 64, err, sizeof err), 0);
    /* back and forth between host and device buffers */
    for (int i = 0; i < 8; i++) host[i] = 2.0f;
    assert_int_equal(comm_grads_register(c, host, 8, 8, err, sizeof err), 0);
    assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    for (int i = 0; i < 8; i++) assert_true(host[i] == 2.0f);
    assert_int_equal(comm_grads_register_device(c, g_dev, 8, 8, err, sizeof err), 0);
    assert_int_equal(comm_grads_ready(c, 4, err, sizeof err), 0);
    assert_int_not_equal(comm_grads_register_device(c, g_dev, 8, 8, err, sizeof err), 0);
    assert_non_null(strstr(err, "in flight"));
    assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    assert_int_equal(comm_gpu_init(c, g_device, g_stream, COMM_GPU_AUTO, err, sizeof err), 1);
    assert_non_null(strstr(err, "already initialised"));
}

/* One rank, NCCL: the compute stream sleeps far longer than the watchdog's timeout before the
 * gradients; the bucket stays queued and the watchdog must end the process (checked by
 * comm_stall.sh: status, time, report). */
static int stall(void) {
    char err[512];
    if (comm_watchdog_start(g_comm, 2.0, err, sizeof err) != 0) {
        fprintf(stderr, "comm_watchdog_start: %s\n", err);
        return 1;
    }
    comm_set_step(g_comm, 7);
    if (comm_grads_register_device(g_comm, g_dev, 1000, 400, err, sizeof err) != 0) {
        fprintf(stderr, "comm_grads_register_device: %s\n", err);
        return 1;
    }
    cudaLaunchHostFunc(g_stream, sleep_on_stream, (void *)(intptr_t)60000);
    if (comm_grads_ready(g_comm, 0, err, sizeof err) != 0 || comm_grads_wait(g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "ready / wait: %s\n", err);
        return 1;
    }
    cudaStreamSynchronize(g_stream);   /* the watchdog ends the process in here */
    fprintf(stderr, "the watchdog did not fire\n");
    return 1;
}

int main(int argc, char **argv) {
    int count = 0;
    cudaError_t ce = cudaGetDeviceCount(&count);
    if (ce != cudaSuccess) {
        count = 0;
        /* the driver lists a GPU (/dev/nvidia0) that CUDA cannot use: a failure, not a skip */
        if (access("/dev/nvidia0", F_OK) == 0) {
            fprintf(stderr, "FAIL: /dev/nvidia0 exists but cudaGetDeviceCount says %s (%s)\n",
                    cudaGetErrorString(ce), cudaGetErrorName(ce));
            return 1;
        }
    }
    if (argc > 1 && strcmp(argv[1], "--count") == 0) {
        printf("%d\n", count);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s nccl|staged|auto [--share] [--zero] [--bf16] | stall | --count\n", argv[0]);
        return 2;
    }
    int stall_mode = strcmp(argv[1], "stall") == 0;
    comm_gpu_backend want = strcmp(argv[1], "staged") == 0 ? COMM_GPU_MPI_STAGED
                            : strcmp(argv[1], "auto") == 0 ? COMM_GPU_AUTO : COMM_GPU_NCCL;
    int share = 0, zero_mode = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--share") == 0) share = 1;
        if (strcmp(argv[i], "--zero") == 0) zero_mode = 1;
        if (strcmp(argv[i], "--bf16") == 0) g_bf16 = 1;
    }
    if (count < 1) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    if (want == COMM_GPU_NCCL && !comm_gpu_built(COMM_GPU_NCCL)) {
        printf("SKIP: this build has no NCCL\n");
        return 77;
    }

    char err[512];
    if (comm_init(&argc, &argv, &g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 1;
    }
    int rank = comm_rank(g_comm), local = comm_local_rank(g_comm);
    g_device = share ? 0 : local % count;
    int status = 0;
    if (cudaSetDevice(g_device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaMalloc((void **)&g_dev, (size_t)MAX_N * 4) != cudaSuccess ||
        cudaMallocHost((void **)&g_up, (size_t)MAX_N * 4) != cudaSuccess ||
        cudaMallocHost((void **)&g_down, (size_t)MAX_N * 4) != cudaSuccess) {
        fprintf(stderr, "rank %d: CUDA set-up failed\n", rank);
        status = 1;
    }
    if (comm_agree(g_comm, status, err, sizeof err) != 0) {
        comm_finalize(g_comm);
        return 1;
    }
    if (comm_gpu_init(g_comm, g_device, g_stream, want, err, sizeof err) != 0) {
        if (rank == 0) fprintf(stderr, "comm_gpu_init: %s\n", err);
        comm_finalize(g_comm);
        return 1;
    }
    comm_gpu_backend got = comm_gpu_backend_in_use(g_comm);
    g_backend = got;
    /* AUTO: NCCL unless two ranks share a GPU (one node here) or the build lacks it. */
    int shared = share ? comm_world(g_comm) > 1 : comm_local_size(g_comm) > count;
    comm_gpu_backend expect = want != COMM_GPU_AUTO ? want
                              : comm_gpu_built(COMM_GPU_NCCL) && !shared ? COMM_GPU_NCCL
                                                                         : COMM_GPU_MPI_STAGED;
    if (rank == 0)
        printf("# %d rank%s, %d GPU%s visible, rank 0 on device %d: backend %s\n",
               comm_world(g_comm), comm_world(g_comm) > 1 ? "s" : "", count, count > 1 ? "s" : "",
               g_device, comm_gpu_backend_name(got));
    if (got != expect) {
        fprintf(stderr, "rank %d: backend %s, expected %s\n", rank, comm_gpu_backend_name(got),
                comm_gpu_backend_name(expect));
        comm_finalize(g_comm);
        return 1;
    }
    if (stall_mode) return stall();

    /* the watchdog polls the GPU queue all along; nothing here may trip it */
    if (comm_watchdog_start(g_comm, 120.0, err, sizeof err) != 0) {
        fprintf(stderr, "comm_watchdog_start: %s\n", err);
        return 1;
    }
    const struct CMUnitTest zero_tests[] = {
        cmocka_unit_test(test_zero_7),
        cmocka_unit_test(test_zero_1001),
        cmocka_unit_test(test_zero_100003),
    };
    if (zero_mode) {
        int failed = comm_test_run_group(g_comm, "gpu_comm_zero", zero_tests,
                                         sizeof zero_tests / sizeof zero_tests[0]);
        comm_finalize(g_comm);
        cudaFree(g_dev);
        cudaFreeHost(g_up);
        cudaFreeHost(g_down);
        cudaStreamDestroy(g_stream);
        return failed != 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_element),
        cmocka_unit_test(test_101),
        cmocka_unit_test(test_1000),
        cmocka_unit_test(test_100003),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_wait_seconds),
        cmocka_unit_test(test_bad_buffers),
    };
    int failed = comm_test_run_group(g_comm, "gpu_comm", tests, sizeof tests / sizeof tests[0]);
    comm_finalize(g_comm);   /* NCCL and comm's stream go before the buffers they used */
    cudaFree(g_dev);
    cudaFreeHost(g_up);
    cudaFreeHost(g_down);
    cudaStreamDestroy(g_stream);
    return failed != 0;
}

#else   /* no CUDA in this build */

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--count") == 0) {
        printf("0\n");
        return 0;
    }
    printf("SKIP: this build has no CUDA\n");
    return 77;
}

#endif
