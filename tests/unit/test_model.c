/* Model planning (trainer/model): the layer list from model.layers and from the model.gpt
 * preset - every layer's output shape, the parameter count, the tensors' names, shapes and
 * offsets (the PyTorch names users compare with) - and the refusals of layer lists that do
 * not fit the data.  Every expected number is worked out by hand in the comments. */
#include "unit_util.h"

#include "model.h"


/* images [28, 28] (Fashion-MNIST), 10 classes */
static const model_input_desc images28 = {0, {28, 28, 0}, 2, 10};

static const model_tensor *find_tensor(const model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    print_error("no tensor %s\n", name);
    fail();
    return NULL;
}

static void check_tensor(const model *m, int i, const char *name, int ndim, int64_t d0,
                         int64_t d1, int64_t d2, int64_t d3, int64_t offset) {
    const model_tensor *t = &m->tensors[i];
    const int64_t want[4] = {d0, d1, d2, d3};
    if (strcmp(t->name, name) != 0) {
        print_error("tensor %d is %s, expected %s\n", i, t->name, name);
        fail();
    }
    assert_int_equal(t->ndim, ndim);
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        assert_int_equal(t->dims[d], want[d]);
        count *= want[d];
    }
    assert_int_equal(t->count, count);
    assert_int_equal(t->offset, offset);
}

static void check_shape(const model_layer *L, int64_t t, int64_t c, int64_t h, int64_t w) {
    if (L->out.t != t || L->out.c != c || L->out.h != h || L->out.w != w) {
        print_error("layer %d (%s) outputs [t %lld, c %lld, h %lld, w %lld], expected [%lld, "
                    "%lld, %lld, %lld]\n", L->index, layer_type_name(L->type),
                    (long long)L->out.t, (long long)L->out.c, (long long)L->out.h,
                    (long long)L->out.w, (long long)t, (long long)c, (long long)h, (long long)w);
        fail();
    }
}

static void build_ok(model *m, const config *cfg, const model_input_desc *in, int64_t batch) {
    char err[512] = "";
    if (model_build(m, cfg, in, batch, 0, k, err, sizeof err) != 0) {
        print_error("model_build: %s\n", err);
        fail();
    }
}

/* Forward of B samples of zeros/ones input: the logits [B * rows, out_ld] are the last
 * activation and finite. */
static void forward_finite(model *m, int64_t B) {
    if (m->input_desc.tokens) {
        int32_t *tok = model_input_tokens(m);
        for (int64_t i = 0; i < B * m->input.t; i++) tok[i] = (int32_t)(i % m->n_classes);
    } else {
        float *x = model_input(m);
        for (int64_t i = 0; i < B * m->in_features; i++) x[i] = (float)(i % 7) / 7.0f;
    }
    float *logits = model_forward(m, B, 0, 1, 0, 0);
    assert_ptr_equal(logits, m->act[m->n_layers]);
    for (int64_t i = 0; i < B * m->rows_per_sample * m->out_ld; i++)
        if (!isfinite(logits[i])) {
            print_error("logit %lld is %g\n", (long long)i, (double)logits[i]);
            fail();
        }
}

/* nn.Sequential(Flatten, Linear(784, 32), ReLU, Linear(32, 10)) */
static void test_mlp(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "model.layers=[{type: flatten}, {type: linear, out: 32}, {type: relu}, "
                "{type: linear, out: 10}]", NULL);
    model m;
    build_ok(&m, &cfg, &images28, 4);
    assert_int_equal(m.n_layers, 4);
    assert_int_equal(m.in_features, 28 * 28);
    check_shape(&m.layers[0], 1, 784, 1, 1);
    check_shape(&m.layers[1], 1, 32, 1, 1);
    check_shape(&m.layers[2], 1, 32, 1, 1);
    check_shape(&m.layers[3], 1, 10, 1, 1);
    assert_int_equal(m.out_ld, 10);
    assert_int_equal(m.rows_per_sample, 1);
    /* 784*32 + 32 + 32*10 + 10 = 25088 + 32 + 320 + 10 = 25450 */
    assert_int_equal(m.n_params, 25450);
    assert_int_equal(m.n_buffers, 0);
    assert_int_equal(m.n_tensors, 4);
    check_tensor(&m, 0, "layers.1.weight", 2, 32, 784, 0, 0, 0);
    check_tensor(&m, 1, "layers.1.bias", 1, 32, 0, 0, 0, 25088);
    check_tensor(&m, 2, "layers.3.weight", 2, 10, 32, 0, 0, 25120);
    check_tensor(&m, 3, "layers.3.bias", 1, 10, 0, 0, 0, 25440);
    /* each layer's own parameter range: layer 1 [0, 25120), layer 3 [25120, 25450) */
    assert_int_equal(m.layers[1].param_off, 0);
    assert_int_equal(m.layers[1].param_count, 25120);
    assert_int_equal(m.layers[3].param_off, 25120);
    assert_int_equal(m.layers[3].param_count, 330);
    assert_int_equal(m.layers[0].param_off, -1);
    /* the linear computes the relu after it (one op); the last linear has nothing to fuse */
    assert_int_equal(m.layers[1].fused_act, KERN_ACT_RELU);
    assert_true(m.layers[2].fused);
    assert_int_equal(m.layers[3].fused_act, KERN_ACT_NONE);
    int64_t n = 0;
    assert_true(model_estimate_bytes(&cfg, &images28, 4, &n) > 0);
    assert_int_equal(n, 25450);
    model_init_params(&m, cfg.init, 1);
    forward_finite(&m, 4);
    model_free(&m);
}

/* conv 3x3 pad 1 -> batch norm -> relu -> maxpool 2 -> conv 3x3 stride 2 pad 1 -> global
 * average pool -> flatten -> linear, on [1, 28, 28] images */
static void test_cnn(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "model.layers=[{type: conv2d, out: 8, kernel: 3, padding: 1}, "
                "{type: batchnorm2d}, {type: relu}, {type: maxpool2d, kernel: 2}, "
                "{type: conv2d, out: 16, kernel: 3, stride: 2, padding: 1}, "
                "{type: global_avgpool}, {type: flatten}, {type: linear, out: 10}]", NULL);
    model m;
    build_ok(&m, &cfg, &images28, 2);
    assert_int_equal(m.n_layers, 8);
    check_shape(&m.layers[0], 1, 8, 28, 28);   /* (28 + 2 - 3)/1 + 1 = 28 */
    check_shape(&m.layers[1], 1, 8, 28, 28);
    check_shape(&m.layers[2], 1, 8, 28, 28);
    check_shape(&m.layers[3], 1, 8, 14, 14);   /* 28 / 2 */
    check_shape(&m.layers[4], 1, 16, 7, 7);    /* (14 + 2 - 3)/2 + 1 = 7 */
    check_shape(&m.layers[5], 1, 16, 1, 1);
    check_shape(&m.layers[6], 1, 16, 1, 1);
    check_shape(&m.layers[7], 1, 10, 1, 1);
    /* conv 8*1*3*3 + 8 = 80, bn 8 + 8 = 16, conv 16*8*3*3 + 16 = 1168, linear 16*10 + 10 = 170:
     * 80 + 16 + 1168 + 170 = 1434; buffers: running mean and variance, 8 each */
    assert_int_equal(m.n_params, 1434);
    assert_int_equal(m.n_buffers, 16);
    assert_int_equal(m.n_tensors, 10);
    check_tensor(&m, 0, "layers.0.weight", 4, 8, 1, 3, 3, 0);
    check_tensor(&m, 1, "layers.0.bias", 1, 8, 0, 0, 0, 72);
    check_tensor(&m, 2, "layers.1.weight", 1, 8, 0, 0, 0, 80);
    check_tensor(&m, 3, "layers.1.bias", 1, 8, 0, 0, 0, 88);
    check_tensor(&m, 4, "layers.4.weight", 4, 16, 8, 3, 3, 96);
    check_tensor(&m, 5, "layers.4.bias", 1, 16, 0, 0, 0, 1248);
    check_tensor(&m, 6, "layers.7.weight", 2, 10, 16, 0, 0, 1264);
    check_tensor(&m, 7, "layers.7.bias", 1, 10, 0, 0, 0, 1424);
    /* buffers after the parameters, offsets in the buffer array */
    check_tensor(&m, 8, "layers.1.running_mean", 1, 8, 0, 0, 0, 0);
    check_tensor(&m, 9, "layers.1.running_var", 1, 8, 0, 0, 0, 8);
    assert_true(m.tensors[8].is_buffer && m.tensors[9].is_buffer && !m.tensors[7].is_buffer);
    model_init_params(&m, cfg.init, 1);
    forward_finite(&m, 2);
    model_free(&m);
}

/* GPT preset, 2 blocks of dim 64, 4 heads, context 16, vocabulary 130 (padded to 192, the next
 * multiple of 64; a multiple of 32 or 128 would give 160 or 256) */
static void gpt_small(config *cfg, const char *tie) {
    unit_config(cfg, "model.gpt.layers=2", "model.gpt.heads=4", "model.gpt.dim=64",
                "model.gpt.context=16", tie, NULL);
}
static const model_input_desc tokens16 = {1, {16, 0, 0}, 1, 130};

static void test_gpt_small(void **state) {
    (void)state;
    config cfg;
    gpt_small(&cfg, "model.gpt.tie_embeddings=true");
    model m;
    build_ok(&m, &cfg, &tokens16, 2);
    /* embedding, then 12 layers per block (residual_start, ln_1, c_attn, attention, c_proj,
     * residual_end, residual_start, ln_2, c_fc, gelu, c_proj, residual_end; no dropout at
     * p = 0), then ln_f and lm_head */
    assert_int_equal(m.n_layers, 1 + 2 * 12 + 2);
    assert_int_equal(m.layers[0].type, LAYER_EMBEDDING);
    check_shape(&m.layers[0], 16, 64, 1, 1);
    check_shape(&m.layers[3], 16, 192, 1, 1);   /* block 0's c_attn: 3C */
    check_shape(&m.layers[4], 16, 64, 1, 1);    /* attention: back to C */
    check_shape(&m.layers[9], 16, 256, 1, 1);   /* block 0's c_fc: 4C */
    check_shape(&m.layers[11], 16, 64, 1, 1);   /* its c_proj */
    assert_int_equal(m.layers[m.n_layers - 1].type, LAYER_LM_HEAD);
    check_shape(&m.layers[m.n_layers - 1], 16, 192, 1, 1);
    assert_int_equal(m.out_ld, 192);
    assert_int_equal(m.rows_per_sample, 16);
    /* wte 192*64 = 12288, wpe 16*64 = 1024; a block: ln_1 2*64 = 128, c_attn 64*192 + 192 =
     * 12480, attn.c_proj 64*64 + 64 = 4160, ln_2 128, c_fc 64*256 + 256 = 16640, mlp.c_proj
     * 256*64 + 64 = 16448, together 49984; ln_f 128; the head is wte (tied):
     * 12288 + 1024 + 2*49984 + 128 = 113408 */
    assert_int_equal(m.n_params, 113408);
    assert_int_equal(m.n_tensors, 2 + 2 * 12 + 2);
    /* offsets: each tensor starts where the one before ends (wte 12288, wpe 1024, ln_1 64 + 64,
     * c_attn 12288 + 192, c_proj 4096 + 64, ln_2 64 + 64, c_fc 16384 + 256, ...) */
    check_tensor(&m, 0, "transformer.wte.weight", 2, 192, 64, 0, 0, 0);
    check_tensor(&m, 1, "transformer.wpe.weight", 2, 16, 64, 0, 0, 12288);
    check_tensor(&m, 2, "transformer.h.0.ln_1.weight", 1, 64, 0, 0, 0, 13312);
    check_tensor(&m, 3, "transformer.h.0.ln_1.bias", 1, 64, 0, 0, 0, 13376);
    check_tensor(&m, 4, "transformer.h.0.attn.c_attn.weight", 2, 192, 64, 0, 0, 13440);
    check_tensor(&m, 5, "transformer.h.0.attn.c_attn.bias", 1, 192, 0, 0, 0, 25728);
    check_tensor(&m, 6, "transformer.h.0.attn.c_proj.weight", 2, 64, 64, 0, 0, 25920);
    check_tensor(&m, 10, "transformer.h.0.mlp.c_fc.weight", 2, 256, 64, 0, 0, 30208);
    check_tensor(&m, 12, "transformer.h.0.mlp.c_proj.weight", 2, 64, 256, 0, 0, 46848);
    check_tensor(&m, 14, "transformer.h.1.ln_1.weight", 1, 64, 0, 0, 0, 13312 + 49984);
    check_tensor(&m, 26, "transformer.ln_f.weight", 1, 64, 0, 0, 0, 113408 - 128);
    check_tensor(&m, 27, "transformer.ln_f.bias", 1, 64, 0, 0, 0, 113408 - 64);
    /* the padding rows of wte start at zero: 130 of its 192 rows are initialised */
    assert_int_equal(find_tensor(&m, "transformer.wte.weight")->init_count, 130 * 64);
    /* GPT-2's weight decay: matrices only, not biases or layer norms */
    assert_true(find_tensor(&m, "transformer.h.1.mlp.c_fc.weight")->decay);
    assert_false(find_tensor(&m, "transformer.h.1.mlp.c_fc.bias")->decay);
    assert_false(find_tensor(&m, "transformer.h.1.ln_2.weight")->decay);
    model_init_params(&m, cfg.init, 1);
    forward_finite(&m, 2);
    model_free(&m);

    /* untied: the head has its own [192, 64] weight at the end */
    gpt_small(&cfg, "model.gpt.tie_embeddings=false");
    build_ok(&m, &cfg, &tokens16, 2);
    assert_int_equal(m.n_params, 113408 + 192 * 64);
    check_tensor(&m, m.n_tensors - 1, "lm_head.weight", 2, 192, 64, 0, 0, 113408);
    model_free(&m);
}

/* GPT-2 small (the defaults of model.gpt with 12 layers) on GPT-2's vocabulary of 50257,
 * context 1024, planned without allocating.  By hand, C = 768:
 *   wte: the vocabulary padded to 50304 (786 * 64) rows: 50304 * 768 = 38633472
 *   wpe: 1024 * 768 = 786432
 *   a block: ln_1 1536 + c_attn 768*2304 + 2304 = 1771776 + attn.c_proj 768*768 + 768 =
 *            590592 + ln_2 1536 + c_fc 768*3072 + 3072 = 2362368 + mlp.c_proj 3072*768 +
 *            768 = 2360064; together 7087872, times 12 = 85054464
 *   ln_f: 1536
 *   total 38633472 + 786432 + 85054464 + 1536 = 124475904
 * which is the published 124,439,808 of GPT-2 small (unpadded vocabulary) plus the 47 padding
 * rows of 768. */
static void test_gpt2_124m(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "model.gpt.layers=12", NULL);
    const model_input_desc gpt2 = {1, {1024, 0, 0}, 1, 50257};
    int64_t n = 0;
    assert_true(model_estimate_bytes(&cfg, &gpt2, 1, &n) > 0);
    assert_int_equal(n, 124475904);
    assert_int_equal(n - (50304 - 50257) * 768, 124439808);
    /* an untied head adds its own 50304 x 768 */
    cfg.gpt_tie = 0;
    assert_true(model_estimate_bytes(&cfg, &gpt2, 1, &n) > 0);
    assert_int_equal(n, 124475904 + 38633472);
}

/* model_build refuses with an error naming the layer (or key), leaves m empty, and
 * model_estimate_bytes agrees. */
static void refused(const config *cfg, const model_input_desc *in, const char *expect) {
    model m;
    char err[512] = "";
    assert_int_equal(model_build(&m, cfg, in, 2, 0, k, err, sizeof err), -1);
    assert_contains(err, expect);
    assert_null(m.layers);
    assert_null(m.params);
    int64_t n = 0;
    assert_int_equal(model_estimate_bytes(cfg, in, 2, &n), -1);
}

static void test_refusals(void **state) {
    (void)state;
    config cfg;
    unit_config(&cfg, "model.layers=[{type: flatten}, {type: linear, out: 32}]", NULL);
    refused(&cfg, &images28, "the last layer has 32 outputs but the dataset has 10 classes");

    unit_config(&cfg, "model.layers=[{type: conv2d, out: 4, kernel: 7}, {type: flatten}, "
                "{type: linear, out: 10}]", NULL);
    const model_input_desc small = {0, {4, 4, 0}, 2, 10};
    refused(&cfg, &small, "model.layers[0]: a 7x7 kernel");

    unit_config(&cfg, "model.layers=[{type: flatten}, {type: residual_end}, "
                "{type: linear, out: 10}]", NULL);
    refused(&cfg, &images28, "model.layers[1]: residual_end without residual_start");

    unit_config(&cfg, "model.layers=[{type: flatten}, {type: linear, out: 10}]", NULL);
    refused(&cfg, &tokens16, "the first layer must be an embedding");

    /* the preset on images; a context shorter than the samples; heads that do not divide
     * the width (config_validate says so too; model_build must not trust it) */
    gpt_small(&cfg, "model.gpt.tie_embeddings=true");
    refused(&cfg, &images28, "model.gpt: a GPT trains on a token dataset");
    const model_input_desc tokens32 = {1, {32, 0, 0}, 1, 130};
    refused(&cfg, &tokens32, "model.gpt.context: 16 is shorter than the samples' 32 tokens");
    cfg.gpt_heads = 5;
    refused(&cfg, &tokens16, "5 heads do not divide 64 features");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_cnn),
        cmocka_unit_test(test_gpt_small),
        cmocka_unit_test(test_gpt2_124m),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, unit_setup_backend, unit_free_backend);
}
