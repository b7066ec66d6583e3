/* config_load: reads a YAML config file and --set key=value overrides into a config.
 *
 * libyaml's event parser drives a small recursive descent over the only shape we accept:
 * a mapping of sections, each a mapping of scalar keys, and model.layers, a sequence of
 * mappings of scalars.  We stop at the first event that does not fit, so hostile input
 * (deep nesting, aliases, huge documents) costs no more than the events before it: nothing
 * is ever built as a tree, no recursion follows the input's depth, and aliases are refused. */
#include "config.h"
#include "config_keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_FILE_MAX (1 << 20)  /* a config is a few hundred bytes; refuse anything huge */

typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;          /* the current event, valid while have_event */
    int have_event;
    const char *origin;          /* the file's path, or "--set key=value" */
    int show_lines;              /* file: "PATH:LINE: ...", --set: "--set k=v: ..." */
    const unsigned char *input;  /* the whole input, to turn a byte offset into a line */
    size_t input_len;
    char *err;
    size_t errlen;
} reader;

static size_t event_line(const reader *r) { return r->event.start_mark.line + 1; }

/* "PATH:LINE: message" (file) or "--set k=v: message"; column 0 = none.  Always -1. */
static int vfail(reader *r, size_t line, size_t column, const char *fmt, va_list ap) {
    int used;
    if (r->show_lines && column) used = snprintf(r->err, r->errlen, "%s:%zu:%zu: ", r->origin, line, column);
    else if (r->show_lines) used = snprintf(r->err, r->errlen, "%s:%zu: ", r->origin, line);
    else used = snprintf(r->err, r->errlen, "%s: ", r->origin);
    if (used >= 0 && (size_t)used < r->errlen) vsnprintf(r->err + used, r->errlen - (size_t)used, fmt, ap);
    return -1;
}

static int fail(reader *r, size_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(reader *r, size_t line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(r, line, 0, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_at(reader *r, size_t line, size_t column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(reader *r, size_t line, size_t column, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(r, line, column, fmt, ap);
    va_end(ap);
    return -1;
}

static int syntax_error(reader *r) {
    const yaml_parser_t *p = &r->parser;
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_MEMORY_ERROR) return fail(r, 1, "out of memory while parsing YAML");
    if (p->error == YAML_READER_ERROR) {
        size_t offset = p->problem_offset < r->input_len ? p->problem_offset : r->input_len, line = 1;
        for (size_t i = 0; i < offset; i++) line += r->input[i] == '\n';
        if (p->problem_value >= 0)
            return fail(r, line, "not valid YAML text: %s (byte 0x%02x at offset %zu)", problem,
                        (unsigned)p->problem_value & 0xffu, p->problem_offset);
        return fail(r, line, "not valid YAML text: %s (at offset %zu)", problem, p->problem_offset);
    }
    size_t line = p->problem_mark.line + 1, column = p->problem_mark.column + 1;
    if (p->context)
        return fail_at(r, line, column, "YAML syntax error: %s (%s on line %zu)", problem,
                       p->context, p->context_mark.line + 1);
    return fail_at(r, line, column, "YAML syntax error: %s", problem);
}

static int next(reader *r) {
    if (r->have_event) yaml_event_delete(&r->event);
    r->have_event = 0;
    if (!yaml_parser_parse(&r->parser, &r->event)) return syntax_error(r);
    r->have_event = 1;
    return 0;
}

static int reader_open(reader *r, const char *origin, int show_lines, const unsigned char *input,
                       size_t len, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->origin = origin;
    r->show_lines = show_lines;
    r->input = input;
    r->input_len = len;
    r->err = err;
    r->errlen = errlen;
    if (!yaml_parser_initialize(&r->parser)) {
        snprintf(err, errlen, "%s: out of memory", origin);
        return -1;
    }
    yaml_parser_set_input_string(&r->parser, input, len);
    return 0;
}

static void reader_close(reader *r) {
    if (r->have_event) yaml_event_delete(&r->event);
    r->have_event = 0;
    yaml_parser_delete(&r->parser);
}

static const char *scalar_text(const reader *r) { return (const char *)r->event.data.scalar.value; }
static size_t scalar_len(const reader *r) { return r->event.data.scalar.length; }
static int scalar_plain(const reader *r) { return r->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

/* An unquoted empty / ~ / null scalar: "train:" with nothing under it. */
static int is_empty_scalar(const reader *r) {
    if (r->event.type != YAML_SCALAR_EVENT || !scalar_plain(r)) return 0;
    size_t len = scalar_len(r);
    const char *s = scalar_text(r);
    return len == 0 || (len == 1 && s[0] == '~') || (len == 4 && (!memcmp(s, "null", 4) ||
                                                                  !memcmp(s, "Null", 4) ||
                                                                  !memcmp(s, "NULL", 4)));
}

static const char *event_kind(const reader *r) {
    switch (r->event.type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_SCALAR_EVENT: return "a single value";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "nothing";
    }
}

/* The current event is not what display needed. */
static int unexpected(reader *r, const char *display, const char *wanted) {
    if (r->event.type == YAML_ALIAS_EVENT) {
        const char *anchor = (const char *)r->event.data.alias.anchor;
        char shown[64];
        config_quote_input(anchor, strlen(anchor), shown, sizeof shown);
        return fail(r, event_line(r), "%s: expected %s, got an alias (*%s); aliases are not supported",
                    display, wanted, shown);
    }
    if (r->event.type == YAML_SCALAR_EVENT) {
        char shown[64];
        config_quote_input(scalar_text(r), scalar_len(r), shown, sizeof shown);
        return fail(r, event_line(r), "%s: expected %s, got '%s'", display, wanted, shown);
    }
    return fail(r, event_line(r), "%s: expected %s, got %s", display, wanted, event_kind(r));
}

/* ---- unknown names and suggestions -------------------------------------------------------- */

static int suggestion_limit(size_t len) { return len <= 3 ? 1 : 2; }

static const char *key_name(size_t i) { return config_keys[i].name; }
static const char *section_name(size_t i) { return config_sections[i]; }
static const char *layer_key_name(size_t i) { return config_layer_keys[i].name; }

/* The name (of n, name_at(i)) nearest to name[0..len) within a small edit distance, or NULL. */
static const char *nearest_name(const char *name, size_t len, const char *(*name_at)(size_t),
                                size_t n) {
    const char *best = NULL;
    int best_distance = suggestion_limit(len) + 1;
    for (size_t i = 0; i < n; i++) {
        int d = config_edit_distance(name, len, name_at(i), best_distance - 1);
        if (d < best_distance) {
            best = name_at(i);
            best_distance = d;
        }
    }
    return best;
}

/* A known key for an unknown name: one whose last part is the same ("every" or "train.every"
 * -> "log.every"), else the nearest full name within a small edit distance.  NULL if none. */
static const char *suggest_key(const char *name, size_t len) {
    const char *dot = memchr(name, '.', len);
    const char *leaf = dot ? dot + 1 : name;
    size_t leaf_len = len - (size_t)(leaf - name);
    for (size_t i = 0; i < config_n_keys; i++) {
        const char *known_leaf = strchr(config_keys[i].name, '.') + 1;
        if (strlen(known_leaf) == leaf_len && memcmp(known_leaf, leaf, leaf_len) == 0)
            return config_keys[i].name;
    }
    return nearest_name(name, len, key_name, config_n_keys);
}

static const char *suggest_section(const char *name, size_t len) {
    const char *best = nearest_name(name, len, section_name, config_n_sections);
    return best ? best : suggest_key(name, len);
}

static int unknown_key(reader *r, size_t line, const char *shown, const char *suggestion,
                       const char *otherwise) {
    if (suggestion) return fail(r, line, "unknown key '%s'; did you mean '%s'?", shown, suggestion);
    return fail(r, line, "unknown key '%s'%s", shown, otherwise);
}

/* ---- values ------------------------------------------------------------------------------- */

static int apply_scalar(reader *r, const config_key *k, void *base, const char *display,
                        const char *text, size_t len, int plain, size_t line) {
    char message[512];
    if (config_key_parse(k, base, display, text, len, plain, message, sizeof message) != 0)
        return fail(r, line, "%s", message);
    return 0;
}

/* One layer mapping; the current event is its MAPPING_START. */
static int read_layer(reader *r, int index, layer_config *out) {
    char display[32], keyname[112], shown[64];
    snprintf(display, sizeof display, "model.layers[%d]", index);
    size_t map_line = event_line(r), key_line[LAYER_KEY_COUNT] = {0};
    layer_config l;
    memset(&l, 0, sizeof l);
    for (;;) {
        if (next(r)) return -1;
        if (r->event.type == YAML_MAPPING_END_EVENT) break;
        size_t line = event_line(r);
        if (r->event.type != YAML_SCALAR_EVENT) return unexpected(r, display, "a key name");
        const char *name = scalar_text(r);
        size_t len = scalar_len(r);
        const config_key *k = config_key_find(config_layer_keys, config_n_layer_keys, name, len);
        if (!k) {
            const char *best = nearest_name(name, len, layer_key_name, config_n_layer_keys);
            config_quote_input(name, len, shown, sizeof shown);
            snprintf(keyname, sizeof keyname, "%s.%s", display, shown);
            if (!best) {
                char all[200];
                size_t used = 0;
                for (size_t i = 0; i < config_n_layer_keys; i++)
                    used += (size_t)snprintf(all + used, sizeof all - used, "%s%s", i ? ", " : "",
                                             config_layer_keys[i].name);
                char tail[224];
                snprintf(tail, sizeof tail, " (layer keys: %s)", all);
                return unknown_key(r, line, keyname, NULL, tail);
            }
            char suggestion[48];
            snprintf(suggestion, sizeof suggestion, "%s.%s", display, best);
            return unknown_key(r, line, keyname, suggestion, "");
        }
        size_t which = (size_t)(k - config_layer_keys);
        snprintf(keyname, sizeof keyname, "%s.%s", display, k->name);
        if (key_line[which])
            return fail(r, line, "duplicate key '%s' (first on line %zu)", keyname, key_line[which]);
        key_line[which] = line;
        if (next(r)) return -1;
        if (r->event.type != YAML_SCALAR_EVENT) {
            char wanted[320];
            config_key_describe(k, wanted, sizeof wanted);
            return unexpected(r, keyname, wanted);
        }
        if (apply_scalar(r, k, &l, keyname, scalar_text(r), scalar_len(r), scalar_plain(r), event_line(r)))
            return -1;
    }
    if (!key_line[LAYER_KEY_TYPE]) {
        char types[256];
        size_t used = 0;
        for (int t = 0; t < LAYER_TYPE_COUNT; t++)
            used += (size_t)snprintf(types + used, sizeof types - used, "%s%s", t ? ", " : "",
                                     config_layer_names[t]);
        return fail(r, map_line, "%s: missing 'type' (one of %s)", display, types);
    }
    const layer_key_rule *rule = &config_layer_rules[l.type];
    char takes[160];
    config_layer_describe_keys(l.type, takes, sizeof takes);
    unsigned given = 0;
    for (size_t i = 0; i < LAYER_KEY_COUNT; i++) {
        if (!key_line[i]) continue;
        given |= 1u << i;
        if (!(rule->takes & (1u << i))) {
            if (rule->takes == 1u)
                return fail(r, key_line[i], "%s.%s: not a key of a %s layer (%s takes only type)",
                            display, config_layer_keys[i].name, config_layer_names[l.type],
                            config_layer_names[l.type]);
            return fail(r, key_line[i], "%s.%s: not a key of a %s layer (%s takes %s)", display,
                        config_layer_keys[i].name, config_layer_names[l.type],
                        config_layer_names[l.type], takes);
        }
    }
    for (size_t i = 1; i < LAYER_KEY_COUNT; i++)
        if ((rule->needs & (1u << i)) && !key_line[i]) {
            if (l.type == LAYER_LINEAR && i == LAYER_KEY_OUT)
                return fail(r, map_line, "%s: a linear layer needs 'out' (its output features)", display);
            return fail(r, map_line, "%s: a %s layer needs '%s' (it takes %s)", display,
                        config_layer_names[l.type], config_layer_keys[i].name, takes);
        }
    config_layer_fill_defaults(&l, given);
    *out = l;
    return 0;
}

/* model.layers; the current event is its SEQUENCE_START.  The list replaces the old one. */
static int read_layers(reader *r, config *c) {
    layer_config layers[CFG_MAX_LAYERS];
    memset(layers, 0, sizeof layers);
    int n = 0;
    for (;;) {
        if (next(r)) return -1;
        if (r->event.type == YAML_SEQUENCE_END_EVENT) break;
        if (n == CFG_MAX_LAYERS)
            return fail(r, event_line(r), "model.layers: at most %d layers", CFG_MAX_LAYERS);
        if (r->event.type != YAML_MAPPING_START_EVENT) {
            char display[32];
            snprintf(display, sizeof display, "model.layers[%d]", n);
            return unexpected(r, display, "a mapping like {type: linear, out: 10}");
        }
        if (read_layer(r, n, &layers[n])) return -1;
        n++;
    }
    c->n_layers = n;
    memcpy(c->layers, layers, sizeof layers);
    return 0;
}

static int read_value(reader *r, config *c, const config_key *k);

/* A group such as model.gpt: a mapping of the keys "GROUP.name"; the current event is its
 * MAPPING_START.  Each key may appear once. */
static int read_group(reader *r, config *c, const config_key *group) {
    size_t glen = strlen(group->name), seen[16] = {0};
    for (;;) {
        if (next(r)) return -1;
        if (r->event.type == YAML_MAPPING_END_EVENT) return 0;
        size_t line = event_line(r);
        if (r->event.type != YAML_SCALAR_EVENT) return unexpected(r, group->name, "a key name");
        const char *name = scalar_text(r);
        size_t len = scalar_len(r);
        char full[128];
        const config_key *k = NULL;
        if (glen + 1 + len < sizeof full) {
            memcpy(full, group->name, glen);
            full[glen] = '.';
            memcpy(full + glen + 1, name, len);
            k = config_key_find(config_keys, config_n_keys, full, glen + 1 + len);
        }
        if (!k) {
            char shown[64], keyname[96];
            config_quote_input(name, len, shown, sizeof shown);
            snprintf(keyname, sizeof keyname, "%s.%s", group->name, shown);
            const char *suggestion = glen + 1 + len < sizeof full ? suggest_key(full, glen + 1 + len) : NULL;
            return unknown_key(r, line, keyname, suggestion, "");
        }
        size_t which = (size_t)(k - group) % 16;
        if (seen[which])
            return fail(r, line, "duplicate key '%s' (first on line %zu)", k->name, seen[which]);
        seen[which] = line;
        if (next(r) || read_value(r, c, k)) return -1;
    }
}

/* The value of key k; the current event is its first. */
static int read_value(reader *r, config *c, const config_key *k) {
    char wanted[320];
    config_key_describe(k, wanted, sizeof wanted);
    if (k->kind == CK_GROUP) {
        if (r->event.type != YAML_MAPPING_START_EVENT) return unexpected(r, k->name, wanted);
        return read_group(r, c, k);
    }
    if (k->kind == CK_LAYERS) {
        if (r->event.type != YAML_SEQUENCE_START_EVENT) return unexpected(r, k->name, wanted);
        return read_layers(r, c);
    }
    if (r->event.type != YAML_SCALAR_EVENT) return unexpected(r, k->name, wanted);
    return apply_scalar(r, k, c, k->name, scalar_text(r), scalar_len(r), scalar_plain(r), event_line(r));
}

/* ---- the file ----------------------------------------------------------------------------- */

/* One section's keys; the current event is the section's MAPPING_START. */
static int read_section(reader *r, config *c, const char *section, size_t *key_line) {
    for (;;) {
        if (next(r)) return -1;
        if (r->event.type == YAML_MAPPING_END_EVENT) return 0;
        size_t line = event_line(r);
        if (r->event.type != YAML_SCALAR_EVENT) return unexpected(r, section, "a key name");
        const char *name = scalar_text(r);
        size_t len = scalar_len(r), section_len = strlen(section);
        char full[128];
        const config_key *k = NULL;
        if (section_len + 1 + len < sizeof full) {
            memcpy(full, section, section_len);
            full[section_len] = '.';
            memcpy(full + section_len + 1, name, len);
            k = config_key_find(config_keys, config_n_keys, full, section_len + 1 + len);
        }
        if (!k) {
            char shown[64], keyname[96];
            config_quote_input(name, len, shown, sizeof shown);
            snprintf(keyname, sizeof keyname, "%s.%s", section, shown);
            const char *suggestion = section_len + 1 + len < sizeof full
                                         ? suggest_key(full, section_len + 1 + len) : NULL;
            return unknown_key(r, line, keyname, suggestion, "");
        }
        size_t which = (size_t)(k - config_keys);
        if (key_line[which])
            return fail(r, line, "duplicate key '%s' (first on line %zu)", k->name, key_line[which]);
        key_line[which] = line;
        if (next(r)) return -1;
        if (read_value(r, c, k)) return -1;
    }
}

/* The top-level mapping; the current event is its MAPPING_START. */
static int read_sections(reader *r, config *c) {
    size_t section_line[16] = {0}, key_line[CONFIG_KEYS_MAX] = {0};
    for (;;) {
        if (next(r)) return -1;
        if (r->event.type == YAML_MAPPING_END_EVENT) return 0;
        size_t line = event_line(r);
        if (r->event.type != YAML_SCALAR_EVENT) return unexpected(r, "the config", "a section name");
        const char *name = scalar_text(r);
        size_t len = scalar_len(r), s = 0;
        while (s < config_n_sections &&
               !(strlen(config_sections[s]) == len && memcmp(config_sections[s], name, len) == 0))
            s++;
        if (s == config_n_sections) {
            char shown[64];
            config_quote_input(name, len, shown, sizeof shown);
            return unknown_key(r, line, shown, suggest_section(name, len),
                               " (sections: run, data, model, train, log, comm, checkpoint)");
        }
        if (section_line[s])
            return fail(r, line, "duplicate key '%s' (first on line %zu)", config_sections[s], section_line[s]);
        section_line[s] = line;
        if (next(r)) return -1;
        if (r->event.type == YAML_MAPPING_START_EVENT) {
            if (read_section(r, c, config_sections[s], key_line)) return -1;
            const config_key *layers = config_key_find(config_keys, config_n_keys, "model.layers", 12);
            const config_key *gpt = config_key_find(config_keys, config_n_keys, "model.gpt", 9);
            if (layers && gpt && key_line[layers - config_keys] && key_line[gpt - config_keys] &&
                c->n_layers > 0 && c->gpt_layers > 0)
                return fail(r, key_line[gpt - config_keys], "model.gpt and model.layers are "
                            "alternatives (model.layers is on line %zu); give one of them",
                            key_line[layers - config_keys]);
        } else if (!is_empty_scalar(r)) {
            return unexpected(r, config_sections[s], "a mapping of keys");
        }
    }
}

static int read_file_stream(reader *r, config *c) {
    if (next(r) || next(r)) return -1;  /* STREAM_START, then a document or the end */
    if (r->event.type == YAML_STREAM_END_EVENT) return 0;  /* empty, or only comments */
    if (next(r)) return -1;                                /* past DOCUMENT_START */
    if (r->event.type == YAML_MAPPING_START_EVENT) {
        if (read_sections(r, c)) return -1;
    } else if (!is_empty_scalar(r)) {
        return unexpected(r, "the config", "a mapping of sections (run, data, model, train, log, comm, checkpoint)");
    }
    if (next(r) || next(r)) return -1;  /* DOCUMENT_END, then the stream's end */
    if (r->event.type != YAML_STREAM_END_EVENT)
        return fail(r, event_line(r), "a config file holds one YAML document; found a second one");
    return 0;
}

/* The whole file, at most CONFIG_FILE_MAX bytes. */
static unsigned char *read_whole_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    *len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    int failed = ferror(f), saved_errno = errno;
    fclose(f);
    if (failed) snprintf(err, errlen, "%s: %s", path, strerror(saved_errno));
    else if (*len > CONFIG_FILE_MAX)
        snprintf(err, errlen, "%s: larger than %d bytes; not a config file?", path, CONFIG_FILE_MAX);
    if (failed || *len > CONFIG_FILE_MAX) {
        free(buf);
        return NULL;
    }
    return buf;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen) {
    size_t len = 0;
    unsigned char *text = read_whole_file(path, &len, err, errlen);
    if (!text) return -1;
    config loaded;
    config_defaults(&loaded);
    reader r;
    int rc = reader_open(&r, path, 1, text, len, err, errlen);
    if (rc == 0) {
        rc = read_file_stream(&r, &loaded);
        reader_close(&r);
    }
    free(text);
    if (rc == 0) memcpy(c, &loaded, sizeof loaded);
    return rc;
}

int config_load_string(config *c, const char *origin, const char *text, size_t len, char *err,
                       size_t errlen) {
    if (len > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes; not a config?", origin, CONFIG_FILE_MAX);
        return -1;
    }
    config loaded;
    config_defaults(&loaded);
    reader r;
    int rc = reader_open(&r, origin, 1, (const unsigned char *)text, len, err, errlen);
    if (rc == 0) {
        rc = read_file_stream(&r, &loaded);
        reader_close(&r);
    }
    if (rc == 0) memcpy(c, &loaded, sizeof loaded);
    return rc;
}

/* ---- --set key=value ---------------------------------------------------------------------- */

static int read_set_stream(reader *r, config *c, const config_key *k) {
    if (next(r) || next(r)) return -1;  /* STREAM_START, then a document or the end */
    if (r->event.type == YAML_STREAM_END_EVENT)  /* "key=" */
        return apply_scalar(r, k, c, k->name, "", 0, 1, 1);
    if (next(r) || read_value(r, c, k)) return -1;
    if (next(r) || next(r)) return -1;  /* DOCUMENT_END, then the stream's end */
    if (r->event.type != YAML_STREAM_END_EVENT) return fail(r, 1, "expected a single value");
    return 0;
}

int config_set(config *c, const char *assignment, char *err, size_t errlen) {
    char shown[64], origin[80];
    config_quote_input(assignment, strlen(assignment), shown, sizeof shown);
    snprintf(origin, sizeof origin, "--set %s", shown);
    const char *eq = strchr(assignment, '=');
    if (!eq) {
        snprintf(err, errlen, "%s: expected key=value, e.g. train.lr=0.01", origin);
        return -1;
    }
    const char *key = assignment, *key_end = eq;
    while (key < key_end && (*key == ' ' || *key == '\t')) key++;
    while (key_end > key && (key_end[-1] == ' ' || key_end[-1] == '\t')) key_end--;
    size_t key_len = (size_t)(key_end - key);
    const config_key *k = config_key_find(config_keys, config_n_keys, key, key_len);
    if (!k) {
        char key_shown[64];
        config_quote_input(key, key_len, key_shown, sizeof key_shown);
        const char *suggestion = suggest_key(key, key_len);
        if (suggestion)
            snprintf(err, errlen, "%s: unknown key '%s'; did you mean '%s'?", origin, key_shown, suggestion);
        else
            snprintf(err, errlen, "%s: unknown key '%s'", origin, key_shown);
        return -1;
    }
    config updated;
    memcpy(&updated, c, sizeof updated);
    reader r;
    const char *value = eq + 1;
    if (reader_open(&r, origin, 0, (const unsigned char *)value, strlen(value), err, errlen))
        return -1;
    int rc = read_set_stream(&r, &updated, k);
    reader_close(&r);
    if (rc == 0) memcpy(c, &updated, sizeof updated);
    return rc;
}
