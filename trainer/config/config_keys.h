/* config_keys: the table of every configuration key - name, type, field, default, range or
 * allowed values, one line of help - and the conversions between a key's field and its text.
 * Used by the config_*.c files, by `harness train --help` (config_help.c) and by the tests.
 *
 * The table is the single source of truth: config_defaults fills every field from its row's
 * default, the YAML reader looks names up in it, the writer walks it in order (which is the
 * layout of a written config), config_validate re-checks every field against its range, and
 * `harness train --help` prints it.
 *
 * Adding a key: one row in config_keys[] (config_keys.c), in its section, plus the field in
 * config (config.h) - and a word for it in README.md's key table, which test_config_docs
 * holds to the table (as it holds `harness train --help`).  A layer key: one row in
 * config_layer_keys[], its LAYER_KEY_* below, the field in layer_config and the layer types
 * that take it in config_layer_rules[]. */
#ifndef HARNESS_CONFIG_KEYS_H
#define HARNESS_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum {
    CK_STRING,   /* char[size]: any text shorter than size bytes */
    CK_NAME,     /* char[size]: one of names[] */
    CK_INT,      /* int in [imin, imax] */
    CK_I64,      /* int64_t in [imin, imax] */
    CK_U64,      /* uint64_t, any */
    CK_FLOAT,    /* float in the range fmin..fmax (open or closed ends) */
    CK_BOOL,     /* int 0 / 1 */
    CK_ENUM,     /* an enum (int-sized): index into names[] */
    CK_TRISTATE, /* int -1 (auto) / 1 (true) / 0 (false) */
    CK_LAYERS,   /* model.layers: n_layers + layers[] */
    CK_GROUP,    /* model.gpt: a mapping of the keys named "model.gpt.*" (no field) */
} config_kind;

typedef struct {
    const char *name;          /* "train.lr"; layer keys: "out" */
    config_kind kind;
    size_t offset, size;       /* the field in config (or in layer_config for layer keys) */
    int64_t imin, imax;        /* CK_INT, CK_I64 */
    double fmin, fmax;         /* CK_FLOAT; fmax = INFINITY: no upper bound */
    int fmin_open, fmax_open;  /* CK_FLOAT: 1 = the bound itself is excluded */
    const char *const *names;  /* CK_ENUM, CK_NAME: allowed values, NULL-terminated */
    /* The default as YAML text, read like a value from a file ("" = empty string; model.layers:
     * a flow sequence).  NULL only for CK_GROUP and for layer keys a layer must be given
     * (out, kernel, heads: zero until then). */
    const char *def;
    const char *help;          /* one line for --help: what the key does, not its range */
} config_key;

#define CONFIG_KEYS_MAX 128                /* bound on config_n_keys (for per-key arrays) */
/* config_layer_keys order */
enum {
    LAYER_KEY_TYPE, LAYER_KEY_OUT, LAYER_KEY_BIAS, LAYER_KEY_P, LAYER_KEY_KERNEL,
    LAYER_KEY_STRIDE, LAYER_KEY_PADDING, LAYER_KEY_DILATION, LAYER_KEY_GROUPS, LAYER_KEY_EPS,
    LAYER_KEY_MOMENTUM, LAYER_KEY_SYNC, LAYER_KEY_PROJECT, LAYER_KEY_HEADS, LAYER_KEY_CONTEXT,
    LAYER_KEY_TIE, LAYER_KEY_COUNT
};

/* Which layer keys a layer type takes and which it needs: bit i = config_layer_keys[i]. */
typedef struct {
    unsigned takes, needs;
} layer_key_rule;
extern const layer_key_rule config_layer_rules[];   /* indexed by layer_type */
/* Fills the default of every key l->type takes that is not marked in given (bit per key), and
 * zeroes the keys it does not take. */
void config_layer_fill_defaults(layer_config *l, unsigned given);
/* "type, out, bias": the keys a layer type takes, for messages. */
void config_layer_describe_keys(layer_type t, char *buf, size_t n);
extern const char *const config_layer_help[];   /* indexed by layer_type: one line each */

extern const config_key config_keys[];      /* every key of config, in written order */
extern const size_t config_n_keys;
extern const char *const config_sections[]; /* run, data, model, train, log, comm; NULL-ended */
extern const size_t config_n_sections;
extern const config_key config_layer_keys[]; /* type, out, bias, p (base: layer_config) */
extern const size_t config_n_layer_keys;
extern const char *const config_layer_names[]; /* indexed by layer_type; NULL-terminated */

/* Parses k->def into the key's field at base (a scalar key; model.layers is config_defaults'
 * own).  The defaults are the program's own text: one that does not parse is a bug in the
 * table, reported on stderr, and aborts. */
void config_key_set_default(const config_key *k, void *base);

/* The key named exactly name[0..len), or NULL. */
const config_key *config_key_find(const config_key *keys, size_t n, const char *name, size_t len);

/* Parses one YAML scalar into the key's field at base.  plain: the scalar was unquoted (so
 * "~" / "null" mean an empty string).  display: the name used in messages.  0, or -1 with
 * err = "DISPLAY: expected ..., got '...'". */
int config_key_parse(const config_key *k, void *base, const char *display, const char *text,
                     size_t len, int plain, char *err, size_t errlen);

/* Checks the field at base against the key's type and range (for config_validate).
 * 0, or -1 with err = "DISPLAY: expected ..., got '...'". */
int config_key_check(const config_key *k, const void *base, const char *display, char *err,
                     size_t errlen);

/* "a number > 0", "an integer >= 1", "one of sgd, adamw", ... */
void config_key_describe(const config_key *k, char *buf, size_t n);

/* The field's value as YAML text for non-string kinds (a string field gives its raw text). */
void config_key_format(const config_key *k, const void *base, char *buf, size_t n);

/* The shortest "%.Ng" (N <= 9) that reads back as exactly f; buf of at least 32 bytes. */
void config_format_float(float f, char *buf, size_t n);
/* Parses a float the way every float key does: strtod, fully consumed, finite, fits a float.
 * 0 or -1. */
int config_parse_float(const char *text, size_t len, float *out);

/* Text shown in messages for untrusted input: printable ASCII only, at most about 40 bytes,
 * "..." when cut. */
void config_quote_input(const char *text, size_t len, char *buf, size_t n);

/* Levenshtein distance between a[0..alen) and b, or limit + 1 when it exceeds limit. */
int config_edit_distance(const char *a, size_t alen, const char *b, int limit);

#endif
