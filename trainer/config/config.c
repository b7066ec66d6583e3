/* config: defaults (from the key table) and cross-key validation.  Reading is in
 * config_load.c, writing in config_write.c, the key table in config_keys.c, --help's list of
 * keys in config_help.c. */
#include "config.h"
#include "config_keys.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table's defaults, computed once: model.layers' default is parsed by libyaml, which
 * makes filling a config a hundred times slower than copying one (the fuzzers and the
 * config loader start every input from the defaults). */
static config table_defaults;
static pthread_once_t table_defaults_once = PTHREAD_ONCE_INIT;

static void fill_table_defaults(void) {
    config *c = &table_defaults;
    memset(c, 0, sizeof *c);  /* unused bytes stay zero, so equal configs compare equal */
    for (size_t i = 0; i < config_n_keys; i++) {
        const config_key *k = &config_keys[i];
        if (k->kind == CK_GROUP) continue;   /* model.gpt: its keys have their own rows */
        if (k->kind != CK_LAYERS) {
            config_key_set_default(k, c);
            continue;
        }
        /* model.layers: its default is a YAML flow sequence, read as --set would read it */
        char assignment[1024], err[512];
        snprintf(assignment, sizeof assignment, "%s=%s", k->name, k->def ? k->def : "");
        if (!k->def || config_set(c, assignment, err, sizeof err) != 0) {
            fprintf(stderr, "harness: bug in config_keys.c: the default of '%s' does not parse: "
                    "%s\n", k->name, k->def ? err : "no default");
            abort();
        }
    }
}

void config_defaults(config *c) {
    pthread_once(&table_defaults_once, fill_table_defaults);
    memcpy(c, &table_defaults, sizeof *c);
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
