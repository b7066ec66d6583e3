/* Training augmentation of image samples, applied in place in the prefetch thread.
 *
 * For a sample [H, W] or [H, W, C] (channels last) and pad p: pad with p zeros on each side of
 * H and W, crop back to [H, W] at offset (dy, dx) in [0, 2p]^2, then flip left-right when the
 * flip draw says so (torchvision's RandomCrop(size, padding=p) then RandomHorizontalFlip()).
 * As a formula, with sy = dy - p and sx = dx - p:
 *
 *   out[y][x] = in[y + sy][x' + sx]   where x' = flip ? W-1-x : x,
 *   and 0 where the source lies outside the image.
 *
 * The draws come from splitmix64 keyed by (seed, epoch, sample index in the file), so every
 * world size, rank and resumed run sees the same pixels for a sample in an epoch.  The work is
 * row-wise: one memmove per row (rows walked in the order that never overwrites a row still to
 * be read), memset for the zero border, and a pixel reversal of the row when flipping.  Zero
 * bytes are 0 in uint8 and 0.0f in float32, so one code path serves both dtypes. */
#include <stdio.h>
#include <string.h>

#include "data_internal.h"

/* "augment\0" in ASCII: keys the augmentation stream apart from the permutation stream, which
 * starts from mix(seed ^ mix(epoch + gamma)) (shard.c). */
#define AUGMENT_STREAM 0x6175676d656e7400ULL

uint64_t data_augment_key(uint64_t seed, int64_t epoch) {
    uint64_t epoch_key = data_splitmix64_mix((uint64_t)epoch + DATA_GOLDEN_GAMMA);
    return data_splitmix64_mix(data_splitmix64_mix(seed ^ AUGMENT_STREAM) ^ epoch_key);
}

data_augment_draw data_augment_draw_sample(uint64_t key, int64_t index, int pad, int hflip) {
    data_rng r = {data_splitmix64_mix(key ^ data_splitmix64_mix((uint64_t)index +
                                                                DATA_GOLDEN_GAMMA))};
    uint64_t span = 2 * (uint64_t)pad + 1;
    data_augment_draw d;
    /* Always three draws in this order, so the flip of a sample does not depend on pad. */
    d.dy = (int)data_rng_below(&r, span);
    d.dx = (int)data_rng_below(&r, span);
    d.flip = (data_rng_next(&r) >> 63) != 0 && hflip;
    return d;
}

static void shape_text(const data_info *info, char *buf, size_t len) {
    int at = snprintf(buf, len, "[%lld", (long long)info->n);
    for (int d = 0; d < info->sample_ndim && at > 0 && (size_t)at < len; d++)
        at += snprintf(buf + at, len - (size_t)at, ",%lld", (long long)info->sample_shape[d]);
    if (at > 0 && (size_t)at < len) snprintf(buf + at, len - (size_t)at, "]");
}

int data_augment_init(data_augment *a, const data_config *cfg, const data_info *info,
                      char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    if (cfg->mode != DATA_TRAIN) return 0;
    if (cfg->augment_pad < 0)
        return data_errorf(err, errlen, "%s: augment_pad must be >= 0, got %d", cfg->path,
                           cfg->augment_pad);
    if (cfg->augment_pad == 0 && !cfg->augment_hflip) return 0;

    char shape[128], keys[64];
    shape_text(info, shape, sizeof shape);
    if (cfg->augment_pad > 0 && cfg->augment_hflip)
        snprintf(keys, sizeof keys, "augment_pad %d and augment_hflip", cfg->augment_pad);
    else if (cfg->augment_pad > 0)
        snprintf(keys, sizeof keys, "augment_pad %d", cfg->augment_pad);
    else
        snprintf(keys, sizeof keys, "augment_hflip");
    if (info->sample_ndim < 2 || info->sample_ndim > 3)
        return data_errorf(err, errlen, "%s: dataset /images is %s: %s: augmentation needs "
                           "image samples [N,H,W] or [N,H,W,C]", cfg->path, shape, keys);
    int64_t h = info->sample_shape[0], w = info->sample_shape[1];
    int64_t c = info->sample_ndim == 3 ? info->sample_shape[2] : 1;
    if (cfg->augment_pad >= h || cfg->augment_pad >= w)
        return data_errorf(err, errlen, "%s: dataset /images is %s: augment_pad %d must be "
                           "smaller than the image height %lld and width %lld", cfg->path,
                           shape, cfg->augment_pad, (long long)h, (long long)w);
    a->on = 1;
    a->pad = cfg->augment_pad;
    a->hflip = cfg->augment_hflip != 0;
    a->h = h;
    a->w = w;
    a->pixel_bytes = (size_t)c * (info->dtype == DATA_U8 ? 1 : 4);
    return 0;
}

/* Reverses the order of the w pixels of PS bytes in row.  Instantiated with a constant PS for
 * the common pixel sizes, where the swaps through memcpy become plain loads and stores. */
#define DEFINE_REVERSE(name, PS)                                                              \
    static void name(unsigned char *row, int64_t w) {                                         \
        unsigned char t[PS], *lo = row, *hi = row + (size_t)(w - 1) * (PS);                   \
        for (; lo < hi; lo += (PS), hi -= (PS)) {                                             \
            memcpy(t, lo, PS);                                                                \
            memcpy(lo, hi, PS);                                                               \
            memcpy(hi, t, PS);                                                                \
        }                                                                                     \
    }
DEFINE_REVERSE(reverse_1, 1)   /* u8 gray */
DEFINE_REVERSE(reverse_3, 3)   /* u8 RGB */
DEFINE_REVERSE(reverse_4, 4)   /* f32 gray, u8 RGBA */
DEFINE_REVERSE(reverse_12, 12) /* f32 RGB */

static void reverse_pixels(unsigned char *row, int64_t w, size_t ps) {
    switch (ps) {
    case 1: reverse_1(row, w); return;
    case 3: reverse_3(row, w); return;
    case 4: reverse_4(row, w); return;
    case 12: reverse_12(row, w); return;
    }
    for (unsigned char *lo = row, *hi = row + (size_t)(w - 1) * ps; lo < hi; lo += ps, hi -= ps)
        for (size_t k = 0; k < ps; k++) {
            unsigned char t = lo[k];
            lo[k] = hi[k];
            hi[k] = t;
        }
}

void data_augment_sample(const data_augment *a, data_augment_draw d, void *sample) {
    unsigned char *img = sample;
    const int64_t h = a->h, w = a->w;
    const size_t ps = a->pixel_bytes, row_bytes = (size_t)w * ps;
    const int64_t sy = d.dy - a->pad, sx = d.dx - a->pad;
    const int shift = sy != 0 || sx != 0;
    if (!shift && !d.flip) return;

    /* Columns [x0, x0 + ncols) of an output row come from columns [x0 + sx, ...) of its source
     * row; |sx| <= pad < W, so ncols >= 1. */
    const int64_t x0 = sx < 0 ? -sx : 0;
    const int64_t ncols = w - (sx < 0 ? -sx : sx);
    /* Output row y reads row y + sy: walk down when reading below (sy > 0), up otherwise, so no
     * row is overwritten before it is read. */
    const int64_t first = sy > 0 ? 0 : h - 1, step = sy > 0 ? 1 : -1;
    for (int64_t i = 0, y = first; i < h; i++, y += step) {
        unsigned char *dst = img + (size_t)y * row_bytes;
        int64_t src = y + sy;
        if (src < 0 || src >= h) {
            memset(dst, 0, row_bytes);
            continue; /* a zero row flips to itself */
        }
        if (shift) {
            memmove(dst + (size_t)x0 * ps, img + (size_t)src * row_bytes + (size_t)(x0 + sx) * ps,
                    (size_t)ncols * ps);
            memset(dst, 0, (size_t)x0 * ps);
            memset(dst + (size_t)(x0 + ncols) * ps, 0, (size_t)(w - x0 - ncols) * ps);
        }
        if (d.flip) reverse_pixels(dst, w, ps);
    }
}

void data_augment_batch(const data_augment *a, uint64_t seed, int64_t epoch,
                        const int64_t *indices, int64_t count, void *x) {
    if (!a->on) return;
    uint64_t key = data_augment_key(seed, epoch);
    size_t sample_bytes = (size_t)(a->h * a->w) * a->pixel_bytes;
    for (int64_t i = 0; i < count; i++) {
        data_augment_draw d = data_augment_draw_sample(key, indices[i], a->pad, a->hflip);
        data_augment_sample(a, d, (unsigned char *)x + (size_t)i * sample_bytes);
    }
}
