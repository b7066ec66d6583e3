/* config_load_file: defaults, a full file, and one test per class of error, each asserting
 * the message names the file, the line and the key. */
#include "config_test_util.h"

static void test_defaults(void **state) {
    (void)state;
    config c;
    char err[512];
    config_defaults(&c);
    assert_string_equal(c.run_dir, "runs/default");
    assert_true(c.seed == 42);
    assert_int_equal(c.device, DEVICE_AUTO);
    assert_int_equal(c.threads, 0);
    assert_string_equal(c.train_path, "datasets/fashion-mnist/train.h5");
    assert_string_equal(c.test_path, "datasets/fashion-mnist/test.h5");
    assert_int_equal(c.cache_mb, 2048);
    assert_int_equal(c.shuffle, 1);
    assert_int_equal(c.normalize, 1);
    assert_int_equal(c.n_layers, 6);
    layer_type types[6] = {LAYER_FLATTEN, LAYER_LINEAR, LAYER_RELU, LAYER_LINEAR, LAYER_RELU, LAYER_LINEAR};
    int outs[6] = {0, 256, 0, 128, 0, 10};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c.layers[i].type, types[i]);
        assert_int_equal(c.layers[i].out, outs[i]);
        assert_int_equal(c.layers[i].bias, types[i] == LAYER_LINEAR);
    }
    assert_string_equal(c.init, "kaiming_uniform");
    assert_int_equal(c.epochs, 10);
    assert_int_equal(c.steps, 0);
    assert_int_equal(c.batch_size, 128);
    assert_int_equal(c.grad_accum, 1);
    assert_int_equal(c.optimizer, OPT_ADAMW);
    assert_true(c.lr == 1e-3f && c.momentum == 0.9f && c.nesterov == 0);
    assert_true(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
    assert_true(c.weight_decay == 0.0f && c.clip_grad_norm == 0.0f && c.min_lr == 0.0f);
    assert_int_equal(c.schedule, SCHED_COSINE);
    assert_int_equal(c.warmup_steps, 0);
    assert_int_equal(c.log_every, 100);
    assert_int_equal(c.eval_every, 0);
    assert_int_equal(c.progress, -1);
    assert_int_equal(c.bucket_kb, 1024);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    assert_string_equal(layer_type_name(LAYER_GELU), "gelu");
    assert_string_equal(layer_type_name((layer_type)99), "unknown");
}

static void test_empty_files_are_defaults(void **state) {
    (void)state;
    const char *texts[] = {"", "# only a comment\n\n", "---\n", "---\n...\n", "~\n", "train:\n"};
    config defaults, c;
    char err[512];
    config_defaults(&defaults);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        memset(&c, 0x5a, sizeof c);
        if (load_text(&c, texts[i], err, sizeof err) != 0) fail_msg("'%s': %s", texts[i], err);
        assert_config_equal(&c, &defaults);
    }
}

static const char *full_config =
    "# every key\n"
    "run:\n"
    "  dir: runs/exp 1\n"
    "  seed: 18446744073709551615\n"
    "  device: cuda\n"
    "  threads: 4\n"
    "data:\n"
    "  train: \"/data/train set.h5\"\n"
    "  test: ''\n"
    "  cache_mb: 0\n"
    "  shuffle: no\n"
    "  normalize: Off\n"
    "model:\n"
    "  layers:\n"
    "    - type: flatten\n"
    "    - {type: linear, out: 512, bias: false}\n"
    "    - type: gelu\n"
    "    - type: dropout\n"
    "      p: 0.25\n"
    "    - {type: dropout}\n"
    "    - {out: 10, type: linear}\n"
    "  init: normal\n"
    "train:\n"
    "  epochs: 3\n"
    "  steps: 1000\n"
    "  batch_size: 256\n"
    "  grad_accum: 4\n"
    "  optimizer: sgd\n"
    "  lr: 0.1\n"
    "  momentum: 0.95\n"
    "  nesterov: true\n"
    "  beta1: 0.8\n"
    "  beta2: 0.99\n"
    "  eps: 1e-6\n"
    "  weight_decay: 5e-4\n"
    "  clip_grad_norm: 1.0\n"
    "  schedule: linear\n"
    "  warmup_steps: 100\n"
    "  min_lr: 1e-5\n"
    "log:\n"
    "  every: 10\n"
    "  eval_every: 500\n"
    "  progress: false\n"
    "comm:\n"
    "  bucket_kb: 256\n";

static void test_full_file(void **state) {
    (void)state;
    config c;
    char err[512];
    config_defaults(&c);
    if (load_text(&c, full_config, err, sizeof err) != 0) fail_msg("%s", err);
    assert_string_equal(c.run_dir, "runs/exp 1");
    assert_true(c.seed == UINT64_MAX);
    assert_int_equal(c.device, DEVICE_CUDA);
    assert_int_equal(c.threads, 4);
    assert_string_equal(c.train_path, "/data/train set.h5");
    assert_string_equal(c.test_path, "");
    assert_int_equal(c.cache_mb, 0);
    assert_int_equal(c.shuffle, 0);
    assert_int_equal(c.normalize, 0);
    assert_int_equal(c.n_layers, 6);
    assert_int_equal(c.layers[0].type, LAYER_FLATTEN);
    assert_int_equal(c.layers[1].type, LAYER_LINEAR);
    assert_int_equal(c.layers[1].out, 512);
    assert_int_equal(c.layers[1].bias, 0);
    assert_int_equal(c.layers[2].type, LAYER_GELU);
    assert_int_equal(c.layers[3].type, LAYER_DROPOUT);
    assert_true(c.layers[3].p == 0.25f);
    assert_true(c.layers[4].p == 0.5f); /* torch's default */
    assert_int_equal(c.layers[5].type, LAYER_LINEAR);
    assert_int_equal(c.layers[5].out, 10);
    assert_int_equal(c.layers[5].bias, 1);
    assert_int_equal(c.layers[6].type, 0); /* the old list is gone */
    assert_int_equal(c.layers[6].out, 0);
    assert_string_equal(c.init, "normal");
    assert_int_equal(c.epochs, 3);
    assert_int_equal(c.steps, 1000);
    assert_int_equal(c.batch_size, 256);
    assert_int_equal(c.grad_accum, 4);
    assert_int_equal(c.optimizer, OPT_SGD);
    assert_true(c.lr == 0.1f && c.momentum == 0.95f && c.nesterov == 1);
    assert_true(c.beta1 == 0.8f && c.beta2 == 0.99f && c.eps == 1e-6f);
    assert_true(c.weight_decay == 5e-4f && c.clip_grad_norm == 1.0f && c.min_lr == 1e-5f);
    assert_int_equal(c.schedule, SCHED_LINEAR);
    assert_int_equal(c.warmup_steps, 100);
    assert_int_equal(c.log_every, 10);
    assert_int_equal(c.eval_every, 500);
    assert_int_equal(c.progress, 0);
    assert_int_equal(c.bucket_kb, 256);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
}

static void test_partial_file_keeps_defaults(void **state) {
    (void)state;
    config c, expected;
    char err[512];
    config_defaults(&expected);
    expected.lr = 0.5f;
    expected.progress = 1;
    memset(&c, 0, sizeof c); /* config_load_file starts from the defaults itself */
    if (load_text(&c, "train:\n  lr: .5\nlog: {progress: yes}\n", err, sizeof err)) fail_msg("%s", err);
    assert_config_equal(&c, &expected);
}

/* Each case: the text, the line the error must name, the pieces the message must hold. */
typedef struct {
    const char *text;
    int line;
    const char *want[3];
} error_case;

static void check_error_cases(const error_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        config c, before;
        char err[512];
        config_defaults(&c);
        c.threads = 77; /* a failed load leaves the config as it was */
        before = c;
        if (load_text(&c, cases[i].text, err, sizeof err) == 0) fail_msg("no error for: %s", cases[i].text);
        if (cases[i].line) assert_contains(err, at_line(cases[i].line));
        else assert_contains(err, test_path("t.yaml"));
        for (int j = 0; j < 3 && cases[i].want[j]; j++) assert_contains(err, cases[i].want[j]);
        assert_config_equal(&c, &before);
    }
}

static void test_unknown_keys(void **state) {
    (void)state;
    const error_case cases[] = {
        {"train:\n  lr: 1\n  lrr: 0.1\n", 3, {"unknown key 'train.lrr'", "did you mean 'train.lr'?"}},
        {"trian:\n  lr: 1\n", 1, {"unknown key 'trian'", "did you mean 'train'?"}},
        {"train:\n  every: 5\n", 2, {"unknown key 'train.every'", "did you mean 'log.every'?"}},
        {"lr: 0.1\n", 1, {"unknown key 'lr'", "did you mean 'train.lr'?"}},
        {"train:\n  zzzzzz: 1\n", 2, {"unknown key 'train.zzzzzz'"}},
        {"bogus: 1\n", 1, {"unknown key 'bogus'", "sections: run, data"}},
        {"model:\n  layers:\n    - {type: flatten}\n    - {type: relu}\n    - {type: linear, outt: 10}\n", 5,
         {"unknown key 'model.layers[2].outt'", "did you mean 'model.layers[2].out'?"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_bad_values(void **state) {
    (void)state;
    const error_case cases[] = {
        {"train:\n  lr: abc\n", 2, {"train.lr: expected a number > 0, got 'abc'"}},
        {"train:\n  lr: 0\n", 2, {"train.lr: expected a number > 0, got '0'"}},
        {"train:\n  lr: -1\n", 2, {"train.lr: expected a number > 0"}},
        {"train:\n  lr: 1e39\n", 2, {"train.lr: expected a number > 0, got '1e39'"}},
        {"train:\n  lr: .nan\n", 2, {"train.lr: expected a number"}},
        {"train:\n  lr: inf\n", 2, {"train.lr: expected a number"}},
        {"train:\n  lr: 1.0x\n", 2, {"train.lr: expected a number"}},
        {"train:\n  lr: ''\n", 2, {"train.lr: expected a number"}},
        {"train:\n  momentum: 1\n", 2, {"train.momentum: expected a number in [0, 1), got '1'"}},
        {"train:\n  weight_decay: -0.1\n", 2, {"train.weight_decay: expected a number >= 0"}},
        {"train:\n  batch_size: 0\n", 2, {"train.batch_size: expected an integer in [1, 2147483647], got '0'"}},
        {"train:\n  epochs: 1.5\n", 2, {"train.epochs: expected an integer >= 0, got '1.5'"}},
        {"train:\n  epochs: 1e3\n", 2, {"train.epochs: expected an integer", "got '1e3'"}},
        {"train:\n  epochs: 0x10\n", 2, {"train.epochs: expected an integer"}},
        {"train:\n  steps: 99999999999999999999\n", 2, {"train.steps: expected an integer >= 0", "(out of range)"}},
        {"train:\n  grad_accum: 3000000000\n", 2, {"train.grad_accum: expected an integer >= 1", "(too large)"}},
        {"run:\n  seed: -1\n", 2, {"run.seed: expected an integer in [0, 18446744073709551615], got '-1'"}},
        {"run:\n  seed: 18446744073709551616\n", 2, {"run.seed: expected an integer", "(out of range)"}},
        {"run:\n  device: gpu\n", 2, {"run.device: expected one of auto, cpu, cuda, got 'gpu'"}},
        {"train:\n  optimizer: adam\n", 2, {"train.optimizer: expected one of sgd, adamw, got 'adam'"}},
        {"train:\n  schedule: step\n", 2, {"train.schedule: expected one of constant, cosine, linear"}},
        {"model:\n  init: xavier\n", 2, {"model.init: expected one of kaiming_uniform, normal, got 'xavier'"}},
        {"data:\n  shuffle: maybe\n", 2, {"data.shuffle: expected true or false, got 'maybe'"}},
        {"log:\n  progress: sometimes\n", 2, {"log.progress: expected one of auto, true, false"}},
        {"log:\n  every: 0\n", 2, {"log.every: expected an integer >= 1, got '0'"}},
        {"comm:\n  bucket_kb: 0\n", 2, {"comm.bucket_kb: expected an integer in [1, 4194304]"}},
        {"train:\n  zero_stage: 2\n", 2, {"train.zero_stage: expected an integer in [0, 1], got '2'"}},
        {"train:\n  zero_stage: -1\n", 2, {"train.zero_stage: expected an integer in [0, 1]"}},
        {"comm:\n  grad_dtype: fp16\n", 2, {"comm.grad_dtype: expected one of fp32, bf16, got 'fp16'"}},
        {"train:\n  lr: [1, 2]\n", 2, {"train.lr: expected a number > 0, got a sequence"}},
        {"train:\n  lr: {a: 1}\n", 2, {"train.lr: expected a number > 0, got a mapping"}},
        {"run:\n  dir: \"a\\0b\"\n", 2, {"run.dir: expected a string", "NUL"}},
        {"model:\n  layers: linear\n", 2, {"model.layers: expected a sequence", "got 'linear'"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_long_string(void **state) {
    (void)state;
    static char text[4096];
    int n = snprintf(text, sizeof text, "run:\n  dir: ");
    memset(text + n, 'a', CFG_PATH_MAX);
    strcpy(text + n + CFG_PATH_MAX, "\n");
    config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(load_text(&c, text, err, sizeof err), -1);
    assert_contains(err, at_line(2));
    assert_contains(err, "run.dir: expected a string shorter than 1024 bytes");
    assert_contains(err, "(1024 bytes)");
    /* one byte less fits */
    text[n + CFG_PATH_MAX - 1] = '\n';
    text[n + CFG_PATH_MAX] = '\0';
    if (load_text(&c, text, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(strlen(c.run_dir), CFG_PATH_MAX - 1);
}

static void test_duplicates(void **state) {
    (void)state;
    const error_case cases[] = {
        {"train:\n  lr: 1\n  lr: 2\n", 3, {"duplicate key 'train.lr'", "first on line 2"}},
        {"train:\n  lr: 1\nlog:\n  every: 2\ntrain:\n  steps: 3\n", 5, {"duplicate key 'train'", "first on line 1"}},
        {"model:\n  layers:\n    - {type: linear, out: 1, out: 2}\n", 3, {"duplicate key 'model.layers[0].out'"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_layer_errors(void **state) {
    (void)state;
    const error_case cases[] = {
        {"model:\n  layers:\n    - {type: linear}\n", 3, {"model.layers[0]: a linear layer needs 'out'"}},
        {"model:\n  layers:\n    - {out: 3}\n", 3, {"model.layers[0]: missing 'type'"}},
        {"model:\n  layers:\n    - {type: conv}\n", 3, {"model.layers[0].type: expected one of flatten, linear, relu, gelu, dropout, conv2d, maxpool2d, avgpool2d, global_avgpool, batchnorm2d, residual_start, residual_end, embedding, layernorm, attention, lm_head, got 'conv'"}},
        {"model:\n  layers:\n    - type: linear\n      out: 3\n      p: 0.5\n", 5,
         {"model.layers[0].p: not a key of a linear layer"}},
        {"model:\n  layers:\n    - {type: relu, out: 3}\n", 3, {"model.layers[0].out: not a key of a relu layer"}},
        {"model:\n  layers:\n    - {type: conv2d, out: 8}\n", 3, {"model.layers[0]: a conv2d layer needs 'kernel'"}},
        {"model:\n  layers:\n    - {type: maxpool2d, kernel: 2, out: 3}\n", 3,
         {"model.layers[0].out: not a key of a maxpool2d layer (maxpool2d takes type, kernel, stride, padding)"}},
        {"model:\n  layers:\n    - {type: batchnorm2d, momentum: 2}\n", 3, {"model.layers[0].momentum: expected"}},
        {"model:\n  layers:\n    - {type: dropout, p: 1}\n", 3, {"model.layers[0].p: expected a number in [0, 1), got '1'"}},
        {"model:\n  layers:\n    - {type: linear, out: 0}\n", 3, {"model.layers[0].out: expected an integer in [1, 16777216], got '0'"}},
        {"model:\n  layers:\n    - {type: linear, out: 2.5}\n", 3, {"model.layers[0].out: expected an integer"}},
        {"model:\n  layers:\n    - {type: linear, out: 4, bias: 2}\n", 3, {"model.layers[0].bias: expected true or false"}},
        {"model:\n  layers:\n    - {type: linear, out: [4]}\n", 3, {"model.layers[0].out: expected an integer", "got a sequence"}},
        {"model:\n  layers:\n    - relu\n", 3, {"model.layers[0]: expected a mapping like {type: linear, out: 10}, got 'relu'"}},
        {"model:\n  layers:\n    - {type: relu}\n    - [1]\n", 4, {"model.layers[1]: expected a mapping", "got a sequence"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_too_many_layers(void **state) {
    (void)state;
    static char text[8192];
    int n = snprintf(text, sizeof text, "model:\n  layers:\n");
    for (int i = 0; i < CFG_MAX_LAYERS; i++) n += snprintf(text + n, sizeof text - n, "    - {type: relu}\n");
    config c;
    char err[512];
    config_defaults(&c);
    if (load_text(&c, text, err, sizeof err)) fail_msg("%s", err); /* exactly the maximum is fine */
    assert_int_equal(c.n_layers, CFG_MAX_LAYERS);
    snprintf(text + n, sizeof text - n, "    - {type: linear, out: 3}\n");
    assert_int_equal(load_text(&c, text, err, sizeof err), -1);
    assert_contains(err, at_line(3 + CFG_MAX_LAYERS));
    assert_contains(err, "model.layers: at most 256 layers");
}

/* model.gpt: the preset's keys as a nested mapping, --set of one key, the written config
 * reading back to the same values, and the errors. */
static void test_gpt_preset(void **state) {
    (void)state;
    config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(c.gpt_layers, 0);
    if (load_text(&c, "model:\n  gpt: {layers: 2, heads: 4, dim: 64, context: 32, dropout: 0.1, "
                      "bias: false}\n", err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(c.gpt_layers, 2);
    assert_int_equal(c.gpt_heads, 4);
    assert_int_equal(c.gpt_dim, 64);
    assert_int_equal(c.gpt_context, 32);
    assert_true(c.gpt_dropout == 0.1f);
    assert_int_equal(c.gpt_bias, 0);
    assert_int_equal(c.gpt_tie, 1);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    assert_int_equal(config_set(&c, "model.gpt.layers=12", err, sizeof err), 0);
    assert_int_equal(c.gpt_layers, 12);
    /* written nested, read back equal; the unused layer list is written empty */
    char *yaml = config_to_yaml(&c);
    assert_non_null(yaml);
    assert_contains(yaml, "  gpt:\n    layers: 12\n    heads: 4\n");
    assert_contains(yaml, "  layers: []\n");
    config back;
    config_defaults(&back);
    if (config_load_string(&back, "written", yaml, strlen(yaml), err, sizeof err)) fail_msg("%s", err);
    free(yaml);
    assert_int_equal(back.gpt_layers, 12);
    assert_int_equal(back.gpt_dim, 64);
    assert_int_equal(config_validate(&back, err, sizeof err), 0);
    /* errors name the key */
    config_defaults(&c);
    assert_int_equal(load_text(&c, "model:\n  gpt: {layers: 2, head: 4}\n", err, sizeof err), -1);
    assert_contains(err, "model.gpt.head");
    assert_contains(err, "model.gpt.heads");
    assert_int_equal(load_text(&c, "model:\n  layers: [{type: linear, out: 3}]\n  gpt: {layers: 2}\n",
                               err, sizeof err), -1);
    assert_contains(err, "model.gpt and model.layers are alternatives");
    assert_int_equal(load_text(&c, "model:\n  gpt: 12\n", err, sizeof err), -1);
    assert_contains(err, "model.gpt");
    config_defaults(&c);
    assert_int_equal(load_text(&c, "model:\n  gpt: {layers: 2, heads: 5, dim: 64}\n", err, sizeof err), 0);
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_contains(err, "model.gpt.heads: 5 heads do not divide model.gpt.dim 64");
    assert_int_equal(config_set(&c, "model.gpt.dropout=1.5", err, sizeof err), -1);
    assert_contains(err, "model.gpt.dropout");
    /* the language-model layer types in an explicit list */
    config_defaults(&c);
    if (load_text(&c, "model:\n  layers:\n    - {type: embedding, out: 32, context: 16}\n"
                      "    - {type: layernorm}\n    - {type: linear, out: 96}\n"
                      "    - {type: attention, heads: 2}\n    - {type: lm_head}\n", err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.layers[0].type, LAYER_EMBEDDING);
    assert_int_equal(c.layers[0].context, 16);
    assert_int_equal(c.layers[1].bias, 1);
    assert_true(c.layers[1].eps == 1e-5f);
    assert_int_equal(c.layers[3].heads, 2);
    assert_int_equal(c.layers[4].tie, 1);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    assert_int_equal(load_text(&c, "model:\n  layers: [{type: attention}]\n", err, sizeof err), -1);
    assert_contains(err, "needs 'heads'");
}

static void test_structure_errors(void **state) {
    (void)state;
    const error_case cases[] = {
        {"- a\n- b\n", 1, {"expected a mapping of sections", "got a sequence"}},
        {"just text\n", 1, {"expected a mapping of sections", "got 'just text'"}},
        {"train: 5\n", 1, {"train: expected a mapping of keys, got '5'"}},
        {"train: [lr]\n", 1, {"train: expected a mapping of keys, got a sequence"}},
        {"train:\n  lr: 1\n---\nlog:\n  every: 2\n", 3, {"one YAML document"}},
        {"? [a, b]\n: c\n", 1, {"expected a section name", "got a sequence"}},
        {"train:\n  ? {a: 1}\n  : 2\n", 2, {"train: expected a key name", "got a mapping"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_syntax_errors(void **state) {
    (void)state;
    config c;
    char err[512], want[600];
    config_defaults(&c);
    assert_int_equal(load_text(&c, "train: {lr: 1]\nlog:\n", err, sizeof err), -1);
    assert_contains(err, test_path("t.yaml"));
    assert_contains(err, "YAML syntax error");

    assert_int_equal(load_text(&c, "train:\n  lr: 1\n bad: 2\n", err, sizeof err), -1);
    snprintf(want, sizeof want, "%.511s:3:", test_path("t.yaml"));
    assert_contains(err, want);
    assert_contains(err, "YAML syntax error");

    assert_int_equal(load_text(&c, "train:\n\tlr: 1\n", err, sizeof err), -1); /* tabs indent */
    assert_contains(err, "YAML syntax error");

    assert_int_equal(load_text(&c, "train:\n  lr: \"unterminated\n", err, sizeof err), -1);
    assert_contains(err, "YAML syntax error");
}

static void test_missing_file_and_directory(void **state) {
    (void)state;
    config c;
    char err[512], path[600];
    config_defaults(&c);
    snprintf(path, sizeof path, "%s/no-such-file.yaml", test_dir);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
    assert_contains(err, path);
    assert_contains(err, "No such file or directory");
    assert_int_equal(config_load_file(&c, test_dir, err, sizeof err), -1);
    assert_contains(err, test_dir);
    assert_contains(err, "Is a directory");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_files_are_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_partial_file_keeps_defaults),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_long_string),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_layer_errors),
        cmocka_unit_test(test_too_many_layers),
        cmocka_unit_test(test_gpt_preset),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_missing_file_and_directory),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}
