/* The key table against what users read: every row is complete (a default that parses, a help
 * line), `harness train --help` lists every key with its default and every layer type with the
 * keys it takes, and README.md's key tables name every key and every layer type's keys.
 *
 *   test_config_docs HARNESS README.md
 *
 * A key added to config_keys.c but not to README.md's `| section | keys |` table (or a layer
 * key not in its type's row of the `| type | keys |` table) fails here, naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "config_keys.h"

static const char *harness_path, *readme_path;
static char *help_text, *readme_text;

/* Every byte of a stream (a file or a pipe), NUL-terminated. */
static char *read_all(FILE *f) {
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[len] = '\0';
    return buf;
}

static int setup(void **state) {
    (void)state;
    char command[4200];
    snprintf(command, sizeof command, "HARNESS_NO_BLAS_REEXEC=1 '%s' train --help", harness_path);
    FILE *p = popen(command, "r");
    if (!p) return -1;
    help_text = read_all(p);
    int status = pclose(p);
    FILE *f = fopen(readme_path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", readme_path);
        return -1;
    }
    readme_text = read_all(f);
    fclose(f);
    if (status != 0) fprintf(stderr, "'%s' exited with status %d\n", command, status);
    return help_text && readme_text && status == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    free(help_text);
    free(readme_text);
    return 0;
}

/* The line of text (from `from` on) whose first word is exactly word, copied into line; the
 * rest of the line after that word goes to *rest.  0 when there is none. */
static int find_line(const char *text, const char *from, const char *word, char *line, size_t n,
                     const char **rest) {
    size_t wlen = strlen(word);
    const char *start = from ? from : text;
    while (*start) {
        const char *end = strchr(start, '\n');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        const char *w = start;
        while (w < start + len && *w == ' ') w++;
        if ((size_t)(start + len - w) >= wlen && memcmp(w, word, wlen) == 0 &&
            (w + wlen == start + len || w[wlen] == ' ')) {
            snprintf(line, n, "%.*s", (int)len, start);
            *rest = line + (w + wlen - start);
            return 1;
        }
        if (!end) break;
        start = end + 1;
    }
    return 0;
}

/* Each test reports every miss (so one run lists all that is missing), then fails. */
static int misses;
static void miss(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void miss(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    misses++;
}

static const char *skip_spaces(const char *s) {
    while (*s == ' ') s++;
    return s;
}

/* The default as --help shows it. */
static const char *default_shown(const config_key *k) {
    return k->def == NULL ? "-" : k->def[0] == '\0' ? "\"\"" : k->def;
}

static void test_every_row_is_complete(void **state) {
    (void)state;
    for (size_t i = 0; i < config_n_keys; i++) {
        const config_key *k = &config_keys[i];
        if (!k->help || !k->help[0] || strchr(k->help, '\n')) fail_msg("%s: no one-line help", k->name);
        if (k->kind != CK_GROUP && !k->def) fail_msg("%s: no default", k->name);
        if (k->kind == CK_GROUP && k->def) fail_msg("%s: a group has no default of its own", k->name);
    }
    for (size_t i = 0; i < config_n_layer_keys; i++) {
        const config_key *k = &config_layer_keys[i];
        if (!k->help || !k->help[0] || strchr(k->help, '\n')) fail_msg("layer key %s: no one-line help", k->name);
        if (k->def) {   /* parses into a scratch layer (config_key_set_default aborts if not) */
            layer_config l;
            memset(&l, 0, sizeof l);
            config_key_set_default(k, &l);
        }
    }
    for (int t = 0; t < LAYER_TYPE_COUNT; t++)
        if (!config_layer_help[t] || !config_layer_help[t][0])
            fail_msg("layer type %s: no help", config_layer_names[t]);
    /* the defaults are the table's: each field reads back as its row's default text would */
    config c, fresh;
    config_defaults(&c);
    for (size_t i = 0; i < config_n_keys; i++) {
        const config_key *k = &config_keys[i];
        if (k->kind == CK_GROUP || k->kind == CK_LAYERS) continue;
        memcpy(&fresh, &c, sizeof c);
        memset((char *)&fresh + k->offset, 0x5a, k->size);
        config_key_set_default(k, &fresh);
        if (memcmp(&fresh, &c, sizeof c) != 0) fail_msg("%s: config_defaults differs from the row's default", k->name);
    }
    char err[512];
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
}

static void test_help_lists_every_key_with_its_default(void **state) {
    (void)state;
    misses = 0;
    char line[1024];
    const char *rest;
    for (size_t i = 0; i < config_n_keys; i++) {
        const config_key *k = &config_keys[i];
        if (!find_line(help_text, NULL, k->name, line, sizeof line, &rest)) {
            miss("harness train --help does not list %s", k->name);
            continue;
        }
        const char *def = default_shown(k);
        if (strncmp(skip_spaces(rest), def, strlen(def)) != 0)
            miss("harness train --help: %s shows '%s', not its default '%s'", k->name,
                     skip_spaces(rest), def);
    }
    if (misses) fail_msg("%d missing (listed above)", misses);
}

/* "keys: out*, bias": each key a type takes, '*' on the ones it needs, nothing else. */
static void test_help_lists_every_layer_type_and_its_keys(void **state) {
    (void)state;
    misses = 0;
    char line[1024], expected[256];
    const char *rest;
    for (int t = 0; t < LAYER_TYPE_COUNT; t++) {
        const char *name = config_layer_names[t];
        if (!find_line(help_text, NULL, name, line, sizeof line, &rest)) {
            miss("harness train --help does not list the layer type %s", name);
            continue;
        }
        size_t used = 0;
        expected[0] = '\0';
        for (size_t i = 1; i < config_n_layer_keys; i++)
            if (config_layer_rules[t].takes & (1u << i))
                used += (size_t)snprintf(expected + used, sizeof expected - used, "%s%s%s",
                                         used ? ", " : "", config_layer_keys[i].name,
                                         config_layer_rules[t].needs & (1u << i) ? "*" : "");
        const char *keys = strstr(rest, "; keys: ");
        if (!keys || strcmp(keys + 8, used ? expected : "none") != 0)
            miss("harness train --help: layer type %s should list 'keys: %s': %s", name,
                     used ? expected : "none", line);
    }
    const char *layer_keys = strstr(help_text, "\nLayer keys");
    assert_non_null(layer_keys);
    for (size_t i = 0; i < config_n_layer_keys; i++) {
        const config_key *k = &config_layer_keys[i];
        if (!find_line(help_text, layer_keys + 1, k->name, line, sizeof line, &rest)) {
            miss("harness train --help does not describe the layer key %s", k->name);
            continue;
        }
        const char *def = default_shown(k);
        if (strncmp(skip_spaces(rest), def, strlen(def)) != 0)
            miss("harness train --help: layer key %s shows '%s', not its default '%s'",
                     k->name, skip_spaces(rest), def);
    }
    if (misses) fail_msg("%d missing (listed above)", misses);
}

/* The rows of the README table whose header line starts with header, as one string (rows
 * end at the first line that does not start with '|'). */
static char *readme_table(const char *header) {
    const char *start = strstr(readme_text, header);
    if (!start) return NULL;
    const char *end = start;
    while (*end == '|') {
        const char *nl = strchr(end, '\n');
        end = nl ? nl + 1 : end + strlen(end);
    }
    char *table = malloc((size_t)(end - start) + 1);
    memcpy(table, start, (size_t)(end - start));
    table[end - start] = '\0';
    return table;
}

/* The row of table whose first cell contains cell_word (e.g. "`train`"), or NULL. */
static const char *table_row(const char *table, const char *cell_word, char *row, size_t n) {
    for (const char *line = table; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *second_bar = memchr(line + 1, '|', len - 1);
        size_t first_cell = second_bar ? (size_t)(second_bar - line) : len;
        snprintf(row, n, "%.*s", (int)first_cell, line);
        if (strstr(row, cell_word)) {
            snprintf(row, n, "%.*s", (int)len, line);
            return row;
        }
        if (!nl) break;
        line = nl + 1;
    }
    return NULL;
}

static void test_readme_tables_name_every_key(void **state) {
    (void)state;
    misses = 0;
    char *sections = readme_table("| section | keys |");
    char *layers = readme_table("| type | keys |");
    if (!sections) fail_msg("%s: no '| section | keys |' table", readme_path);
    if (!layers) fail_msg("%s: no '| type | keys |' table", readme_path);
    char row[4096], word[128];
    for (size_t i = 0; i < config_n_keys; i++) {
        const char *name = config_keys[i].name, *leaf = strchr(name, '.') + 1;
        snprintf(word, sizeof word, "`%.*s`", (int)(leaf - 1 - name), name);
        if (!table_row(sections, word, row, sizeof row)) {
            miss("%s: the key table has no row for the section %s (key %s)", readme_path, word, name);
            continue;
        }
        snprintf(word, sizeof word, "`%s`", leaf);
        if (!strstr(row, word))
            miss("%s: the key table's row does not name %s (as %s)", readme_path, name, word);
    }
    for (int t = 0; t < LAYER_TYPE_COUNT; t++) {
        snprintf(word, sizeof word, "`%s`", config_layer_names[t]);
        if (!table_row(layers, word, row, sizeof row)) {
            miss("%s: the layers table has no row for the layer type %s", readme_path, word);
            continue;
        }
        for (size_t i = 1; i < config_n_layer_keys; i++) {
            if (!(config_layer_rules[t].takes & (1u << i))) continue;
            snprintf(word, sizeof word, "`%s`", config_layer_keys[i].name);
            if (!strstr(row, word))
                miss("%s: the layers table's row for %s does not name its key %s", readme_path,
                         config_layer_names[t], word);
        }
    }
    free(sections);
    free(layers);
    if (misses) fail_msg("%d missing (listed above)", misses);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HARNESS README.md\n", argv[0]);
        return 2;
    }
    harness_path = argv[1];
    readme_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_is_complete),
        cmocka_unit_test(test_help_lists_every_key_with_its_default),
        cmocka_unit_test(test_help_lists_every_layer_type_and_its_keys),
        cmocka_unit_test(test_readme_tables_name_every_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
