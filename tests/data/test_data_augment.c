/* Training augmentation: random crop after zero padding and horizontal flip.
 *
 * The pixels are checked against a direct per-pixel reference of the definition (data.h):
 * pad with augment_pad zeros on each side of H and W, crop [H, W] at (dy, dx) in [0, 2p]^2,
 * flip left-right when drawn.  The draws are a pure function of (seed, epoch, sample index):
 * the same for two loaders, any world size, after a seek, with or without the cache.
 * (torchvision is not a dependency: the definition above is torchvision's
 * RandomCrop(size, padding=p) followed by RandomHorizontalFlip().) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "data_internal.h"
#include "data_test_util.h"

static const char *dir;

static void next_ok(data_loader *l, data_batch *b) {
    char err[512] = "";
    int rc = data_loader_next(l, b, err, sizeof err);
    if (rc != 0) fail_msg("next returned %d: %s", rc, err);
}

/* ---- the reference ---- */

typedef struct {
    int64_t h, w, c;
} geometry;

static geometry geometry_of(const data_info *info) {
    geometry g = {info->sample_shape[0], info->sample_shape[1],
                  info->sample_ndim == 3 ? info->sample_shape[2] : 1};
    return g;
}

/* Element (y, x, ch) of file sample `sample` after the draw d: straight from the definition. */
static double reference_pixel(int64_t sample, geometry g, data_dtype dtype, int pad,
                              data_augment_draw d, int64_t y, int64_t x, int64_t ch) {
    int64_t xs = d.flip ? g.w - 1 - x : x;            /* flip after the crop */
    int64_t py = y + d.dy, px = xs + d.dx;           /* in the padded [H+2p, W+2p] image */
    int64_t iy = py - pad, ix = px - pad;
    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.0; /* the zero border */
    return tu_pixel(sample, (iy * g.w + ix) * g.c + ch, dtype);
}

static double element(const data_batch *b, const data_info *info, int64_t k, int64_t e) {
    return info->dtype == DATA_U8 ? (double)((const uint8_t *)b->x)[k * info->sample_elems + e]
                                  : (double)((const float *)b->x)[k * info->sample_elems + e];
}

/* Asserts that item k of batch b is file sample `sample` augmented with its draws; returns the
 * draws. */
static data_augment_draw check_augmented(const data_batch *b, int64_t k, int64_t sample,
                                         const data_info *info, uint64_t seed, int pad,
                                         int hflip) {
    data_augment_draw d = data_augment_draw_sample(data_augment_key(seed, b->epoch), sample,
                                                   pad, hflip);
    geometry g = geometry_of(info);
    for (int64_t y = 0; y < g.h; y++)
        for (int64_t x = 0; x < g.w; x++)
            for (int64_t ch = 0; ch < g.c; ch++) {
                double want = reference_pixel(sample, g, info->dtype, pad, d, y, x, ch);
                double got = element(b, info, k, (y * g.w + x) * g.c + ch);
                if (got != want)
                    fail_msg("epoch %lld sample %lld (dy %d dx %d flip %d, pad %d): [%lld,%lld,"
                             "%lld] is %g, expected %g", (long long)b->epoch, (long long)sample,
                             d.dy, d.dx, d.flip, pad, (long long)y, (long long)x, (long long)ch,
                             got, want);
            }
    assert_int_equal(b->y[k], tu_label(sample, info->num_classes));
    return d;
}

/* Sample index in the file of item k of a training batch (shuffled with seed). */
static int64_t sample_of(const data_batch *b, int64_t k, const data_config *cfg, int64_t n,
                         int64_t *perm, int64_t *perm_epoch) {
    if (*perm_epoch != b->epoch) {
        data_epoch_permutation(perm, n, cfg->seed, b->epoch);
        *perm_epoch = b->epoch;
    }
    int64_t begin, end;
    data_rank_slice(cfg->global_batch, cfg->rank, cfg->world, &begin, &end);
    int64_t at = b->cursor + begin + k;
    return cfg->shuffle ? perm[at] : at;
}

/* ---- the in-place kernel on hand-written images ---- */

static void test_hand_examples(void **state) {
    /* u8 [3,4], pad 1, dy 0 dx 2 (shift down 1, left 1), then flip. */
    uint8_t img[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const uint8_t want[12] = {0, 0, 0, 0, 0, 4, 3, 2, 0, 8, 7, 6};
    data_augment a = {.on = 1, .pad = 1, .hflip = 1, .h = 3, .w = 4, .pixel_bytes = 1};
    data_augment_sample(&a, (data_augment_draw){.dy = 0, .dx = 2, .flip = 1}, img);
    assert_memory_equal(img, want, sizeof want);

    /* f32 [2,3,2] (channels last), pad 1, dy 2 dx 0: out[y][x] = in[y+1][x-1]; then the same
     * with a flip, which must keep the channels of a pixel together and in order. */
    float in[12], out[12];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++) {
            in[(y * 3 + x) * 2 + 0] = (float)(10 * y + x + 1);
            in[(y * 3 + x) * 2 + 1] = -(float)(10 * y + x + 1);
        }
    data_augment f = {.on = 1, .pad = 1, .h = 2, .w = 3, .pixel_bytes = 2 * sizeof(float)};
    const float shifted[12] = {0, 0, 11, -11, 12, -12, 0, 0, 0, 0, 0, 0};
    const float flipped[12] = {12, -12, 11, -11, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(out, in, sizeof in);
    data_augment_sample(&f, (data_augment_draw){.dy = 2, .dx = 0, .flip = 0}, out);
    assert_memory_equal(out, shifted, sizeof out);
    memcpy(out, in, sizeof in);
    data_augment_sample(&f, (data_augment_draw){.dy = 2, .dx = 0, .flip = 1}, out);
    assert_memory_equal(out, flipped, sizeof out);
    /* The centre crop without a flip is the identity. */
    memcpy(out, in, sizeof in);
    data_augment_sample(&f, (data_augment_draw){.dy = 1, .dx = 1, .flip = 0}, out);
    assert_memory_equal(out, in, sizeof out);
}

/* Every (dy, dx, flip) of a small image against the reference, for each pixel size the kernel
 * specialises (1, 3, 4, 12 bytes) and one it does not (2). */
static void test_every_draw_against_reference(void **state) {
    const struct { data_dtype dtype; int64_t c; } kinds[] = {
        {DATA_U8, 1}, {DATA_U8, 2}, {DATA_U8, 3}, {DATA_U8, 4}, {DATA_F32, 1}, {DATA_F32, 3}};
    const int64_t h = 5, w = 7;
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        geometry g = {h, w, kinds[t].c};
        size_t es = kinds[t].dtype == DATA_U8 ? 1 : 4;
        unsigned char buf[5 * 7 * 4 * 4];
        for (int pad = 0; pad < 5; pad++) {
            data_augment a = {.on = 1, .pad = pad, .hflip = 1, .h = h, .w = w,
                              .pixel_bytes = (size_t)g.c * es};
            for (int dy = 0; dy <= 2 * pad; dy++)
                for (int dx = 0; dx <= 2 * pad; dx++)
                    for (int flip = 0; flip < 2; flip++) {
                        data_augment_draw d = {dy, dx, flip};
                        for (int64_t e = 0; e < h * w * g.c; e++) {
                            if (es == 1) buf[e] = (uint8_t)tu_pixel(3, e, DATA_U8);
                            else ((float *)buf)[e] = (float)tu_pixel(3, e, DATA_F32);
                        }
                        data_augment_sample(&a, d, buf);
                        for (int64_t y = 0; y < h; y++)
                            for (int64_t x = 0; x < w; x++)
                                for (int64_t ch = 0; ch < g.c; ch++) {
                                    int64_t e = (y * w + x) * g.c + ch;
                                    double got = es == 1 ? buf[e] : ((float *)buf)[e];
                                    double want = reference_pixel(3, g, kinds[t].dtype, pad, d,
                                                                  y, x, ch);
                                    if (got != want)
                                        fail_msg("c %lld es %zu pad %d dy %d dx %d flip %d: "
                                                 "[%lld,%lld,%lld] is %g, expected %g",
                                                 (long long)g.c, es, pad, dy, dx, flip,
                                                 (long long)y, (long long)x, (long long)ch, got,
                                                 want);
                                }
                    }
        }
    }
}

/* ---- the loader against the reference ---- */

typedef struct {
    const char *name;
    data_dtype dtype;
    hsize_t d1, d2, d3;
} file_kind;

static const file_kind kinds[] = {
    {"u8_hw.h5", DATA_U8, 7, 9, 0},
    {"u8_hwc.h5", DATA_U8, 6, 5, 3},
    {"f32_hw.h5", DATA_F32, 7, 9, 0},
    {"f32_hwc.h5", DATA_F32, 5, 6, 2},
};
#define N_SAMPLES 40

static void kind_path(char *buf, size_t len, const file_kind *k) {
    tu_join(buf, len, dir, k->name);
}

/* u8/f32, [H,W]/[H,W,C], cache or batched reads, crop only / crop + flip / flip only, two
 * ranks of three: every pixel of two epochs matches the reference, and the crops really move
 * pixels and reach the zero border. */
static void test_loader_matches_reference(void **state) {
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        char path[4096];
        kind_path(path, sizeof path, &kinds[t]);
        for (int variant = 0; variant < 6; variant++) {
            int cache = variant % 2;
            int pad = (int)(variant / 2); /* 0 (flip only), 1, 2 */
            int hflip = variant != 2;     /* pad 1 without a flip */
            data_config cfg = {.path = path, .mode = DATA_TRAIN, .rank = variant % 3,
                               .world = 3, .global_batch = 9, .shuffle = 1, .seed = 21,
                               .cache_bytes = cache ? 1 << 20 : 0, .augment_pad = pad,
                               .augment_hflip = hflip};
            data_loader *l;
            char err[512];
            if (data_loader_open(&cfg, &l, err, sizeof err) != 0) fail_msg("%s", err);
            const data_info *info = data_loader_info(l);
            int64_t perm[N_SAMPLES], perm_epoch = -1;
            int moved = 0, flipped = 0, total = 0;
            for (int k = 0; k < 8; k++) { /* 4 batches of 9 per epoch of 40 */
                data_batch b;
                next_ok(l, &b);
                for (int64_t i = 0; i < b.count; i++) {
                    int64_t s = sample_of(&b, i, &cfg, N_SAMPLES, perm, &perm_epoch);
                    data_augment_draw d = check_augmented(&b, i, s, info, 21, pad, hflip);
                    moved += d.dy != pad || d.dx != pad;
                    flipped += d.flip;
                    total++;
                }
            }
            assert_int_equal(total, 8 * 3);
            if (pad > 0) assert_true(moved > total / 2);
            else assert_int_equal(moved, 0);
            if (hflip) assert_true(flipped > 0 && flipped < total);
            else assert_int_equal(flipped, 0);
            data_loader_close(l);
        }
    }
}

/* ---- determinism ---- */

#define DET_N 60
#define DET_G 12
#define DET_EPOCHS 3
#define DET_BATCHES (DET_EPOCHS * DET_N / DET_G)

typedef struct {
    size_t sample_bytes;
    unsigned char *pixels; /* [DET_EPOCHS, DET_N, sample_bytes] from world 1 */
    int seen[DET_EPOCHS][DET_N];
} reference_run;

static unsigned char *ref_at(reference_run *r, int64_t epoch, int64_t sample) {
    return r->pixels + ((size_t)epoch * DET_N + (size_t)sample) * r->sample_bytes;
}

/* Runs `batches` batches of (cfg) from its current position; records them into r (record) or
 * compares them with r. */
static void run_and_record(data_loader *l, const data_config *cfg, int batches,
                           reference_run *r, int record) {
    int64_t perm[DET_N], perm_epoch = -1;
    for (int k = 0; k < batches; k++) {
        data_batch b;
        next_ok(l, &b);
        assert_true(b.epoch < DET_EPOCHS);
        for (int64_t i = 0; i < b.count; i++) {
            int64_t s = sample_of(&b, i, cfg, DET_N, perm, &perm_epoch);
            const unsigned char *x = (const unsigned char *)b.x + (size_t)i * r->sample_bytes;
            if (record) {
                memcpy(ref_at(r, b.epoch, s), x, r->sample_bytes);
                r->seen[b.epoch][s] = 1;
            } else {
                assert_true(r->seen[b.epoch][s]);
                if (memcmp(ref_at(r, b.epoch, s), x, r->sample_bytes) != 0)
                    fail_msg("world %d rank %d: epoch %lld sample %lld differs from world 1",
                             cfg->world, cfg->rank, (long long)b.epoch, (long long)s);
            }
        }
    }
}

static void test_deterministic_across_loaders_worlds_and_seek(void **state) {
    char path[4096];
    tu_join(path, sizeof path, dir, "det_u8_hwc.h5");
    tu_write_simple(path, DATA_U8, DET_N, 8, 8, 3, 10);
    data_config base = {.path = path, .mode = DATA_TRAIN, .world = 1, .global_batch = DET_G,
                        .shuffle = 1, .seed = 9, .augment_pad = 2, .augment_hflip = 1};
    reference_run r = {.sample_bytes = 8 * 8 * 3};
    r.pixels = calloc((size_t)DET_EPOCHS * DET_N, r.sample_bytes);
    assert_non_null(r.pixels);
    char err[512];
    data_loader *l;

    /* World 1, batched reads: the reference. */
    assert_int_equal(data_loader_open(&base, &l, err, sizeof err), 0);
    run_and_record(l, &base, DET_BATCHES, &r, 1);
    data_loader_close(l);
    for (int e = 0; e < DET_EPOCHS; e++)
        for (int s = 0; s < DET_N; s++) assert_true(r.seen[e][s]);

    /* A second loader, with the cache this time; then worlds 2 and 3, rank by rank. */
    data_config c = base;
    c.cache_bytes = 1 << 20;
    assert_int_equal(data_loader_open(&c, &l, err, sizeof err), 0);
    run_and_record(l, &c, DET_BATCHES, &r, 0);
    data_loader_close(l);
    for (int world = 2; world <= 3; world++)
        for (int rank = 0; rank < world; rank++) {
            c = base;
            c.world = world;
            c.rank = rank;
            c.cache_bytes = rank % 2 ? 1 << 20 : 0;
            assert_int_equal(data_loader_open(&c, &l, err, sizeof err), 0);
            run_and_record(l, &c, DET_BATCHES, &r, 0);
            data_loader_close(l);
        }

    /* Resume: seek into the middle of epoch 1 (a fresh loader and one that already ran ahead
     * into epoch 2), on world 1 and on rank 2 of 3. */
    for (int world = 1; world <= 3; world += 2) {
        c = base;
        c.world = world;
        c.rank = world - 1;
        assert_int_equal(data_loader_open(&c, &l, err, sizeof err), 0);
        assert_int_equal(data_loader_seek(l, 1, 3 * DET_G, err, sizeof err), 0);
        run_and_record(l, &c, 2 + DET_N / DET_G, &r, 0); /* rest of epoch 1, all of epoch 2 */
        assert_int_equal(data_loader_seek(l, 1, DET_G, err, sizeof err), 0);
        data_batch b;
        next_ok(l, &b);
        assert_int_equal(b.epoch, 1);
        assert_int_equal(b.cursor, DET_G);
        assert_int_equal(data_loader_seek(l, 1, DET_G, err, sizeof err), 0);
        run_and_record(l, &c, 3, &r, 0);
        data_loader_close(l);
    }

    /* Another epoch draws other crops for nearly every sample (50 equally likely draws). */
    int same01 = 0, same12 = 0;
    for (int s = 0; s < DET_N; s++) {
        same01 += memcmp(ref_at(&r, 0, s), ref_at(&r, 1, s), r.sample_bytes) == 0;
        same12 += memcmp(ref_at(&r, 1, s), ref_at(&r, 2, s), r.sample_bytes) == 0;
    }
    print_message("samples with identical pixels in epochs 0/1: %d, 1/2: %d of %d\n", same01,
                  same12, DET_N);
    assert_true(same01 <= DET_N / 10);
    assert_true(same12 <= DET_N / 10);

    /* Another seed draws other crops too. */
    c = base;
    c.seed = 10;
    c.shuffle = 0; /* same order for the comparison below: the seed only moves the crops */
    data_config c2 = c;
    c2.seed = 9;
    data_loader *l2;
    assert_int_equal(data_loader_open(&c, &l, err, sizeof err), 0);
    assert_int_equal(data_loader_open(&c2, &l2, err, sizeof err), 0);
    data_batch b1, b2;
    int same = 0;
    for (int k = 0; k < DET_N / DET_G; k++) {
        next_ok(l, &b1);
        next_ok(l2, &b2);
        for (int64_t i = 0; i < b1.count; i++)
            same += memcmp((const unsigned char *)b1.x + (size_t)i * r.sample_bytes,
                           (const unsigned char *)b2.x + (size_t)i * r.sample_bytes,
                           r.sample_bytes) == 0;
    }
    assert_true(same <= DET_N / 10);
    data_loader_close(l);
    data_loader_close(l2);
    free(r.pixels);
}

/* ---- statistics of the draws ---- */

static void test_draw_statistics(void **state) {
    enum { N = 30000, PAD = 3, SPAN = 2 * PAD + 1 };
    int64_t joint[SPAN][SPAN] = {{0}}, ys[SPAN] = {0}, xs[SPAN] = {0};
    int64_t flips = 0;
    /* Two epochs and two seeds, so the count mixes keys as well as sample indices. */
    for (int64_t i = 0; i < N; i++) {
        uint64_t key = data_augment_key(1 + (uint64_t)(i % 2), i % 4 < 2 ? 0 : 1);
        data_augment_draw d = data_augment_draw_sample(key, i / 4, PAD, 1);
        assert_true(d.dy >= 0 && d.dy < SPAN && d.dx >= 0 && d.dx < SPAN);
        joint[d.dy][d.dx]++;
        ys[d.dy]++;
        xs[d.dx]++;
        flips += d.flip;
    }
    double rate = (double)flips / N;
    print_message("flip rate %.4f over %d draws\n", rate, N);
    assert_true(fabs(rate - 0.5) < 0.015); /* ~5 standard deviations */
    double expect1 = (double)N / SPAN, chi2 = 0.0;
    for (int v = 0; v < SPAN; v++) {
        /* each value within 10% of N/SPAN (~7 standard deviations) */
        assert_true(fabs((double)ys[v] - expect1) < 0.1 * expect1);
        assert_true(fabs((double)xs[v] - expect1) < 0.1 * expect1);
    }
    double expect2 = (double)N / (SPAN * SPAN);
    for (int y = 0; y < SPAN; y++)
        for (int x = 0; x < SPAN; x++) {
            double dlt = (double)joint[y][x] - expect2;
            chi2 += dlt * dlt / expect2;
        }
    print_message("offsets over [0,%d]^2: chi-square %.1f with 48 degrees of freedom\n",
                  2 * PAD, chi2);
    assert_true(chi2 < 84.0); /* p = 0.001 for 48 degrees of freedom */

    /* No flips without hflip; pad 0 only ever takes the centre; the flip draw does not depend
     * on pad. */
    uint64_t key = data_augment_key(7, 3);
    for (int64_t i = 0; i < 1000; i++) {
        data_augment_draw a = data_augment_draw_sample(key, i, 2, 0);
        data_augment_draw z = data_augment_draw_sample(key, i, 0, 1);
        data_augment_draw f = data_augment_draw_sample(key, i, 2, 1);
        assert_int_equal(a.flip, 0);
        assert_int_equal(z.dy, 0);
        assert_int_equal(z.dx, 0);
        assert_int_equal(z.flip, f.flip);
        assert_int_equal(a.dy, f.dy);
        assert_int_equal(a.dx, f.dx);
    }
}

/* ---- eval and no-op configs ---- */

static void test_eval_and_off_are_untouched(void **state) {
    char img[4096], vec[4096], err[512];
    kind_path(img, sizeof img, &kinds[1]);
    tu_join(vec, sizeof vec, dir, "vectors.h5");
    tu_write_simple(vec, DATA_F32, 30, 12, 0, 0, 10);
    /* Eval ignores the augmentation fields, even ones training would refuse. */
    const char *paths[] = {img, img, vec, vec};
    const int pads[] = {2, -1, 3, 100};
    for (int t = 0; t < 4; t++) {
        data_config cfg = {.path = paths[t], .mode = DATA_EVAL, .world = 2, .rank = t % 2,
                           .global_batch = 7, .augment_pad = pads[t], .augment_hflip = 1,
                           .cache_bytes = t < 2 ? 0 : 1 << 20};
        data_loader *l;
        if (data_loader_open(&cfg, &l, err, sizeof err) != 0) fail_msg("%s", err);
        data_batch b;
        int rc, seen = 0;
        while ((rc = data_loader_next(l, &b, err, sizeof err)) == 0) {
            int64_t begin, end;
            data_rank_slice(b.global_count, cfg.rank, cfg.world, &begin, &end);
            for (int64_t i = 0; i < b.count; i++)
                tu_check_sample(&b, i, b.cursor + begin + i, data_loader_info(l));
            seen += (int)b.count;
        }
        assert_int_equal(rc, 1);
        assert_true(seen > 0);
        data_loader_close(l);
    }
    /* Training with pad 0 and no flip hands out the file's pixels. */
    data_config cfg = {.path = img, .mode = DATA_TRAIN, .world = 1, .global_batch = 8,
                       .shuffle = 1, .seed = 4};
    data_loader *l;
    assert_int_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    int64_t perm[N_SAMPLES], perm_epoch = -1;
    for (int k = 0; k < 10; k++) {
        data_batch b;
        next_ok(l, &b);
        for (int64_t i = 0; i < b.count; i++)
            tu_check_sample(&b, i, sample_of(&b, i, &cfg, N_SAMPLES, perm, &perm_epoch),
                            data_loader_info(l));
    }
    data_loader_close(l);
}

/* ---- bad configurations ---- */

static void expect_open_fails(data_config cfg, ...) {
    data_loader *l = (data_loader *)0x1;
    char err[512] = "";
    assert_int_not_equal(data_loader_open(&cfg, &l, err, sizeof err), 0);
    assert_null(l);
    va_list ap;
    va_start(ap, cfg);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        if (strstr(err, s) == NULL) {
            va_end(ap);
            fail_msg("message \"%s\" does not contain \"%s\"", err, s);
        }
    va_end(ap);
    print_message("%s\n", err);
}

static void test_bad_configs(void **state) {
    char vec[4096], img[4096], tall[4096], err[512];
    tu_join(vec, sizeof vec, dir, "vectors_u8.h5");
    tu_write_simple(vec, DATA_U8, 30, 12, 0, 0, 10);
    tu_join(img, sizeof img, dir, "wide_5x8.h5");
    tu_write_simple(img, DATA_U8, 30, 5, 8, 0, 10);
    tu_join(tall, sizeof tall, dir, "tall_8x5x2.h5");
    tu_write_simple(tall, DATA_F32, 30, 8, 5, 2, 10);
    data_config cfg = {.mode = DATA_TRAIN, .world = 1, .global_batch = 4};

    const char *need = "augmentation needs image samples [N,H,W] or [N,H,W,C]";
    cfg.path = vec;
    cfg.augment_pad = 2;
    expect_open_fails(cfg, vec, "/images", "[30,12]", "augment_pad", need, NULL);
    cfg.augment_pad = 0;
    cfg.augment_hflip = 1;
    expect_open_fails(cfg, vec, "/images", "augment_hflip", need, NULL);

    cfg.augment_hflip = 0;
    cfg.path = img;
    cfg.augment_pad = 5; /* == H */
    expect_open_fails(cfg, img, "/images", "[30,5,8]", "augment_pad 5", "height 5", NULL);
    cfg.augment_pad = 9;
    expect_open_fails(cfg, img, "augment_pad 9", NULL);
    cfg.path = tall;
    cfg.augment_pad = 5; /* == W */
    expect_open_fails(cfg, tall, "/images", "[30,8,5,2]", "augment_pad 5", "width 5", NULL);
    cfg.augment_pad = -1;
    cfg.augment_hflip = 1;
    expect_open_fails(cfg, tall, "augment_pad", "-1", NULL);

    /* The largest pad that fits opens, and crops come out right. */
    cfg.augment_pad = 4;
    data_loader *l;
    if (data_loader_open(&cfg, &l, err, sizeof err) != 0) fail_msg("%s", err);
    data_batch b;
    next_ok(l, &b);
    for (int64_t i = 0; i < b.count; i++)
        check_augmented(&b, i, b.cursor + i, data_loader_info(l), 0, 4, 1);
    data_loader_close(l);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "augment");
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        char path[4096];
        kind_path(path, sizeof path, &kinds[t]);
        tu_write_simple(path, kinds[t].dtype, N_SAMPLES, kinds[t].d1, kinds[t].d2, kinds[t].d3,
                        10);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_examples),
        cmocka_unit_test(test_every_draw_against_reference),
        cmocka_unit_test(test_loader_matches_reference),
        cmocka_unit_test(test_deterministic_across_loaders_worlds_and_seek),
        cmocka_unit_test(test_draw_statistics),
        cmocka_unit_test(test_eval_and_off_are_untouched),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
