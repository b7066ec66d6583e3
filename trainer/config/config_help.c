/* config_help: the keys part of `harness train --help`, printed from the key table, so a key
 * added to config_keys[] is listed with its default, range and help line without more code.
 *
 *   run:
 *     run.device                auto             compute backend; ... [auto|cpu|cuda]
 *   ...
 *   Layer types (model.layers ...):
 *     conv2d          2-D convolution ...; keys: out*, bias, kernel*, stride, ...
 *   Layer keys (default):
 *     stride     1        conv2d: step of the window; pools: default = kernel [1..1024]
 */
#include "config.h"
#include "config_keys.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { NAME_WIDTH = 25, DEFAULT_WIDTH = 16, LAYER_KEY_WIDTH = 10, LAYER_DEFAULT_WIDTH = 8 };

/* " [sgd|adamw]", " [>= 1]", " [0..4096]", " [0, 1)" (an interval): the range in brief, where the default
 * does not already say it (strings, booleans, seeds, groups and lists say nothing).  Error
 * messages spell the same range out (config_key_describe). */
static void values_note(const config_key *k, char *buf, size_t n) {
    buf[0] = '\0';
    switch (k->kind) {
    case CK_NAME:
    case CK_ENUM: {
        size_t used = (size_t)snprintf(buf, n, " [");
        for (int i = 0; k->names[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? "|" : "", k->names[i]);
        if (used < n) snprintf(buf + used, n - used, "]");
        return;
    }
    case CK_TRISTATE:
        snprintf(buf, n, " [auto|true|false]");
        return;
    case CK_INT:
    case CK_I64:
        if (k->imax == (k->kind == CK_INT ? INT_MAX : INT64_MAX))
            snprintf(buf, n, " [>= %" PRId64 "]", k->imin);
        else
            snprintf(buf, n, " [%" PRId64 "..%" PRId64 "]", k->imin, k->imax);
        return;
    case CK_FLOAT:
        if (isinf(k->fmax))
            snprintf(buf, n, " [%s %g]", k->fmin_open ? ">" : ">=", k->fmin);
        else
            snprintf(buf, n, " %c%g, %g%c", k->fmin_open ? '(' : '[', k->fmin, k->fmax,
                     k->fmax_open ? ')' : ']');
        return;
    default:
        return;
    }
}

/* The default as it reads in a config: "" for an empty string, "-" for none. */
static const char *default_text(const config_key *k) {
    if (k->def == NULL) return "-";
    if (k->def[0] == '\0') return "\"\"";
    return k->def;
}

/* NAME  DEFAULT  HELP (VALUES); a default too wide for its column gets a line of its own. */
static void print_row(FILE *out, const char *name, int name_width, const char *def,
                      int def_width, const char *help, const char *values) {
    if ((int)strlen(def) < def_width) {
        fprintf(out, "  %-*s %-*s %s%s\n", name_width, name, def_width, def, help, values);
    } else {
        fprintf(out, "  %-*s %s\n", name_width, name, def);
        fprintf(out, "  %-*s %-*s %s%s\n", name_width, "", def_width, "", help, values);
    }
}

static void print_keys(FILE *out) {
    char values[256];
    fprintf(out, "Keys, by section (KEY  DEFAULT  what it does); set them in CONFIG or with --set:\n");
    for (size_t s = 0; s < config_n_sections; s++) {
        size_t len = strlen(config_sections[s]);
        fprintf(out, "%s:\n", config_sections[s]);
        for (size_t i = 0; i < config_n_keys; i++) {
            const config_key *k = &config_keys[i];
            if (strncmp(k->name, config_sections[s], len) != 0 || k->name[len] != '.') continue;
            values_note(k, values, sizeof values);
            print_row(out, k->name, NAME_WIDTH, default_text(k), DEFAULT_WIDTH, k->help, values);
        }
    }
}

static void print_layers(FILE *out) {
    char values[256];
    fprintf(out, "\nLayer types (model.layers: [{type: TYPE, KEY: VALUE, ...}, ...]; KEY* must be "
            "given):\n");
    for (int t = 0; t < LAYER_TYPE_COUNT; t++) {
        const layer_key_rule *rule = &config_layer_rules[t];
        char keys[256];
        size_t used = 0;
        keys[0] = '\0';
        for (size_t i = 1; i < config_n_layer_keys && used < sizeof keys; i++)
            if (rule->takes & (1u << i))
                used += (size_t)snprintf(keys + used, sizeof keys - used, "%s%s%s", used ? ", " : "",
                                         config_layer_keys[i].name,
                                         rule->needs & (1u << i) ? "*" : "");
        fprintf(out, "  %-15s %s; keys: %s\n", config_layer_names[t], config_layer_help[t],
                used ? keys : "none");
    }
    fprintf(out, "Layer keys (KEY  DEFAULT  what it does):\n");
    for (size_t i = 0; i < config_n_layer_keys; i++) {
        const config_key *k = &config_layer_keys[i];
        if (i == LAYER_KEY_TYPE) values[0] = '\0';   /* the types are listed above */
        else values_note(k, values, sizeof values);
        print_row(out, k->name, LAYER_KEY_WIDTH, default_text(k), LAYER_DEFAULT_WIDTH, k->help,
                  values);
    }
}

void config_print_help(FILE *out) {
    print_keys(out);
    print_layers(out);
}
