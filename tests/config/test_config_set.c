/* config_set: --set key=value overrides and their errors. */
#include "config_test_util.h"

static void set_ok(config *c, const char *assignment) {
    char err[512];
    if (config_set(c, assignment, err, sizeof err) != 0) fail_msg("%s: %s", assignment, err);
}

static void test_set_scalars(void **state) {
    (void)state;
    config c;
    config_defaults(&c);
    set_ok(&c, "train.lr=0.01");
    assert_true(c.lr == 0.01f);
    set_ok(&c, "train.steps=500");
    assert_int_equal(c.steps, 500);
    set_ok(&c, "run.dir=runs/my run");
    assert_string_equal(c.run_dir, "runs/my run");
    set_ok(&c, "data.test=");
    assert_string_equal(c.test_path, "");
    set_ok(&c, "data.test=\"null\"");
    assert_string_equal(c.test_path, "null");
    set_ok(&c, "data.test=null");
    assert_string_equal(c.test_path, "");
    set_ok(&c, "log.progress=true");
    assert_int_equal(c.progress, 1);
    set_ok(&c, "log.progress=auto");
    assert_int_equal(c.progress, -1);
    set_ok(&c, "train.optimizer=sgd");
    assert_int_equal(c.optimizer, OPT_SGD);
    set_ok(&c, "data.shuffle=off");
    assert_int_equal(c.shuffle, 0);
    set_ok(&c, "run.seed=7");
    assert_true(c.seed == 7);
    set_ok(&c, "train.lr=0.02 # a comment");
    assert_true(c.lr == 0.02f);
    set_ok(&c, " train.lr =0.03");
    assert_true(c.lr == 0.03f);
    set_ok(&c, "train.lr=0.04"); /* the last --set of a key wins */
    assert_true(c.lr == 0.04f);
}

static void test_set_layers(void **state) {
    (void)state;
    config c;
    char err[512];
    config_defaults(&c);
    set_ok(&c, "model.layers=[{type: linear, out: 10}]");
    assert_int_equal(c.n_layers, 1);
    assert_int_equal(c.layers[0].type, LAYER_LINEAR);
    assert_int_equal(c.layers[0].out, 10);
    assert_int_equal(c.layers[0].bias, 1);
    assert_int_equal(c.layers[1].type, 0);
    assert_int_equal(c.layers[1].out, 0);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    set_ok(&c, "model.layers=[{type: flatten}, {type: linear, out: 64, bias: no}, {type: dropout, p: 0.1}, "
               "{type: gelu}, {type: linear, out: 3}]");
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.layers[1].bias, 0);
    assert_true(c.layers[2].p == 0.1f);
    assert_int_equal(c.layers[3].type, LAYER_GELU);
    set_ok(&c, "model.layers=[]");
    assert_int_equal(c.n_layers, 0);
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
}

static void set_fails(const char *assignment, const char *want1, const char *want2) {
    config c, before;
    char err[512];
    config_defaults(&c);
    before = c;
    if (config_set(&c, assignment, err, sizeof err) == 0) fail_msg("no error for --set %s", assignment);
    assert_contains(err, want1);
    if (want2) assert_contains(err, want2);
    assert_config_equal(&c, &before); /* a failed --set changes nothing */
}

static void test_set_errors(void **state) {
    (void)state;
    set_fails("train.lrr=0.01", "--set train.lrr=0.01: unknown key 'train.lrr'", "did you mean 'train.lr'?");
    set_fails("lr=0.01", "--set lr=0.01: unknown key 'lr'", "did you mean 'train.lr'?");
    set_fails("train=1", "unknown key 'train'", NULL);
    set_fails("=1", "unknown key ''", NULL);
    set_fails("train.lr", "--set train.lr: expected key=value", NULL);
    set_fails("", "expected key=value", NULL);
    set_fails("train.lr=abc", "--set train.lr=abc: train.lr: expected a number > 0, got 'abc'", NULL);
    set_fails("train.lr=", "train.lr: expected a number > 0, got ''", NULL);
    set_fails("train.lr=-0.5", "train.lr: expected a number > 0, got '-0.5'", NULL);
    set_fails("train.epochs=2.5", "train.epochs: expected an integer >= 0, got '2.5'", NULL);
    set_fails("train.optimizer=lion", "train.optimizer: expected one of sgd, adamw, got 'lion'", NULL);
    set_fails("train.lr=[0.1]", "train.lr: expected a number > 0, got a sequence", NULL);
    set_fails("train.lr={a: 1}", "got a mapping", NULL);
    set_fails("train.lr=*x", "alias", NULL);
    set_fails("train.lr=\"0.1", "--set train.lr=\"0.1: YAML syntax error", NULL);
    set_fails("train.lr=[1, 2", "train.lr: expected a number > 0, got a sequence", NULL); /* first problem wins */
    set_fails("train.lr=1\n---\n2", "expected a single value", NULL);
    set_fails("model.layers=linear", "model.layers: expected a sequence of layers", NULL);
    set_fails("model.layers=", "model.layers: expected a sequence", NULL);
    set_fails("model.layers=[{type: linear, outt: 10}]", "unknown key 'model.layers[0].outt'",
              "did you mean 'model.layers[0].out'?");
    set_fails("model.layers=[{type: linear, out: 10}, {type: linear}]", "model.layers[1]: a linear layer needs 'out'", NULL);
    set_fails("model.layers=[{type: relu, p: 0.5}]", "model.layers[0].p: not a key of a relu layer", NULL);
    set_fails("model.layers.out=3", "unknown key 'model.layers.out'", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_scalars),
        cmocka_unit_test(test_set_layers),
        cmocka_unit_test(test_set_errors),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}
