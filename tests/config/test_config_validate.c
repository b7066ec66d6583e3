/* config_validate: the cross-key checks, each message naming its keys. */
#include "config_test_util.h"

static void invalid(const config *c, const char *want1, const char *want2) {
    char err[512];
    if (config_validate(c, err, sizeof err) == 0) fail_msg("expected an error containing '%s'", want1);
    assert_contains(err, want1);
    if (want2) assert_contains(err, want2);
}

static void test_defaults_are_valid(void **state) {
    (void)state;
    config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
}

static void test_cross_key_checks(void **state) {
    (void)state;
    config c;
    char err[512];

    config_defaults(&c);
    c.batch_size = 100;
    c.grad_accum = 3;
    invalid(&c, "train.batch_size (100) must be divisible by train.grad_accum (3)", NULL);
    c.grad_accum = 4;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    config_defaults(&c);
    c.steps = 50;
    c.warmup_steps = 50;
    invalid(&c, "train.warmup_steps (50) must be less than train.steps (50)", NULL);
    c.warmup_steps = 49;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    c.steps = 0; /* with steps from epochs, the trainer checks warmup against the real total */
    c.warmup_steps = 1000000;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    config_defaults(&c);
    c.min_lr = 0.01f;
    c.lr = 0.001f;
    invalid(&c, "train.min_lr (0.01) must be <= train.lr (0.001)", NULL);

    config_defaults(&c);
    c.epochs = 0;
    invalid(&c, "train.epochs", "train.steps is 0");
    c.steps = 10;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    config_defaults(&c);
    c.train_path[0] = '\0';
    invalid(&c, "data.train", "empty");
    config_defaults(&c);
    c.test_path[0] = '\0'; /* no evaluation is fine */
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    c.run_dir[0] = '\0';
    invalid(&c, "run.dir", "empty");
}

static void test_layer_checks(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    c.n_layers = 5; /* ends in relu */
    invalid(&c, "model.layers: the last layer must be linear", "got relu");
    c.n_layers = 1; /* flatten only */
    invalid(&c, "model.layers: needs at least one linear layer", NULL);
    c.n_layers = 0;
    invalid(&c, "model.layers", "got 0");
    c.n_layers = CFG_MAX_LAYERS + 1;
    invalid(&c, "model.layers", "got 257");

    config_defaults(&c);
    c.layers[3].out = 0;
    invalid(&c, "model.layers[3].out: expected an integer in [1, 16777216], got '0'", NULL);
    config_defaults(&c);
    c.layers[2].type = (layer_type)LAYER_TYPE_COUNT;   /* one past the last type */
    invalid(&c, "model.layers[2].type: expected one of flatten", "got '16'");
    config_defaults(&c);
    c.layers[2].type = LAYER_RESIDUAL_END;
    invalid(&c, "model.layers[2]: residual_end without a residual_start", NULL);
    config_defaults(&c);
    c.layers[1].type = LAYER_RESIDUAL_START;
    invalid(&c, "model.layers[1]: residual_start is never closed", NULL);
    config_defaults(&c);
    c.layers[2].type = LAYER_DROPOUT;
    c.layers[2].p = 1.0f;
    invalid(&c, "model.layers[2].p: expected a number in [0, 1), got '1'", NULL);
}

static void test_field_ranges(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    c.batch_size = 0;
    invalid(&c, "train.batch_size: expected an integer in [1, 2147483647], got '0'", NULL);
    config_defaults(&c);
    c.grad_accum = 0;
    invalid(&c, "train.grad_accum: expected an integer >= 1, got '0'", NULL);
    config_defaults(&c);
    c.lr = 0.0f / 0.0f;
    invalid(&c, "train.lr: expected a number > 0", NULL);
    config_defaults(&c);
    c.beta2 = 1.0f;
    invalid(&c, "train.beta2: expected a number in [0, 1)", NULL);
    config_defaults(&c);
    c.optimizer = (optimizer_type)5;
    invalid(&c, "train.optimizer: expected one of sgd, adamw, got '5'", NULL);
    config_defaults(&c);
    c.progress = 2;
    invalid(&c, "log.progress", NULL);
    config_defaults(&c);
    strcpy(c.init, "xavier");
    invalid(&c, "model.init: expected one of kaiming_uniform, normal, got 'xavier'", NULL);
    config_defaults(&c);
    memset(c.run_dir, 'x', sizeof c.run_dir); /* not terminated */
    invalid(&c, "run.dir: expected a string shorter than 1024 bytes", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_valid),
        cmocka_unit_test(test_cross_key_checks),
        cmocka_unit_test(test_layer_checks),
        cmocka_unit_test(test_field_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
