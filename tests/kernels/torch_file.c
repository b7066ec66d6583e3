/* torch_file.c: see torch_file.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch_file.h"

static torch_array *arrays;
static int narrays;

/* Reads the whole file (8 bytes magic "HKTORCH1", then per array: u32 name length, name bytes,
 * u32 dtype, u64 count, count 4-byte values; little-endian, as this machine): 0; -1 when it
 * does not exist; -2 when it is not a reference file. */
static int load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "HKTORCH1", 8) != 0) {
        fclose(f);
        return -2;
    }
    int cap = 0;
    for (;;) {
        uint32_t len, dtype;
        uint64_t count;
        if (fread(&len, 4, 1, f) != 1) break;
        if (narrays == cap) {
            cap = cap ? 2 * cap : 64;
            arrays = realloc(arrays, cap * sizeof(*arrays));
        }
        torch_array *a = &arrays[narrays];
        if (len >= sizeof(a->name) || fread(a->name, 1, len, f) != len) goto bad;
        a->name[len] = '\0';
        if (fread(&dtype, 4, 1, f) != 1 || fread(&count, 8, 1, f) != 1 || dtype > TORCH_INT32)
            goto bad;
        a->dtype = (int)dtype;
        a->count = (int64_t)count;
        a->data = malloc(count * 4 + 1);
        if (fread(a->data, 4, count, f) != count) goto bad;
        narrays++;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    return -2;
}

int torch_test_start(int argc, char **argv, const char *script, int threads, kern_ctx **K) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TORCH_REFERENCE.bin (written by %s)\n", argv[0], script);
        return 2;
    }
    int rc = load(argv[1]);
    if (rc == -1) {
        fprintf(stderr, "%s: not found (%s skipped?); skipping\n", argv[1], script);
        return 77;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: not a torch reference file\n", argv[1]);
        return 1;
    }
    kern_options opt = {.backend = KERN_CPU, .threads = threads, .device = 0};
    char err[256];
    if (kern_create(&opt, K, err, sizeof(err)) != 0) {
        fprintf(stderr, "kern_create: %s\n", err);
        return 1;
    }
    return 0;
}

void torch_test_finish(kern_ctx *K) {
    kern_destroy(K);
    for (int i = 0; i < narrays; i++) free(arrays[i].data);
    free(arrays);
    arrays = NULL;
    narrays = 0;
}

const torch_array *torch_array_named(const char *name, int dtype) {
    for (int i = 0; i < narrays; i++)
        if (strcmp(arrays[i].name, name) == 0) {
            if (arrays[i].dtype != dtype) fail_msg("%s: wrong dtype", name);
            return &arrays[i];
        }
    fail_msg("reference file has no array %s", name);
    return NULL;
}

static const void *values(const char *prefix, const char *key, int dtype, int64_t want_count) {
    char name[64];
    snprintf(name, sizeof(name), "%s.%s", prefix, key);
    const torch_array *a = torch_array_named(name, dtype);
    if (want_count >= 0 && a->count != want_count)
        fail_msg("%s has %lld values, expected %lld", name, (long long)a->count,
                 (long long)want_count);
    return a->data;
}

const float *torch_floats(const char *prefix, const char *key, int64_t want_count) {
    return values(prefix, key, TORCH_FLOAT32, want_count);
}

const int32_t *torch_ints(const char *prefix, const char *key, int64_t want_count) {
    return values(prefix, key, TORCH_INT32, want_count);
}

void torch_expect_close(kern_ctx *K, const char *what, const float *dev, const float *want,
                        int64_t n, const double *scale, double rtol, double floor_rel) {
    float *got = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    kern_to_host(K, got, dev, (size_t)n * sizeof(float));
    double maxref = 0;
    for (int64_t i = 0; i < n; i++) maxref = fmax(maxref, fabs(want[i]));
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double tol = scale ? rtol * scale[i] : rtol * fabs(want[i]) + floor_rel * maxref;
        /* an infinity or NaN on one side only: NaN, which fails (an infinite reference would
         * otherwise have an infinite tolerance) */
        double err = (double)got[i] == want[i] ? 0.0
                     : isfinite(got[i]) && isfinite(want[i]) ? fabs((double)got[i] - want[i]) : NAN;
        double ratio = err / tol;
        if (!(err <= tol) && (worst < 0 || !(ratio <= worst_ratio))) worst = i, worst_ratio = ratio;
    }
    if (worst >= 0) {
        float g = got[worst];
        free(got);   /* before fail_msg, which does not return */
        fail_msg("%s: element %lld is %.9g, torch has %.9g (%.3g x tolerance)", what,
                 (long long)worst, g, want[worst], worst_ratio);
    }
    free(got);
}
