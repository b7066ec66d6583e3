/* The loader's machinery: host allocator use, prefetch ahead of the caller, errors raised in
 * the background thread, cache served from memory, concurrent loaders, open/close churn,
 * config errors. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "data_test_util.h"

static const char *dir;
static char file_u8[4096];

static void next_ok(data_loader *l, data_batch *b) {
    char err[512] = "";
    int rc = data_loader_next(l, b, err, sizeof err);
    if (rc != 0) fail_msg("next returned %d: %s", rc, err);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- host allocator ---- */

typedef struct {
    int allocs, frees;
    size_t bytes;
} alloc_count;

static void *count_alloc(size_t bytes, void *user) {
    alloc_count *c = user;
    c->allocs++;
    c->bytes += bytes;
    return malloc(bytes);
}

static void count_free(void *p, void *user) {
    ((alloc_count *)user)->frees++;
    free(p);
}

/* Batch buffers come from alloc_host, all at open: none per batch. */
static void test_host_allocator(void **state) {
    alloc_count c = {0};
    data_config cfg = {.path = file_u8, .mode = DATA_TRAIN, .rank = 1, .world = 3,
                       .global_batch = 10, .shuffle = 1, .alloc_host = count_alloc,
                       .free_host = count_free, .alloc_user = &c};
    data_loader *l;
    char err[512];
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    int after_open = c.allocs;
    assert_true(after_open >= 2);
    /* slots of ceil(10/3) = 4 samples of 4*3 bytes and 4 labels */
    assert_true(c.bytes >= 2 * (4 * 12 + 4 * sizeof(int32_t)));
    for (int k = 0; k < 100; k++) {
        data_batch b;
        next_ok(l, &b);
        assert_int_equal(b.count, 3);
        for (int64_t i = 0; i < b.count; i++) assert_true(b.y[i] >= 0 && b.y[i] < 10);
    }
    assert_int_equal(c.allocs, after_open);
    assert_int_equal(c.frees, 0);
    data_loader_close(l);
    assert_int_equal(c.frees, c.allocs);

    cfg.free_host = NULL;
    assert_int_not_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    assert_non_null(strstr(err, "free_host"));
}

/* The thread fills batch k+1 while the caller holds batch k: after a pause, next() does not
 * wait.  The wait time only grows. */
static void test_prefetch_runs_ahead(void **state) {
    data_config cfg = {.path = file_u8, .mode = DATA_TRAIN, .world = 1, .global_batch = 8,
                       .shuffle = 1};
    data_loader *l;
    char err[512];
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    data_batch b;
    next_ok(l, &b);
    double w0 = data_loader_wait_seconds(l);
    assert_true(w0 >= 0.0);
    sleep_ms(100);
    next_ok(l, &b);
    double w1 = data_loader_wait_seconds(l);
    assert_true(w1 >= w0);
    assert_true(w1 - w0 < 0.05);
    data_loader_close(l);
}

/* ---- errors from the background thread ---- */

/* Overwrites the stored (compressed) chunk of one sample with garbage: the schema check at open
 * passes, the read of that sample in the thread fails. */
static void corrupt_chunk(const char *path, hsize_t sample) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hsize_t offset[3] = {sample, 0, 0};
    unsigned mask;
    haddr_t addr;
    hsize_t size;
    assert_true(H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    int fd = open(path, O_WRONLY);
    unsigned char junk[64];
    memset(junk, 0xa5, sizeof junk);
    assert_true(pwrite(fd, junk, size < sizeof junk ? size : sizeof junk, (off_t)addr) > 0);
    close(fd);
}

static void test_thread_error_reaches_caller(void **state) {
    char p[4096];
    tu_join(p, sizeof p, dir, "corrupt_chunk.h5");
    tu_spec s = {.dtype = DATA_U8, .ndims = 3, .dims = {20, 6, 6}, .num_classes = 10,
                 .images_chunked = 1};
    tu_write_file(p, &s);
    corrupt_chunk(p, 5);
    data_info info;
    char err[512] = "";
    assert_int_equal(data_inspect(p, &info, err, sizeof err), 0); /* labels are fine */
    data_info_free(&info);

    data_config cfg = {.path = p, .mode = DATA_EVAL, .world = 1, .global_batch = 4};
    data_loader *l;
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    data_batch b;
    next_ok(l, &b); /* samples 0..3 */
    tu_check_sample(&b, 3, 3, data_loader_info(l));
    for (int again = 0; again < 3; again++) { /* 4..7 fails, and keeps failing */
        err[0] = '\0';
        assert_int_equal(data_loader_next(l, &b, err, sizeof err), -1);
        tu_assert_contains(err, p, "/images", "failed", NULL);
        assert_int_equal(b.count, 0);
        if (again == 0) print_message("thread error: %s\n", err);
    }
    /* seek restarts the thread: the good batch reads again, the bad one fails again */
    assert_int_equal(data_loader_seek(l, 0, 0, err, sizeof err), 0);
    next_ok(l, &b);
    assert_int_equal(b.cursor, 0);
    assert_int_equal(data_loader_next(l, &b, err, sizeof err), -1);
    assert_int_equal(data_loader_seek(l, 0, 8, err, sizeof err), 0);
    next_ok(l, &b);
    tu_check_sample(&b, 0, 8, data_loader_info(l));
    data_loader_close(l);

    /* With the cache, the whole-file read fails on first use. */
    cfg.cache_bytes = 1 << 20;
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    assert_int_equal(data_loader_next(l, &b, err, sizeof err), -1);
    tu_assert_contains(err, p, "/images", "cache", NULL);
    data_loader_close(l);
}

/* ---- cache ---- */

/* Once the cache is loaded the file is not read again: scribbling over the pixels on disk
 * does not change what the cached loader hands out, but does change a fresh uncached one. */
static void test_cache_serves_from_memory(void **state) {
    char p[4096];
    tu_join(p, sizeof p, dir, "scribble.h5");
    tu_write_simple(p, DATA_U8, 64, 5, 5, 0, 10);
    data_config cfg = {.path = p, .mode = DATA_TRAIN, .world = 1, .global_batch = 16,
                       .shuffle = 1, .seed = 3, .cache_bytes = 64 * 29};
    data_loader *cached;
    char err[512];
    assert_int_equal(data_loader_open(&cfg, &cached, err, sizeof err), 0);
    data_batch b;
    next_ok(cached, &b);

    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    assert_true(off != HADDR_UNDEF);
    unsigned char junk[64 * 25];
    memset(junk, 0xee, sizeof junk);
    int fd = open(p, O_WRONLY);
    assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)off), (ssize_t)sizeof junk);
    close(fd);

    const data_info *info = data_loader_info(cached);
    int64_t perm[64];
    for (int k = 1; k < 12; k++) {
        next_ok(cached, &b);
        data_epoch_permutation(perm, 64, 3, b.epoch);
        for (int64_t i = 0; i < b.count; i++) tu_check_sample(&b, i, perm[b.cursor + i], info);
    }
    data_loader_close(cached);

    cfg.cache_bytes = 64 * 29 - 1; /* one byte short of images + labels: no cache */
    data_loader *plain;
    assert_int_equal(data_loader_open(&cfg, &plain, err, sizeof err), 0);
    next_ok(plain, &b);
    assert_int_equal(((const uint8_t *)b.x)[0], 0xee);
    data_loader_close(plain);
}

/* ---- concurrency ---- */

typedef struct {
    const char *path;
    int rank, world;
    int ok;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    data_config cfg = {.path = a->path, .mode = DATA_TRAIN, .rank = a->rank, .world = a->world,
                       .global_batch = 9, .shuffle = 1, .seed = 11};
    data_loader *l;
    char err[512];
    if (data_loader_open(&cfg, &l, err, sizeof err) != 0) return NULL;
    const data_info *info = data_loader_info(l);
    int64_t perm[103];
    int64_t perm_epoch = -1;
    for (int k = 0; k < 300; k++) {
        data_batch b;
        if (data_loader_next(l, &b, err, sizeof err) != 0) goto out;
        if (b.epoch != perm_epoch) {
            data_epoch_permutation(perm, 103, 11, b.epoch);
            perm_epoch = b.epoch;
        }
        int64_t begin, end;
        data_rank_slice(9, a->rank, a->world, &begin, &end);
        if (b.rank_offset != begin) goto out;   /* the trainer's dropout index comes from it */
        for (int64_t i = 0; i < b.count; i++) {
            int64_t sample = perm[b.cursor + begin + i];
            const uint8_t *x = (const uint8_t *)b.x + i * info->sample_elems;
            for (int64_t e = 0; e < info->sample_elems; e++)
                if (x[e] != (uint8_t)tu_pixel(sample, e, DATA_U8)) goto out;
            if (b.y[i] != tu_label(sample, info->num_classes)) goto out;
        }
    }
    a->ok = 1;
out:
    data_loader_close(l);
    return NULL;
}

/* Four loaders driven from four threads at once (eight threads making HDF5 calls). */
static void test_concurrent_loaders(void **state) {
    pthread_t t[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){.path = file_u8, .rank = i % 3, .world = 3};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(a[i].ok);
    }
}

/* Closing and seeking while the thread is mid-read neither hangs nor leaks a thread. */
static void test_open_close_churn(void **state) {
    char err[512];
    for (int i = 0; i < 50; i++) {
        data_config cfg = {.path = file_u8, .mode = i % 2 ? DATA_EVAL : DATA_TRAIN,
                           .world = 2, .rank = i % 2, .global_batch = 5, .shuffle = 1,
                           .cache_bytes = i % 3 ? 0 : 1 << 20};
        data_loader *l;
        assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
        data_batch b;
        for (int k = 0; k < i % 4; k++) {
            assert_true(data_loader_next(l, &b, err, sizeof err) >= 0);
            assert_int_equal(data_loader_seek(l, k, 3 * k, err, sizeof err), 0);
        }
        data_loader_close(l);
    }
    data_loader_close(NULL);
}

/* ---- eval details ---- */

/* Ranks beyond the samples of a short batch get count 0 (and still a buffer). */
static void test_eval_empty_rank_and_end(void **state) {
    data_config cfg = {.path = file_u8, .mode = DATA_EVAL, .rank = 4, .world = 5,
                       .global_batch = 50};
    data_loader *l;
    char err[512];
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    data_batch b;
    next_ok(l, &b); /* 0..49: rank 4 takes 40..49 */
    assert_int_equal(b.count, 10);
    tu_check_sample(&b, 0, 40, data_loader_info(l));
    next_ok(l, &b); /* 50..99 */
    next_ok(l, &b); /* 100..102: rank 4 gets [2,3) */
    assert_int_equal(b.global_count, 3);
    assert_int_equal(b.count, 1);
    assert_int_equal(b.last, 1);
    tu_check_sample(&b, 0, 102, data_loader_info(l));
    assert_int_equal(data_loader_next(l, &b, err, sizeof err), 1);
    assert_int_equal(b.count, 0);
    next_ok(l, &b); /* a new pass */
    assert_int_equal(b.cursor, 0);
    assert_int_equal(b.epoch, 1);
    data_loader_close(l);

    cfg.rank = 0;
    cfg.global_batch = 103 + 3; /* one short batch; rank 0 of 5 gets 103/5 = 20 */
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    next_ok(l, &b);
    assert_int_equal(b.global_count, 103);
    assert_int_equal(b.count, 20);
    assert_int_equal(b.last, 1);
    data_loader_close(l);

    cfg.world = 8;
    cfg.rank = 7;
    cfg.global_batch = 4; /* every batch leaves rank 7 empty */
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    int64_t seen = 0;
    int rc;
    while ((rc = data_loader_next(l, &b, err, sizeof err)) == 0) {
        assert_true(b.count <= 1);
        assert_non_null(b.x);
        seen += b.count;
    }
    assert_int_equal(rc, 1);
    /* rank 7 of 8 takes [3,4) of each of the 25 full batches and [2,3) of the last 3 */
    assert_int_equal(seen, 26);
    data_loader_close(l);
}

/* ---- config errors ---- */

static void expect_open_fails(data_config cfg, const char *needle) {
    data_loader *l = (data_loader *)0x1;
    char err[512] = "";
    assert_int_not_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    assert_null(l);
    if (strstr(err, needle) == NULL) fail_msg("\"%s\" lacks \"%s\"", err, needle);
}

static void test_config_errors(void **state) {
    data_config good = {.path = file_u8, .mode = DATA_TRAIN, .world = 2, .global_batch = 10};
    data_config c = good;
    c.rank = 2;
    expect_open_fails(c, "rank 2 of world 2");
    c = good;
    c.world = 0;
    expect_open_fails(c, "world 0");
    c = good;
    c.global_batch = 0;
    expect_open_fails(c, "global batch");
    c = good;
    c.global_batch = 104;
    expect_open_fails(c, file_u8);
    c = good;
    c.cache_bytes = -1;
    expect_open_fails(c, "cache");
    c = good;
    c.path = NULL;
    expect_open_fails(c, "path");
    c = good;
    c.mode = (data_mode)7;
    expect_open_fails(c, "mode");
    c = good;
    c.global_batch = 104;
    c.mode = DATA_EVAL; /* eval takes a global batch larger than the file */
    data_loader *l;
    char err[512];
    assert_int_equal(data_loader_open(&c, &l, err, sizeof err), 0);
    data_loader_close(l);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "loader");
    tu_join(file_u8, sizeof file_u8, dir, "u8_flat.h5");
    tu_write_simple(file_u8, DATA_U8, 103, 12, 0, 0, 10);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_allocator),
        cmocka_unit_test(test_prefetch_runs_ahead),
        cmocka_unit_test(test_thread_error_reaches_caller),
        cmocka_unit_test(test_cache_serves_from_memory),
        cmocka_unit_test(test_concurrent_loaders),
        cmocka_unit_test(test_open_close_churn),
        cmocka_unit_test(test_eval_empty_rank_and_end),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
