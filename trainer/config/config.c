/* config: defaults and cross-key validation.  Reading is in config_load.c, writing in
 * config_write.c, the key table in config_keys.c. */
#include "config.h"
#include "config_keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void add_layer(config *c, layer_type type, int out) {
    layer_config *l = &c->layers[c->n_layers++];
    l->type = type;
    l->out = out;
    config_layer_fill_defaults(l, out ? 1u << LAYER_KEY_OUT : 0);
}

void config_defaults(config *c) {
    memset(c, 0, sizeof *c);  /* unused bytes stay zero, so equal configs compare equal */
    strcpy(c->run_dir, "runs/default");
    c->seed = 42;
    c->device = DEVICE_AUTO;
    c->threads = 0;
    c->precision = PRECISION_FP32;
    c->cuda_graph = 1;

    strcpy(c->train_path, "datasets/fashion-mnist/train.h5");
    strcpy(c->test_path, "datasets/fashion-mnist/test.h5");
    c->cache_mb = 2048;
    c->shuffle = 1;
    c->normalize = 1;

    /* The default MLP: [B,28,28] -> flatten [B,784] -> 256 -> 128 -> 10 logits. */
    add_layer(c, LAYER_FLATTEN, 0);
    add_layer(c, LAYER_LINEAR, 256);
    add_layer(c, LAYER_RELU, 0);
    add_layer(c, LAYER_LINEAR, 128);
    add_layer(c, LAYER_RELU, 0);
    add_layer(c, LAYER_LINEAR, 10);
    strcpy(c->init, "kaiming_uniform");
    c->gpt_layers = 0;   /* off: model.layers is the model */
    c->gpt_heads = 12;   /* the rest: GPT-2 small (124M) */
    c->gpt_dim = 768;
    c->gpt_context = 1024;
    c->gpt_dropout = 0.0f;
    c->gpt_bias = 1;
    c->gpt_tie = 1;

    c->epochs = 10;
    c->steps = 0;
    c->batch_size = 128;
    c->grad_accum = 1;
    c->optimizer = OPT_ADAMW;
    c->lr = 1e-3f;
    c->momentum = 0.9f;
    c->nesterov = 0;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = 0.0f;
    c->clip_grad_norm = 0.0f;
    c->schedule = SCHED_COSINE;
    c->warmup_steps = 0;
    c->min_lr = 0.0f;
    c->nonfinite = NONFINITE_STOP;
    c->zero_stage = 0;

    c->log_every = 100;
    c->eval_every = 0;
    c->progress = -1;
    c->plot = 0;
    c->trace = 0;
    c->trace_start = 11;   /* past the first steps' warm-up */
    c->trace_steps = 5;
    c->straggler_pct = 20.0f;
    c->straggler_intervals = 3;

    c->bucket_kb = 1024;
    c->shared_memory = 1;
    c->comm_timeout_s = 30.0f;
    c->comm_heartbeat_s = 5.0f;
    c->check_fingerprints = 0;
    c->grad_dtype = GRAD_DTYPE_FP32;

    c->ckpt_dir[0] = '\0';
    c->ckpt_every = 0;
    c->ckpt_keep = 3;
    c->ckpt_timeout_s = 600.0f;
    c->ckpt_async = 1;
}

const char *layer_type_name(layer_type t) {
    return (int)t >= 0 && (int)t < LAYER_TYPE_COUNT ? config_layer_names[t] : "unknown";
}

static int check_layers(const config *c, char *err, size_t errlen) {
    if (c->n_layers < 1 || c->n_layers > CFG_MAX_LAYERS) {
        snprintf(err, errlen, "model.layers: expected 1 to %d layers, got %d", CFG_MAX_LAYERS, c->n_layers);
        return -1;
    }
    int n_linear = 0, open_block = -1;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_config *l = &c->layers[i];
        char display[48];
        snprintf(display, sizeof display, "model.layers[%d].type", i);
        if (config_key_check(&config_layer_keys[LAYER_KEY_TYPE], l, display, err, errlen)) return -1;
        if (l->type == LAYER_LINEAR || l->type == LAYER_LM_HEAD) n_linear++;
        unsigned takes = config_layer_rules[l->type].takes;
        for (size_t j = 1; j < config_n_layer_keys; j++) {
            if (!(takes & (1u << j))) continue;
            const config_key *k = &config_layer_keys[j];
            snprintf(display, sizeof display, "model.layers[%d].%s", i, k->name);
            if (config_key_check(k, l, display, err, errlen)) return -1;
        }
        /* residual blocks: start ... end, not nested */
        if (l->type == LAYER_RESIDUAL_START) {
            if (open_block >= 0) {
                snprintf(err, errlen, "model.layers[%d]: residual_start inside the block opened at "
                         "model.layers[%d] (blocks do not nest; close it with residual_end)", i, open_block);
                return -1;
            }
            open_block = i;
        } else if (l->type == LAYER_RESIDUAL_END) {
            if (open_block < 0) {
                snprintf(err, errlen, "model.layers[%d]: residual_end without a residual_start before it", i);
                return -1;
            }
            open_block = -1;
        }
    }
    if (open_block >= 0) {
        snprintf(err, errlen, "model.layers[%d]: residual_start is never closed by a residual_end", open_block);
        return -1;
    }
    if (n_linear == 0) {
        snprintf(err, errlen, "model.layers: needs at least one linear layer");
        return -1;
    }
    layer_type last = c->layers[c->n_layers - 1].type;
    if (last != LAYER_LINEAR && last != LAYER_LM_HEAD) {
        snprintf(err, errlen, "model.layers: the last layer must be linear or lm_head (it produces the logits), got %s",
                 layer_type_name(last));
        return -1;
    }
    return 0;
}

int config_validate(const config *c, char *err, size_t errlen) {
    for (size_t i = 0; i < config_n_keys; i++)
        if (config_keys[i].kind != CK_LAYERS && config_keys[i].kind != CK_GROUP &&
            config_key_check(&config_keys[i], c, config_keys[i].name, err, errlen))
            return -1;
    if (c->gpt_layers > 0) {
        if (c->gpt_dim % c->gpt_heads != 0) {
            snprintf(err, errlen, "model.gpt.heads: %d heads do not divide model.gpt.dim %d",
                     c->gpt_heads, c->gpt_dim);
            return -1;
        }
    } else if (check_layers(c, err, errlen)) {
        return -1;
    }
    if (c->run_dir[0] == '\0') {
        snprintf(err, errlen, "run.dir: must not be empty");
        return -1;
    }
    if (c->train_path[0] == '\0') {
        snprintf(err, errlen, "data.train: must not be empty");
        return -1;
    }
    if (c->batch_size % c->grad_accum != 0) {
        snprintf(err, errlen, "train.batch_size (%" PRId64 ") must be divisible by train.grad_accum (%d)",
                 c->batch_size, c->grad_accum);
        return -1;
    }
    if (c->steps == 0 && c->epochs < 1) {
        snprintf(err, errlen, "train.epochs: must be >= 1 when train.steps is 0");
        return -1;
    }
    if (c->steps > 0 && c->warmup_steps >= c->steps) {
        snprintf(err, errlen, "train.warmup_steps (%" PRId64 ") must be less than train.steps (%" PRId64 ")",
                 c->warmup_steps, c->steps);
        return -1;
    }
    if (c->min_lr > c->lr) {
        char min_lr[32], lr[32];
        config_format_float(c->min_lr, min_lr, sizeof min_lr);
        config_format_float(c->lr, lr, sizeof lr);
        snprintf(err, errlen, "train.min_lr (%s) must be <= train.lr (%s)", min_lr, lr);
        return -1;
    }
    return 0;
}
