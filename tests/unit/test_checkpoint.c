/* Checkpoints (trainer/run/checkpoint.c): a written file read back into a fresh model and
 * optimizer gives every parameter, buffer and optimizer-state bit and the meta values back;
 * its layout is what the header promises (read here with plain HDF5 calls, as h5py would);
 * old ones are pruned.  And its refusals: a missing, truncated or bit-flipped file, a model
 * of other shapes, a deleted dataset, another optimizer - each an error that names the file
 * and the tensor, with the model and optimizer left exactly as they were. */
#include "unit_util.h"

#include <hdf5.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "model.h"
#include "optim.h"

static char dir[256];

/* [4, 4] images, 10 classes: conv 2x1x3x3 + 2, batch norm 2 + 2 (+ 2 + 2 buffers),
 * linear 10 x 32 + 10: 20 + 4 + 330 = 354 parameters */
static const model_input_desc in4 = {0, {4, 4, 0}, 2, 10};
static const char *LAYERS = "model.layers=[{type: conv2d, out: 2, kernel: 3, padding: 1}, "
                            "{type: batchnorm2d}, {type: flatten}, {type: linear, out: 10}]";
static const char *LAYERS_WIDER = "model.layers=[{type: conv2d, out: 3, kernel: 3, "
                                  "padding: 1}, {type: batchnorm2d}, {type: flatten}, "
                                  "{type: linear, out: 10}]";

typedef struct {
    config cfg;
    model m;
    optim o;
} run;

static int setup(void **state) {
    unit_make_dir(dir, sizeof dir, "ckpt");
    return unit_setup_backend(state);
}

static int remove_all(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    unit_free_backend(state);
    return system(cmd) == 0 ? 0 : -1;
}

/* A model and optimizer (sgd with momentum, or adamw) with every value filled from fill:
 * parameters from model_init_params(seed), buffers, moments and t from fill. */
static void make_run(run *r, const char *layers, const char *optimizer, float fill) {
    char err[512];
    unit_config(&r->cfg, layers, optimizer, "train.momentum=0.9", NULL);
    assert_int_equal(model_build(&r->m, &r->cfg, &in4, 2, 0, k, err, sizeof err), 0);
    assert_int_equal(optim_create(&r->o, &r->cfg, r->m.n_params, 100, k, err, sizeof err), 0);
    model_init_params(&r->m, r->cfg.init, (uint64_t)(fill * 1000.0f));
    for (int64_t i = 0; i < r->m.n_buffers; i++) r->m.buffers[i] = fill + 0.5f * (float)i;
    for (int64_t i = 0; i < r->m.n_params; i++) {
        if (r->o.m) r->o.m[i] = fill * sinf((float)i);
        if (r->o.v) r->o.v[i] = fill * 1e-3f * (float)(i % 17);
    }
    r->o.t = (int64_t)fill;
}

static void free_run(run *r) {
    optim_free(&r->o);
    model_free(&r->m);
}

static const ckpt_state written = {.step = 7, .epoch = 2, .cursor = 96, .optimizer_steps = 7,
                                   .seed = 1234, .world_size = 2};

/* Writes a's checkpoint at step `step` into sub-directory sub; returns its path. */
static const char *write_ckpt(run *a, const char *sub, int64_t step, int keep) {
    static char path[1200];
    char d[400], err[512] = "";
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    ckpt_state s = written;
    s.step = step;
    char *yaml = config_to_yaml(&a->cfg);
    assert_non_null(yaml);
    int rc = ckpt_write(d, &a->m, &a->o, &s, yaml, keep, NULL, NULL, path, sizeof path, err,
                        sizeof err);
    free(yaml);
    if (rc != 0) print_error("ckpt_write: %s\n", err);
    assert_int_equal(rc, 0);
    return path;
}

static void assert_same_floats(const float *a, const float *b, int64_t n, const char *what) {
    if (memcmp(a, b, (size_t)n * sizeof(float)) != 0) {
        print_error("%s differ\n", what);
        fail();
    }
}

/* b holds exactly a's values */
static void assert_same_run(const run *a, const run *b) {
    assert_int_equal(a->m.n_params, b->m.n_params);
    assert_same_floats(a->m.params, b->m.params, a->m.n_params, "parameters");
    assert_same_floats(a->m.buffers, b->m.buffers, a->m.n_buffers, "buffers");
    if (a->o.m) assert_same_floats(a->o.m, b->o.m, a->m.n_params, "first moments / momentum");
    if (a->o.v) assert_same_floats(a->o.v, b->o.v, a->m.n_params, "second moments");
    assert_int_equal(a->o.t, b->o.t);
}

static void round_trip(const char *optimizer, const char *sub) {
    run a, b, saved;
    make_run(&a, LAYERS, optimizer, 7.0f);
    make_run(&b, LAYERS, optimizer, 3.0f);
    assert_int_equal(a.m.n_params, 354);
    assert_int_equal(a.m.n_buffers, 4);
    const char *path = write_ckpt(&a, sub, 7, 3);
    char want[600];
    snprintf(want, sizeof want, "%s/%s/step_00000007.h5", dir, sub);
    assert_string_equal(path, want);

    ckpt_state s;
    memset(&s, 0, sizeof s);
    char err[512] = "";
    int rc = ckpt_read(path, &b.m, &b.o, &s, err, sizeof err);
    if (rc != CKPT_OK) print_error("ckpt_read: %s\n", err);
    assert_int_equal(rc, CKPT_OK);
    assert_same_run(&a, &b);
    /* field by field: the struct's padding is not part of the state */
    assert_int_equal(s.step, written.step);
    assert_int_equal(s.epoch, written.epoch);
    assert_int_equal(s.cursor, written.cursor);
    assert_int_equal(s.optimizer_steps, written.optimizer_steps);
    assert_int_equal(s.seed, written.seed);
    assert_int_equal(s.world_size, written.world_size);

    char *yaml = config_to_yaml(&a.cfg), *stored = ckpt_read_config(path, err, sizeof err);
    assert_non_null(stored);
    assert_string_equal(stored, yaml);
    free(yaml);
    free(stored);

    /* evaluation reads only the parameters (and buffers) */
    make_run(&saved, LAYERS, optimizer, 5.0f);
    assert_int_equal(ckpt_read(path, &saved.m, NULL, &s, err, sizeof err), CKPT_OK);
    assert_same_floats(a.m.params, saved.m.params, a.m.n_params, "parameters (no optimizer)");
    free_run(&saved);
    free_run(&a);
    free_run(&b);
}

static void test_round_trip_adamw(void **state) {
    (void)state;
    round_trip("train.optimizer=adamw", "adamw");
}

static void test_round_trip_sgd(void **state) {
    (void)state;
    round_trip("train.optimizer=sgd", "sgd");
}

/* The layout of the header, through plain HDF5 calls: dataset shapes in PyTorch's order and
 * the meta attributes. */
static void test_layout(void **state) {
    (void)state;
    run a;
    make_run(&a, LAYERS, "train.optimizer=adamw", 7.0f);
    const char *path = write_ckpt(&a, "layout", 7, 3);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    static const struct { const char *name; int ndim; hsize_t dims[4]; } want[] = {
        {"params/layers.0.weight", 4, {2, 1, 3, 3}},
        {"params/layers.0.bias", 1, {2}},
        {"params/layers.1.weight", 1, {2}},
        {"buffers/layers.1.running_var", 1, {2}},
        {"params/layers.3.weight", 2, {10, 32}},
        {"optim/layers.3.weight/exp_avg", 2, {10, 32}},
        {"optim/layers.3.weight/exp_avg_sq", 2, {10, 32}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        hid_t ds = H5Dopen2(f, want[i].name, H5P_DEFAULT);
        if (ds < 0) print_error("no dataset %s\n", want[i].name);
        assert_true(ds >= 0);
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[4];
        assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), want[i].ndim);
        for (int d = 0; d < want[i].ndim; d++) assert_int_equal(dims[d], want[i].dims[d]);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    hid_t g = H5Gopen2(f, "meta", H5P_DEFAULT);
    int64_t v = 0;
    hid_t at = H5Aopen(g, "cursor", H5P_DEFAULT);
    assert_true(at >= 0 && H5Aread(at, H5T_NATIVE_INT64, &v) >= 0);
    assert_int_equal(v, 96);
    H5Aclose(at);
    H5Gclose(g);
    H5Fclose(f);
    free_run(&a);
}

/* keep = 2: after steps 1..4 only 4 and 3 remain, newest first; no temporary files. */
static void test_keep(void **state) {
    (void)state;
    run a;
    make_run(&a, LAYERS, "train.optimizer=sgd", 7.0f);
    for (int64_t step = 1; step <= 4; step++) write_ckpt(&a, "keep", step, 2);
    char d[400], (*paths)[1200] = malloc(8 * sizeof *paths);
    snprintf(d, sizeof d, "%s/keep", dir);
    assert_int_equal(ckpt_list(d, paths, 8), 2);
    assert_non_null(strstr(paths[0], "step_00000004.h5"));
    assert_non_null(strstr(paths[1], "step_00000003.h5"));
    free(paths);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 2", d);
    assert_int_equal(system(cmd), 0);
    free_run(&a);
}

/* ---- refusals ---- */

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static const char *spill(const char *name, const unsigned char *b, size_t len) {
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Where needle (n bytes) stands in the file's bytes; exactly once. */
static size_t find_once(const unsigned char *b, size_t len, const void *needle, size_t n) {
    size_t at = (size_t)-1;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(b + i, needle, n) == 0) {
            assert_true(at == (size_t)-1);
            at = i;
        }
    assert_true(at != (size_t)-1);
    return at;
}

/* ckpt_read of path into a fresh run must fail with rc and an error containing the path and
 * `names`, and leave the run's values untouched. */
static void refuses(const char *path, const char *layers, const char *optimizer, int rc,
                    const char *names) {
    run b, before;
    make_run(&b, layers, optimizer, 3.0f);
    make_run(&before, layers, optimizer, 3.0f);
    ckpt_state s = {0};
    char err[1024] = "";
    int got = ckpt_read(path, &b.m, &b.o, &s, err, sizeof err);
    if (got != rc) print_error("ckpt_read returned %d (%s), expected %d\n", got, err, rc);
    assert_int_equal(got, rc);
    assert_contains(err, path);
    assert_contains(err, names);
    assert_same_run(&before, &b);
    free_run(&b);
    free_run(&before);
}

static void test_refusals(void **state) {
    (void)state;
    run a;
    make_run(&a, LAYERS, "train.optimizer=adamw", 7.0f);
    const char *good = write_ckpt(&a, "refuse", 7, 3);
    char good_path[1200];
    snprintf(good_path, sizeof good_path, "%s", good);
    size_t len;
    unsigned char *bytes = slurp(good_path, &len);
    const char *adamw = "train.optimizer=adamw";

    /* a good file, but the run uses another optimizer */
    refuses(good_path, LAYERS, "train.optimizer=sgd", CKPT_MISMATCH,
            "written with train.optimizer=adamw, but this run uses sgd");

    char missing[400];
    snprintf(missing, sizeof missing, "%s/no_such_step.h5", dir);
    refuses(missing, LAYERS, adamw, CKPT_CORRUPT, "No such file");

    /* cut in half (the superblock survives, HDF5 sees the end of file is short), and cut to
     * 100 bytes (no superblock left) */
    refuses(spill("truncated.h5", bytes, len / 2), LAYERS, adamw, CKPT_CORRUPT, "damaged");
    refuses(spill("truncated.h5", bytes, 100), LAYERS, adamw, CKPT_CORRUPT, "damaged");

    /* one bit of layers.3.weight's data (its first four floats, found in the file) */
    unsigned char *flip = malloc(len);
    memcpy(flip, bytes, len);
    const float *w3 = a.m.params + a.m.tensors[4].offset;
    assert_string_equal(a.m.tensors[4].name, "layers.3.weight");
    size_t at = find_once(flip, len, w3, 4 * sizeof(float));
    flip[at + 5] ^= 0x10;
    refuses(spill("flipped.h5", flip, len), LAYERS, adamw, CKPT_CORRUPT,
            "/params/layers.3.weight fails its checksum");

    /* one byte of the config text stored in /meta */
    memcpy(flip, bytes, len);
    at = find_once(flip, len, "optimizer: adamw", 16);
    flip[at + 11] = 'x';
    refuses(spill("flipped_meta.h5", flip, len), LAYERS, adamw, CKPT_CORRUPT, "/meta");
    free(flip);

    /* a model with 3 convolution channels instead of 2 */
    refuses(good_path, LAYERS_WIDER, adamw, CKPT_MISMATCH,
            "tensor /params/layers.0.weight has shape [2, 1, 3, 3] in the checkpoint but "
            "[3, 1, 3, 3] in the model");

    /* datasets deleted with HDF5 itself */
    static const char *gone[] = {"optim/layers.3.bias/exp_avg_sq", "params/layers.1.bias"};
    for (int i = 0; i < 2; i++) {
        const char *p = spill("deleted.h5", bytes, len);
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(f >= 0);
        assert_true(H5Ldelete(f, gone[i], H5P_DEFAULT) >= 0);
        H5Fclose(f);
        char name[80];
        snprintf(name, sizeof name, "/%s", gone[i]);
        refuses(p, LAYERS, adamw, CKPT_MISMATCH, name);
    }
    free(bytes);
    free_run(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_adamw),
        cmocka_unit_test(test_round_trip_sgd),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_keep),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, remove_all);
}
