/* cli: what the commands share. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int cli_wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int cli_resolve_config(config *cfg, const char *config_file, const char *checkpoint,
                       const char *const *sets, int n_sets, char *err, size_t errlen) {
    config_defaults(cfg);
    if (config_file && config_load_file(cfg, config_file, err, errlen) != 0) return -1;
    if (checkpoint) {
        char *text = ckpt_read_config(checkpoint, err, errlen);
        if (!text) return -1;
        int st = config_load_string(cfg, checkpoint, text, strlen(text), err, errlen);
        free(text);
        if (st != 0) return -1;
    }
    for (int i = 0; i < n_sets; i++)
        if (config_set(cfg, sets[i], err, errlen) != 0) return -1;
    return config_validate(cfg, err, errlen);
}
