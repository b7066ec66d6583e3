/* Hostile input: every case is a clean error (or a clean success), never a crash, a hang or
 * an overflow.  Run it under ASan/UBSan to make "never" mean something. */
#include "config_test_util.h"

static char big[3 << 20];

/* Loads len bytes; asserts a clean error whose message names the file and holds want. */
static void load_fails(const void *data, size_t len, const char *want) {
    config c, before;
    char err[512];
    config_defaults(&c);
    before = c;
    const char *path = write_bytes("hostile.yaml", data, len);
    memset(err, 'X', sizeof err);
    if (config_load_file(&c, path, err, sizeof err) == 0) fail_msg("no error (want '%s')", want);
    assert_non_null(memchr(err, '\0', sizeof err));
    assert_contains(err, path);
    if (want) assert_contains(err, want);
    assert_config_equal(&c, &before);
}

static void repeat(char *dst, const char *prefix, char ch, size_t n, const char *suffix) {
    size_t p = strlen(prefix);
    memcpy(dst, prefix, p);
    memset(dst + p, ch, n);
    strcpy(dst + p + n, suffix);
}

static void test_deep_nesting(void **state) {
    (void)state;
    repeat(big, "", '[', 1000000, "");
    load_fails(big, strlen(big), "expected a mapping of sections");
    repeat(big, "", '{', 1000000, "");
    load_fails(big, strlen(big), "expected a section name, got a mapping"); /* {{: a mapping key */
    repeat(big, "train:\n  lr: ", '[', 1000000, "");
    load_fails(big, strlen(big), "train.lr: expected a number > 0, got a sequence");
    repeat(big, "model:\n  layers: ", '[', 1000000, "");
    load_fails(big, strlen(big), "model.layers[0]: expected a mapping");
    repeat(big, "model:\n  layers:\n    - {type: ", '{', 1000000, "");
    load_fails(big, strlen(big), "model.layers[0].type");
    /* deep block nesting: a, then b under it, ... */
    size_t n = 0;
    for (int depth = 0; depth < 1000; depth++) {
        memset(big + n, ' ', (size_t)depth);
        n += (size_t)depth;
        n += (size_t)sprintf(big + n, "k:\n");
    }
    load_fails(big, n, "unknown key 'k'");
}

static void test_aliases(void **state) {
    (void)state;
    const char *laughs =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
    load_fails(laughs, strlen(laughs), "unknown key 'a'");
    const char *value_alias = "train:\n  lr: &v 0.1\n  min_lr: *v\n";
    load_fails(value_alias, strlen(value_alias), "train.min_lr: expected a number >= 0, got an alias (*v); aliases are not supported");
    const char *section_alias = "train: &t\n  lr: 0.1\nlog: *t\n";
    load_fails(section_alias, strlen(section_alias), "aliases are not supported");
    const char *recursive = "model:\n  layers: &l [*l]\n";
    load_fails(recursive, strlen(recursive), "model.layers[0]: expected a mapping");
    const char *merge = "train:\n  <<: {lr: 0.1}\n";
    load_fails(merge, strlen(merge), "unknown key 'train.<<'");
    const char *undefined = "train:\n  lr: *nowhere\n";
    load_fails(undefined, strlen(undefined), "aliases are not supported");
}

static void test_huge_values(void **state) {
    (void)state;
    repeat(big, "train:\n  lr: ", '9', 1000000, "\n");
    load_fails(big, strlen(big), "train.lr: expected a number > 0, got '9999999999");
    repeat(big, "train:\n  steps: ", '9', 1000000, "\n");
    load_fails(big, strlen(big), "(out of range)");
    repeat(big, "train:\n  lr: 0.", '0', 5000, "1\n"); /* too long for a float key */
    load_fails(big, strlen(big), "train.lr: expected a number > 0");
    repeat(big, "run:\n  dir: ", 'a', 1000000, "\n");
    load_fails(big, strlen(big), "run.dir: expected a string shorter than 1024 bytes");
    repeat(big, "train:\n  ", 'k', 1000000, ": 1\n");
    load_fails(big, strlen(big), "train: expected a mapping of keys"); /* keys end at 1024 chars */
    repeat(big, "", 'k', 1000000, ": 1\n");
    load_fails(big, strlen(big), "expected a mapping of sections");
    repeat(big, "# ", '#', (1 << 20) + 10, "\n"); /* past the size limit */
    load_fails(big, strlen(big), "larger than");
}

static void test_binary_and_bad_utf8(void **state) {
    (void)state;
    load_fails("train:\n  lr: \xff\xfe\n", 16, ":2: not valid YAML text");
    load_fails("train:\n  lr: \xc3\x28\n", 16, "UTF-8");
    load_fails("train:\n  lr: 0.1\0\n", 17, ":2: not valid YAML text");
    load_fails("\x00\x00\x00\x00", 4, NULL);
    load_fails("train:\n  lr: \"\\x00\"\n", 20, "train.lr: expected a number");
    load_fails("train:\n  lr: !!python/object:os.system x\n", 40, "train.lr: expected a number > 0, got 'x'");
    load_fails("%YAML 9.9\n---\ntrain: {}\n", 24, "YAML");
    load_fails("train: {lr: 1}}\n", 16, "YAML syntax error");

    /* random bytes: always an error, never a crash */
    uint32_t x = 2024;
    for (int i = 0; i < 300; i++) {
        unsigned char junk[256];
        for (size_t j = 0; j < sizeof junk; j++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk[j] = (unsigned char)x;
        }
        load_fails(junk, sizeof junk, NULL);
    }
}

/* A valid file with random bytes overwritten: any outcome but a crash; errors are clean. */
static void test_mutated_config(void **state) {
    (void)state;
    static const char base[] =
        "run: {dir: runs/x, seed: 1, device: cpu}\n"
        "data:\n  train: a.h5\n  test: \"b.h5\"\n  shuffle: yes\n"
        "model:\n  layers:\n    - {type: flatten}\n    - {type: linear, out: 8}\n    - {type: dropout, p: 0.5}\n"
        "    - type: linear\n      out: 2\n  init: normal\n"
        "train: {lr: 0.1, steps: 10, warmup_steps: 2, batch_size: 4}\n"
        "log:\n  progress: auto\n";
    const char alphabet[] = "[]{}:,-&*!|>'\"#%@ \n\t0.1e9aZ\\\xff\xc3";
    uint32_t x = 7;
    char text[sizeof base];
    char err[512];
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(text, base, sizeof base);
        for (int m = 0; m < 3; m++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            text[(x >> 8) % (sizeof base - 1)] = alphabet[x % (sizeof alphabet - 1)];
        }
        config c;
        config_defaults(&c);
        const char *path = write_bytes("mutated.yaml", text, sizeof base - 1);
        memset(err, 'X', sizeof err);
        if (config_load_file(&c, path, err, sizeof err) == 0) {
            ok++;
            char *yaml = config_to_yaml(&c);
            assert_non_null(yaml);
            free(yaml);
            config_validate(&c, err, sizeof err);
        } else {
            assert_non_null(memchr(err, '\0', sizeof err));
            assert_contains(err, path);
        }
    }
    assert_true(ok > 0); /* some mutations (inside comments, strings) still load */
}

static void test_hostile_set(void **state) {
    (void)state;
    config c, before;
    char err[512];
    config_defaults(&c);
    before = c;
    repeat(big, "model.layers=", '[', 1000000, "");
    assert_int_equal(config_set(&c, big, err, sizeof err), -1);
    assert_contains(err, "model.layers[0]: expected a mapping");
    repeat(big, "run.dir=", 'a', 100000, "");
    assert_int_equal(config_set(&c, big, err, sizeof err), -1);
    assert_contains(err, "run.dir: expected a string shorter than 1024 bytes");
    repeat(big, "", 'k', 100000, "=1");
    assert_int_equal(config_set(&c, big, err, sizeof err), -1);
    assert_contains(err, "unknown key 'kkkk");
    assert_int_equal(config_set(&c, "train.lr=\xff", err, sizeof err), -1);
    assert_contains(err, "--set train.lr=?: not valid YAML text");
    assert_int_equal(config_set(&c, "\x01\x02=\x03", err, sizeof err), -1);
    assert_contains(err, "unknown key '?\?'");
    assert_int_equal(config_set(&c, "model.layers=[{type: linear, out: 1}, *a]", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "run.dir=&a x", err, sizeof err), 0); /* an anchor alone is harmless */
    assert_string_equal(c.run_dir, "x");
    strcpy(c.run_dir, before.run_dir);
    assert_config_equal(&c, &before);
}

/* Messages are cut to errlen, never overflow it. */
static void test_small_error_buffers(void **state) {
    (void)state;
    const char *path = write_text("small.yaml", "train:\n  lrr: 1\n");
    for (size_t errlen = 0; errlen < 40; errlen++) {
        char err[64];
        memset(err, 'X', sizeof err);
        config c;
        assert_int_equal(config_load_file(&c, path, errlen ? err : NULL, errlen), -1);
        if (errlen) assert_int_equal(strlen(err), errlen - 1);
        for (size_t j = errlen; j < sizeof err; j++) assert_int_equal(err[j], 'X');
        memset(err, 'X', sizeof err);
        assert_int_equal(config_set(&c, "train.lrr=1", errlen ? err : NULL, errlen), -1);
        for (size_t j = errlen; j < sizeof err; j++) assert_int_equal(err[j], 'X');
        memset(err, 'X', sizeof err);
        config_defaults(&c);
        c.batch_size = 0;
        assert_int_equal(config_validate(&c, errlen ? err : NULL, errlen), -1);
        for (size_t j = errlen; j < sizeof err; j++) assert_int_equal(err[j], 'X');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_huge_values),
        cmocka_unit_test(test_binary_and_bad_utf8),
        cmocka_unit_test(test_mutated_config),
        cmocka_unit_test(test_hostile_set),
        cmocka_unit_test(test_small_error_buffers),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}
