/* fuzz_config: hostile bytes into the config reader (trainer/config/config_load.c).
 *
 * Each input is used twice:
 *   1. as a whole config file: config_load_string (then config_validate);
 *   2. as one --set assignment: config_set on the input up to its first NUL byte (the part
 *      before the first '=' is the key, so "model.layers=[{type: linear, out: 3}]" works).
 * Invariants (abort = a finding): a load that succeeds leaves a config that
 * config_to_yaml writes and config_load_string reads back to the identical struct; a
 * load that fails leaves the config untouched and a NUL-terminated message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

static void check_round_trip(const config *c, const char *how) {
    char *text = config_to_yaml(c);
    FUZZ_CHECK(text != NULL, "%s: config_to_yaml failed", how);
    config back;
    config_defaults(&back);
    char err[512];
    int rc = config_load_string(&back, "round-trip", text, strlen(text), err, sizeof err);
    FUZZ_CHECK(rc == 0, "%s: the written config does not load back: %s\n%s", how, err, text);
    FUZZ_CHECK(memcmp(&back, c, sizeof back) == 0,
               "%s: the written config loads back to other values:\n%s", how, text);
    free(text);
}

static void check_failed(const config *c, const config *before, const char *err, size_t errlen,
                         const char *how) {
    FUZZ_CHECK(memchr(err, '\0', errlen) != NULL, "%s: error message not terminated", how);
    FUZZ_CHECK(err[0] != '\0', "%s: failed without a message", how);
    FUZZ_CHECK(memcmp(c, before, sizeof *c) == 0, "%s: a failed load changed the config", how);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Heap copies of exactly the input (ASan flags any read past it), the second one
     * NUL-terminated for config_set. */
    char *text = malloc(size ? size : 1);
    char *assignment = malloc(size + 1);
    if (!text || !assignment) abort();
    memcpy(text, data, size);
    memcpy(assignment, data, size);
    assignment[size] = '\0';

    static config c, before;
    char err[512];

    config_defaults(&c);
    before = c;
    memset(err, 'X', sizeof err);
    if (config_load_string(&c, "fuzz.yaml", text, size, err, sizeof err) == 0) {
        fuzz_note("  config_load_string: ok");
        check_round_trip(&c, "config_load_string");
        config_validate(&c, err, sizeof err);
    } else {
        fuzz_note("  config_load_string: %s", err);
        check_failed(&c, &before, err, sizeof err, "config_load_string");
    }

    config_defaults(&c);
    before = c;
    memset(err, 'X', sizeof err);
    if (config_set(&c, assignment, err, sizeof err) == 0) {
        fuzz_note("  config_set: ok");
        check_round_trip(&c, "config_set");
        config_validate(&c, err, sizeof err);
    } else {
        fuzz_note("  config_set: %s", err);
        check_failed(&c, &before, err, sizeof err, "config_set");
    }

    free(text);
    free(assignment);
    return 0;
}
