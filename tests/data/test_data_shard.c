/* Sharding: the epoch permutation, rank slices, and what loaders simulating R ranks in one
 * process hand out (eval covers every sample once; training batches are perm slices split
 * across ranks; seek and cache reproduce the stream). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "data_test_util.h"

#define N 103
#define MAX_WORLD 5

static const char *dir;
static char file_u8[4096], file_f32[4096];

/* ---- permutation and slices ---- */

static void assert_is_permutation(const int64_t *perm, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        assert_true(perm[i] >= 0 && perm[i] < n);
        assert_false(seen[perm[i]]);
        seen[perm[i]] = 1;
    }
    free(seen);
}

static void test_permutation(void **state) {
    int64_t sizes[] = {1, 2, 3, 103, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        int64_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        data_epoch_permutation(a, n, 42, 0);
        assert_is_permutation(a, n);
        data_epoch_permutation(b, n, 42, 0);
        assert_memory_equal(a, b, (size_t)n * sizeof *a); /* same on every rank */
        if (n >= 100) {
            data_epoch_permutation(b, n, 42, 1);
            assert_is_permutation(b, n);
            assert_memory_not_equal(a, b, (size_t)n * sizeof *a); /* epochs differ */
            data_epoch_permutation(b, n, 43, 0);
            assert_memory_not_equal(a, b, (size_t)n * sizeof *a); /* seeds differ */
            int64_t fixed = 0;
            for (int64_t i = 0; i < n; i++) fixed += a[i] == i;
            assert_true(fixed < 10); /* a real shuffle, not near-identity */
        }
        free(a);
        free(b);
    }
}

/* Over many epochs each of the 3! orders of 3 items shows up about equally often, and every
 * item lands in every position about equally often for n = 10. */
static void test_permutation_uniform(void **state) {
    int counts[6] = {0};
    const int epochs = 6000;
    for (int e = 0; e < epochs; e++) {
        int64_t p[3];
        data_epoch_permutation(p, 3, 7, e);
        counts[p[0] * 2 + (p[1] > p[2] ? 1 : 0)]++;
    }
    for (int i = 0; i < 6; i++) assert_true(counts[i] > 850 && counts[i] < 1150);

    int pos[10][10] = {{0}};
    for (int e = 0; e < 5000; e++) {
        int64_t p[10];
        data_epoch_permutation(p, 10, 99, e);
        for (int i = 0; i < 10; i++) pos[i][p[i]]++;
    }
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++) assert_true(pos[i][j] > 380 && pos[i][j] < 620);
}

static void test_rank_slice(void **state) {
    for (int world = 1; world <= 7; world++)
        for (int64_t g = 0; g <= 50; g++) {
            int64_t prev_end = 0;
            for (int r = 0; r < world; r++) {
                int64_t b, e;
                data_rank_slice(g, r, world, &b, &e);
                assert_int_equal(b, prev_end);
                assert_true(e - b == g / world || e - b == g / world + 1);
                assert_int_equal(b, (int64_t)r * g / world);
                prev_end = e;
            }
            assert_int_equal(prev_end, g);
        }
    /* 64-bit: no overflow of rank * g */
    int64_t b, e, g = (int64_t)1 << 61;
    data_rank_slice(g, 6, 7, &b, &e);
    assert_int_equal(e, g);
    assert_true(b > g / 7 * 6 - 1 && b <= g / 7 * 6 + 1);
}

/* ---- loaders as simulated ranks ---- */

static void open_ranks(data_loader **l, int world, const char *path, data_mode mode,
                       int64_t g, int64_t cache_bytes, uint64_t seed) {
    for (int r = 0; r < world; r++) {
        data_config cfg = {.path = path, .mode = mode, .rank = r, .world = world,
                           .global_batch = g, .seed = seed, .shuffle = 1,
                           .cache_bytes = cache_bytes};
        char err[512] = "";
        if (data_loader_open(&cfg, &l[r], err, sizeof err) != 0) fail_msg("open: %s", err);
    }
}

static void close_ranks(data_loader **l, int world) {
    for (int r = 0; r < world; r++) data_loader_close(l[r]);
}

static void next_ok(data_loader *l, data_batch *b) {
    char err[512] = "";
    int rc = data_loader_next(l, b, err, sizeof err);
    if (rc != 0) fail_msg("next returned %d: %s", rc, err);
}

static void eval_covers_once(const char *path, int world, int64_t g, int64_t cache) {
    data_loader *l[MAX_WORLD];
    open_ranks(l, world, path, DATA_EVAL, g, cache, 0);
    const data_info *info = data_loader_info(l[0]);
    for (int pass = 0; pass < 2; pass++) {
        int seen[N] = {0};
        int64_t cursor = 0, batches = 0;
        for (;;) {
            int64_t expect_g = N - cursor < g ? N - cursor : g;
            for (int r = 0; r < world; r++) {
                data_batch b;
                next_ok(l[r], &b);
                assert_int_equal(b.epoch, pass);
                assert_int_equal(b.cursor, cursor);
                assert_int_equal(b.global_count, expect_g);
                assert_int_equal(b.last, cursor + expect_g == N);
                int64_t begin, end;
                data_rank_slice(expect_g, r, world, &begin, &end);
                assert_int_equal(b.count, end - begin);
                for (int64_t k = 0; k < b.count; k++) {
                    int64_t sample = cursor + begin + k;
                    tu_check_sample(&b, k, sample, info);
                    seen[sample]++;
                }
            }
            batches++;
            cursor += expect_g;
            if (cursor == N) break;
        }
        assert_int_equal(batches, (N + g - 1) / g);
        for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
        /* end of pass, reported once by every rank */
        for (int r = 0; r < world; r++) {
            data_batch b;
            char err[256];
            assert_int_equal(data_loader_next(l[r], &b, err, sizeof err), 1);
            int64_t e, c;
            data_loader_position(l[r], &e, &c);
            assert_int_equal(e, pass + 1);
            assert_int_equal(c, 0);
        }
    }
    close_ranks(l, world);
}

static void test_eval_covers_every_sample_once(void **state) {
    int64_t gs[] = {10, 12, 7, 1, 103, 200};
    for (int world = 1; world <= MAX_WORLD; world++)
        for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
            eval_covers_once(file_u8, world, gs[i], 0);
            eval_covers_once(file_f32, world, gs[i], 1 << 20);
        }
}

/* Training: every global batch is perm[cursor, cursor+G) of its epoch, split by rank; no
 * sample twice in an epoch; the incomplete tail is dropped. */
static void train_matches_perm(const char *path, int world, int64_t g, int64_t cache,
                               int epochs) {
    const uint64_t seed = 1234;
    data_loader *l[MAX_WORLD];
    open_ranks(l, world, path, DATA_TRAIN, g, cache, seed);
    const data_info *info = data_loader_info(l[0]);
    int64_t perm[N], prev_perm[N];
    int64_t per_epoch = N / g;
    for (int epoch = 0; epoch < epochs; epoch++) {
        data_epoch_permutation(perm, N, seed, epoch);
        if (epoch > 0) assert_memory_not_equal(perm, prev_perm, sizeof perm);
        memcpy(prev_perm, perm, sizeof perm);
        int seen[N] = {0};
        for (int64_t k = 0; k < per_epoch; k++) {
            int64_t cursor = k * g;
            for (int r = 0; r < world; r++) {
                int64_t e, c;
                data_loader_position(l[r], &e, &c);
                assert_int_equal(e, epoch);
                assert_int_equal(c, cursor);
                data_batch b;
                next_ok(l[r], &b);
                assert_int_equal(b.epoch, epoch);
                assert_int_equal(b.cursor, cursor);
                assert_int_equal(b.global_count, g);
                assert_int_equal(b.last, 0);
                int64_t begin, end;
                data_rank_slice(g, r, world, &begin, &end);
                assert_int_equal(b.count, end - begin);
                for (int64_t i = 0; i < b.count; i++) {
                    int64_t sample = perm[cursor + begin + i];
                    tu_check_sample(&b, i, sample, info);
                    assert_int_equal(seen[sample], 0);
                    seen[sample] = 1;
                }
            }
        }
        int64_t used = 0;
        for (int i = 0; i < N; i++) used += seen[i];
        assert_int_equal(used, per_epoch * g);
    }
    close_ranks(l, world);
}

static void test_train_batches_are_perm_slices(void **state) {
    int64_t gs[] = {10, 12, 7, 103};
    for (int world = 1; world <= MAX_WORLD; world++)
        for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
            train_matches_perm(file_u8, world, gs[i], 0, 3);
            train_matches_perm(file_f32, world, gs[i], 1 << 20, 2);
        }
}

/* Without shuffle, training walks the file in order. */
static void test_train_without_shuffle(void **state) {
    data_config cfg = {.path = file_u8, .mode = DATA_TRAIN, .world = 2, .rank = 1,
                       .global_batch = 10};
    data_loader *l;
    char err[512];
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    for (int k = 0; k < 25; k++) {
        data_batch b;
        next_ok(l, &b);
        assert_int_equal(b.epoch, k / 10);
        assert_int_equal(b.cursor, (k % 10) * 10);
        for (int64_t i = 0; i < b.count; i++)
            tu_check_sample(&b, i, b.cursor + 5 + i, data_loader_info(l));
    }
    data_loader_close(l);
}

/* One batch per rank, all ranks' samples in rank order: the global batch, as sample ids
 * (element 0 of sample i in the f32 file is exactly i). */
static int64_t global_batch_samples(data_loader **l, int world, int64_t *out, data_batch *first,
                                    const data_info *info) {
    int64_t total = 0;
    for (int r = 0; r < world; r++) {
        data_batch b;
        next_ok(l[r], &b);
        if (r == 0) *first = b;
        for (int64_t i = 0; i < b.count; i++) {
            int64_t id = (int64_t)((const float *)b.x)[i * info->sample_elems];
            tu_check_sample(&b, i, id, info);
            out[total++] = id;
        }
    }
    return total;
}

/* Resume: seeking to a recorded position reproduces the stream, also with another world
 * size (the global batches are the same, only split differently). */
static void test_seek_reproduces_stream(void **state) {
    const int64_t g = 12;
    const int batches = 30; /* crosses epoch boundaries: 8 batches per epoch */
    data_loader *ref[1];
    open_ranks(ref, 1, file_f32, DATA_TRAIN, g, 0, 77);
    const data_info *info = data_loader_info(ref[0]);
    int64_t samples[30][12], epoch_at[30], cursor_at[30];
    for (int k = 0; k < batches; k++) {
        data_loader_position(ref[0], &epoch_at[k], &cursor_at[k]);
        data_batch first;
        assert_int_equal(global_batch_samples(ref, 1, samples[k], &first, info), g);
        assert_int_equal(first.epoch, epoch_at[k]);
        assert_int_equal(first.cursor, cursor_at[k]);
    }
    for (int world = 1; world <= MAX_WORLD; world++) {
        data_loader *l[MAX_WORLD];
        open_ranks(l, world, file_f32, DATA_TRAIN, g, world % 2 ? 0 : 1 << 20, 77);
        for (int start = 3; start < batches; start += 7) {
            char err[512];
            for (int r = 0; r < world; r++)
                assert_int_equal(data_loader_seek(l[r], epoch_at[start], cursor_at[start], err,
                                                  sizeof err), 0);
            for (int k = start; k < start + 5 && k < batches; k++) {
                int64_t got[12];
                data_batch first;
                assert_int_equal(global_batch_samples(l, world, got, &first, info), g);
                assert_memory_equal(got, samples[k], sizeof got);
            }
        }
        close_ranks(l, world);
    }
    /* a cursor with no room for a full batch rolls into the next epoch */
    char err[512];
    assert_int_equal(data_loader_seek(ref[0], 4, N - 5, err, sizeof err), 0);
    int64_t e, c;
    data_loader_position(ref[0], &e, &c);
    assert_int_equal(e, 5);
    assert_int_equal(c, 0);
    /* a cursor that is not a multiple of G is fine */
    assert_int_equal(data_loader_seek(ref[0], 2, 5, err, sizeof err), 0);
    data_batch b;
    next_ok(ref[0], &b);
    int64_t perm[N];
    data_epoch_permutation(perm, N, 77, 2);
    for (int64_t i = 0; i < b.count; i++) tu_check_sample(&b, i, perm[5 + i], info);
    /* out of range */
    assert_int_not_equal(data_loader_seek(ref[0], 0, N + 1, err, sizeof err), 0);
    assert_non_null(strstr(err, file_f32));
    assert_int_not_equal(data_loader_seek(ref[0], -1, 0, err, sizeof err), 0);
    /* and the loader still works after a refused seek */
    next_ok(ref[0], &b);
    close_ranks(ref, 1);
}

/* Cached (whole file in memory) and uncached (hyperslab runs) loaders give identical batches. */
static void test_cache_and_hyperslab_reads_agree(void **state) {
    const char *files[2] = {file_u8, file_f32};
    for (int f = 0; f < 2; f++)
        for (int mode = 0; mode < 2; mode++) {
            data_loader *a[1], *b[1];
            open_ranks(a, 1, files[f], (data_mode)mode, 16, 0, 5);
            open_ranks(b, 1, files[f], (data_mode)mode, 16, (int64_t)1 << 30, 5);
            size_t xbytes = (size_t)data_loader_info(a[0])->sample_elems *
                            (data_loader_info(a[0])->dtype == DATA_U8 ? 1 : 4);
            for (int k = 0; k < 40; k++) {
                data_batch x, y;
                char err[256];
                int ra = data_loader_next(a[0], &x, err, sizeof err);
                int rb = data_loader_next(b[0], &y, err, sizeof err);
                assert_int_equal(ra, rb);
                if (ra == 1) continue;
                assert_int_equal(ra, 0);
                assert_int_equal(x.count, y.count);
                assert_int_equal(x.epoch, y.epoch);
                assert_int_equal(x.cursor, y.cursor);
                assert_memory_equal(x.x, y.x, (size_t)x.count * xbytes);
                assert_memory_equal(x.y, y.y, (size_t)x.count * sizeof(int32_t));
            }
            close_ranks(a, 1);
            close_ranks(b, 1);
        }
}

/* Big random batches need several grouped hyperslab reads (more than 64 runs each). */
static void test_large_batches(void **state) {
    char big[4096];
    tu_join(big, sizeof big, dir, "f32_big.h5");
    enum { BIG = 3000, G = 1400 };
    tu_write_simple(big, DATA_F32, BIG, 3, 0, 0, 10);
    for (int cached = 0; cached < 2; cached++) {
        data_loader *l[2];
        open_ranks(l, 2, big, DATA_TRAIN, G, cached ? 1 << 20 : 0, 9);
        const data_info *info = data_loader_info(l[0]);
        int64_t *perm = malloc(BIG * sizeof *perm);
        for (int k = 0; k < 5; k++) { /* 2 batches per epoch */
            for (int r = 0; r < 2; r++) {
                data_batch b;
                next_ok(l[r], &b);
                assert_int_equal(b.epoch, k / 2);
                data_epoch_permutation(perm, BIG, 9, b.epoch);
                int64_t begin, end;
                data_rank_slice(G, r, 2, &begin, &end);
                assert_int_equal(b.count, G / 2);
                for (int64_t i = 0; i < b.count; i++)
                    tu_check_sample(&b, i, perm[b.cursor + begin + i], info);
            }
        }
        free(perm);
        close_ranks(l, 2);
    }
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "shard");
    tu_join(file_u8, sizeof file_u8, dir, "u8_hw.h5");
    tu_join(file_f32, sizeof file_f32, dir, "f32_hwc.h5");
    tu_write_simple(file_u8, DATA_U8, N, 4, 3, 0, 10);
    tu_write_simple(file_f32, DATA_F32, N, 3, 2, 2, 7);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_permutation_uniform),
        cmocka_unit_test(test_rank_slice),
        cmocka_unit_test(test_eval_covers_every_sample_once),
        cmocka_unit_test(test_train_batches_are_perm_slices),
        cmocka_unit_test(test_train_without_shuffle),
        cmocka_unit_test(test_seek_reproduces_stream),
        cmocka_unit_test(test_cache_and_hyperslab_reads_agree),
        cmocka_unit_test(test_large_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
