/* cmd_images: `harness convert images` - the command line of the image-folder converter
 * (data/convert_images.c). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"

static const char *const usage_convert_images =
    "usage: harness convert images ROOT --out DIR [--size HxW] [--val-fraction F]\n"
    "                              [--on-bad skip|fail] [--seed S]\n"
    "\n"
    "Turns ROOT/CLASS/*.jpg|jpeg|png (one subdirectory per class, classes in name order) into\n"
    "DIR/train.h5 and DIR/val.h5: /images uint8 [N,H,W,3] RGB, /labels [N], attributes\n"
    "num_classes, class_names, mean, std - ready for harness train.\n"
    "  --size HxW         resize every image to H x W, bilinear (default: the first image's size)\n"
    "  --val-fraction F   this fraction of each class goes to val.h5 (default 0.1; 0: no val.h5)\n"
    "  --on-bad skip|fail an image that does not decode is named and left out (skip), or stops\n"
    "                     the conversion (fail, the default)\n"
    "  --seed S           which images go to val.h5 (default 1)\n"
    "Shows progress on a terminal and a summary: images per split, skipped, images/s.\n";

static void show_progress(const data_images_progress *p, void *user) {
    if (!*(int *)user) return;
    fprintf(stderr, "\r\033[K  %lld / %lld images  %lld skipped  %.0f images/s", (long long)p->done,
            (long long)p->total, (long long)p->skipped, p->seconds > 0 ? p->done / p->seconds : 0.0);
}

static void show_skipped(const char *path, const char *why, void *user) {
    if (*(int *)user) fputs("\r\033[K", stderr);
    fprintf(stderr, "harness convert images: skipping %s: %s\n", path, why);
}

static int parse_size(const char *v, int *h, int *w) {
    char *end = NULL;
    long a = strtol(v, &end, 10);
    if (*end != 'x' && *end != 'X') return -1;
    long b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < 1 || a > 65536 || b > 65536) return -1;
    *h = (int)a;
    *w = (int)b;
    return 0;
}

int cmd_convert_images(int argc, char **argv) {
    data_images_options o = {NULL, 0, 0, 0.1, 0, 1};
    const char *root = NULL, *bad = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage_convert_images, stdout); return 0; }
        else if (!strcmp(a, "--out") && v) o.out_dir = argv[++i];
        else if (!strcmp(a, "--size") && v && parse_size(v, &o.height, &o.width) == 0) i++;
        else if (!strcmp(a, "--val-fraction") && v && (o.val_fraction = strtod(v, &end), !*end) &&
                 o.val_fraction >= 0 && o.val_fraction < 1) i++;
        else if (!strcmp(a, "--on-bad") && v && (!strcmp(v, "skip") || !strcmp(v, "fail"))) bad = argv[++i];
        else if (!strcmp(a, "--seed") && v && (o.seed = strtoull(v, &end, 10), !*end)) i++;
        else if (a[0] != '-' && !root) root = a;
        else {
            fprintf(stderr, "harness convert images: unexpected argument or bad value '%s'%s%s\n%s",
                    a, v && a[0] == '-' ? " " : "", v && a[0] == '-' ? v : "", usage_convert_images);
            return 1;
        }
    }
    if (!root || !o.out_dir) {
        fprintf(stderr, "harness convert images: %s\n%s", !root ? "ROOT is required"
                : "--out DIR is required", usage_convert_images);
        return 1;
    }
    o.skip_bad = bad && !strcmp(bad, "skip");
    if (make_dirs(o.out_dir) != 0) {
        fprintf(stderr, "harness convert images: cannot create %s: %s\n", o.out_dir, strerror(errno));
        return 1;
    }
    int tty = isatty(STDERR_FILENO);
    data_images_callbacks cb = {show_progress, show_skipped, &tty};
    data_images_stats st;
    char err[2048];
    int rc = data_convert_images(root, &o, &cb, &st, err, sizeof err);
    if (tty) fputs("\r\033[K", stderr);
    if (rc != 0) {
        fprintf(stderr, "harness convert images: %s\n", err);
        return 1;
    }
    printf("%s: %d classes, %dx%d RGB: %lld train, %lld val, %lld skipped, %.1f s (%.0f images/s)\n",
           o.out_dir, st.classes, st.height, st.width, (long long)st.train, (long long)st.val,
           (long long)st.skipped, st.seconds,
           st.seconds > 0 ? (double)(st.train + st.val + st.skipped) / st.seconds : 0.0);
    return 0;
}
