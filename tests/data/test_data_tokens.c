/* Token datasets: the window grid, sharding of windows across simulated ranks (eval covers
 * every window once, training epochs never repeat a window, world-size-change resume sees the
 * same global batches), uint16 and int32 files, cache vs hyperslab reads, and bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "data_test_util.h"

#define MAX_WORLD 5
#define T_TOKENS 1003 /* not a multiple of any context used below */
#define VOCAB16 65536
#define VOCAB32 200003

static const char *dir;
static char file_u16[4096], file_i32[4096];

/* Token i of every generated file; int32 files reach past 65535. */
static int32_t tok(int64_t i, int64_t vocab) {
    return (int32_t)((i * 37 + 11) % vocab);
}

typedef struct {
    hid_t type;              /* file type of /tokens */
    int rank;                /* 1, or 2 for a [T,1] dataset */
    int64_t n;
    int64_t vocab;           /* <= 0: no vocab_size attribute */
    int64_t bad_at, bad_value; /* bad_at >= 0: token bad_at is bad_value */
} tok_spec;

static void write_tokens(const char *path, const tok_spec *s) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    hsize_t dims[2] = {(hsize_t)s->n, 1};
    int64_t *buf = malloc((size_t)s->n * sizeof *buf);
    for (int64_t i = 0; i < s->n; i++) buf[i] = tok(i, s->vocab > 0 ? s->vocab : 256);
    if (s->bad_at >= 0) buf[s->bad_at] = s->bad_value;
    hid_t space = H5Screate_simple(s->rank, dims, NULL);
    hid_t d = H5Dcreate2(file, "tokens", s->type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    if (s->vocab > 0) {
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(file, "vocab_size", H5T_STD_I64LE, as, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(a, H5T_NATIVE_INT64, &s->vocab) >= 0);
        H5Aclose(a);
        H5Sclose(as);
    }
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(file);
    free(buf);
}

static void write_good(const char *path, hid_t type, int64_t n, int64_t vocab) {
    tok_spec s = {.type = type, .rank = 1, .n = n, .vocab = vocab, .bad_at = -1};
    write_tokens(path, &s);
}

/* ---- the grid ---- */

static void test_grid(void **state) {
    int64_t ts[] = {2, 17, 100, 1003, 4097};
    int64_t cs[] = {1, 3, 16, 64, 1000};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++) {
            int64_t t = ts[a], c = cs[b], w, off, w0 = -1;
            if (t < c + 1) continue;
            int64_t full = (t - 1) / c;
            data_token_grid(t, c, DATA_EVAL, 1, 5, 3, &w, &off);
            assert_int_equal(w, full);
            assert_int_equal(off, 0);
            data_token_grid(t, c, DATA_TRAIN, 0, 5, 3, &w, &off);
            assert_int_equal(w, full);
            assert_int_equal(off, 0);
            int distinct = 0;
            int64_t first_off = -1;
            for (int64_t e = 0; e < 40; e++) {
                data_token_grid(t, c, DATA_TRAIN, 1, 5, e, &w, &off);
                if (w0 < 0) w0 = w;
                assert_int_equal(w, w0); /* the same in every epoch */
                assert_int_equal(w, full >= 2 ? full - 1 : full);
                assert_true(off >= 0 && off < c);
                assert_true(off + w * c + 1 <= t); /* the last window fits */
                if (first_off < 0) first_off = off;
                distinct += off != first_off;
            }
            if (full >= 2 && c >= 16) assert_true(distinct > 0); /* offsets move */
        }
}

/* ---- simulated ranks ---- */

static void open_ranks(data_loader **l, int world, const char *path, data_mode mode, int64_t g,
                       int64_t ctx, int64_t cache, uint64_t seed) {
    for (int r = 0; r < world; r++) {
        data_config cfg = {.path = path, .mode = mode, .rank = r, .world = world,
                           .global_batch = g, .seed = seed, .shuffle = 1, .cache_bytes = cache,
                           .context = ctx};
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

/* Window k of batch b is the window starting at token `start`. */
static void check_window(const data_batch *b, int64_t k, int64_t ctx, int64_t start,
                         int64_t vocab) {
    const int32_t *x = (const int32_t *)b->x + k * ctx, *y = b->y + k * ctx;
    for (int64_t j = 0; j < ctx; j++) {
        if (x[j] != tok(start + j, vocab) || y[j] != tok(start + j + 1, vocab))
            fail_msg("epoch %lld cursor %lld item %lld: token %lld is %d/%d, window at %lld "
                     "has %d/%d", (long long)b->epoch, (long long)b->cursor, (long long)k,
                     (long long)j, x[j], y[j], (long long)start, tok(start + j, vocab),
                     tok(start + j + 1, vocab));
    }
}

static void eval_covers_once(const char *path, int64_t vocab, int world, int64_t g, int64_t ctx,
                             int64_t cache) {
    data_loader *l[MAX_WORLD];
    open_ranks(l, world, path, DATA_EVAL, g, ctx, cache, 0);
    int64_t w = (T_TOKENS - 1) / ctx;
    assert_int_equal(data_loader_info(l[0])->n, w);
    assert_int_equal(data_loader_info(l[0])->sample_elems, ctx);
    assert_int_equal(data_loader_info(l[0])->dtype, DATA_I32);
    char *seen = calloc((size_t)w, 1);
    int64_t cursor = 0;
    while (cursor < w) {
        int64_t gc = w - cursor < g ? w - cursor : g;
        for (int r = 0; r < world; r++) {
            data_batch b;
            next_ok(l[r], &b);
            assert_int_equal(b.global_count, gc);
            int64_t begin, end;
            data_rank_slice(gc, r, world, &begin, &end);
            assert_int_equal(b.count, end - begin);
            assert_int_equal(b.rank_offset, begin);
            for (int64_t k = 0; k < b.count; k++) {
                int64_t win = cursor + begin + k;
                check_window(&b, k, ctx, win * ctx, vocab);
                assert_int_equal(seen[win], 0);
                seen[win] = 1;
            }
        }
        cursor += gc;
    }
    for (int64_t i = 0; i < w; i++) assert_int_equal(seen[i], 1);
    for (int r = 0; r < world; r++) {
        data_batch b;
        char err[256];
        assert_int_equal(data_loader_next(l[r], &b, err, sizeof err), 1);
    }
    free(seen);
    close_ranks(l, world);
}

static void test_eval_covers_every_window_once(void **state) {
    for (int world = 1; world <= MAX_WORLD; world++) {
        eval_covers_once(file_u16, VOCAB16, world, 7, 16, 0);
        eval_covers_once(file_i32, VOCAB32, world, 5, 10, 1 << 20);
        eval_covers_once(file_i32, VOCAB32, world, 200, 7, 0);
    }
}

/* Training: global batch k of an epoch is windows perm[kG, (k+1)G) at the epoch's offset; no
 * window (token range) twice in an epoch; offsets differ across epochs. */
static void train_epochs(const char *path, int64_t vocab, int world, int64_t g, int64_t ctx,
                         int64_t cache) {
    const uint64_t seed = 99;
    data_loader *l[MAX_WORLD];
    open_ranks(l, world, path, DATA_TRAIN, g, ctx, cache, seed);
    int64_t w = data_loader_info(l[0])->n;
    assert_int_equal(w, (T_TOKENS - 1) / ctx - 1);
    int64_t *perm = malloc((size_t)w * sizeof *perm);
    int64_t offs[4];
    for (int epoch = 0; epoch < 4; epoch++) {
        int64_t ww, off;
        data_token_grid(T_TOKENS, ctx, DATA_TRAIN, 1, seed, epoch, &ww, &off);
        assert_int_equal(ww, w);
        offs[epoch] = off;
        data_epoch_permutation(perm, w, seed, epoch);
        char *used = calloc(T_TOKENS, 1); /* tokens used as inputs this epoch */
        for (int64_t c = 0; c + g <= w; c += g)
            for (int r = 0; r < world; r++) {
                data_batch b;
                next_ok(l[r], &b);
                assert_int_equal(b.epoch, epoch);
                assert_int_equal(b.cursor, c);
                int64_t begin, end;
                data_rank_slice(g, r, world, &begin, &end);
                for (int64_t k = 0; k < b.count; k++) {
                    int64_t start = off + perm[c + begin + k] * ctx;
                    check_window(&b, k, ctx, start, vocab);
                    for (int64_t j = 0; j < ctx; j++) {
                        assert_int_equal(used[start + j], 0);
                        used[start + j] = 1;
                    }
                }
            }
        free(used);
    }
    assert_true(offs[0] != offs[1] || offs[1] != offs[2] || offs[2] != offs[3]);
    free(perm);
    close_ranks(l, world);
}

static void test_train_epochs_no_overlap(void **state) {
    for (int world = 1; world <= MAX_WORLD; world++) {
        train_epochs(file_u16, VOCAB16, world, 6, 16, 0);
        train_epochs(file_i32, VOCAB32, world, 10, 9, 1 << 20);
    }
}

/* FNV-1a over the token ids of a global batch (all ranks' slices in rank order). */
static uint64_t global_hash(data_loader **l, int world, int64_t ctx) {
    uint64_t h = 1469598103934665603ULL;
    for (int r = 0; r < world; r++) {
        data_batch b;
        next_ok(l[r], &b);
        const int32_t *x = b.x;
        for (int64_t i = 0; i < b.count * ctx; i++) {
            h = (h ^ (uint32_t)x[i]) * 1099511628211ULL;
            h = (h ^ (uint32_t)b.y[i]) * 1099511628211ULL;
        }
    }
    return h;
}

static void test_resume_other_world_same_batches(void **state) {
    enum { G = 12, CTX = 8, BATCHES = 40 }; /* 123 windows: 10 batches per epoch */
    data_loader *ref[1];
    open_ranks(ref, 1, file_i32, DATA_TRAIN, G, CTX, 0, 7);
    uint64_t hash[BATCHES];
    int64_t ep[BATCHES], cu[BATCHES];
    for (int k = 0; k < BATCHES; k++) {
        data_loader_position(ref[0], &ep[k], &cu[k]);
        hash[k] = global_hash(ref, 1, CTX);
    }
    close_ranks(ref, 1);
    for (int world = 2; world <= MAX_WORLD; world++) {
        data_loader *l[MAX_WORLD];
        open_ranks(l, world, file_i32, DATA_TRAIN, G, CTX, world % 2 ? 1 << 20 : 0, 7);
        for (int start = 3; start < BATCHES; start += 11) {
            char err[512];
            for (int r = 0; r < world; r++)
                assert_int_equal(data_loader_seek(l[r], ep[start], cu[start], err, sizeof err),
                                 0);
            for (int k = start; k < start + 12 && k < BATCHES; k++)
                assert_true(global_hash(l, world, CTX) == hash[k]);
        }
        close_ranks(l, world);
    }
}

static void test_cache_and_reads_agree(void **state) {
    const char *files[2] = {file_u16, file_i32};
    for (int f = 0; f < 2; f++)
        for (int mode = 0; mode < 2; mode++) {
            data_loader *a[1], *b[1];
            open_ranks(a, 1, files[f], (data_mode)mode, 9, 13, 0, 3);
            open_ranks(b, 1, files[f], (data_mode)mode, 9, 13, (int64_t)1 << 30, 3);
            for (int k = 0; k < 30; k++) {
                data_batch x, y;
                char err[256];
                int ra = data_loader_next(a[0], &x, err, sizeof err);
                int rb = data_loader_next(b[0], &y, err, sizeof err);
                assert_int_equal(ra, rb);
                if (ra == 1) continue;
                assert_int_equal(ra, 0);
                assert_int_equal(x.count, y.count);
                assert_int_equal(x.cursor, y.cursor);
                assert_memory_equal(x.x, y.x, (size_t)x.count * 13 * 4);
                assert_memory_equal(x.y, y.y, (size_t)x.count * 13 * 4);
            }
            close_ranks(a, 1);
            close_ranks(b, 1);
        }
}

static void test_inspect(void **state) {
    data_info info;
    char err[512];
    if (data_inspect(file_u16, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.kind, DATA_TOKENS);
    assert_int_equal(info.n_tokens, T_TOKENS);
    assert_int_equal(info.token_bits, 16);
    assert_int_equal(info.vocab_size, VOCAB16);
    assert_int_equal(info.eot_token, -1);
    data_info_free(&info);
    if (data_inspect(file_i32, &info, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(info.token_bits, 32);
    assert_int_equal(info.vocab_size, VOCAB32);
    data_info_free(&info);
}

/* ---- bad files ---- */

static void expect_inspect_fails(const char *path, ...) {
    data_info info;
    char err[512] = "";
    assert_int_not_equal(data_inspect(path, &info, err, sizeof err), 0);
    tu_assert_contains(err, path, NULL);
    va_list ap;
    va_start(ap, path);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        tu_assert_contains(err, s, NULL);
    va_end(ap);
}

/* The error of opening and reading one eval pass (cache or not), which must name the file. */
static void loader_error(const char *path, int64_t ctx, int64_t cache, data_config *over,
                         char *err, size_t len) {
    data_config cfg = {.path = path, .mode = DATA_EVAL, .world = 1, .global_batch = 4,
                       .cache_bytes = cache, .context = ctx};
    if (over) cfg = *over;
    data_loader *l;
    err[0] = '\0';
    if (data_loader_open(&cfg, &l, err, len) == 0) {
        data_batch b;
        int rc;
        while ((rc = data_loader_next(l, &b, err, len)) == 0) {}
        data_loader_close(l);
        if (rc == 1) fail_msg("%s: loader accepted every window", path);
    }
    tu_assert_contains(err, path, NULL);
}

static void test_bad_files(void **state) {
    char p[4096], err[512];
    tok_spec s = {.type = H5T_IEEE_F32LE, .rank = 1, .n = 100, .vocab = 256, .bad_at = -1};
    tu_join(p, sizeof p, dir, "bad_float.h5");
    write_tokens(p, &s);
    expect_inspect_fails(p, "/tokens", "float32", "uint16 or int32", NULL);

    s = (tok_spec){.type = H5T_STD_U16LE, .rank = 2, .n = 100, .vocab = 256, .bad_at = -1};
    tu_join(p, sizeof p, dir, "bad_2d.h5");
    write_tokens(p, &s);
    expect_inspect_fails(p, "/tokens", "[100,1]", NULL);

    s = (tok_spec){.type = H5T_STD_U16LE, .rank = 1, .n = 100, .vocab = 0, .bad_at = -1};
    tu_join(p, sizeof p, dir, "bad_no_vocab.h5");
    write_tokens(p, &s);
    expect_inspect_fails(p, "vocab_size", NULL);

    s = (tok_spec){.type = H5T_STD_I32LE, .rank = 1, .n = 100, .vocab = (int64_t)1 << 31,
                   .bad_at = -1};
    tu_join(p, sizeof p, dir, "bad_vocab_range.h5");
    write_tokens(p, &s);
    expect_inspect_fails(p, "vocab_size", "2147483648", NULL);

    /* a token >= vocab_size and a negative one: the position is named, cached or read by
     * windows */
    s = (tok_spec){.type = H5T_STD_U16LE, .rank = 1, .n = 500, .vocab = 256, .bad_at = 333,
                   .bad_value = 256};
    tu_join(p, sizeof p, dir, "bad_token.h5");
    write_tokens(p, &s);
    for (int cache = 0; cache < 2; cache++) {
        loader_error(p, 8, cache ? 1 << 20 : 0, NULL, err, sizeof err);
        tu_assert_contains(err, "/tokens", "position 333", "256", NULL);
    }
    s = (tok_spec){.type = H5T_STD_I32LE, .rank = 1, .n = 500, .vocab = 1000, .bad_at = 47,
                   .bad_value = -5};
    tu_join(p, sizeof p, dir, "bad_negative.h5");
    write_tokens(p, &s);
    for (int cache = 0; cache < 2; cache++) {
        loader_error(p, 8, cache ? 1 << 20 : 0, NULL, err, sizeof err);
        tu_assert_contains(err, "/tokens", "position 47", "-5", NULL);
    }

    /* fewer tokens than one window; no context; augmentation */
    loader_error(file_u16, T_TOKENS, 0, NULL, err, sizeof err);
    tu_assert_contains(err, "/tokens", "fewer than one window", NULL);
    loader_error(file_u16, 0, 0, NULL, err, sizeof err);
    tu_assert_contains(err, "context", NULL);
    data_config aug = {.path = file_u16, .mode = DATA_TRAIN, .world = 1, .global_batch = 4,
                       .context = 8, .augment_pad = 2};
    loader_error(file_u16, 8, 0, &aug, err, sizeof err);
    tu_assert_contains(err, "augment_pad", NULL);
    aug.augment_pad = 0;
    aug.augment_hflip = 1;
    loader_error(file_u16, 8, 0, &aug, err, sizeof err);
    tu_assert_contains(err, "augment_hflip", NULL);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "tokens");
    tu_join(file_u16, sizeof file_u16, dir, "u16.h5");
    tu_join(file_i32, sizeof file_i32, dir, "i32.h5");
    write_good(file_u16, H5T_STD_U16LE, T_TOKENS, VOCAB16);
    write_good(file_i32, H5T_STD_I32LE, T_TOKENS, VOCAB32);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_eval_covers_every_window_once),
        cmocka_unit_test(test_train_epochs_no_overlap),
        cmocka_unit_test(test_resume_other_world_same_batches),
        cmocka_unit_test(test_cache_and_reads_agree),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
