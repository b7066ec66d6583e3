/* fuzz_checkpoint: hostile bytes as a checkpoint file into trainer/run/checkpoint.c.
 *
 * Each input is written to a scratch file (tmpfs) and read the ways harness reads one:
 *   ckpt_read_config, then config_load_string of the text (harness eval does this)
 *   ckpt_inspect (harness inspect), output to /dev/null
 *   ckpt_read into a fixed tiny model, with an AdamW optimizer, with an SGD-momentum
 *   optimizer, and without one (evaluation)
 * The model is what the seed checkpoints were written with: 4x4 inputs, 10 classes,
 * model.layers = [{type: flatten}, {type: linear, out: 10}] (tensors layers.1.weight [10,16]
 * and layers.1.bias [10]), CPU backend.
 * Invariants: a read that succeeds gives non-negative positions; one that fails leaves the
 * parameters and optimizer state exactly as they were ("nothing is modified unless the
 * whole file verifies"); no HDF5 identifier is left open afterwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "fuzz_h5.h"
#include "fuzz_util.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"

#define N_CLASSES 10
static const int64_t sample_shape[2] = {4, 4};   /* [H, W] */

static kern_ctx *k;
static model m;
static optim adamw, sgd;
static FILE *devnull;
static float *saved;  /* [3 * n_params]: params, then the two state buffers */

static void setup_or_die(void) {
    char err[512];
    model_input_desc in_desc = {0, {sample_shape[0], sample_shape[1], 0}, 2, N_CLASSES};
    kern_options ko = {.backend = KERN_CPU, .threads = 1, .device = 0};
    config cfg;
    config_defaults(&cfg);
    if (kern_create(&ko, &k, err, sizeof err) != 0 ||
        config_set(&cfg, "model.layers=[{type: flatten}, {type: linear, out: 10}]", err,
                   sizeof err) != 0 ||
        model_build(&m, &cfg, &in_desc, 4, 0, k, err, sizeof err) != 0 ||
        optim_create(&adamw, &cfg, m.n_params, 2, k, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_checkpoint: setup failed: %s\n", err);
        abort();
    }
    cfg.optimizer = OPT_SGD;
    cfg.momentum = 0.9f;
    if (optim_create(&sgd, &cfg, m.n_params, 2, k, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_checkpoint: setup failed: %s\n", err);
        abort();
    }
    model_init_params(&m, "kaiming_uniform", 1);
    fuzz_h5_baseline();
    devnull = fopen("/dev/null", "w");
    saved = malloc(3 * (size_t)m.n_params * sizeof(float));
    if (!devnull || !saved) abort();
}

/* The buffers ckpt_read may write: params and o's state (host memory on the CPU backend). */
static void snapshot(const optim *o) {
    size_t bytes = (size_t)m.n_params * sizeof(float);
    memcpy(saved, m.params, bytes);
    if (o && o->m) memcpy(saved + m.n_params, o->m, bytes);
    if (o && o->v) memcpy(saved + 2 * m.n_params, o->v, bytes);
}

static int unchanged(const optim *o) {
    size_t bytes = (size_t)m.n_params * sizeof(float);
    return memcmp(saved, m.params, bytes) == 0 &&
           (!o || !o->m || memcmp(saved + m.n_params, o->m, bytes) == 0) &&
           (!o || !o->v || memcmp(saved + 2 * m.n_params, o->v, bytes) == 0);
}

static void read_into(const char *path, optim *o) {
    char err[1024];
    ckpt_state s;
    memset(&s, 0, sizeof s);
    snapshot(o);
    int64_t t = o ? o->t : 0;
    int rc = ckpt_read(path, &m, o, &s, err, sizeof err);
    fuzz_note("  ckpt_read(%s): %s", !o ? "no optimizer" : o == &adamw ? "adamw" : "sgd",
              rc == CKPT_OK ? "ok" : err);
    FUZZ_CHECK(rc == CKPT_OK || rc == CKPT_CORRUPT || rc == CKPT_MISMATCH, "ckpt_read returned %d", rc);
    if (rc == CKPT_OK) {
        FUZZ_CHECK(s.step >= 0 && s.epoch >= 0 && s.cursor >= 0 && s.optimizer_steps >= 0,
                   "negative position in a verified checkpoint");
    } else {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0], "no error message");
        FUZZ_CHECK(unchanged(o), "a failed ckpt_read (%d: %s) modified the model or optimizer",
                   rc, err);
        FUZZ_CHECK(!o || o->t == t, "a failed ckpt_read changed the optimizer step");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!k) setup_or_die();
    const char *path = fuzz_scratch_path("checkpoint");
    if (fuzz_write_file(path, data, size) != 0) return 0;

    char err[1024];
    char *text = ckpt_read_config(path, err, sizeof err);
    fuzz_note("  ckpt_read_config: %s", text ? "ok" : err);
    if (text) {
        config c;
        config_defaults(&c);
        if (config_load_string(&c, path, text, strlen(text), err, sizeof err) == 0)
            config_validate(&c, err, sizeof err);
        free(text);
    }
    int rc = ckpt_inspect(path, devnull, err, sizeof err);
    fuzz_note("  ckpt_inspect: %s", rc == 0 ? "ok" : err);
    read_into(path, &adamw);
    read_into(path, &sgd);
    read_into(path, NULL);
    fuzz_h5_check_closed("the checkpoint readers");
    return 0;
}
