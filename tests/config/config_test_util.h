/* Helpers shared by the config tests: a private temporary directory, files written into it,
 * substring assertions and a field-by-field config comparison. */
#ifndef HARNESS_CONFIG_TEST_UTIL_H
#define HARNESS_CONFIG_TEST_UTIL_H

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

static char test_dir[256];
static char test_paths[64][512];
static int n_test_paths;

/* In TMPDIR, else /dev/shm (the tests write many small files; a disk can make that slow). */
static inline int make_test_dir(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(test_dir, sizeof test_dir, "%s/harness_config_XXXXXX", tmp);
    return mkdtemp(test_dir) ? 0 : -1;
}

static inline int remove_test_dir(void **state) {
    (void)state;
    for (int i = 0; i < n_test_paths; i++) unlink(test_paths[i]);
    return rmdir(test_dir);
}

/* TEST_DIR/name; remembered so the directory can be removed at the end. */
static inline const char *test_path(const char *name) {
    for (int i = 0; i < n_test_paths; i++) {
        const char *slash = strrchr(test_paths[i], '/');
        if (slash && strcmp(slash + 1, name) == 0) return test_paths[i];
    }
    assert_true(n_test_paths < 64);
    snprintf(test_paths[n_test_paths], sizeof test_paths[0], "%s/%s", test_dir, name);
    return test_paths[n_test_paths++];
}

static inline const char *write_bytes(const char *name, const void *data, size_t len) {
    const char *path = test_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static inline const char *write_text(const char *name, const char *text) {
    return write_bytes(name, text, strlen(text));
}

/* Loads text written to t.yaml over c; returns config_load_file's result. */
static inline int load_text(config *c, const char *text, char *err, size_t errlen) {
    const char *path = write_text("t.yaml", text);
    err[0] = '\0';
    return config_load_file(c, path, err, errlen);
}

#define assert_contains(haystack, needle) assert_contains_at((haystack), (needle), __FILE__, __LINE__)
static inline void assert_contains_at(const char *haystack, const char *needle, const char *file, int line) {
    if (!strstr(haystack, needle)) {
        print_error("expected \"%s\" in \"%s\"\n", needle, haystack);
        _fail(file, line);
    }
}

/* "PATH:LINE: " of t.yaml */
static inline const char *at_line(int line) {
    static char buf[600];
    snprintf(buf, sizeof buf, "%.511s:%d: ", test_path("t.yaml"), line);
    return buf;
}

static inline int float_bits_equal(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

#define assert_config_equal(a, b) assert_config_equal_at((a), (b), __FILE__, __LINE__)
static inline void assert_config_equal_at(const config *a, const config *b, const char *file, int line) {
    int ok = 1;
#define SAME(f) if (a->f != b->f) { print_error("field " #f " differs\n"); ok = 0; }
#define SAME_FLOAT(f) if (!float_bits_equal(a->f, b->f)) { print_error("field " #f " differs: %.9g vs %.9g\n", (double)a->f, (double)b->f); ok = 0; }
#define SAME_STRING(f) if (strcmp(a->f, b->f) != 0) { print_error("field " #f " differs: '%s' vs '%s'\n", a->f, b->f); ok = 0; }
    SAME_STRING(run_dir) SAME(seed) SAME(device) SAME(threads)
    SAME_STRING(train_path) SAME_STRING(test_path) SAME(cache_mb) SAME(shuffle) SAME(normalize)
    SAME(n_layers) SAME_STRING(init)
    SAME(epochs) SAME(steps) SAME(batch_size) SAME(grad_accum) SAME(optimizer)
    SAME_FLOAT(lr) SAME_FLOAT(momentum) SAME(nesterov) SAME_FLOAT(beta1) SAME_FLOAT(beta2)
    SAME_FLOAT(eps) SAME_FLOAT(weight_decay) SAME_FLOAT(clip_grad_norm) SAME(schedule)
    SAME(warmup_steps) SAME_FLOAT(min_lr)
    SAME(log_every) SAME(eval_every) SAME(progress) SAME(bucket_kb)
    SAME(gpt_layers) SAME(gpt_heads) SAME(gpt_dim) SAME(gpt_context) SAME_FLOAT(gpt_dropout)
    SAME(gpt_bias) SAME(gpt_tie)
#undef SAME
#undef SAME_FLOAT
#undef SAME_STRING
    if (ok && memcmp(a->layers, b->layers, sizeof a->layers) != 0) {
        print_error("model.layers differ\n");
        ok = 0;
    }
    if (!ok) _fail(file, line);
}

#endif
