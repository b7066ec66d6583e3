/* Helpers shared by the trainer's unit tests: a CPU backend, a config with overrides, substring
 * and closeness assertions (which fail on NaN), and a private scratch directory. */
#ifndef HARNESS_UNIT_UTIL_H
#define HARNESS_UNIT_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kernels.h"

/* The CPU backend every test of a file uses, made by the group setup (one BLAS thread: the
 * tests are small and the machine is shared). */
static kern_ctx *k;

static inline int unit_setup_backend(void **state) {
    (void)state;
    kern_options ko = {.backend = KERN_CPU, .threads = 1, .device = 0};
    char err[256];
    if (kern_create(&ko, &k, err, sizeof err) != 0) {
        fprintf(stderr, "kern_create: %s\n", err);
        return -1;
    }
    return 0;
}

static inline int unit_free_backend(void **state) {
    (void)state;
    kern_destroy(k);
    k = NULL;
    return 0;
}

/* The defaults with each "key=value" of the NULL-terminated list applied. */
static inline void unit_config(config *c, ...) {
    config_defaults(c);
    va_list ap;
    va_start(ap, c);
    const char *set;
    char err[512];
    while ((set = va_arg(ap, const char *)) != NULL) {
        if (config_set(c, set, err, sizeof err) != 0) {
            print_error("config_set %s: %s\n", set, err);
            va_end(ap);
            fail();
        }
    }
    va_end(ap);
}

#define assert_contains(haystack, needle) unit_assert_contains((haystack), (needle), __FILE__, __LINE__)
static inline void unit_assert_contains(const char *haystack, const char *needle,
                                        const char *file, int line) {
    if (!strstr(haystack, needle)) {
        print_error("expected \"%s\" in \"%s\"\n", needle, haystack);
        _fail(file, line);
    }
}

/* |got - want| <= tol, written so that a NaN on either side fails. */
#define assert_close(got, want, tol) unit_assert_close((got), (want), (tol), #got, __FILE__, __LINE__)
static inline void unit_assert_close(double got, double want, double tol, const char *what,
                                     const char *file, int line) {
    double d = fabs(got - want);
    if (!(d <= tol)) {
        print_error("%s = %.9g, expected %.9g (difference %.3g, tolerance %.3g)\n", what, got,
                    want, d, tol);
        _fail(file, line);
    }
}

/* A fresh directory under TMPDIR (else /dev/shm, else /tmp) for files a test writes. */
static inline void unit_make_dir(char *dir, size_t len, const char *tag) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, len, "%s/harness_%s_XXXXXX", tmp, tag);
    assert_non_null(mkdtemp(dir));
}

#endif
