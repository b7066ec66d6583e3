/* config_write / config_to_yaml: what is written reads back to exactly the same values. */
#include "config_test_util.h"

#include <float.h>
#include <math.h>
#include <sys/stat.h>

#include "config_keys.h" /* config_format_float / config_parse_float, for the exhaustive check */

/* Writes c with config_write, reads it back, and compares every field. */
static void assert_round_trip(const config *c) {
    char err[512];
    const char *path = test_path("written.yaml");
    if (config_write(c, path, err, sizeof err) != 0) fail_msg("%s", err);
    config back;
    memset(&back, 0x77, sizeof back);
    if (config_load_file(&back, path, err, sizeof err) != 0) {
        char *text = config_to_yaml(c);
        fail_msg("%s\n%s", err, text ? text : "(null)");
    }
    assert_config_equal(&back, c);

    /* and the text is a fixed point: writing what was read gives the same bytes */
    char *a = config_to_yaml(c), *b = config_to_yaml(&back);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_defaults_round_trip(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    assert_round_trip(&c);

    char *text = config_to_yaml(&c);
    assert_non_null(text);
    assert_contains(text, "run:\n  dir: \"runs/default\"\n  seed: 42\n  device: auto\n  threads: 0\n");
    assert_contains(text, "model:\n  layers:\n    - {type: flatten}\n    - {type: linear, out: 256, bias: true}\n");
    assert_contains(text, "  init: kaiming_uniform\n");
    assert_contains(text, "  lr: 0.001\n");
    assert_contains(text, "  eps: 1.0e-08\n"); /* a float for PyYAML too */
    assert_contains(text, "  beta2: 0.999\n");
    assert_contains(text, "  progress: auto\n");
    assert_contains(text, "comm:\n  bucket_kb: 1024\n");
    free(text);
}

static void test_full_config_round_trip(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    strcpy(c.run_dir, "runs/a \"quoted\" \\ back\tslash\nnew line: #not a comment");
    strcpy(c.train_path, "/d\xc3\xa4ta/\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80.h5"); /* UTF-8 */
    strcpy(c.test_path, "null");
    c.seed = UINT64_MAX;
    c.device = DEVICE_CPU;
    c.threads = 3;
    c.cache_mb = 0;
    c.shuffle = 0;
    c.normalize = 0;
    c.n_layers = 0;
    memset(c.layers, 0, sizeof c.layers);
    for (int i = 0; i < CFG_MAX_LAYERS - 1; i++) {
        layer_config *l = &c.layers[c.n_layers++];
        l->type = (layer_type)(i % 5);
        if (l->type == LAYER_LINEAR) {
            l->out = 1 + i * 37;
            l->bias = i % 2;
        }
        if (l->type == LAYER_DROPOUT) l->p = (float)i / (float)(CFG_MAX_LAYERS + 6);
    }
    c.layers[c.n_layers++] = (layer_config){.type = LAYER_LINEAR, .out = 10, .bias = 1};
    strcpy(c.init, "normal");
    c.epochs = 0;
    c.steps = INT64_MAX;
    c.batch_size = 2147483647;
    c.grad_accum = 2147483647;
    c.optimizer = OPT_SGD;
    c.lr = 0.1f;
    c.momentum = nextafterf(1.0f, 0.0f);
    c.nesterov = 1;
    c.beta1 = 1.0f / 3.0f;
    c.beta2 = 0.0f;
    c.eps = 1e-40f; /* subnormal */
    c.weight_decay = 3.4028235e38f;
    c.clip_grad_norm = 123456789.0f;
    c.schedule = SCHED_CONSTANT;
    c.warmup_steps = 12345;
    c.min_lr = 1e-7f;
    c.log_every = 1;
    c.eval_every = INT64_MAX;
    c.progress = 0;
    c.bucket_kb = 4194304;
    assert_round_trip(&c);
    c.progress = 1;
    c.test_path[0] = '\0';
    strcpy(c.run_dir, "\x01\x1f\x7f \xc2\x85 \xe2\x80\xa8 \xef\xbb\xbf"); /* control, NEL, LS, BOM */
    assert_round_trip(&c);
    memset(c.run_dir, 'r', CFG_PATH_MAX - 1);
    c.run_dir[CFG_PATH_MAX - 1] = '\0';
    assert_round_trip(&c);
}

/* The float text is the shortest that reads back bit-identical: check it on many floats. */
static void test_float_text_exact(void **state) {
    (void)state;
    uint32_t x = 12345;
    char text[32];
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        float f, back;
        memcpy(&f, &x, sizeof f);
        if (!isfinite(f)) continue;
        config_format_float(f, text, sizeof text);
        if (config_parse_float(text, strlen(text), &back) != 0 || !float_bits_equal(f, back))
            fail_msg("%.9g written as '%s'", (double)f, text);
    }
    float samples[] = {0.1f, 1e-3f, 3e-4f, 0.999f, 100.0f, 1e6f, 1e-8f, FLT_MIN, FLT_MAX, -0.0f};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        config_format_float(samples[i], text, sizeof text);
        assert_int_equal(config_parse_float(text, strlen(text), &(float){0}), 0);
    }
    config_format_float(100.0f, text, sizeof text);
    assert_string_equal(text, "100");
    config_format_float(0.1f, text, sizeof text);
    assert_string_equal(text, "0.1");
    config_format_float(1e6f, text, sizeof text);
    assert_string_equal(text, "1000000");
}

/* A handful of random learning rates through the public write/load path. */
static void test_random_floats_round_trip(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    uint32_t x = 99;
    for (int i = 0; i < 100; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c.lr = ldexpf((float)(x & 0xffffff) / (float)0x1000000 + 0.5f, (int)(x >> 24) % 60 - 40);
        c.min_lr = c.lr * 0.37f;
        assert_round_trip(&c);
    }
}

static void test_write_is_atomic_and_reports_errors(void **state) {
    (void)state;
    config c;
    char err[512], path[600];
    config_defaults(&c);
    const char *target = test_path("config.yaml");
    write_text("config.yaml", "old contents\n");
    if (config_write(&c, target, err, sizeof err) != 0) fail_msg("%s", err);
    config back;
    if (config_load_file(&back, target, err, sizeof err) != 0) fail_msg("%s", err);
    assert_config_equal(&back, &c);
    snprintf(path, sizeof path, "%s/config.yaml.tmp.%ld", test_dir, (long)getpid());
    struct stat st;
    assert_int_equal(stat(path, &st), -1); /* no temporary left behind */

    snprintf(path, sizeof path, "%s/no-such-dir/config.yaml", test_dir);
    assert_int_equal(config_write(&c, path, err, sizeof err), -1);
    assert_contains(err, "no-such-dir");
    assert_contains(err, "No such file or directory");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_round_trip),
        cmocka_unit_test(test_full_config_round_trip),
        cmocka_unit_test(test_float_text_exact),
        cmocka_unit_test(test_random_floats_round_trip),
        cmocka_unit_test(test_write_is_atomic_and_reports_errors),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}
